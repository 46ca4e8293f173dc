"""Which care practices go with churn: a Cox model with time-varying covariates.

:func:`practice_panel` builds the long format (customer-months at risk, cut at contact days) with
covariates taken only from the past of each moment; :class:`PracticeCoxFitter` fits lifelines'
``CoxTimeVaryingFitter`` on it (on a sample of customers when the world is large), reports hazard
ratios with intervals, a proportional-hazards check and the wait-time dose-response curve.
"""
from __future__ import annotations

import datetime as dt
import warnings

import duckdb
import numpy as np
import pandas as pd
from lifelines import CoxTimeVaryingFitter
from lifelines.exceptions import ConvergenceError
from scipy import stats

from analytics import queries as q
from analytics.cohorts import last_complete_month
from analytics.metrics import resolve_plan

__all__ = ["COVARIATES", "practice_panel", "PracticeCoxFitter", "practice_hazard_ratios", "wait_time_curve"]

# covariate -> what one unit means (the label of its hazard ratio)
COVARIATES = {
    "contacts_last_month": "per care contact last month",
    "wait_minutes_last_month": "per minute of mean wait last month",
    "unresolved_last_month": "an unresolved contact last month",
    "contacts_this_month": "per care contact earlier this month",
    "wait_minutes_this_month": "per minute of mean wait of this month's contacts so far",
    "unresolved_this_month": "an unresolved contact earlier this month",
    "billing_error_last_bill": "a billing error on the last bill",
    "discount_active": "a discount covering the month",
    "price_rise_last_bill": "a price rise on the last bill",
    "tenure_months": "per month of tenure",
}
ERROR_EVIDENCE = ("any_time", "before_interval", "on_bill")
TIMINGS = ("last_month", "within_month")
WAIT_TERMS = ("wait_minutes_last_month", "wait_minutes_this_month")
CHURN_KINDS = ("voluntary", "involuntary", "any")


_LAST_MONTH = f"""care as (
    -- one row per customer and month after a month with contacts: what happened in those contacts
    select k.customer_id, {q.mi("k.contacted_at")} + 1 as mi, count(*) as contacts,
           coalesce(avg(k.wait_seconds), 0) / 60.0 as wait_minutes,
           max(case when k.resolution <> 'resolved' then 1 else 0 end) as unresolved
    from contacts k
    join sampled p on p.customer_id = k.customer_id
    where k.contacted_at >= $care_from and k.contacted_at < $care_to
    group by k.customer_id, {q.mi("k.contacted_at")}
),
rows_at_risk as (
    -- one row per customer-month at risk; time in months since the window start
    select r.customer_id, r.mi, r.mi - $first_mi as start, r.mi - $first_mi + 1 as stop, r.event,
           coalesce(k.contacts, 0) as contacts, coalesce(k.wait_minutes, 0) as wait_minutes,
           coalesce(k.unresolved, 0) as unresolved, r.tenure_months
    from at_risk r
    left join care k on k.customer_id = r.customer_id and k.mi = r.mi
)"""

_WITHIN_MONTH = f"""contact_days as (
    -- one row per customer and day with contacts while at risk (on or before the churn day)
    select k.customer_id, cast(k.contacted_at as date) as day, count(*) as n,
           sum(k.wait_seconds) as wait_sum, count(k.wait_seconds) as wait_n,
           max(case when k.resolution <> 'resolved' then 1 else 0 end) as unresolved
    from contacts k
    join lives l on l.customer_id = k.customer_id
    where k.contacted_at >= $window_start and k.contacted_at < $window_end
      and cast(k.contacted_at as date) >= l.signup_date
      and (l.churn_date is null or cast(k.contacted_at as date) <= l.churn_date)
    group by k.customer_id, cast(k.contacted_at as date)
),
contact_runs as (
    -- the month's contacts so far at each contact day, and the month's next contact day
    select d.customer_id, {q.mi("d.day")} as mi, date_diff('day', $window_start, d.day) as day_from,
           date_diff('day', $window_start, lead(d.day) over (partition by d.customer_id, {q.mi("d.day")}
                                                              order by d.day)) as next_from,
           sum(d.n) over w as n, sum(d.wait_sum) over w as wait_sum, sum(d.wait_n) over w as wait_n,
           max(d.unresolved) over w as unresolved
    from contact_days d
    window w as (partition by d.customer_id, {q.mi("d.day")} order by d.day
                 rows between unbounded preceding and current row)
),
segments as (
    -- each month at risk cut at its contact days: before the first contact nothing has happened
    -- yet this month; from a contact day on, the month's contacts so far
    select r.customer_id, r.mi, r.day_from, coalesce(min(c.day_from), r.day_to) as day_to,
           0 as contacts, 0.0 as wait_minutes, 0 as unresolved
    from at_risk r
    left join contact_runs c on c.customer_id = r.customer_id and c.mi = r.mi
    group by r.customer_id, r.mi, r.day_from, r.day_to
    union all
    select c.customer_id, c.mi, c.day_from, coalesce(c.next_from, r.day_to), c.n,
           coalesce(c.wait_sum / nullif(c.wait_n, 0), 0) / 60.0, c.unresolved
    from contact_runs c
    join at_risk r on r.customer_id = c.customer_id and r.mi = c.mi
),
rows_at_risk as (
    -- one row per customer-month segment at risk; time in days since the window start
    select s.customer_id, s.mi, s.day_from as start, s.day_to as stop,
           case when s.day_to = r.day_to then r.event else 0 end as event,
           s.contacts, s.wait_minutes, s.unresolved, r.tenure_months
    from segments s
    join at_risk r on r.customer_id = s.customer_id and r.mi = s.mi
    where s.day_to > s.day_from
)"""


_ERRORS_CREDITED = """errors as (
    -- months whose last bill has a billing_error credit note (see the error_evidence rule)
    select b.customer_id, b.pmi + {shift} as mi, 1 as billing_error
    from bills b
    join credit_notes cn on cn.invoice_id = b.invoice_id and cn.reason = 'billing_error'
    where {cut}
    group by b.customer_id, b.pmi
),"""

_ERRORS_ON_BILL = """errors as (
    -- months whose last bill shows an error: a chargeable line charged twice, or the plan charged
    -- again as a one-off charge (the agent desk's fairness rules)
    select customer_id, pmi + 1 as mi, 1 as billing_error from (
        select b.customer_id, b.pmi
        from bills b
        join invoice_lines l on l.invoice_id = b.invoice_id
        where l.kind in ('plan', 'proration', 'usage', 'charge')
        group by b.customer_id, b.pmi, b.invoice_id, l.kind, l.description, l.amount_cents
        having count(*) > 1
        union
        select b.customer_id, b.pmi
        from bills b
        join plans p on p.plan_id = b.plan_id
        join invoice_lines l on l.invoice_id = b.invoice_id and l.kind = 'charge' and l.description = p.name) x
    group by customer_id, pmi
),"""


def _panel_sql(f: q.Filters, sample: bool, error_evidence: str, timing: str) -> str:
    # hash() is DuckDB's; on another engine any well-mixed hash of (customer_id, seed) will do
    sample_sql = ("\n    order by hash(c.customer_id, $seed), c.customer_id\n    limit $n"
                  if sample else "")
    when = "last_month" if timing == "last_month" else "this_month"
    errors = _ERRORS_ON_BILL if error_evidence == "on_bill" else _ERRORS_CREDITED.format(
        shift="1" if error_evidence == "any_time" else "2",
        cut="cn.issued_at < $as_of_next" if error_evidence == "any_time"
        else "cn.issued_at < b.period_start + interval '2' month")
    return f"""with
months as (
    select generate_series as mi from generate_series($first_mi, $last_mi)
),
sampled as materialized (
    -- one row per customer of the population (or of the sample) signed up by as_of
    select c.customer_id, c.signup_date, c.churned_on, c.churn_kind
    from customers c
    where c.signup_date <= $as_of{f.customer_sql("c", signup_plan=True)}{sample_sql}
),
first_churn as (
    -- one row per customer with subscriptions: the last day served of the first spell, its reason
    select s.customer_id,
           min(s.end_date) filter (where s.end_date <= $as_of and s.end_reason <> 'plan_change') as churn_date,
           arg_min(s.end_reason, s.end_date) filter (where s.end_date <= $as_of and s.end_reason <> 'plan_change')
               as churn_reason
    from subscriptions s
    join sampled p on p.customer_id = s.customer_id
    where s.start_date <= $as_of
    group by s.customer_id
),
lives as (
    -- one row per customer: signup, first churn (subscriptions, else churned_on) and its kind
    select p.customer_id, p.signup_date, {q.mi("p.signup_date")} as signup_mi, x.churn_date,
           {q.mi("x.churn_date")} as churn_mi,
           case when fc.churn_reason = 'non_payment' then 'involuntary'
                when fc.churn_reason = 'cancelled' then 'voluntary'
                else coalesce(p.churn_kind, 'voluntary') end as kind
    from sampled p
    left join first_churn fc on fc.customer_id = p.customer_id
    cross join (select case when fc.customer_id is not null then fc.churn_date
                            when p.churned_on <= $as_of then p.churned_on end as churn_date) x
),
at_risk as (
    -- one row per customer and month at risk: from signup (or the window start) to first churn;
    -- day_from / day_to: the days at risk in it (days since the window start, end exclusive)
    select l.customer_id, m.mi, m.mi - l.signup_mi as tenure_months,
           case when l.churn_mi = m.mi and l.kind in ($kind_a, $kind_b) then 1 else 0 end as event,
           date_diff('day', $window_start, greatest(l.signup_date, m.month_start)) as day_from,
           date_diff('day', $window_start, case when l.churn_mi = m.mi then l.churn_date + 1
                                                else m.month_start + interval '1' month end) as day_to
    from lives l
    join (select generate_series as mi,
                 cast($window_start + to_months(cast(generate_series - $first_mi as integer)) as date) as month_start
          from generate_series($first_mi, $last_mi)) m
      on m.mi >= l.signup_mi and (l.churn_mi is null or m.mi <= l.churn_mi)
),
bills as (
    -- one row per finalized invoice of the sample in or just before the window
    select i.invoice_id, i.customer_id, i.plan_id, i.period_start, {q.mi("i.period_start")} as pmi
    from invoices i
    join sampled p on p.customer_id = i.customer_id
    where i.status = 'finalized' and i.period_start >= $bills_from and i.period_start <= $last_date
),
{errors}
prices as (
    select pp.plan_id, m.mi, max_by(pp.monthly_price_cents, pp.effective_from) as price
    from plan_prices pp
    join (select generate_series as mi from generate_series($first_mi - 2, $last_mi)) m
      on {q.mi("pp.effective_from")} <= m.mi
    group by pp.plan_id, m.mi
),
rises as (
    -- months whose last bill (the previous period's) charged more for the plan than the bill before
    select b1.customer_id, b1.pmi + 1 as mi, 1 as price_rise
    from bills b1
    join bills b0 on b0.customer_id = b1.customer_id and b0.plan_id = b1.plan_id and b0.pmi = b1.pmi - 1
    join prices p1 on p1.plan_id = b1.plan_id and p1.mi = b1.pmi
    join prices p0 on p0.plan_id = b0.plan_id and p0.mi = b0.pmi
    where p1.price > p0.price
    group by b1.customer_id, b1.pmi
),
discounts as (
    -- months covered by a percent-off or free-month grant made before the month began
    select g.customer_id, m.mi, 1 as discount_active
    from offer_grants g
    join sampled p on p.customer_id = g.customer_id
    join months m on m.mi >= {q.mi("g.first_period")} and m.mi < {q.mi("g.first_period")} + g.cycles
    where g.kind in ('percent_off', 'free_months') and {q.mi("g.granted_at")} < m.mi
      and g.granted_at < $as_of_next
    group by g.customer_id, m.mi
),
{_LAST_MONTH if timing == 'last_month' else _WITHIN_MONTH},
final as (
    select x.customer_id, x.mi, x.start, x.stop, x.event,
           x.contacts as contacts_{when}, x.wait_minutes as wait_minutes_{when},
           x.unresolved as unresolved_{when},
           coalesce(e.billing_error, 0) as billing_error_last_bill,
           coalesce(d.discount_active, 0) as discount_active,
           coalesce(pr.price_rise, 0) as price_rise_last_bill,
           x.tenure_months
    from rows_at_risk x
    left join errors e on e.customer_id = x.customer_id and e.mi = x.mi
    left join discounts d on d.customer_id = x.customer_id and d.mi = x.mi
    left join rises pr on pr.customer_id = x.customer_id and pr.mi = x.mi
)
select * from final order by customer_id, start"""


def practice_panel(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, first_month: dt.date | None = None,
                   sample_customers: int | None = None, random_state: int = 0, churn_kind: str = "voluntary",
                   error_evidence: str = "on_bill", timing: str = "within_month", segment: str | None = None,
                   region: str | None = None, plan: int | str | None = None,
                   channel: str | None = None) -> pd.DataFrame:
    """The long-format churn panel: customer-months at risk, cut at the month's contact days.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        Months run to the last complete month on or before it.
    first_month : datetime.date, optional
        First month of the window (default: the earliest signup month); earlier months are left
        out (left truncation).
    sample_customers : int, optional
        A pseudo-random sample of this many customers (deterministic for ``random_state``).
    churn_kind : str
        The event: the first churn if ``voluntary`` (default; involuntary churn censors),
        ``involuntary`` or ``any``.
    error_evidence : str
        ``on_bill`` (default), ``any_time`` or ``before_interval``; see Notes.
    timing : str
        ``within_month`` (default) or ``last_month``; see Notes.
    segment, region, channel, plan
        Customer filters (plan: the signup plan).

    Returns
    -------
    pandas.DataFrame
        customer_id, mi (month index), start, stop, event and the covariates: with
        ``within_month`` one row per customer-month segment, time in days since the window start
        (stop = the day after the last day served), care covariates ``*_this_month``; with
        ``last_month`` one row per customer-month, time in months, ``*_last_month``.

    Notes
    -----
    At risk: from signup to the first churn (as :func:`analytics.survival.lifetimes`). The time axis
    is calendar time, so month-wide shocks (an understaffed month, a price rise for everyone) sit in
    the baseline hazard; tenure is a covariate. No covariate reads the future of its row:

    - care, ``within_month``: each month is cut at its contact days; before the first contact the
      care covariates are 0, from a contact day on they are the month's contacts so far (count,
      mean wait, any not ``resolved``). A contact counts from the start of its day, so it precedes
      a churn that day or later and never an earlier one. ``last_month``: last month's contacts.
      On a simulated world where this month's wait (HR 1.025 a minute) and an unresolved contact
      (1.6) move this month's hazard, ``within_month`` recovered 1.023 [1.02, 1.03] and 1.53
      [1.09, 2.17]; ``last_month`` saw neither (0.99, 1.04).
    - price_rise_last_bill: the bill for period M-1 (it arrives as M begins) priced the plan
      higher than the customer's bill for M-2 on the same plan.
    - discount_active: a percent-off or free-month grant made before M covers period M.
    - tenure_months: calendar months from the signup month to M.
    - billing_error_last_bill: ``on_bill``: the bill for M-1 shows the error (a line charged
      twice, or the plan charged again as a one-off charge): known when it arrives, blind to errors
      that look like real fees. ``any_time``: that bill has a billing_error credit note issued by
      ``as_of``: reads records made later, and credit notes go mostly to customers who stay (a
      complaint answered, an audit of current accounts), so errors look protective (HR 0.34 on the
      simulated world). ``before_interval``: the bill for M-2 has such a credit note issued before
      M began (strictly predictable; misses errors fixed within a month).
    """
    if churn_kind not in CHURN_KINDS:
        raise ValueError(f"churn_kind must be one of {', '.join(CHURN_KINDS)}")
    if error_evidence not in ERROR_EVIDENCE:
        raise ValueError(f"error_evidence must be one of {', '.join(ERROR_EVIDENCE)}")
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {', '.join(TIMINGS)}")
    last = last_complete_month(as_of)
    if first_month is None:
        first_signup = con.execute("select min(signup_date) from customers").fetchall()[0][0]
        first_month = first_signup or last
    first = first_month.replace(day=1)
    f = q.Filters(segment=segment, region=region, plan=resolve_plan(con, plan), channel=channel)
    first_mi, last_mi = q.month_index(first), q.month_index(last)
    params = {"as_of": as_of, "as_of_next": as_of + dt.timedelta(days=1), "first_mi": first_mi,
              "last_mi": last_mi, "last_date": last, "window_start": first,
              "window_end": q.month_from_index(last_mi + 1),
              "care_from": q.month_from_index(first_mi - 1), "care_to": q.month_from_index(last_mi),
              "bills_from": q.month_from_index(first_mi - 2),
              "kind_a": "voluntary" if churn_kind == "any" else churn_kind,
              "kind_b": "involuntary" if churn_kind == "any" else churn_kind,
              "seed": int(random_state), "n": int(sample_customers or 0), **f.params()}
    out = q.run(con, _panel_sql(f, sample_customers is not None, error_evidence, timing), params)
    when = "last_month" if timing == "last_month" else "this_month"
    ints = ["customer_id", "mi", "start", "stop", "event", f"contacts_{when}", f"unresolved_{when}",
            "billing_error_last_bill", "discount_active", "price_rise_last_bill", "tenure_months"]
    return out.astype({c: "int64" for c in ints}).astype({f"wait_minutes_{when}": "float64"})


class PracticeCoxFitter:
    """Cox model of the churn hazard on care practices, with time-varying covariates.

    Parameters
    ----------
    penalizer : float
        L2 penalty of lifelines' ``CoxTimeVaryingFitter`` (0 = plain partial likelihood).
    sample_customers : int or None
        Fit on a pseudo-random sample of this many customers (None = all); the default keeps a fit
        on a million-customer world within about a minute. ``n_customers_`` says what was used.
    random_state : int
        Seed of the sample.
    churn_kind, error_evidence, timing : str
        The panel's options (see :func:`practice_panel`).
    alpha : float
        1 - confidence level of the intervals.
    check_ph : bool
        Also test proportional hazards (a second fit with covariate x log(time) terms).
    ph_sample_customers : int or None
        Customers of the panel used for that second fit (None = all): it has twice the terms.
    max_work : float or None
        lifelines' fit costs about rows x distinct event times per iteration. When a panel exceeds
        this (churn on many different days), a random subset of its customers is fitted instead
        (``n_customers_`` reports it); None = no limit. Month-end churn stays far below it.
    first_month : datetime.date, optional
        First month of the window.

    Attributes
    ----------
    summary_ : pandas.DataFrame
        One row per covariate: term, label, hazard_ratio, lo, hi (1 - alpha interval), coef, se,
        z, p.
    ph_test_ : pandas.DataFrame or None
        One row per covariate: term, time_coef (of x log t), se, p, proportional (p >= alpha); with
        many rows small departures are "significant", so read time_coef's size too. None when not
        asked for or when that larger model does not converge.
    dropped_ : list of str
        Covariates left out because they do not vary.
    penalizer_used_ : float
        The reported fit's penalty (above ``penalizer`` only when the plain fit did not converge).
    model_ : lifelines.CoxTimeVaryingFitter
    n_customers_, n_rows_, n_events_ : int
        What the reported fit used.
    sampled_, work_limited_ : bool
        Whether a sample of customers was used; whether ``max_work`` made it smaller.
    contact_month_churn_, mean_wait_minutes_ : float
        Observed churn of the customer-months with contacts, and the mean wait of those contacts.
    """

    def __init__(self, penalizer: float = 0.0, sample_customers: int | None = 50_000, random_state: int = 0,
                 churn_kind: str = "voluntary", error_evidence: str = "on_bill",
                 timing: str = "within_month", alpha: float = 0.05,
                 check_ph: bool = True, ph_sample_customers: int | None = 20_000,
                 max_work: float | None = 6e7, first_month: dt.date | None = None):
        self.penalizer = penalizer
        self.sample_customers = sample_customers
        self.random_state = random_state
        self.churn_kind = churn_kind
        self.error_evidence = error_evidence
        self.timing = timing
        self.alpha = alpha
        self.check_ph = check_ph
        self.ph_sample_customers = ph_sample_customers
        self.max_work = max_work
        self.first_month = first_month

    def fit(self, con: duckdb.DuckDBPyConnection, as_of: dt.date, **filters) -> PracticeCoxFitter:
        """Build the panel from the database (see :func:`practice_panel`) and fit it.

        ``filters`` are segment, region, plan, channel. Returns self.
        """
        n_total = con.execute("select count(*) from customers where signup_date <= ?", [as_of]).fetchall()[0][0]
        small = self.sample_customers is None or self.sample_customers >= int(n_total)
        sample = None if small else self.sample_customers
        panel = practice_panel(con, as_of, first_month=self.first_month, sample_customers=sample,
                               random_state=self.random_state, churn_kind=self.churn_kind,
                               error_evidence=self.error_evidence, timing=self.timing, **filters)
        self.fit_panel(panel)
        self.sampled_ = sample is not None or self.work_limited_
        return self

    def fit_panel(self, panel: pd.DataFrame) -> PracticeCoxFitter:
        """Fit on a long-format frame (columns customer_id, start, stop, event and covariates).

        Any subset of :data:`COVARIATES` present is used; constant ones are dropped. Returns self.

        Raises
        ------
        ValueError
            When the panel has no events or no covariate that varies.
        """
        cols = [c for c in COVARIATES if c in panel.columns]
        self.dropped_ = [c for c in cols if panel[c].nunique() < 2]
        used = [c for c in cols if c not in self.dropped_]
        if not used or int(panel["event"].sum()) == 0:
            raise ValueError("the panel has no churn events or no covariate that varies: nothing to fit")
        panel = self._limit_work(panel, self.max_work)
        data = panel[["customer_id", "start", "stop", "event", *used]]
        self.model_ = self._fit(data)
        main_penalizer = self.penalizer_used_
        self.summary_ = self._summary(self.model_, used)
        self.ph_test_ = self._ph_test(data, used) if self.check_ph else None
        self.penalizer_used_ = main_penalizer
        self.n_customers_ = int(panel["customer_id"].nunique())
        self.n_rows_ = len(panel)
        self.n_events_ = int(panel["event"].sum())
        self.sampled_ = self.work_limited_
        contacts = next((c for c in ("contacts_last_month", "contacts_this_month") if c in panel), None)
        wait = next((c for c in WAIT_TERMS if c in panel), None)
        if contacts is None or wait is None or not (panel[contacts] > 0).any():
            self.contact_month_churn_ = self.mean_wait_minutes_ = float("nan")
        else:
            had = panel[panel[contacts] > 0]
            keys = ["customer_id", "mi"] if "mi" in panel else ["customer_id", "start"]
            months = panel.merge(had[keys].drop_duplicates(), on=keys)
            self.contact_month_churn_ = float(months.groupby(keys)["event"].max().mean())
            self.mean_wait_minutes_ = float(had[wait].mean())
        return self

    def _fit(self, data: pd.DataFrame) -> CoxTimeVaryingFitter:
        """Fit; when Newton-Raphson does not converge (near-separation), retry with a small ridge
        penalty (0.01, then 0.1) and record it in ``penalizer_used_``."""
        for penalizer in dict.fromkeys([self.penalizer, max(self.penalizer, 0.01), max(self.penalizer, 0.1)]):
            model = CoxTimeVaryingFitter(penalizer=penalizer, alpha=self.alpha)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(data, id_col="customer_id", event_col="event", start_col="start",
                              stop_col="stop", show_progress=False)
            except (ConvergenceError, np.linalg.LinAlgError):
                continue
            self.penalizer_used_ = penalizer
            return model
        raise ValueError("the Cox model did not converge, even with a ridge penalty of 0.1")

    def _summary(self, model: CoxTimeVaryingFitter, used: list[str]) -> pd.DataFrame:
        s = model.summary.loc[used]
        z = stats.norm.ppf(1 - self.alpha / 2)
        coef, se = s["coef"].to_numpy(), s["se(coef)"].to_numpy()
        with np.errstate(over="ignore"):       # an unstable term gets an unbounded (inf) interval
            return pd.DataFrame({"term": used, "label": [COVARIATES[c] for c in used],
                                 "hazard_ratio": np.exp(coef), "lo": np.exp(coef - z * se),
                                 "hi": np.exp(coef + z * se), "coef": coef, "se": se,
                                 "z": s["z"].to_numpy(), "p": s["p"].to_numpy()})

    def _limit_work(self, panel: pd.DataFrame, max_work: float | None) -> pd.DataFrame:
        """A random subset of the panel's customers whose rows x distinct event times fits in
        ``max_work`` (the whole panel when it already does); sets ``work_limited_``."""
        times = panel.loc[panel["event"] == 1, "stop"].nunique()
        self.work_limited_ = bool(max_work is not None and len(panel) * times > max_work)
        if not self.work_limited_:
            return panel
        ids = panel["customer_id"].unique()
        n = max(1, int(len(ids) * max_work / (len(panel) * times)))
        keep = np.random.default_rng(self.random_state).choice(ids, n, replace=False)
        return panel[panel["customer_id"].isin(keep)]

    def _ph_test(self, data: pd.DataFrame, used: list[str]) -> pd.DataFrame:
        """Proportional hazards: refit with x * log(stop) for every covariate; a time-varying
        effect shows as a non-zero interaction (a Wald test per covariate, in the spirit of the
        Grambsch-Therneau test on Schoenfeld residuals)."""
        ids = data["customer_id"].unique()
        if self.ph_sample_customers is not None and len(ids) > self.ph_sample_customers:
            keep = np.random.default_rng(self.random_state).choice(ids, self.ph_sample_customers, replace=False)
            data = data[data["customer_id"].isin(keep)]
        if self.max_work is not None:       # twice the terms: a quarter of the work budget
            limited = self.work_limited_
            data = self._limit_work(data, self.max_work / 4)
            self.work_limited_ = limited
        extended = data.copy()
        log_t = np.log(extended["stop"].astype("float64").clip(lower=1.0))
        inter = [f"{c}:log_t" for c in used]
        for c, name in zip(used, inter):
            extended[name] = extended[c] * log_t
        try:
            model = self._fit(extended)
        except ValueError:
            return None
        s = model.summary.loc[inter]
        return pd.DataFrame({"term": used, "time_coef": s["coef"].to_numpy(), "se": s["se(coef)"].to_numpy(),
                             "p": s["p"].to_numpy(), "proportional": s["p"].to_numpy() >= self.alpha})

    def wait_curve(self, minutes=None) -> pd.DataFrame:
        """What a minute of waiting costs in churn: relative hazard and monthly churn by wait.

        Parameters
        ----------
        minutes : array-like, optional
            Mean wait (minutes) of the contacts (this month's so far, or last month's); default
            0 to 30.

        Returns
        -------
        pandas.DataFrame
            Columns wait_minutes, hazard_ratio, lo, hi (relative to no wait, with the 1 - alpha
            band), monthly_churn, churn_lo, churn_hi. Empty when wait was not in the model.

        Notes
        -----
        ``HR(w) = exp(b w)`` with band ``exp((b -/+ z se) w)`` for the wait coefficient b, all else
        equal. Monthly churn of a customer-month with contacts: ``1 - (1 - p) ^ (HR(w) / HR(w_bar))``,
        where p is the observed churn rate of such customer-months and w_bar their mean wait (the
        proportional-hazards link between monthly probabilities).
        """
        term = next((t for t in WAIT_TERMS if t in set(self.summary_["term"])), None)
        if term is None:
            return pd.DataFrame(columns=["wait_minutes", "hazard_ratio", "lo", "hi", "monthly_churn",
                                         "churn_lo", "churn_hi"])
        w = np.arange(0, 31, dtype="float64") if minutes is None else np.asarray(minutes, dtype="float64")
        row = self.summary_.set_index("term").loc[term]
        z = stats.norm.ppf(1 - self.alpha / 2)
        b, se = float(row["coef"]), float(row["se"])
        with np.errstate(over="ignore"):
            hr, lo, hi = np.exp(b * w), np.exp((b - z * se) * w), np.exp((b + z * se) * w)
        p, w_bar = self.contact_month_churn_, self.mean_wait_minutes_
        # monthly churn keeps its observed value at the mean wait; the band moves b within its interval
        churn = 1 - (1 - p) ** np.exp(b * (w - w_bar))
        c1 = 1 - (1 - p) ** np.exp((b - z * se) * (w - w_bar))
        c2 = 1 - (1 - p) ** np.exp((b + z * se) * (w - w_bar))
        return pd.DataFrame({"wait_minutes": w, "hazard_ratio": hr, "lo": lo, "hi": hi, "monthly_churn": churn,
                             "churn_lo": np.minimum(c1, c2), "churn_hi": np.maximum(c1, c2)})


def _page_fit(con, as_of, sample_customers, random_state, min_events, filters) -> PracticeCoxFitter | None:
    try:
        fitter = PracticeCoxFitter(sample_customers=sample_customers, random_state=random_state,
                                   check_ph=False).fit(con, as_of, **filters)
    except ValueError:
        return None
    return fitter if fitter.n_events_ >= min_events else None


def practice_hazard_ratios(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, sample_customers: int | None = 20_000,
                           random_state: int = 0, min_events: int = 20, **filters) -> pd.DataFrame:
    """Hazard ratios of care practices: ``summary_`` of a default :class:`PracticeCoxFitter` plus
    n_customers, n_events and sampled; empty with fewer than ``min_events`` churn events or nothing
    to fit (e.g. an import without contacts). ``filters``: segment, region, plan, channel."""
    fitter = _page_fit(con, as_of, sample_customers, random_state, min_events, filters)
    if fitter is None:
        return pd.DataFrame(columns=["term", "label", "hazard_ratio", "lo", "hi", "coef", "se", "z", "p"])
    return fitter.summary_.assign(n_customers=fitter.n_customers_, n_events=fitter.n_events_,
                                  sampled=fitter.sampled_)


def wait_time_curve(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, max_minutes: int = 30,
                    sample_customers: int | None = 20_000, random_state: int = 0, min_events: int = 20,
                    **filters) -> pd.DataFrame:
    """:meth:`PracticeCoxFitter.wait_curve` of a default fitter from 0 to ``max_minutes``; empty when
    there is not enough data to fit."""
    fitter = _page_fit(con, as_of, sample_customers, random_state, min_events, filters)
    if fitter is None:
        return pd.DataFrame(columns=["wait_minutes", "hazard_ratio", "lo", "hi"])
    return fitter.wait_curve(np.arange(0, max_minutes + 1))
