"""Shared SQL for the retention analytics: subscriptions, spells, MRR and the month calendar.

Every query here is text assembled only from code constants; values always travel as named bound
parameters (``$as_of``, ``$segment`` ...), never inside the SQL. Months are integer month indices
``mi = year * 12 + month - 1`` so month arithmetic stays portable SQL (``mi + 1`` is the next
month); :func:`month_index` and :func:`month_from_index` convert in Python.

Performance shape (a million customers, tens of millions of invoices): the subscriptions table is
read once (joined to customers for signup date, churn kind and filters) and reduced to ``groups``, a
low-cardinality count by plan, first month, stop month and kinds; only the minority that needs a
per-customer look (discounted subscriptions, plan changes, late starts that may be reactivations)
is handled row by row. No query sorts or groups the full history by customer.

Spells (runs of service) follow the schema's links: a subscription with no
``previous_subscription_id`` starts one (a reactivation when an earlier spell had churned); one
ending with ``end_reason`` other than ``plan_change`` ends one (churn).

Named CTEs and their grain:

- ``calendar``     one row per month index from the month before the window to its last
- ``subs``         one row per subscription started by ``as_of`` of a customer in the population
- ``unit_subs``    one row per counted subscription (all, or those on the filtered plan)
- ``reacts``       one row per subscription that may start a later spell: its verified kind
- ``groups``       one row per (cohort,) plan, first month, stop month and kinds: a count
- ``prices``       one row per plan and calendar month: the monthly price for that period
- ``grant_months`` one row per percent/free-month discount grant and month it covers
- ``disc_raw``     one row per counted subscription and month with a discount: the amount
- ``disc``         the same, with the start kind of a verified reactivation (``reacts``)
- ``moves``        one row per MRR change: month, kind code, signed amount
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

SIGNUP_PLAN_SQL = """ and exists (select 1 from subscriptions s0
                  where s0.customer_id = {alias}.customer_id and s0.plan_id = $plan
                    and s0.previous_subscription_id is null and s0.start_date <= {alias}.signup_date)"""
COMPLAINT_REASONS = ("bill_higher_than_expected", "billing_error", "bill_not_understood")


def mi(expr: str) -> str:
    """SQL for the month index of a DATE/TIMESTAMP expression (portable ``extract``)."""
    return f"(extract(year from {expr}) * 12 + extract(month from {expr}) - 1)"


def month_index(day: dt.date) -> int:
    """Month index ``year * 12 + month - 1`` of a date."""
    return day.year * 12 + day.month - 1


def month_from_index(index: int) -> dt.date:
    """First day of the month with index ``index``."""
    return dt.date(int(index) // 12, int(index) % 12 + 1, 1)


def month_end(day: dt.date) -> dt.date:
    """Last day of the month of ``day``."""
    nxt = month_from_index(month_index(day) + 1)
    return nxt - dt.timedelta(days=1)


def run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    """Execute ``sql`` with the named parameters it references and return a DataFrame."""
    used = set(re.findall(r"\$([a-z_]+)", sql))
    return con.execute(sql, {k: v for k, v in params.items() if k in used}).df()


@dataclass(frozen=True)
class Filters:
    """Who is counted: customers by segment, region and channel; subscriptions by plan.

    ``None`` means no filter. Values only ever reach SQL as bound parameters.
    """

    segment: str | None = None
    region: str | None = None
    plan: int | None = None
    channel: str | None = None

    @property
    def has_customer_filter(self) -> bool:
        return any(v is not None for v in (self.segment, self.region, self.channel))

    def customer_sql(self, alias: str = "c", *, signup_plan: bool = False) -> str:
        """``AND ...`` conditions on the customers table for the set filters.

        With ``signup_plan`` the plan filter applies to customers too: those whose first
        subscription (no predecessor, starting by their signup date) is on the plan.
        """
        parts = [f" and {alias}.{col} = ${col}" for col in ("segment", "region", "channel")
                 if getattr(self, col) is not None]
        if signup_plan and self.plan is not None:
            parts.append(SIGNUP_PLAN_SQL.format(alias=alias))
        return "".join(parts)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in (("segment", self.segment), ("region", self.region),
                                  ("channel", self.channel), ("plan", self.plan)) if v is not None}


def window_params(first_month: dt.date, last_month: dt.date, as_of: dt.date) -> dict[str, Any]:
    """The parameters every windowed query uses: the calendar runs from the month before
    ``first_month`` (to give the opening values) to ``last_month``."""
    first_mi, last_mi = month_index(first_month), month_index(last_month)
    if last_mi < first_mi:
        raise ValueError("last_month is before first_month")
    return {"as_of": as_of, "as_of_next": as_of + dt.timedelta(days=1),
            "first_mi": first_mi, "last_mi": last_mi, "cal_start": first_mi - 1,
            "first_date": month_from_index(first_mi), "after_last": month_from_index(last_mi + 1)}


# Kind codes (integers are much cheaper than strings at a million rows): start 1 new, 2 reactivated,
# 3 switched_in; end 1 churned voluntary, 2 churned involuntary, 3 switched_out.
MAYBE_REACTIVATED = 9   # no predecessor and starts after signup: checked in ``reacts``


def sub_ctes(f: Filters, by_cohort: bool = False) -> str:
    """CTEs ``calendar``, ``subs``, ``unit_subs``, ``reacts`` and ``groups``.

    With ``by_cohort`` the rows carry ``cohort_mi``, the month index of the customer's signup;
    customers signed up from ``$cohort_from`` to ``$cohort_to`` are picked, and a plan filter
    picks customers by their signup plan (all their subscriptions count).
    """
    if by_cohort:
        cohort_where = (" and c.signup_date >= $cohort_from and c.signup_date <= $cohort_to"
                        + f.customer_sql("c", signup_plan=True))
        f = Filters(segment=f.segment, region=f.region, channel=f.channel)
    else:
        cohort_where = f.customer_sql("c")
    cohort_col = f",\n           {mi('c.signup_date')} as cohort_mi" if by_cohort else ""
    cohort_key = "cohort_mi, " if by_cohort else ""
    if f.plan is None:
        unit = """unit_subs as (
    -- one row per counted subscription: all of them
    select s.*, s.first_kind as start_kind, s.churn_code as end_kind from subs s
)"""
        prev_unit_end = "max(e.end_date)"
    else:
        unit = """unit_subs as materialized (
    -- one row per subscription on the filtered plan; moving onto / off the plan by a plan change
    -- starts / ends a run of the unit (switched_in / switched_out, code 3)
    select s.*,
           case when s.prev_id is null then s.first_kind
                when o.plan_id is null or o.plan_id <> $plan then 3 end as start_kind,
           case when s.churn_code is not null then s.churn_code
                when n.plan_id <> $plan then 3 end as end_kind
    from subs s
    left join (select subscription_id, plan_id from subs
               where stop_mi is not null and churn_code is null) o on o.subscription_id = s.prev_id
    left join (select prev_id, plan_id from subs where prev_id is not null) n
           on n.prev_id = s.subscription_id
    where s.plan_id = $plan
)"""
        prev_unit_end = "max(case when e.plan_id = $plan then e.end_date end)"
    return f"""
calendar as (
    -- one row per month index from the month before the window to its last month
    select generate_series as mi from generate_series($cal_start, $last_mi)
),
subs as materialized (
    -- one row per subscription started by as_of of a customer in the population (an end after
    -- as_of is not known yet). It counts in MRR for months start_mi <= mi < stop_mi (stop_mi
    -- null: still counting): a plan change stops it after the month of its last day, churn in it.
    -- first_kind: 1 starts the customer's service, 9 maybe a reactivation, null a plan change.
    -- churn_code: 1 voluntary, 2 involuntary churn, null no churn.
    select s.subscription_id, s.customer_id, s.plan_id, s.previous_subscription_id as prev_id,
           s.start_date,
           case when s.end_date <= $as_of then s.end_date end as end_date,
           {mi("s.start_date")} as start_mi,
           case when s.end_date is null or s.end_date > $as_of then null
                when s.end_reason = 'plan_change' then {mi("(s.end_date + 1)")}
                else {mi("s.end_date")} end as stop_mi,
           case when s.previous_subscription_id is null then
                case when s.start_date > c.signup_date then {MAYBE_REACTIVATED} else 1 end end as first_kind,
           case when s.end_date is null or s.end_date > $as_of or s.end_reason = 'plan_change' then null
                when s.end_reason = 'non_payment' then 2
                when s.end_reason = 'cancelled' then 1
                when s.end_date = c.churned_on and c.churn_kind = 'involuntary' then 2
                else 1 end as churn_code{cohort_col}
    from subscriptions s
    join customers c on c.customer_id = s.customer_id
    where s.start_date <= $as_of{cohort_where}
),
{unit},
reacts as (
    -- one row per subscription that may start a later spell: new (1) when no earlier spell of the
    -- customer had ended (churn), else reactivated (2), with the end of the unit's previous run
    select r.subscription_id, case when max(e.end_date) is null then 1 else 2 end as kind,
           {prev_unit_end} as prev_end
    from (select subscription_id, customer_id, start_date from unit_subs
          where start_kind = {MAYBE_REACTIVATED}) r
    left join (select customer_id, plan_id, end_date from subs where churn_code is not null) e
           on e.customer_id = r.customer_id and e.end_date < r.start_date
    group by r.subscription_id
),
groups as (
    -- one row per {cohort_key}plan, first and stop month and kinds: how many counted subscriptions
    -- (low cardinality: everything that needs no per-customer detail is computed from here);
    -- n_dup: reactivations in the month the previous run ended (already active that month)
    select {cohort_key}plan_id, start_mi, stop_mi, start_kind, end_kind, count(*) as n, 0 as n_dup
    from unit_subs
    where start_kind is null or start_kind <> {MAYBE_REACTIVATED}
    group by {cohort_key}plan_id, start_mi, stop_mi, start_kind, end_kind
    union all
    select {cohort_key.replace("cohort_mi", "u.cohort_mi")}u.plan_id, u.start_mi, u.stop_mi, r.kind, u.end_kind, count(*),
           sum(case when r.kind = 2 and {mi("r.prev_end")} = u.start_mi then 1 else 0 end)
    from unit_subs u
    join reacts r on r.subscription_id = u.subscription_id
    where u.start_kind = {MAYBE_REACTIVATED}
    group by {cohort_key.replace("cohort_mi", "u.cohort_mi")}u.plan_id, u.start_mi, u.stop_mi, r.kind, u.end_kind
)"""


def price_ctes(by_cohort: bool = False) -> str:
    """CTEs ``prices`` (plan x calendar month), ``grants``, ``grant_months`` and ``disc``.

    Needs ``calendar``, ``unit_subs`` and ``reacts``.
    """
    cohort = "u.cohort_mi, " if by_cohort else ""
    return f"""
prices as (
    -- one row per plan and calendar month: the monthly price in effect for that period
    select pp.plan_id, cal.mi, max_by(pp.monthly_price_cents, pp.effective_from) as price
    from plan_prices pp
    join calendar cal on {mi("pp.effective_from")} <= cal.mi
    group by pp.plan_id, cal.mi
),
grants as (
    -- one row per percent-off or free-month grant made by as_of
    select g.grant_id, g.customer_id,
           case when g.kind = 'free_months' then 100 else g.percent_off end as pct,
           {mi("g.first_period")} as first_mi, g.cycles
    from offer_grants g
    where g.kind in ('percent_off', 'free_months') and g.granted_at < $as_of_next
),
grant_months as (
    -- one row per grant and calendar month it covers (a range per grant, no join to the calendar)
    select g.grant_id, g.customer_id, g.pct,
           unnest(range(greatest(g.first_mi, $cal_start), least(g.first_mi + g.cycles, $last_mi + 1))) as mi
    from grants g
    where g.first_mi <= $last_mi and g.first_mi + g.cycles > $cal_start
),
disc_raw as (
    -- one row per counted subscription and month covered by a grant: the discounts, each rounded
    -- half away from zero, together never more than the price (the subscription's columns are
    -- the same on all its rows: any_value)
    select u.subscription_id, gm.mi, {cohort.replace("u.cohort_mi", "any_value(u.cohort_mi) as cohort_mi")}any_value(u.plan_id) as plan_id,
           any_value(u.start_mi) as start_mi, any_value(u.stop_mi) as stop_mi,
           any_value(u.start_kind) as start_kind, any_value(u.end_kind) as end_kind,
           least(min(pr.price), sum(round_div(pr.price * gm.pct, 100))) as disc
    from grant_months gm
    join unit_subs u on u.customer_id = gm.customer_id and gm.mi >= u.start_mi
                    and (u.stop_mi is null or gm.mi < u.stop_mi)
    join prices pr on pr.plan_id = u.plan_id and pr.mi = gm.mi
    group by u.subscription_id, gm.mi
),
disc as (
    -- one row per counted subscription and month with a discount: the amount
    select d.subscription_id, {cohort.replace("u.", "d.")}d.plan_id, d.start_mi, d.stop_mi,
           coalesce(r.kind, d.start_kind) as start_kind, d.end_kind, d.mi, d.disc
    from disc_raw d
    left join reacts r on r.subscription_id = d.subscription_id
)"""


def movement_ctes() -> str:
    """CTEs ending in ``moves``: rows of (month, kind, signed MRR change).

    Kind codes: 1 new, 2 reactivated, 3 switched_in, 11 churned voluntary, 12 churned
    involuntary, 13 switched_out, 0 a change of a continuing customer (a plan change, a price
    change, a discount starting or ending): expansion when positive, contraction when negative.
    """
    return f"""
start_moves as (
    -- a run of the unit starts: its first month's MRR (price here, discount in start_disc)
    select g.start_mi as mi, g.start_kind as kind, sum(g.n * pr.price) as delta
    from groups g
    join prices pr on pr.plan_id = g.plan_id and pr.mi = g.start_mi
    where g.start_kind is not null and g.start_mi between $first_mi and $last_mi
      and (g.stop_mi is null or g.stop_mi > g.start_mi)
    group by g.start_mi, g.start_kind
),
start_disc as (
    select d.mi, d.start_kind as kind, -sum(d.disc) as delta
    from disc d
    where d.start_kind is not null and d.mi = d.start_mi and d.mi between $first_mi and $last_mi
    group by d.mi, d.start_kind
),
stop_moves as (
    -- a run of the unit ends: its last counted month's MRR is lost
    select g.stop_mi as mi, 10 + g.end_kind as kind, -sum(g.n * pr.price) as delta
    from groups g
    join prices pr on pr.plan_id = g.plan_id and pr.mi = g.stop_mi - 1
    where g.end_kind is not null and g.stop_mi between $first_mi and $last_mi
      and g.stop_mi > g.start_mi
    group by g.stop_mi, g.end_kind
),
stop_disc as (
    select d.mi + 1 as mi, 10 + d.end_kind as kind, sum(d.disc) as delta
    from disc d
    where d.end_kind is not null and d.mi = d.stop_mi - 1 and d.mi + 1 between $first_mi and $last_mi
    group by d.mi, d.end_kind
),
change_subs as (
    -- one row per subscription on either side of a plan change within the unit
    select u.subscription_id, u.prev_id, u.plan_id, u.start_mi, u.stop_mi,
           coalesce(r.kind, u.start_kind) as start_kind, u.end_kind
    from unit_subs u
    left join reacts r on r.subscription_id = u.subscription_id
    where u.start_kind is null or (u.stop_mi is not null and u.end_kind is null)
),
change_starts as (
    select c.subscription_id, c.prev_id, c.start_mi as mi, c.stop_mi, c.end_kind,
           case when c.stop_mi is null or c.stop_mi > c.start_mi
                then pr.price - coalesce(d.disc, 0) else 0 end as amount
    from change_subs c
    join prices pr on pr.plan_id = c.plan_id and pr.mi = c.start_mi
    left join disc d on d.subscription_id = c.subscription_id and d.mi = c.start_mi
    where c.start_kind is null and c.start_mi between $first_mi and $last_mi
),
change_stops as (
    select c.subscription_id, c.stop_mi as mi, c.start_mi, c.start_kind,
           case when c.stop_mi > c.start_mi then pr.price - coalesce(d.disc, 0) else 0 end as amount
    from change_subs c
    join prices pr on pr.plan_id = c.plan_id and pr.mi = c.stop_mi - 1
    left join disc d on d.subscription_id = c.subscription_id and d.mi = c.stop_mi - 1
    where c.stop_mi is not null and c.end_kind is null and c.stop_mi between $first_mi and $last_mi
),
pair_moves as (
    -- one row per plan change: new MRR - old MRR. A change in the run's first month belongs to
    -- its start, one onto a subscription ending that same month to its end
    select coalesce(n.mi, o.mi) as mi,
           case when o.start_kind is not null and o.start_mi = o.mi then o.start_kind
                when n.end_kind is not null and n.stop_mi = n.mi then 10 + n.end_kind
                else 0 end as kind,
           coalesce(n.amount, 0) - coalesce(o.amount, 0) as delta
    from change_starts n
    full outer join change_stops o on o.subscription_id = n.prev_id
),
price_changes as (
    select p.plan_id, p.mi, p.price - q.price as step
    from prices p
    join prices q on q.plan_id = p.plan_id and q.mi = p.mi - 1
    where p.price <> q.price and p.mi between $first_mi and $last_mi
),
disc_steps as (
    -- one row per continuing subscription (counted before and after) and month where it has a
    -- discount before or after: the exact change of its MRR (price step + discount dropped)
    select x.subscription_id, x.plan_id, x.mi, coalesce(pc.step, 0) + x.disc_drop as delta,
           pc.plan_id is not null as at_price_change
    from (select coalesce(a.subscription_id, b.subscription_id) as subscription_id,
                 coalesce(a.plan_id, b.plan_id) as plan_id, coalesce(a.mi, b.mi + 1) as mi,
                 coalesce(a.start_mi, b.start_mi) as start_mi, coalesce(a.stop_mi, b.stop_mi) as stop_mi,
                 coalesce(b.disc, 0) - coalesce(a.disc, 0) as disc_drop
          from disc a
          full outer join disc b on b.subscription_id = a.subscription_id and b.mi = a.mi - 1) x
    left join price_changes pc on pc.plan_id = x.plan_id and pc.mi = x.mi
    where x.start_mi < x.mi and (x.stop_mi is null or x.mi < x.stop_mi)
      and x.mi between $first_mi and $last_mi and (x.disc_drop <> 0 or pc.plan_id is not null)
),
price_moves as (
    -- price changes of continuing subscriptions without a discount around them: the step each
    select pc.mi, 0 as kind,
           (sum(g.n) - coalesce(max(ds.n_disc), 0)) * pc.step as delta
    from price_changes pc
    join groups g on g.plan_id = pc.plan_id and g.start_mi < pc.mi and (g.stop_mi is null or pc.mi < g.stop_mi)
    left join (select plan_id, mi, count(*) as n_disc from disc_steps where at_price_change
               group by plan_id, mi) ds on ds.plan_id = pc.plan_id and ds.mi = pc.mi
    group by pc.mi, pc.plan_id, pc.step
),
moves as (
    select mi, kind, delta from start_moves
    union all select mi, kind, delta from start_disc
    union all select mi, kind, delta from stop_moves
    union all select mi, kind, delta from stop_disc
    union all select mi, kind, delta from pair_moves
    union all select mi, kind, delta from price_moves
    union all select mi, 0, delta from disc_steps
)"""


def subscription_month_sql(f: Filters) -> str:
    """One row per calendar month: customer counts, MRR and MRR movements.

    Columns: mi, customers_end, new_customers, reactivated_customers, switched_in,
    churned_voluntary, churned_involuntary, switched_out, starts_adding_active, mrr_cents,
    mrr_new_cents, mrr_expansion_cents, mrr_contraction_cents, mrr_churn_cents,
    mrr_reactivation_cents. ``mi`` runs from the month before the window (opening values).
    """
    return f"""with {sub_ctes(f)},{price_ctes()},{movement_ctes()},
logo_events as (
    select start_mi as mi, start_kind as kind, n as d, n - n_dup as adds_active
    from groups where start_kind is not null
    union all
    select stop_mi, 10 + end_kind, -n, 0 from groups where end_kind is not null
),
logo_month as (
    -- one row per month with events; events before the calendar only move the opening count
    select case when mi < $cal_start then $cal_start else mi end as mi,
           sum(d) as net,
           sum(case when mi >= $cal_start and kind = 1 then d else 0 end) as new_customers,
           sum(case when mi >= $cal_start and kind = 2 then d else 0 end) as reactivated_customers,
           sum(case when mi >= $cal_start and kind = 3 then d else 0 end) as switched_in,
           -sum(case when mi >= $cal_start and kind = 11 then d else 0 end) as churned_voluntary,
           -sum(case when mi >= $cal_start and kind = 12 then d else 0 end) as churned_involuntary,
           -sum(case when mi >= $cal_start and kind = 13 then d else 0 end) as switched_out,
           sum(case when mi >= $cal_start then adds_active else 0 end) as starts_adding_active
    from logo_events
    where mi <= $last_mi
    group by 1
),
logos as (
    select cal.mi,
           sum(coalesce(l.net, 0)) over (order by cal.mi rows between unbounded preceding and current row)
               as customers_end,
           coalesce(l.new_customers, 0) as new_customers,
           coalesce(l.reactivated_customers, 0) as reactivated_customers,
           coalesce(l.switched_in, 0) as switched_in,
           coalesce(l.churned_voluntary, 0) as churned_voluntary,
           coalesce(l.churned_involuntary, 0) as churned_involuntary,
           coalesce(l.switched_out, 0) as switched_out,
           coalesce(l.starts_adding_active, 0) as starts_adding_active
    from calendar cal
    left join logo_month l on l.mi = cal.mi
),
{mrr_ctes()},
movements as (
    select mi,
           sum(case when kind = 1 then delta else 0 end) as mrr_new_cents,
           sum(case when kind = 2 then delta else 0 end) as mrr_reactivation_cents,
           sum(case when kind = 3 or (kind = 0 and delta > 0) then delta else 0 end) as mrr_expansion_cents,
           -sum(case when kind = 13 or (kind = 0 and delta < 0) then delta else 0 end) as mrr_contraction_cents,
           -sum(case when kind in (11, 12) then delta else 0 end) as mrr_churn_cents
    from moves
    group by mi
),
final as (
    select l.*, coalesce(m.mrr_cents, 0) as mrr_cents,
           coalesce(v.mrr_new_cents, 0) as mrr_new_cents,
           coalesce(v.mrr_expansion_cents, 0) as mrr_expansion_cents,
           coalesce(v.mrr_contraction_cents, 0) as mrr_contraction_cents,
           coalesce(v.mrr_churn_cents, 0) as mrr_churn_cents,
           coalesce(v.mrr_reactivation_cents, 0) as mrr_reactivation_cents
    from logos l
    left join mrr_month m on m.mi = l.mi
    left join movements v on v.mi = l.mi
)
select * from final order by mi"""


def mrr_ctes(by_cohort: bool = False) -> str:
    """CTEs ``plan_deltas``, ``plan_counts`` and ``mrr_month``: MRR at the end of each month (of each
    cohort with ``by_cohort``). Needs ``groups``, ``prices``, ``disc`` and ``calendar``."""
    ck = "cohort_mi, " if by_cohort else ""
    floor = "cohort_mi" if by_cohort else "$cal_start"
    keys = ["cohort_mi", "mi"] if by_cohort else ["mi"]
    grid = ("""(select c.cohort_mi, pr.plan_id, pr.mi, pr.price from prices pr
          join (select distinct cohort_mi from groups) c on pr.mi >= c.cohort_mi)""" if by_cohort
            else "(select plan_id, mi, price from prices)")
    on_plan = " and ".join(f"d.{k} = gr.{k}" for k in [*keys, "plan_id"])
    on_month = " and ".join(f"x.{k} = y.{k}" for k in keys)
    return f"""plan_deltas as (
    -- +n in the first counted month, -n in the month after the last (earlier starts count from
    -- the first month of the grid)
    select {ck}plan_id, mi, sum(d) as d from (
        select {ck}plan_id, case when start_mi < {floor} then {floor} else start_mi end as mi, n as d
        from groups where (stop_mi is null or stop_mi > start_mi) and start_mi <= $last_mi
        union all
        select {ck}plan_id, case when stop_mi < {floor} then {floor} else stop_mi end, -n
        from groups where stop_mi > start_mi and stop_mi <= $last_mi) e
    group by {ck}plan_id, mi
),
plan_counts as (
    -- one row per {ck}plan and calendar month: subscriptions counted in that month's MRR
    select gr.*, sum(coalesce(d.d, 0)) over (partition by {", ".join(f"gr.{k}" for k in keys[:-1] + ["plan_id"])}
                                            order by gr.mi rows between unbounded preceding and current row) as n
    from {grid} gr
    left join plan_deltas d on {on_plan}
),
mrr_month as (
    -- one row per {ck}month: MRR at the end of the month (list prices less discounts)
    select x.*, x.gross - coalesce(y.disc, 0) as mrr_cents
    from (select {", ".join(keys)}, sum(price * n) as gross from plan_counts group by {", ".join(keys)}) x
    left join (select {", ".join(keys)}, sum(disc) as disc from disc group by {", ".join(keys)}) y on {on_month}
)"""


def customer_mrr_sql(f: Filters) -> str:
    """One row per customer with MRR at the end of month ``$last_mi``: their MRR."""
    return f"""with {sub_ctes(f)},{price_ctes()},
final as (
    select u.customer_id, sum(pr.price - coalesce(d.disc, 0)) as mrr_cents
    from unit_subs u
    join prices pr on pr.plan_id = u.plan_id and pr.mi = $last_mi
    left join disc d on d.subscription_id = u.subscription_id and d.mi = $last_mi
    where u.start_mi <= $last_mi and (u.stop_mi is null or u.stop_mi > $last_mi)
    group by u.customer_id
)
select * from final order by customer_id"""
