"""Cohort retention by signup month, by customers and by revenue.

:func:`cohort_table` is the one definition (one row per cohort and month since signup);
:func:`cohort_retention` pivots it into the matrix a heatmap shows.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from analytics import queries as q
from analytics.metrics import resolve_plan

__all__ = ["cohort_table", "cohort_retention", "last_complete_month"]

VALUES = ("customer_retention", "revenue_retention", "customers", "mrr_cents")


def last_complete_month(as_of: dt.date) -> dt.date:
    """The first day of the latest month whose last day is on or before ``as_of``."""
    if q.month_end(as_of) == as_of:
        return as_of.replace(day=1)
    return q.month_from_index(q.month_index(as_of) - 1)


def _cohort_sql(f: q.Filters) -> str:
    cohort_customers = ("customers c where c.signup_date >= $cohort_from and c.signup_date <= $cohort_to"
                        + f.customer_sql("c", signup_plan=True))
    return f"""with {q.sub_ctes(f, by_cohort=True)},{q.price_ctes(by_cohort=True)},
{q.mrr_ctes(by_cohort=True)},
cohort_sizes as (
    -- one row per signup month: customers of the population who signed up in it
    select {q.mi("c.signup_date")} as cohort_mi, count(*) as cohort_customers
    from {cohort_customers}
    group by 1
),
logo_deltas as (
    -- +n when a run of service starts, -n in the month it ends (a start before signup counts from
    -- the signup month)
    select cohort_mi, mi, sum(d) as d from (
        select cohort_mi, case when start_mi < cohort_mi then cohort_mi else start_mi end as mi, n as d
        from groups where start_kind is not null and start_mi <= $last_mi
        union all
        select cohort_mi, case when stop_mi < cohort_mi then cohort_mi else stop_mi end, -n
        from groups where end_kind is not null and stop_mi <= $last_mi) e
    group by cohort_mi, mi
),
grid as (
    -- one row per cohort and month from its signup month to the last complete month
    select s.cohort_mi, s.cohort_customers, cal.mi
    from cohort_sizes s
    join calendar cal on cal.mi >= s.cohort_mi
),
retained as (
    select g.cohort_mi, g.cohort_customers, g.mi,
           sum(coalesce(d.d, 0)) over (partition by g.cohort_mi order by g.mi
                                       rows between unbounded preceding and current row) as customers
    from grid g
    left join logo_deltas d on d.cohort_mi = g.cohort_mi and d.mi = g.mi
),
final as (
    select r.cohort_mi, r.mi - r.cohort_mi as months_since_signup, r.mi, r.cohort_customers,
           r.customers, coalesce(m.mrr_cents, 0) as mrr_cents, coalesce(m0.mrr_cents, 0) as cohort_mrr_cents
    from retained r
    left join mrr_month m on m.cohort_mi = r.cohort_mi and m.mi = r.mi
    left join mrr_month m0 on m0.cohort_mi = r.cohort_mi and m0.mi = r.cohort_mi
)
select * from final order by cohort_mi, mi"""


def cohort_table(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, first_cohort: dt.date | None = None,
                 last_cohort: dt.date | None = None, segment: str | None = None, region: str | None = None,
                 plan: int | str | None = None, channel: str | None = None) -> pd.DataFrame:
    """Cohort retention by customers and by revenue; one row per cohort x months since signup.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        What is known; months run up to the last complete month on or before it.
    first_cohort, last_cohort : datetime.date, optional
        Signup months to include (default: every month with signups up to the last complete month).
    segment, region, channel : str, optional
        Customer filters.
    plan : int or str, optional
        Customers whose first subscription was on this plan (their signup plan).

    Returns
    -------
    pandas.DataFrame
        Columns cohort (first day of the signup month), months_since_signup, month,
        cohort_customers, customers, customer_retention, cohort_mrr_cents, mrr_cents,
        revenue_retention. Empty when no customer matches.

    Notes
    -----
    A cohort is the customers who signed up (``customers.signup_date``) in a month.
    ``customers`` at k months since signup = cohort members who are still customers at the end of
    month cohort + k (as in ``customers_end`` of :func:`analytics.metrics.monthly_metrics`: a
    customer who churns within the month is gone at its end, one who came back is counted again).
    customer_retention = customers / cohort_customers (so month 0 is below 1 when some left in
    their first month). ``mrr_cents`` is the cohort's MRR at the end of that month (the MRR of
    :func:`analytics.metrics.monthly_metrics`); cohort_mrr_cents is its value at month 0 and
    revenue_retention = mrr_cents / cohort_mrr_cents (net revenue retention of the cohort: price
    rises and plan upgrades can take it above 1). Only complete months are shown.
    """
    last_month = last_complete_month(as_of)
    bounds = con.execute("select min(signup_date), max(signup_date) from customers where signup_date <= ?",
                         [q.month_end(last_month)]).fetchall()[0]
    if bounds[0] is None:
        return _empty()
    first = (first_cohort or bounds[0]).replace(day=1)
    last = (last_cohort or last_month).replace(day=1)
    last = min(last, last_month)
    if last < first:
        return _empty()
    f = q.Filters(segment=segment, region=region, plan=resolve_plan(con, plan), channel=channel)
    params = {**q.window_params(first, last_month, as_of), **f.params(),
              "cohort_from": first, "cohort_to": q.month_end(last)}
    raw = q.run(con, _cohort_sql(f), params)
    if raw.empty:
        return _empty()
    out = pd.DataFrame({
        "cohort": [q.month_from_index(i) for i in raw["cohort_mi"]],
        "months_since_signup": raw["months_since_signup"].astype("int64"),
        "month": [q.month_from_index(i) for i in raw["mi"]],
        "cohort_customers": raw["cohort_customers"].astype("int64"),
        "customers": raw["customers"].astype("int64"),
    })
    out["customer_retention"] = out["customers"] / out["cohort_customers"]
    out["cohort_mrr_cents"] = raw["cohort_mrr_cents"].astype("int64")
    out["mrr_cents"] = raw["mrr_cents"].astype("int64")
    den = out["cohort_mrr_cents"].astype("float64")
    out["revenue_retention"] = out["mrr_cents"] / den.where(den != 0)
    return out


def cohort_retention(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, value: str = "customer_retention",
                     first_cohort: dt.date | None = None, last_cohort: dt.date | None = None,
                     segment: str | None = None, region: str | None = None,
                     plan: int | str | None = None, channel: str | None = None) -> pd.DataFrame:
    """The cohort retention matrix: one row per signup month, one column per month since signup.

    Parameters
    ----------
    value : str
        Which column of :func:`cohort_table` fills the matrix: ``customer_retention`` (default),
        ``revenue_retention``, ``customers`` or ``mrr_cents``.
    Other parameters as :func:`cohort_table`.

    Returns
    -------
    pandas.DataFrame
        Index ``cohort`` (``YYYY-MM``), columns 0, 1, 2 ... (months since signup); months not yet
        reached are missing.

    Notes
    -----
    A pivot of :func:`cohort_table`, where the definitions are.
    """
    if value not in VALUES:
        raise ValueError(f"value must be one of {', '.join(VALUES)}")
    table = cohort_table(con, as_of, first_cohort=first_cohort, last_cohort=last_cohort, segment=segment,
                         region=region, plan=plan, channel=channel)
    if table.empty:
        return pd.DataFrame(index=pd.Index([], name="cohort"))
    table = table.assign(cohort=[d.strftime("%Y-%m") for d in table["cohort"]])
    matrix = table.pivot(index="cohort", columns="months_since_signup", values=value)
    matrix.columns.name = "months_since_signup"
    return matrix


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
        ("cohort", "object"), ("months_since_signup", "int64"), ("month", "object"),
        ("cohort_customers", "int64"), ("customers", "int64"), ("customer_retention", "float64"),
        ("cohort_mrr_cents", "int64"), ("mrr_cents", "int64"), ("revenue_retention", "float64"))})
