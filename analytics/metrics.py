"""Monthly subscription metrics: customers, MRR and its movements, churn, discounts and care.

All functions are read-only, take a DuckDB connection first and an explicit month window, and
return one row per month. The SQL lives in :mod:`analytics.queries`; this module states the
definitions (Notes of :func:`monthly_metrics`) and derives the rates.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from analytics import queries as q

__all__ = ["subscription_metrics", "billing_metrics", "care_metrics", "monthly_metrics", "customer_mrr",
           "resolve_plan"]


def resolve_plan(con: duckdb.DuckDBPyConnection, plan: int | str | None) -> int | None:
    """A plan filter as a plan_id: an int is taken as is, a string is looked up as a plan code.

    Raises
    ------
    ValueError
        When no plan has that code.
    """
    if plan is None or isinstance(plan, (int, np.integer)):
        return None if plan is None else int(plan)
    rows = con.execute("select plan_id from plans where code = ?", [str(plan)]).fetchall()
    if not rows:
        raise ValueError(f"unknown plan code: {plan!r}")
    return int(rows[0][0])


def _billing_sql(f: q.Filters) -> str:
    """One row per billed month: gross billed, discounts, credits and net billed, from invoices."""
    join = ""
    if f.has_customer_filter:
        join = f"\n    join customers c on c.customer_id = i.customer_id{f.customer_sql('c')}"
    plan = " and i.plan_id = $plan" if f.plan is not None else ""
    return f"""with
billed as (
    -- one row per finalized invoice of the window issued by as_of
    select {q.mi("i.period_start")} as mi, i.subtotal_cents, i.discount_cents, i.credit_cents
    from invoices i{join}
    where i.status = 'finalized' and i.issued_on <= $as_of
      and i.period_start >= $first_date and i.period_start < $after_last{plan}
),
final as (
    select mi, count(*) as invoices,
           sum(subtotal_cents) as gross_billed_cents,
           sum(discount_cents) as discount_cents,
           sum(credit_cents) as credit_cents,
           sum(subtotal_cents - discount_cents) as billed_revenue_cents
    from billed
    group by mi
)
select * from final order by mi"""


def _care_sql(f: q.Filters) -> str:
    """One row per month with contacts: contacts, complaints, mean and 90th-percentile wait."""
    join = ""
    if f.has_customer_filter:
        join = f"\n    join customers c on c.customer_id = k.customer_id{f.customer_sql('c')}"
    if f.plan is not None:      # a join, not EXISTS: a customer's subscriptions do not overlap
        join += """
    join subscriptions s on s.customer_id = k.customer_id and s.plan_id = $plan
                        and cast(k.contacted_at as date) between s.start_date
                                                             and coalesce(s.end_date, DATE '9999-12-31')"""
    reasons = ", ".join(f"'{r}'" for r in q.COMPLAINT_REASONS)
    return f"""with
picked_contacts as (
    -- one row per contact in the window made by as_of
    select {q.mi("k.contacted_at")} as mi, k.reason, k.wait_seconds
    from contacts k{join}
    where k.contacted_at >= $first_date and k.contacted_at < $after_last
      and k.contacted_at < $as_of_next
),
final as (
    select mi, count(*) as contacts,
           sum(case when reason in ({reasons}) then 1 else 0 end) as complaints,
           avg(wait_seconds) / 60.0 as mean_wait_minutes,
           percentile_cont(0.9) within group (order by wait_seconds) / 60.0 as p90_wait_minutes
    from picked_contacts
    group by mi
)
select * from final order by mi"""


def _setup(con, first_month, last_month, as_of, segment, region, plan, channel):
    first_month, last_month = first_month.replace(day=1), last_month.replace(day=1)
    as_of = q.month_end(last_month) if as_of is None else as_of
    f = q.Filters(segment=segment, region=region, plan=resolve_plan(con, plan), channel=channel)
    params = {**q.window_params(first_month, last_month, as_of), **f.params()}
    return f, params


def _months(params: dict) -> pd.DataFrame:
    idx = range(params["first_mi"], params["last_mi"] + 1)
    return pd.DataFrame({"mi": list(idx), "month": [q.month_from_index(i) for i in idx]})


def subscription_metrics(con: duckdb.DuckDBPyConnection, first_month: dt.date, last_month: dt.date, *,
                         as_of: dt.date | None = None, segment: str | None = None,
                         region: str | None = None, plan: int | str | None = None,
                         channel: str | None = None) -> pd.DataFrame:
    """Customer counts, MRR and MRR movements; one row per month.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    first_month, last_month : datetime.date
        The window (any day of the month; inclusive).
    as_of : datetime.date, optional
        What is known: subscriptions starting and ends, grants after it are ignored (an end after
        ``as_of`` counts as still open). Default: the last day of ``last_month``.
    segment, region, channel : str, optional
        Customer filters.
    plan : int or str, optional
        plan_id or plan code: count only subscriptions on that plan (see :func:`monthly_metrics`).

    Returns
    -------
    pandas.DataFrame
        Columns month, customers_start, customers_end, active_customers, new_customers,
        reactivated_customers, churned_customers, churned_voluntary, churned_involuntary,
        switched_in, switched_out, mrr_start_cents, mrr_cents, mrr_new_cents,
        mrr_expansion_cents, mrr_contraction_cents, mrr_churn_cents, mrr_reactivation_cents.

    Notes
    -----
    Definitions are in :func:`monthly_metrics`.
    """
    f, params = _setup(con, first_month, last_month, as_of, segment, region, plan, channel)
    raw = q.run(con, q.subscription_month_sql(f), params)
    raw = raw.astype({c: "int64" for c in raw.columns if c != "mi"})
    raw["customers_start"] = raw["customers_end"].shift(1)
    raw["mrr_start_cents"] = raw["mrr_cents"].shift(1)
    raw["active_customers"] = raw["customers_start"] + raw["starts_adding_active"]
    raw["churned_customers"] = raw["churned_voluntary"] + raw["churned_involuntary"]
    out = _months(params).merge(raw, on="mi", how="left")
    cols = ["month", "customers_start", "customers_end", "active_customers", "new_customers",
            "reactivated_customers", "churned_customers", "churned_voluntary", "churned_involuntary",
            "switched_in", "switched_out", "mrr_start_cents", "mrr_cents", "mrr_new_cents",
            "mrr_expansion_cents", "mrr_contraction_cents", "mrr_churn_cents", "mrr_reactivation_cents"]
    return out[cols].astype({c: "int64" for c in cols if c != "month"}).reset_index(drop=True)


def billing_metrics(con: duckdb.DuckDBPyConnection, first_month: dt.date, last_month: dt.date, *,
                    as_of: dt.date | None = None, segment: str | None = None,
                    region: str | None = None, plan: int | str | None = None,
                    channel: str | None = None) -> pd.DataFrame:
    """What was billed for each period, from finalized invoices; one row per month.

    Returns
    -------
    pandas.DataFrame
        Columns month, invoices, gross_billed_cents, discount_cents, credit_cents,
        billed_revenue_cents, discount_spend_cents, discount_share. Months without invoices
        (not billed yet, or imported data) have zeros and a missing share.

    Notes
    -----
    Over finalized invoices whose period is the month and issued by ``as_of``; under a plan
    filter, invoices of subscriptions on that plan. gross_billed = sum(subtotal) (plan, proration,
    usage, charges); discount = sum(discount) (percent-off and free-month lines);
    credit = sum(credit) (one-off credits applied); billed_revenue = gross - discount (excludes tax
    and credits); discount_spend = discount + credit; discount_share = discount_spend / gross.
    """
    f, params = _setup(con, first_month, last_month, as_of, segment, region, plan, channel)
    raw = q.run(con, _billing_sql(f), params)
    out = _months(params).merge(raw, on="mi", how="left")
    money = ["invoices", "gross_billed_cents", "discount_cents", "credit_cents", "billed_revenue_cents"]
    out[money] = out[money].fillna(0).astype("int64")
    out["discount_spend_cents"] = out["discount_cents"] + out["credit_cents"]
    out["discount_share"] = _ratio(out["discount_spend_cents"], out["gross_billed_cents"])
    return out.drop(columns="mi")


def care_metrics(con: duckdb.DuckDBPyConnection, first_month: dt.date, last_month: dt.date, *,
                 as_of: dt.date | None = None, segment: str | None = None,
                 region: str | None = None, plan: int | str | None = None,
                 channel: str | None = None) -> pd.DataFrame:
    """Care contacts and waiting times; one row per month.

    Returns
    -------
    pandas.DataFrame
        Columns month, contacts, complaints, mean_wait_minutes, p90_wait_minutes.

    Notes
    -----
    Contacts made in the month (by ``as_of``); complaints are contacts about the bill (reasons
    bill_higher_than_expected, billing_error, bill_not_understood). Waits over contacts with a
    recorded wait: mean, and the 90th percentile by linear interpolation (``percentile_cont``).
    Under a plan filter, contacts made while the customer had a subscription on the plan.
    """
    f, params = _setup(con, first_month, last_month, as_of, segment, region, plan, channel)
    raw = q.run(con, _care_sql(f), params)
    out = _months(params).merge(raw, on="mi", how="left")
    out[["contacts", "complaints"]] = out[["contacts", "complaints"]].fillna(0).astype("int64")
    return out.drop(columns="mi")


def monthly_metrics(con: duckdb.DuckDBPyConnection, first_month: dt.date, last_month: dt.date, *,
                    as_of: dt.date | None = None, segment: str | None = None,
                    region: str | None = None, plan: int | str | None = None,
                    channel: str | None = None) -> pd.DataFrame:
    """All monthly subscription metrics; one row per month of the window.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    first_month, last_month : datetime.date
        The window (any day of the month; inclusive).
    as_of : datetime.date, optional
        What is known; default the last day of ``last_month``.
    segment, region, channel : str, optional
        Customer filters (bound parameters).
    plan : int or str, optional
        plan_id or plan code.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`subscription_metrics`, :func:`billing_metrics` and
        :func:`care_metrics`, plus logo_churn_rate, revenue_churn_rate, net_revenue_retention,
        arpu_cents and contact_rate.

    Notes
    -----
    Service: a subscription serves ``start_date..end_date`` inclusive. A *spell* is a run of
    continuous service of a customer, followed through the schema's links: a plan change closes a
    subscription (end_reason ``plan_change``) and opens the next (``previous_subscription_id``),
    which continues the spell. A subscription ending for any other reason ends the spell:
    **churn** in the month of its last day served (non_payment is involuntary, cancelled voluntary,
    imported the customer's churn_kind). A subscription without a predecessor starts a spell:
    **new** when it starts on or before the customer's signup_date or no earlier spell of theirs
    had ended, else a **reactivation**. (So a cancellation followed by a new, unlinked
    subscription the next day is a churn and a reactivation; the billing engine links plan
    changes, which are never churn.)

    - customers_end(M): customers in a spell that started in or before M and ends after M (still
      customers once M is over). customers_start(M) = customers_end(M-1).
    - customers_end = customers_start + new + reactivated + switched_in - churned - switched_out.
    - active_customers(M): customers with any subscription overlapping M (customers_start plus
      spells starting in M, a return in the month its previous spell ended counted once).
    - logo_churn_rate = churned_customers / customers_start (churned counts every spell ending in
      M, including one that started in M).
    - MRR(M) (mrr_cents): monthly recurring revenue at the end of M. For each subscription still
      serving on the last day of M whose customer stays past M (or, when it ends within M by a plan
      change, until its last full month): the plan's monthly price for period M (plan_prices) minus
      the percent-off and free-month discounts covering period M, each ``round_div(price * pct,
      100)`` and together at most the price. This is exactly the recurring plan charge net of
      discounts that billing invoices for a full month; tax, usage, one-off charges and one-off
      credits are excluded, proration is not (MRR is a monthly run rate). It is computed from the
      contract, not summed from invoices, so the latest unbilled month and imported data without
      invoices have it too, and movements need no per-customer pass over the invoice history;
      :func:`billing_metrics` reports what was actually invoiced.
    - MRR movements per customer between the end of M-1 and the end of M: new (first spell starts),
      reactivation (later spell starts), churn (was a customer at the end of M-1, is not at the end
      of M: the MRR at the end of M-1), expansion / contraction (a customer at both ends: the
      increase / decrease, e.g. a price rise, a plan change, a discount ending / starting).
      mrr = mrr_start + new + reactivation + expansion - contraction - churn.
    - revenue_churn_rate = (mrr_churn + mrr_contraction) / mrr_start (gross MRR churn).
    - net_revenue_retention = (mrr_start + expansion - contraction - churn) / mrr_start (one month).
    - arpu_cents = mrr / customers_end.
    - contact_rate = contacts / active_customers.
    - Plan filter: only subscriptions on the plan count; a customer moving onto / off the plan
      while staying a customer is switched_in / switched_out and their MRR an expansion /
      contraction. Under no plan filter those are zero.

    Rates with a zero denominator are missing (NaN).
    """
    args = dict(as_of=as_of, segment=segment, region=region, plan=resolve_plan(con, plan), channel=channel)
    subs = subscription_metrics(con, first_month, last_month, **args)
    bill = billing_metrics(con, first_month, last_month, **args)
    care = care_metrics(con, first_month, last_month, **args)
    out = subs.merge(bill, on="month").merge(care, on="month")
    out["logo_churn_rate"] = _ratio(out["churned_customers"], out["customers_start"])
    out["revenue_churn_rate"] = _ratio(out["mrr_churn_cents"] + out["mrr_contraction_cents"],
                                       out["mrr_start_cents"])
    out["net_revenue_retention"] = _ratio(
        out["mrr_start_cents"] + out["mrr_expansion_cents"] - out["mrr_contraction_cents"]
        - out["mrr_churn_cents"], out["mrr_start_cents"])
    out["arpu_cents"] = _ratio(out["mrr_cents"], out["customers_end"])
    out["contact_rate"] = _ratio(out["contacts"], out["active_customers"])
    return out


def customer_mrr(con: duckdb.DuckDBPyConnection, month: dt.date, *, as_of: dt.date | None = None,
                 segment: str | None = None, region: str | None = None, plan: int | str | None = None,
                 channel: str | None = None) -> pd.DataFrame:
    """Each customer's MRR at the end of ``month``; one row per customer with MRR.

    Returns
    -------
    pandas.DataFrame
        Columns customer_id, mrr_cents. Customers who are not customers at the end of the month
        (or whose subscriptions are all off the filtered plan) have no row.

    Notes
    -----
    The per-customer form of MRR(M) in :func:`monthly_metrics`; summing it gives ``mrr_cents``.
    """
    f, params = _setup(con, month, month, as_of, segment, region, plan, channel)
    out = q.run(con, q.customer_mrr_sql(f), params)
    return out.astype({"customer_id": "int64", "mrr_cents": "int64"})


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    num = num.astype("float64")
    den = den.astype("float64")
    return (num / den.where(den != 0)).astype("float64")
