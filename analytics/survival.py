"""Customer lifetimes, Kaplan-Meier curves by group, log-rank tests and lifetime value.

:func:`lifetimes` reads one row per customer from the database; the estimators
(:func:`kaplan_meier`, :func:`logrank`) work on that frame, so a notebook can also feed them its
own; :func:`survival_by` and :func:`lifetime_value` put the two together.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from itertools import combinations

import duckdb
import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test, pairwise_logrank_test
from lifelines.utils import median_survival_times

from analytics import queries as q
from analytics.metrics import customer_mrr, resolve_plan

__all__ = ["lifetimes", "kaplan_meier", "logrank", "survival_by", "lifetime_value", "SurvivalResult",
           "GROUP_COLUMNS", "MISSING"]

# customers columns a lifetime may be grouped by (others are identity data or the outcome itself)
GROUP_COLUMNS = ("segment", "region", "channel", "currency", "is_autopay", "is_paperless")
ALIASES = {"autopay": "is_autopay", "paperless": "is_paperless"}
MISSING = "(missing)"
UNITS = ("months", "days")


@dataclass(frozen=True)
class SurvivalResult:
    """Kaplan-Meier curves by group with their tests.

    Attributes
    ----------
    by : str or None
        The grouping attribute (None: everyone in one group ``all``).
    unit : str
        ``months`` or ``days``.
    curves : pandas.DataFrame
        One row per group and time: group, time, survival, lo, hi (pointwise confidence band),
        at_risk, observed (churned at that time), censored.
    medians : pandas.DataFrame
        One row per group: group, customers, churned, median (inf when the curve never falls to
        one half), median_lo, median_hi.
    logrank : dict or None
        Multivariate log-rank test across the groups: statistic, p_value, degrees_of_freedom,
        test_name. None with fewer than two groups.
    pairwise : pandas.DataFrame
        One row per pair of groups: group_a, group_b, statistic, p_value.
    """

    by: str | None
    unit: str
    curves: pd.DataFrame
    medians: pd.DataFrame
    logrank: dict | None
    pairwise: pd.DataFrame


def _group_sql(con: duckdb.DuckDBPyConnection, by: str | None) -> tuple[str, str, dict]:
    """SQL for the group of a customer ``c``: (expression, extra CTE/join text, params)."""
    if by is None:
        return "'all'", "", {}
    name = ALIASES.get(by, by)
    if name == "plan":
        # computed with the first churn in one pass over subscriptions: see _lifetime_ctes
        return "fc.plan_code", "", {}
    if name in GROUP_COLUMNS and re.fullmatch(r"[a-z_]+", name):
        return f"cast(c.{name} as varchar)", "", {}
    known = con.execute("select count(*) from customer_attributes where name = ?", [by]).fetchall()[0][0]
    if not known:
        raise ValueError(f"cannot group by {by!r}: not one of {', '.join(GROUP_COLUMNS + ('plan',))} "
                         "nor a customer attribute")
    join = ("\n    left join customer_attributes ca on ca.customer_id = c.customer_id and ca.name = $attribute")
    return "ca.value", join, {"attribute": by}


def lifetimes(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, by: str | None = None,
              segment: str | None = None, region: str | None = None, plan: int | str | None = None,
              channel: str | None = None) -> pd.DataFrame:
    """Each customer's lifetime from signup to first churn, or censored at ``as_of``.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        Censoring date; customers who signed up later are left out, churn after it is not known.
    by : str, optional
        Grouping attribute: a customers column (segment, region, channel, currency, is_autopay or
        ``autopay``, is_paperless or ``paperless``), ``plan`` (the signup plan's code) or the name of
        a customer attribute (``customer_attributes``). Missing values form the group ``(missing)``.
    segment, region, channel : str, optional
        Customer filters.
    plan : int or str, optional
        Only customers whose signup plan is this one.

    Returns
    -------
    pandas.DataFrame
        One row per customer: customer_id, group, signup_date, end_date (datetime64), event
        (True = churned), duration_days, duration_months.

    Notes
    -----
    start = ``customers.signup_date``; end = the last day served of the customer's first spell
    (the first subscription that ends other than by a plan change) when it is on or before
    ``as_of``, else ``as_of`` (censored). A customer with no subscriptions at all (an import of
    customers only) ends at ``customers.churned_on``. A later return does not undo the first churn.
    duration_days = end - start in days; duration_months = the number of whole months from start
    to end (the largest k with start + k months <= end, month ends clamped). For the IBM Telco
    import (signup = snapshot - tenure months, churned_on = snapshot, as_of = snapshot) that is
    exactly the file's tenure.
    """
    ctes, params = _lifetime_ctes(con, as_of, by=by, segment=segment, region=region, plan=plan,
                                  channel=channel)
    sql = f"""{ctes}
select customer_id, grp as "group", signup_date, end_date, event,
       {_DAYS_SQL} as duration_days,
       {_MONTHS_SQL} as duration_months
from final
order by customer_id"""
    out = q.run(con, sql, params)
    return out.astype({"customer_id": "int64", "group": "object", "event": "bool",
                       "duration_days": "int64", "duration_months": "int64"})


_DAYS_SQL = "date_diff('day', signup_date, end_date)"
_MONTHS_SQL = ("date_diff('month', signup_date, end_date)\n"
               "         - case when least(day(signup_date), day(last_day(end_date))) > day(end_date) "
               "then 1 else 0 end")


def _lifetime_ctes(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, by: str | None,
                   segment: str | None, region: str | None, plan: int | str | None,
                   channel: str | None) -> tuple[str, dict]:
    """The ``with ...`` text ending in CTE ``final`` (one row per customer: customer_id, grp,
    signup_date, end_date, event) that :func:`lifetimes` defines, and its parameters."""
    group_expr, group_join, gparams = _group_sql(con, by)
    f = q.Filters(segment=segment, region=region, plan=resolve_plan(con, plan), channel=channel)
    by_plan = by is not None and ALIASES.get(by, by) == "plan"
    # the signup plan: the code of the customer's first subscription (no predecessor, starting by
    # the signup date); lowest code if there are several
    plan_col = ("""
           min(case when s.previous_subscription_id is null and s.start_date <= c0.signup_date
                    then p0.code end) as plan_code,""" if by_plan else "")
    plan_join = ("""
    join customers c0 on c0.customer_id = s.customer_id
    join plans p0 on p0.plan_id = s.plan_id""" if by_plan else "")
    sql = f"""with
first_churn as (
    -- one row per customer with subscriptions: the end of their first spell if known by as_of
    -- (from the subscriptions started by as_of; has_sub: there is one)
    select s.customer_id,{plan_col}
           min(case when s.start_date <= $as_of and s.end_date <= $as_of and s.end_reason <> 'plan_change'
                    then s.end_date end) as churn_date,
           bool_or(s.start_date <= $as_of) as has_sub
    from subscriptions s{plan_join}
    group by s.customer_id
),
ends as (
    -- one row per customer of the population signed up by as_of, with their group
    select c.customer_id, coalesce({group_expr}, '{MISSING}') as grp, c.signup_date,
           case when fc.has_sub then fc.churn_date
                when c.churned_on <= $as_of then c.churned_on end as churn_date
    from customers c
    left join first_churn fc on fc.customer_id = c.customer_id{group_join}
    where c.signup_date <= $as_of{f.customer_sql("c", signup_plan=True)}
),
final as (
    select customer_id, grp, signup_date, coalesce(churn_date, cast($as_of as date)) as end_date,
           churn_date is not null as event
    from ends
)"""
    return sql, {"as_of": as_of, **f.params(), **gparams}


def _lifetime_counts(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, unit: str, by: str | None,
                     segment: str | None, region: str | None, plan: int | str | None,
                     channel: str | None) -> pd.DataFrame:
    """:func:`lifetimes` aggregated in SQL: one row per group, duration (in ``unit``) and event
    with the number of customers ``n``.

    Groups come in the order of their first customer (as in :func:`lifetimes`, ordered by
    customer_id): lifelines' multivariate log-rank test sums over groups in order of appearance, so
    this order gives bit-for-bit the statistic of the per-customer frame."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}")
    duration = _DAYS_SQL if unit == "days" else _MONTHS_SQL
    ctes, params = _lifetime_ctes(con, as_of, by=by, segment=segment, region=region, plan=plan,
                                  channel=channel)
    sql = f"""{ctes}
select grp as "group", duration, event, count(*) as n
from (select customer_id, grp, event, {duration} as duration from final) l
group by grp, duration, event
order by min(min(customer_id)) over (partition by grp), duration, event"""
    out = q.run(con, sql, params)
    return out.astype({"group": "object", "duration": "int64", "event": "bool", "n": "float64"})


def _duration(df: pd.DataFrame, unit: str) -> pd.Series:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}")
    return df[f"duration_{unit}"]


def kaplan_meier(lives: pd.DataFrame, *, unit: str = "months",
                 alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kaplan-Meier curves per group of a :func:`lifetimes` frame.

    Parameters
    ----------
    lives : pandas.DataFrame
        Columns group, event and duration_months / duration_days.
    unit : str
        ``months`` or ``days``.
    alpha : float
        1 - confidence level of the bands (0.05: 95 % pointwise bands, lifelines' exponential
        Greenwood intervals).

    Returns
    -------
    (curves, medians) : tuple of pandas.DataFrame
        As :class:`SurvivalResult`.

    Notes
    -----
    ``lifelines.KaplanMeierFitter`` per group: S(t) = prod over event times u <= t of
    (1 - d_u / n_u); at_risk n_t, observed d_t and censored counts come from its event table.
    """
    return _kaplan_meier(lives["group"], _duration(lives, unit), lives["event"], None, alpha)


def _kaplan_meier(groups: pd.Series, durations: pd.Series, events: pd.Series, weights: pd.Series | None,
                  alpha: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`kaplan_meier` on columns; ``weights`` (float) = how many customers each row stands for
    (None: one each). Integer weights give exactly the fit of the repeated rows."""
    curves, medians = [], []
    for group in sorted(groups.unique(), key=str):
        mask = (groups == group).to_numpy()
        w = None if weights is None else weights[mask]
        km = KaplanMeierFitter(alpha=alpha).fit(durations[mask], events[mask], label="s", weights=w)
        sf = km.survival_function_["s"]
        ci = km.confidence_interval_survival_function_
        table = km.event_table.reindex(sf.index)
        curves.append(pd.DataFrame({
            "group": group, "time": sf.index.to_numpy(dtype="float64"), "survival": sf.to_numpy(),
            "lo": ci.iloc[:, 0].to_numpy(), "hi": ci.iloc[:, 1].to_numpy(),
            "at_risk": table["at_risk"].fillna(0).astype("int64").to_numpy(),
            "observed": table["observed"].fillna(0).astype("int64").to_numpy(),
            "censored": table["censored"].fillna(0).astype("int64").to_numpy()}))
        med_ci = median_survival_times(km.confidence_interval_)
        if w is None:
            customers, churned = int(mask.sum()), int(events[mask].sum())
        else:
            customers, churned = int(w.sum()), int(w[events[mask].to_numpy()].sum())
        medians.append({"group": group, "customers": customers, "churned": churned,
                        "median": float(km.median_survival_time_),
                        "median_lo": float(med_ci.iloc[0, 0]), "median_hi": float(med_ci.iloc[0, 1])})
    if not curves:
        return (pd.DataFrame(columns=["group", "time", "survival", "lo", "hi", "at_risk", "observed", "censored"]),
                pd.DataFrame(columns=["group", "customers", "churned", "median", "median_lo", "median_hi"]))
    return pd.concat(curves, ignore_index=True), pd.DataFrame(medians)


def logrank(lives: pd.DataFrame, *, unit: str = "months") -> tuple[dict | None, pd.DataFrame]:
    """Log-rank tests between the groups of a :func:`lifetimes` frame.

    Returns
    -------
    (overall, pairwise)
        overall: the multivariate log-rank test (statistic, p_value, degrees_of_freedom,
        test_name), None with fewer than two groups; pairwise: one row per pair of groups
        (group_a, group_b, statistic, p_value), unadjusted for multiple comparisons.

    Notes
    -----
    ``lifelines.statistics.multivariate_logrank_test`` and ``pairwise_logrank_test``: under the
    null all groups share one survival curve; the statistic is chi-squared with groups - 1 degrees
    of freedom.
    """
    empty = pd.DataFrame(columns=["group_a", "group_b", "statistic", "p_value"])
    if lives["group"].nunique() < 2:
        return None, empty
    durations, groups, events = _duration(lives, unit), lives["group"].astype(str), lives["event"]
    res = multivariate_logrank_test(durations, groups, events)
    overall = {"statistic": float(res.test_statistic), "p_value": float(res.p_value),
               "degrees_of_freedom": int(res.degrees_of_freedom), "test_name": res.test_name}
    pw = pairwise_logrank_test(durations, groups, events).summary.reset_index()
    pairwise = pd.DataFrame({"group_a": pw.iloc[:, 0], "group_b": pw.iloc[:, 1],
                             "statistic": pw["test_statistic"].astype("float64"),
                             "p_value": pw["p"].astype("float64")})
    return overall, pairwise


def _logrank_weighted(counts: pd.DataFrame) -> tuple[dict | None, pd.DataFrame]:
    """:func:`logrank` on :func:`_lifetime_counts` (columns group, duration, event, n): the same
    tests with each row weighted by its count, so the same event tables and statistics."""
    empty = pd.DataFrame(columns=["group_a", "group_b", "statistic", "p_value"])
    if counts["group"].nunique() < 2:
        return None, empty
    durations, groups = counts["duration"], counts["group"].astype(str)
    events, weights = counts["event"], counts["n"]
    res = multivariate_logrank_test(durations, groups, events, weights=weights)
    overall = {"statistic": float(res.test_statistic), "p_value": float(res.p_value),
               "degrees_of_freedom": int(res.degrees_of_freedom), "test_name": res.test_name}
    rows = []
    for a, b in combinations(np.unique(groups), 2):   # the pairs and order of pairwise_logrank_test
        ia, ib = (groups == a).to_numpy(), (groups == b).to_numpy()
        r = logrank_test(durations[ia], durations[ib], events[ia], events[ib],
                         weights_A=weights[ia].to_numpy(), weights_B=weights[ib].to_numpy())
        rows.append({"group_a": a, "group_b": b, "statistic": float(r.test_statistic),
                     "p_value": float(r.p_value)})
    pairwise = pd.DataFrame(rows, columns=["group_a", "group_b", "statistic", "p_value"])
    return overall, pairwise.astype({"statistic": "float64", "p_value": "float64"})


def survival_by(con: duckdb.DuckDBPyConnection, by: str | None = None, *, as_of: dt.date,
                unit: str = "months", alpha: float = 0.05, segment: str | None = None,
                region: str | None = None, plan: int | str | None = None,
                channel: str | None = None) -> SurvivalResult:
    """Kaplan-Meier curves, medians and log-rank tests of customer lifetimes by a group.

    Parameters
    ----------
    by : str, optional
        See :func:`lifetimes`.
    as_of, unit, alpha, segment, region, plan, channel
        See :func:`lifetimes` and :func:`kaplan_meier`.

    Returns
    -------
    SurvivalResult

    Notes
    -----
    Lifetimes as in :func:`lifetimes`, curves as in :func:`kaplan_meier`, tests as in
    :func:`logrank`. The lifetimes are counted in SQL (one row per group, duration and event with
    its number of customers) and fed to lifelines as integer case weights, which gives the same
    event tables, curves and statistics as one row per customer.
    """
    counts = _lifetime_counts(con, as_of, unit=unit, by=by, segment=segment, region=region, plan=plan,
                              channel=channel)
    curves, medians = _kaplan_meier(counts["group"], counts["duration"], counts["event"], counts["n"], alpha)
    overall, pairwise = _logrank_weighted(counts)
    return SurvivalResult(by=by, unit=unit, curves=curves, medians=medians, logrank=overall, pairwise=pairwise)


def _monthly_survival(durations: np.ndarray, events: np.ndarray, horizon: int,
                      tail_months: int) -> tuple[np.ndarray, bool]:
    """S(t) for t = 0 .. horizon-1 months from KM, extended past the follow-up geometrically."""
    km = KaplanMeierFitter().fit(durations, events)
    t_max = int(np.max(durations)) if len(durations) else 0
    times = np.arange(horizon)
    s = km.predict(np.minimum(times, t_max)).to_numpy(dtype="float64")
    extrapolated = horizon - 1 > t_max
    if extrapolated:
        span = max(1, min(tail_months, t_max))
        s_end = float(km.predict(t_max))
        s_start = float(km.predict(t_max - span)) if t_max - span >= 0 else 1.0
        hazard = 1.0 - (s_end / s_start) ** (1.0 / span) if s_start > 0 else 1.0
        beyond = times > t_max
        s[beyond] = s_end * (1.0 - hazard) ** (times[beyond] - t_max)
    return s, extrapolated


def lifetime_value(con: duckdb.DuckDBPyConnection, as_of: dt.date, by: str | None = None, *,
                   margin: float = 1.0, annual_discount_rate: float = 0.0, horizon_months: int = 60,
                   arpu_cents: float | dict | None = None, arpu_attribute: str | None = None,
                   tail_months: int = 12, segment: str | None = None, region: str | None = None,
                   plan: int | str | None = None, channel: str | None = None) -> pd.DataFrame:
    """Customer lifetime value per group from the survival curve and ARPU.

    Parameters
    ----------
    as_of, by, segment, region, plan, channel
        See :func:`lifetimes` (durations in months).
    margin : float
        Share of revenue kept as margin (1.0 = revenue value).
    annual_discount_rate : float
        Yearly rate to discount future months (0 = none).
    horizon_months : int
        Months summed.
    arpu_cents : float or dict, optional
        ARPU to use (one number, or per group). Default: the group's mean MRR at the end of the
        month of ``as_of`` over its current customers (:func:`analytics.metrics.customer_mrr`).
    arpu_attribute : str, optional
        Instead, the mean of this numeric customer attribute (cents) over the group's customers not
        churned: for imports without prices, e.g. the Telco file's ``monthly_charges_cents``.
    tail_months : int
        Months at the end of the curve whose average hazard continues it past the follow-up.

    Returns
    -------
    pandas.DataFrame
        One row per group: group, customers, arpu_cents, expected_months, clv_cents,
        extrapolated (True when the horizon runs past the observed follow-up).

    Notes
    -----
    ``clv = margin * ARPU * sum_{t=0}^{H-1} P(T >= t) / (1 + r)^(t / 12)`` where T is the lifetime in
    whole months, ``P(T >= t) = S(t - 1)`` from the group's Kaplan-Meier curve (``S(-1) = 1``: every
    customer pays their first month), r the annual discount rate and H the horizon.
    ``expected_months`` is the sum without ARPU and margin. Past the longest observed lifetime t_max,
    ``S(t) = S(t_max) (1 - h)^(t - t_max)`` with h the mean monthly hazard over the last
    ``tail_months`` of the curve.
    """
    lives = lifetimes(con, as_of, by=by, segment=segment, region=region, plan=plan, channel=channel)
    arpu = _arpu(con, as_of, lives, arpu_cents, arpu_attribute)
    rows = []
    discount = (1.0 + annual_discount_rate) ** (-np.arange(horizon_months) / 12.0)
    for group, grp in lives.groupby("group", sort=True):
        s, extrapolated = _monthly_survival(grp["duration_months"].to_numpy(), grp["event"].to_numpy(),
                                            horizon_months, tail_months)
        paying = np.concatenate([[1.0], s[:-1]])
        expected = float(np.sum(paying * discount))
        value = arpu.get(group, np.nan)
        rows.append({"group": group, "customers": len(grp), "arpu_cents": value,
                     "expected_months": expected, "clv_cents": margin * value * expected,
                     "extrapolated": extrapolated})
    return pd.DataFrame(rows, columns=["group", "customers", "arpu_cents", "expected_months", "clv_cents",
                                       "extrapolated"])


def _arpu(con, as_of, lives: pd.DataFrame, arpu_cents, arpu_attribute) -> dict:
    groups = lives["group"].unique()
    if isinstance(arpu_cents, dict):
        return {g: float(arpu_cents.get(g, np.nan)) for g in groups}
    if arpu_cents is not None:
        return {g: float(arpu_cents) for g in groups}
    if arpu_attribute is not None:
        values = q.run(con, """select customer_id, try_cast(value as double) as v
                               from customer_attributes where name = $name""", {"name": arpu_attribute})
        current = lives[~lives["event"]].merge(values, on="customer_id", how="left")
        return current.groupby("group")["v"].mean().to_dict()
    mrr = customer_mrr(con, as_of.replace(day=1), as_of=as_of)
    current = lives.merge(mrr, on="customer_id", how="inner")
    return current.groupby("group")["mrr_cents"].mean().astype("float64").to_dict()
