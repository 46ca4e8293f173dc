"""The churn panel of the care-practices model: customer-months at risk, cut where a covariate changes.

:func:`practice_panel` builds the long format that :class:`analytics.practices.PracticeCoxFitter`
fits: one row per customer and stretch of a month at risk, with every covariate read from records
dated on or before the stretch's first day (never from its future). The SQL lives here; the model,
its defaults and its reading live in :mod:`analytics.practices`.

Named CTEs and their grain (``within_month`` timing; with ``last_month`` each month is one row):

- ``sampled``      one row per customer of the population (or the sample) signed up by as_of
- ``lives``        one row per customer: signup, first churn and its kind
- ``at_risk``      one row per customer and month at risk (days since the window start)
- ``contact_days`` one row per customer and day with contacts while at risk, from 3 months before
- ``bills``        one row per finalized invoice of the sample up to the window's last month
- ``shown``        one row per invoice whose lines show a billing error
- ``error_bills``  one row per invoice with a billing error: the day it counts from, its correction's
- ``error_steps``  one row per customer and day the number of uncorrected errors changes: the change
- ``grants``       one row per grant of the sample: its day, month and the months a discount covers
- ``cuts``         one row per customer, month at risk and day from which some covariate may change
- ``segments``     one row per stretch between two cuts, with the month's care terms on its first day
- ``error_state``  one row per segment: the number of uncorrected errors on its first day

Every state is a running aggregate in day order (a window), never a range join: a million-customer
world's 50,000-customer sample takes about 15 s.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from analytics import queries as q
from analytics.cohorts import last_complete_month
from analytics.metrics import resolve_plan

__all__ = ["COVARIATES", "CATEGORICAL", "ERROR_EVIDENCE", "TIMINGS", "CHURN_KINDS", "practice_panel"]

# covariate -> what one unit means (the label of its hazard ratio); ``_this_month`` terms come with
# the within_month timing, ``_last_month`` terms with last_month
COVARIATES = {
    "contacts_last_month": "per care contact last month",
    "wait_minutes_last_month": "per minute of mean wait last month",
    "unresolved_last_month": "an unresolved contact last month",
    "contacts_this_month": "per care contact earlier this month",
    "wait_minutes_this_month": "per minute of mean wait of this month's contacts so far",
    "unresolved_this_month": "an unresolved contact earlier this month",
    "escalated_last_month": "an escalated contact last month",
    "escalated_this_month": "an escalated contact earlier this month",
    "billing_error_open": "a billing error not yet corrected",
    "billing_error_last_bill": "a billing error on the last bill",
    "intent_last_month": "an intent to cancel stated last month",
    "intent_this_month": "an intent to cancel stated earlier this month",
    "intent_before": "an intent to cancel stated in the two months before those",
    "cancel_request_last_month": "a cancel request last month",
    "cancel_request_this_month": "a cancel request earlier this month",
    "offer_last_month": "an offer granted last month",
    "offer_this_month": "an offer granted earlier this month",
    "discount_active": "a discount covering the month",
    "price_rise_last_bill": "a price rise on the last bill",
    "bill_rise_last_bill": "per 100 % rise of the last bill's recurring charges",
    "autopay": "paying by automatic debit",
    "tenure_months": "per month of tenure",
    "first_months": "tenure: first three months",
    "months_4_to_12": "tenure: months four to twelve",
}
# categorical customer attributes: the fitter turns each into indicators against its commonest value
CATEGORICAL = {"segment": "segment", "channel": "acquisition channel"}
# (covariate, rule): "open_*" read billing_error_open, the others billing_error_last_bill
ERROR_EVIDENCE = ("open_on_bill", "open_credited", "on_bill", "any_time", "before_interval")
TIMINGS = ("within_month", "last_month")
CHURN_KINDS = ("voluntary", "involuntary", "any")

_DAY = "date_diff('day', $window_start, {})"

# invoices whose lines show an error: a chargeable line charged twice, or the plan charged again as
# a one-off charge (the agent desk's fairness rules)
_SHOWN = """shown as (
    -- one row per invoice whose lines show a billing error
    select b.invoice_id
    from bills b
    join invoice_lines l on l.invoice_id = b.invoice_id
    where l.kind in ('plan', 'proration', 'usage', 'charge')
    group by b.invoice_id, l.kind, l.description, l.amount_cents
    having count(*) > 1
    union
    select b.invoice_id
    from bills b
    join plans p on p.plan_id = b.plan_id
    join invoice_lines l on l.invoice_id = b.invoice_id and l.kind = 'charge' and l.description = p.name
),"""

_FIXES = f"""fixes as (
    -- one row per invoice of the sample with a billing_error credit note by as_of: the first one's day
    select cn.invoice_id, min({_DAY.format("cast(cn.issued_at as date)")}) as fixed
    from credit_notes cn
    join sampled p on p.customer_id = cn.customer_id
    where cn.reason = 'billing_error' and cn.issued_at < $as_of_next
    group by cn.invoice_id
),"""

_OPEN_ERRORS = """error_bills as (
    -- one row per invoice with a billing error ({evidence}): from the day it arrives
    -- (the day after its period, or its issue day if later) to the day of its first correction
    select b.customer_id, b.arrives, f.fixed
    from bills b
    left join fixes f on f.invoice_id = b.invoice_id
    where b.invoice_id in (select invoice_id from shown){credited}
),
error_steps as (
    -- one row per customer and day the number of uncorrected errors changes: the change
    select customer_id, day, sum(delta) as delta
    from (select customer_id, arrives as day, 1 as delta from error_bills
          union all
          select customer_id, greatest(fixed, arrives), -1 from error_bills where fixed is not null)
    group by customer_id, day
),
error_months as (
    -- one row per customer-month at risk whose errors change inside it: the days they change
    select r.customer_id, r.mi, e.day
    from error_steps e
    join at_risk r on r.customer_id = e.customer_id and r.mi = {mi_of_day}
    where e.day > r.day_from and e.day < r.day_to
),"""

_ERROR_STATE = """
error_state as (
    -- one row per segment: the number of uncorrected errors on its first day (that day's changes
    -- included), a running sum over the customer's segment starts and error changes in day order
    select customer_id, day, open_errors
    from (select customer_id, day, is_start,
                 sum(delta) over (partition by customer_id order by day, is_start
                                  rows between unbounded preceding and current row) as open_errors
          from (select customer_id, day_from as day, 1 as is_start, 0 as delta from segments
                union all
                select customer_id, day, 0, delta from error_steps))
    where is_start = 1
),"""

_CARE_RUNNING = """
           coalesce(sum(k.n) over w, 0) as contacts,
           coalesce(sum(k.wait_sum) over w / nullif(sum(k.wait_n) over w, 0), 0) / 60.0 as wait_minutes,
           coalesce(max(k.unresolved) over w, 0) as unresolved, coalesce(max(k.escalated) over w, 0) as escalated,
           coalesce(max(k.intent) over w, 0) as intent, coalesce(max(k.cancel_request) over w, 0) as cancel_request"""

_CARE_MONTH = """
           coalesce(k.n, 0) as contacts, coalesce(k.wait_minutes, 0.0) as wait_minutes,
           coalesce(k.unresolved, 0) as unresolved, coalesce(k.escalated, 0) as escalated,
           coalesce(k.intent, 0) as intent, coalesce(k.cancel_request, 0) as cancel_request"""

_LAST_BILL_CREDITED = """last_bill_errors as (
    -- months whose last bill has a billing_error credit note (see the error_evidence rule)
    select b.customer_id, b.pmi + {shift} as mi, 1 as billing_error
    from bills b
    join credit_notes cn on cn.invoice_id = b.invoice_id and cn.reason = 'billing_error'
    where {cut}
    group by b.customer_id, b.pmi
),"""

_LAST_BILL_SHOWN = """last_bill_errors as (
    -- months whose last bill shows an error
    select b.customer_id, b.pmi + 1 as mi, 1 as billing_error
    from bills b
    where b.invoice_id in (select invoice_id from shown)
    group by b.customer_id, b.pmi
),"""


def _mi_of_day(day_expr: str) -> str:
    """Month index of a day index (days since $window_start) as SQL."""
    return q.mi(f"(cast($window_start as date) + cast({day_expr} as integer))")


def _panel_sql(f: q.Filters, sample: bool, error_evidence: str, timing: str) -> str:
    # hash() is DuckDB's; on another engine any well-mixed hash of (customer_id, seed) will do
    sample_sql = ("\n    order by hash(c.customer_id, $seed), c.customer_id\n    limit $n"
                  if sample else "")
    within = timing == "within_month"
    when = "this_month" if within else "last_month"
    lag = 0 if within else 1
    # within_month: a grant counts from its day; last_month: last month's grants, discounts granted
    # before the month began
    offer_cond = "<= s.day_from" if within else "is not null"
    discount_cond = "<= s.day_from" if within else "< s.day_from"
    is_open = error_evidence.startswith("open_")
    if is_open:
        errors = _FIXES + _OPEN_ERRORS.format(
            evidence="on the bill" if error_evidence == "open_on_bill"
            else "on the bill, or a billing_error credit note on it at any time by as_of",
            credited="" if error_evidence == "open_on_bill"
            else "\n       or f.fixed is not null",
            mi_of_day=_mi_of_day("e.day"))
        error_cut = "\n    union\n    select customer_id, mi, day from error_months" if within else ""
        error_state = _ERROR_STATE
        error_col = "coalesce(es.open_errors, 0) > 0"
        error_join = "left join error_state es on es.customer_id = s.customer_id and es.day = s.day_from"
        error_name = "billing_error_open"
    else:
        errors = (_LAST_BILL_SHOWN if error_evidence == "on_bill" else _LAST_BILL_CREDITED.format(
            shift="1" if error_evidence == "any_time" else "2",
            cut="cn.issued_at < $as_of_next" if error_evidence == "any_time"
            else "cn.issued_at < b.period_start + interval '2' month"))
        error_cut = error_state = ""
        error_col = "le.billing_error is not null"
        error_join = "left join last_bill_errors le on le.customer_id = s.customer_id and le.mi = s.mi"
        error_name = "billing_error_last_bill"
    if within:
        cuts = f"""cuts as (
    -- one row per customer, month at risk and day from which a covariate may change: the first day
    -- at risk, contact days, grant days and the days an error arrives or is corrected
    select customer_id, mi, day_from as day from at_risk
    union
    select c.customer_id, c.mi, c.day
    from contact_days c join at_risk r on r.customer_id = c.customer_id and r.mi = c.mi
    where c.day > r.day_from and c.day < r.day_to
    union
    select g.customer_id, g.gmi, g.day
    from grants g join at_risk r on r.customer_id = g.customer_id and r.mi = g.gmi
    where g.day > r.day_from and g.day < r.day_to{error_cut}
),"""
        # the month's contacts so far: running aggregates over the month's cuts (every contact
        # day is one)
        care_join = ("left join contact_days k on k.customer_id = c.customer_id and k.mi = c.mi "
                     "and k.day = c.day")
        care_cols = _CARE_RUNNING
    else:
        cuts = """cuts as (
    -- one row per customer and month at risk: covariates are fixed when the month begins
    select customer_id, mi, day_from as day from at_risk
),"""
        care_join = "left join care_months k on k.customer_id = c.customer_id and k.mi = c.mi - 1"
        care_cols = _CARE_MONTH
    return f"""with
sampled as materialized (
    -- one row per customer of the population (or of the sample) signed up by as_of
    select c.customer_id, c.signup_date, c.churned_on, c.churn_kind, c.segment, c.channel,
           cast(c.is_autopay as integer) as autopay
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
           {_DAY.format("greatest(l.signup_date, m.month_start)")} as day_from,
           {_DAY.format("case when l.churn_mi = m.mi then l.churn_date + 1 "
                        "else m.month_start + interval '1' month end")} as day_to
    from lives l
    join (select generate_series as mi,
                 cast($window_start + to_months(cast(generate_series - $first_mi as integer)) as date) as month_start
          from generate_series($first_mi, $last_mi)) m
      on m.mi >= l.signup_mi and (l.churn_mi is null or m.mi <= l.churn_mi)
),
contact_days as (
    -- one row per customer and day with contacts while at risk (on or before the churn day), from
    -- three months before the window: count, waits, any unresolved, any escalated, any intent to
    -- cancel, any cancel request
    select k.customer_id, {q.mi("cast(k.contacted_at as date)")} as mi,
           {_DAY.format("cast(k.contacted_at as date)")} as day, count(*) as n,
           sum(k.wait_seconds) as wait_sum, count(k.wait_seconds) as wait_n,
           max(case when k.resolution = 'unresolved' then 1 else 0 end) as unresolved,
           max(case when k.resolution = 'escalated' then 1 else 0 end) as escalated,
           max(case when k.is_intent_to_cancel then 1 else 0 end) as intent,
           max(case when k.reason = 'cancel_request' then 1 else 0 end) as cancel_request
    from contacts k
    join lives l on l.customer_id = k.customer_id
    where k.contacted_at >= $care_from and k.contacted_at < $window_end
      and cast(k.contacted_at as date) >= l.signup_date
      and (l.churn_date is null or cast(k.contacted_at as date) <= l.churn_date)
    group by k.customer_id, cast(k.contacted_at as date)
),
care_months as (
    -- one row per customer and month with contacts: all of that month's contacts
    select customer_id, mi, sum(n) as n,
           coalesce(sum(wait_sum) / nullif(sum(wait_n), 0), 0) / 60.0 as wait_minutes,
           max(unresolved) as unresolved, max(escalated) as escalated, max(intent) as intent,
           max(cancel_request) as cancel_request
    from contact_days
    group by customer_id, mi
),
intent_before as (
    -- one row per customer and month whose care month ({lag} before it) follows an intent to cancel
    -- stated in one of the two months before
    select distinct customer_id, mi + m.k + {lag} as mi
    from contact_days
    cross join (select 1 as k union all select 2) m
    where intent = 1
),
bills as (
    -- one row per finalized invoice of the sample up to the window's last month; arrives: the day it
    -- counts from (the day after its period, or the day it was issued if later)
    select i.invoice_id, i.customer_id, i.plan_id, i.period_start, {q.mi("i.period_start")} as pmi,
           {_DAY.format("greatest(i.issued_on, i.period_end + 1)")} as arrives
    from invoices i
    join sampled p on p.customer_id = i.customer_id
    where i.status = 'finalized' and i.period_start <= $last_date
),
{_SHOWN}
{errors}
prices as (
    select pp.plan_id, m.mi, max_by(pp.monthly_price_cents, pp.effective_from) as price
    from plan_prices pp
    join (select generate_series as mi from generate_series($first_mi - 2, $last_mi)) m
      on {q.mi("pp.effective_from")} <= m.mi
    group by pp.plan_id, m.mi
),
recent_bills as (
    select * from bills where period_start >= $bills_from
),
rises as (
    -- months whose last bill (the previous period's) charged more for the plan than the bill before
    select b1.customer_id, b1.pmi + 1 as mi, 1 as price_rise
    from recent_bills b1
    join recent_bills b0 on b0.customer_id = b1.customer_id and b0.plan_id = b1.plan_id and b0.pmi = b1.pmi - 1
    join prices p1 on p1.plan_id = b1.plan_id and p1.mi = b1.pmi
    join prices p0 on p0.plan_id = b0.plan_id and p0.mi = b0.pmi
    where p1.price > p0.price
    group by b1.customer_id, b1.pmi
),
recurring as (
    -- one row per customer and billed period: the recurring charges (plan, proration, usage and
    -- discounts of all its invoices) and the plan charges alone
    select b.customer_id, b.pmi, sum(l.amount_cents) as rec,
           sum(l.amount_cents) filter (where l.kind in ('plan', 'proration')) as plan_cents
    from recent_bills b
    join invoice_lines l on l.invoice_id = b.invoice_id
    where l.kind in ('plan', 'proration', 'usage', 'discount')
    group by b.customer_id, b.pmi
),
bill_rises as (
    -- months whose last bill's recurring charges rose over the bill before (not the signup month's
    -- part-month bill): the rise relative to that bill (at least half the new plan charges), at most 1
    select r1.customer_id, r1.pmi + 1 as mi,
           least(1.0, (r1.rec - r0.rec) / greatest(r0.rec, r1.plan_cents / 2.0, 1.0)) as bill_rise
    from recurring r1
    join recurring r0 on r0.customer_id = r1.customer_id and r0.pmi = r1.pmi - 1
    join lives l on l.customer_id = r1.customer_id and l.signup_mi < r0.pmi
    where r1.rec > r0.rec
),
grants as (
    -- one row per grant of the sample made by as_of: its day and month, the months a discount covers
    select g.customer_id, {_DAY.format("cast(g.granted_at as date)")} as day, {q.mi("g.granted_at")} as gmi,
           g.kind in ('percent_off', 'free_months') as is_discount, {q.mi("g.first_period")} as fmi, g.cycles
    from offer_grants g
    join sampled p on p.customer_id = g.customer_id
    where g.granted_at < $as_of_next
),
discounts as (
    -- one row per customer and month covered by a percent-off or free-month grant: the first day
    -- such a grant was made
    select g.customer_id, m.mi, min(g.day) as day
    from grants g
    join (select generate_series as mi from generate_series($first_mi, $last_mi)) m
      on m.mi >= g.fmi and m.mi < g.fmi + g.cycles
    where g.is_discount
    group by g.customer_id, m.mi
),
offers as (
    -- one row per customer and month with grants: the first grant's day
    select customer_id, gmi as mi, min(day) as day from grants group by customer_id, gmi
),
{cuts}
segments as (
    -- one row per stretch of a month at risk between two cuts (the last one ends the month's days
    -- at risk and carries its event) with the care terms on its first day
    select c.customer_id, c.mi, c.day as day_from,
           coalesce(lead(c.day) over o, r.day_to) as day_to,
           case when lead(c.day) over o is null then r.event else 0 end as event,
           r.tenure_months,{care_cols}
    from cuts c
    join at_risk r on r.customer_id = c.customer_id and r.mi = c.mi
    {care_join}
    window o as (partition by c.customer_id, c.mi order by c.day),
           w as (partition by c.customer_id, c.mi order by c.day rows between unbounded preceding and current row)
),{error_state}
final as (
    select s.customer_id, s.mi, s.day_from as start, s.day_to as stop, s.event,
           s.contacts as contacts_{when}, s.wait_minutes as wait_minutes_{when},
           s.unresolved as unresolved_{when}, s.escalated as escalated_{when},
           cast({error_col} as integer) as {error_name},
           s.intent as intent_{when},
           case when ib.customer_id is null then 0 else 1 end as intent_before,
           s.cancel_request as cancel_request_{when},
           case when o.day {offer_cond} then 1 else 0 end as offer_{when},
           case when d.day {discount_cond} then 1 else 0 end as discount_active,
           coalesce(pr.price_rise, 0) as price_rise_last_bill,
           coalesce(br.bill_rise, 0.0) as bill_rise_last_bill,
           p.autopay, s.tenure_months,
           case when s.tenure_months < 3 then 1 else 0 end as first_months,
           case when s.tenure_months >= 3 and s.tenure_months < 12 then 1 else 0 end as months_4_to_12,
           p.segment, p.channel
    from segments s
    join sampled p on p.customer_id = s.customer_id
    {error_join}
    left join intent_before ib on ib.customer_id = s.customer_id and ib.mi = s.mi
    left join offers o on o.customer_id = s.customer_id and o.mi = s.mi - {lag}
    left join discounts d on d.customer_id = s.customer_id and d.mi = s.mi
    left join rises pr on pr.customer_id = s.customer_id and pr.mi = s.mi
    left join bill_rises br on br.customer_id = s.customer_id and br.mi = s.mi
)
select * from final order by customer_id, start"""


def practice_panel(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, first_month: dt.date | None = None,
                   sample_customers: int | None = None, random_state: int = 0, churn_kind: str = "voluntary",
                   error_evidence: str = "open_on_bill", timing: str = "within_month", segment: str | None = None,
                   region: str | None = None, plan: int | str | None = None,
                   channel: str | None = None) -> pd.DataFrame:
    """The long-format churn panel: customer-months at risk, cut where a covariate changes.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        Months run to the last complete month on or before it; no record after it is read.
    first_month : datetime.date, optional
        First month of the window (default: the earliest signup month); earlier months are left
        out (left truncation), earlier records still set the covariates.
    sample_customers : int, optional
        A pseudo-random sample of this many customers (deterministic for ``random_state``).
    churn_kind : str
        The event: the first churn if ``voluntary`` (default; involuntary churn censors),
        ``involuntary`` or ``any``.
    error_evidence : str
        ``open_on_bill`` (default), ``open_credited``, or the last-bill rules ``on_bill``,
        ``any_time``, ``before_interval``; see Notes.
    timing : str
        ``within_month`` (default) or ``last_month``; see Notes.
    segment, region, channel, plan
        Customer filters (plan: the signup plan).

    Returns
    -------
    pandas.DataFrame
        customer_id, mi (month index), start, stop (days since the window start; stop = the day
        after the last day of the stretch), event, the covariates of :data:`COVARIATES` that the
        options produce, and the categorical segment and channel. ``within_month``: one row per
        stretch of a customer-month between two days on which a covariate changes, care terms
        ``*_this_month``. ``last_month``: one row per customer-month, ``*_last_month``.

    Notes
    -----
    At risk: from signup to the first churn (as :func:`analytics.survival.lifetimes`); the event is
    on the stretch that ends with the last day served. The time axis is calendar time (days), so
    month-wide shocks (an understaffed month, a price rise for everyone) sit in the baseline hazard.

    **No covariate reads the future of its row.** A row holds from its first day (``start``) to
    ``stop``; every covariate is computed from records dated on or before ``start``, and with
    ``within_month`` every day inside the month on which a record could change a covariate (a
    contact, a grant, a billing error arriving or corrected) starts a new row. Within a day the
    order is unknown: a record counts from the start of its day, so it precedes a churn on that day
    (the last day served) or later, never an earlier one.

    Why counting a correction made later in the month is not immortal-time bias: a customer-month
    ending in churn is observed, at risk, through its last day, so a credit note dated on or before
    that day was issued while the customer was still a customer, and the customers who did not churn
    are compared on the same footing (their covariate at the same moment). Nothing about a row is
    decided by records from after the row, so no row's classification requires surviving it. In
    monthly data whose churn is decided at the month's end (a simulated world; billing runs
    monthly), the row at risk at that moment is the month's last stretch, so the billing-error term
    is the state at the end of the month: a bill with an error counts unless a billing_error credit
    note on it was issued by then.

    Care terms. ``within_month``: from a contact day on, the month's contacts so far: the number,
    the mean wait in minutes, any not ``resolved``, any stating an intent to cancel, any cancel
    request; before the month's first contact all are 0. ``last_month``: last month's contacts.
    ``intent_before``: an intent to cancel stated in one of the two months before those contacts'
    month. ``offer_*``: an offer granted that month (so far).

    Bills. The bill for period P arrives the day after P ends (or the day it was issued, if later).

    - ``billing_error_open`` (``open_*`` rules): the customer has a bill with a billing error that
      arrived by the row's first day, with no billing_error credit note on it issued by that day.
      Which bills carry an error: ``open_on_bill`` (default) the bill's lines show it (a chargeable
      line charged twice, or the plan charged again as a one-off charge): known on arrival, the same
      for customers who leave and who stay, blind to errors that look like real fees.
      ``open_credited``: those, or a billing_error credit note on the bill at any time by as_of;
      this reads records made later, and a customer who leaves with an error nobody had corrected
      is never credited, so the errors of leavers that only a credit note reveals are missed while
      the same errors of stayers are found: errors look less harmful than they are (on the
      simulated world 1.19 [0.88, 1.62] against a true 1.8, where ``open_on_bill`` finds 1.88
      [1.39, 2.56]; see :mod:`analytics.practices`).
    - ``billing_error_last_bill`` (last-bill rules, corrections ignored): ``on_bill`` the bill for
      M-1 shows an error; ``any_time`` that bill has a billing_error credit note issued by as_of
      (reads the future: credit notes go to customers who stay); ``before_interval`` the bill for
      M-2 has one issued before M began. On the simulated world, with the default model, 1.06,
      0.32 and 1.28 against a true 1.8 for an error still uncorrected at the month's end.
    - ``price_rise_last_bill``: the bill for M-1 priced the plan higher than the customer's bill for
      M-2 on the same plan. ``bill_rise_last_bill``: the rise of the recurring charges (plan,
      proration, usage, discounts) of the bill for M-1 over those of M-2, relative to the latter (at
      least half the new plan charges: a bill after a free month), at most 1; 0 when they did not
      rise or M-2 was the signup month (a part month).
    - ``discount_active``: a percent-off or free-month grant covering M, made by the row's first day
      (``last_month``: before M began).

    Customer. ``autopay`` (customers.is_autopay), segment and acquisition channel (categorical);
    tenure: ``tenure_months`` (calendar months since the signup month), ``first_months`` (0-2) and
    ``months_4_to_12`` (3-11).
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
              "care_from": q.month_from_index(first_mi - 3),
              "bills_from": q.month_from_index(first_mi - 2),
              "kind_a": "voluntary" if churn_kind == "any" else churn_kind,
              "kind_b": "involuntary" if churn_kind == "any" else churn_kind,
              "seed": int(random_state), "n": int(sample_customers or 0), **f.params()}
    out = q.run(con, _panel_sql(f, sample_customers is not None, error_evidence, timing), params)
    floats = [c for c in out.columns if c.startswith("wait_minutes") or c == "bill_rise_last_bill"]
    ints = [c for c in out.columns if c not in floats and c not in CATEGORICAL]
    return out.astype({c: "int64" for c in ints}).astype({c: "float64" for c in floats})
