"""Run billing for a period: invoice every subscription active in it, once.

The run recomputes what should exist for the period and writes only the difference (subscriptions
with no invoice for the period yet), so re-running is always safe; the unique key
(subscription_id, period_start) on invoices enforces it as well. Everything is set-based SQL: a few
``CREATE TEMP TABLE ... AS SELECT`` steps and two ``INSERT ... SELECT``s, never a loop over customers.
The rules are those of :mod:`billing.pricing`, which the tests check this SQL against.
"""
from __future__ import annotations

import datetime as dt
import time

import duckdb

from billing import audit
from billing.pricing import month_end
from billing.results import CONFLICT, INVALID_INPUT, PERIOD_NOT_STARTED, Result, failure, success
from data.db import transaction

PAYMENT_TERMS_DAYS = 14

# Step 1. One narrow row per subscription to invoice: what should exist for the period minus what
# exists, with its plan charge (prorated by day), usage over the allowance, one-off charges and tax rate.
_SUBS_SQL = """
CREATE OR REPLACE TEMP TABLE _bill AS
WITH params AS (
    SELECT CAST($p_start AS DATE) AS p_start, CAST($p_end AS DATE) AS p_end
),
active AS (
    SELECT s.subscription_id, s.customer_id, s.plan_id, s.start_date, s.end_date
    FROM subscriptions s, params
    WHERE s.start_date <= params.p_end AND (s.end_date IS NULL OR s.end_date >= params.p_start)
),
todo AS (
    SELECT a.* FROM active a
    WHERE NOT EXISTS (SELECT 1 FROM invoices i
                      WHERE i.period_start = $p_start AND i.subscription_id = a.subscription_id)
),
price AS (
    SELECT plan_id, monthly_price_cents, usage_allowance_units, overage_price_cents
    FROM (SELECT pp.*, row_number() OVER (PARTITION BY pp.plan_id ORDER BY pp.effective_from DESC) AS rn
          FROM plan_prices pp, params WHERE pp.effective_from <= params.p_start)
    WHERE rn = 1
),
tax AS (
    SELECT region, rate_bp
    FROM (SELECT t.*, row_number() OVER (PARTITION BY t.region ORDER BY t.effective_from DESC) AS rn
          FROM tax_rates t, params WHERE t.effective_from <= params.p_start)
    WHERE rn = 1
),
todo_usage AS (
    -- the subscriptions to bill with their usage of the period, grouped together by subscription
    -- (one aggregate of both instead of a million usage sums hash-joined back to the subscriptions)
    SELECT subscription_id, any_value(customer_id) AS customer_id, any_value(plan_id) AS plan_id,
           any_value(start_date) AS start_date, any_value(end_date) AS end_date, sum(units) AS units
    FROM (SELECT subscription_id, customer_id, plan_id, start_date, end_date, CAST(NULL AS BIGINT) AS units
          FROM todo
          UNION ALL
          SELECT subscription_id, NULL, NULL, NULL, NULL, units FROM usage_records WHERE period_start = $p_start)
    GROUP BY subscription_id
    HAVING count(customer_id) > 0
),
charges AS (
    SELECT subscription_id, sum(amount_cents) AS charges_cents, count(*) AS n_charges FROM one_off_charges
    WHERE period_start = $p_start GROUP BY subscription_id
),
sized AS (
    SELECT t.subscription_id, t.customer_id, t.plan_id, c.region,
           CAST(date_diff('day', greatest(t.start_date, params.p_start),
                          least(coalesce(t.end_date, params.p_end), params.p_end)) + 1 AS INTEGER) AS days,
           CAST(day(params.p_end) AS INTEGER) AS period_days,
           pr.monthly_price_cents, pr.usage_allowance_units, pr.overage_price_cents,
           tx.rate_bp,
           coalesce(t.units, 0) AS units,
           coalesce(ch.charges_cents, 0) AS charges_cents,
           CAST(coalesce(ch.n_charges, 0) AS INTEGER) AS n_charges
    FROM todo_usage t
    CROSS JOIN params
    JOIN customers c ON c.customer_id = t.customer_id
    LEFT JOIN price pr ON pr.plan_id = t.plan_id
    LEFT JOIN tax tx ON tx.region = c.region
    LEFT JOIN charges ch ON ch.subscription_id = t.subscription_id
),
numbered AS (
    -- Invoice numbers: gap-free from the last one, in subscription order. A sort of the narrow ids
    -- numbered by a plain row_number() (DuckDB keeps an ordered subquery's order for OVER ()): an
    -- ordered window over the wide rows costs several times more at a million subscriptions.
    SELECT subscription_id,
           (SELECT coalesce(max(invoice_id), 0) FROM invoices) + row_number() OVER () AS invoice_id
    FROM (SELECT subscription_id FROM todo ORDER BY subscription_id)
),
final AS (
    SELECT s.*, n.invoice_id,
           CASE WHEN days >= period_days THEN monthly_price_cents
                ELSE round_div(monthly_price_cents * days, period_days) END AS plan_cents,
           greatest(0, units - usage_allowance_units) AS over_units,
           greatest(0, units - usage_allowance_units) * overage_price_cents AS usage_cents
    FROM sized s JOIN numbered n USING (subscription_id)
)
SELECT * FROM final
"""

# Step 2. One row per (subscription, discount grant) covering the period: percent discounts on the
# plan charge in grant order, capped so their running total never exceeds the plan charge.
_DISCOUNT_SQL = """
CREATE OR REPLACE TEMP TABLE _bill_discount AS
WITH covering AS (
    SELECT b.subscription_id, b.plan_cents, g.grant_id, g.offer_id, g.granted_at, g.percent_off,
           round_div(b.plan_cents * g.percent_off, 100) AS want
    FROM _bill b
    JOIN offer_grants g ON g.customer_id = b.customer_id
    WHERE g.kind IN ('percent_off', 'free_months')
      AND date_diff('month', g.first_period, CAST($p_start AS DATE)) BETWEEN 0 AND g.cycles - 1
),
running AS (
    SELECT *, sum(want) OVER (PARTITION BY subscription_id ORDER BY granted_at, grant_id
                              ROWS UNBOUNDED PRECEDING) AS cum_want
    FROM covering
),
applied AS (
    SELECT subscription_id, grant_id, offer_id, granted_at,
           CAST(least(plan_cents, cum_want) - least(plan_cents, cum_want - want) AS BIGINT) AS applied_cents
    FROM running
),
final AS (
    SELECT *, CAST(row_number() OVER (PARTITION BY subscription_id ORDER BY granted_at, grant_id) AS INTEGER) AS rank
    FROM applied WHERE applied_cents > 0
)
SELECT * FROM final
"""

# Step 3. One-time credits, only for customers holding one: each fixed-credit grant's remainder,
# laid end to end per customer in grant order, against the capacity (net + tax) of the customer's
# invoices of the period laid end to end; the overlap is the amount applied, the rest carries forward.
_CREDIT_SQL = """
CREATE OR REPLACE TEMP TABLE _bill_credit AS
WITH grants AS (
    SELECT g.grant_id, g.offer_id, g.customer_id, g.granted_at, g.credit_cents
    FROM offer_grants g
    WHERE g.kind = 'fixed_credit' AND g.first_period <= $p_start
      AND g.customer_id IN (SELECT customer_id FROM _bill)
),
used AS (
    SELECT l.grant_id, -sum(l.amount_cents) AS used_cents
    FROM invoice_lines l WHERE l.kind = 'credit' AND l.grant_id IN (SELECT grant_id FROM grants)
    GROUP BY l.grant_id
),
pool AS (
    SELECT g.*, g.credit_cents - coalesce(u.used_cents, 0) AS remaining_cents
    FROM grants g LEFT JOIN used u USING (grant_id)
),
pool_laid AS (
    SELECT *, sum(remaining_cents) OVER (PARTITION BY customer_id ORDER BY granted_at, grant_id
                                         ROWS UNBOUNDED PRECEDING) - remaining_cents AS cr_start
    FROM pool WHERE remaining_cents > 0
),
disc AS (
    SELECT subscription_id, sum(applied_cents) AS discount_cents FROM _bill_discount GROUP BY subscription_id
),
capacity AS (
    SELECT b.subscription_id, b.customer_id,
           b.plan_cents + b.usage_cents + b.charges_cents - coalesce(d.discount_cents, 0) AS net_cents,
           b.rate_bp
    FROM _bill b LEFT JOIN disc d USING (subscription_id)
    WHERE b.customer_id IN (SELECT customer_id FROM pool_laid)
),
inv_laid AS (
    SELECT subscription_id, customer_id, net_cents + round_div(net_cents * rate_bp, 10000) AS capacity_cents,
           sum(net_cents + round_div(net_cents * rate_bp, 10000))
               OVER (PARTITION BY customer_id ORDER BY subscription_id ROWS UNBOUNDED PRECEDING)
           - (net_cents + round_div(net_cents * rate_bp, 10000)) AS cap_start
    FROM capacity
),
overlap AS (
    SELECT i.subscription_id, p.grant_id, p.offer_id, p.granted_at,
           CAST(least(i.cap_start + i.capacity_cents, p.cr_start + p.remaining_cents)
                - greatest(i.cap_start, p.cr_start) AS BIGINT) AS applied_cents
    FROM inv_laid i JOIN pool_laid p USING (customer_id)
),
final AS (
    SELECT *, CAST(row_number() OVER (PARTITION BY subscription_id ORDER BY granted_at, grant_id) AS INTEGER) AS rank
    FROM overlap WHERE applied_cents > 0
)
SELECT * FROM final
"""

# Step 4. Per-invoice adjustments, only for invoices that have any (a small table).
_ADJUST_SQL = """
CREATE OR REPLACE TEMP TABLE _bill_adjust AS
WITH disc AS (
    SELECT subscription_id, sum(applied_cents) AS discount_cents, count(*) AS n_discounts
    FROM _bill_discount GROUP BY subscription_id
),
credit AS (
    SELECT subscription_id, sum(applied_cents) AS credit_cents FROM _bill_credit GROUP BY subscription_id
),
final AS (
    SELECT subscription_id, CAST(coalesce(d.discount_cents, 0) AS BIGINT) AS discount_cents,
           CAST(coalesce(d.n_discounts, 0) AS INTEGER) AS n_discounts,
           CAST(coalesce(c.credit_cents, 0) AS BIGINT) AS credit_cents
    FROM disc d FULL OUTER JOIN credit c USING (subscription_id)
)
SELECT * FROM final
"""

# The totals of every invoice: subtotal - discount + tax - credit = total.
_TOTALS_CTE = """
totals AS (
    SELECT b.*,
           b.plan_cents + b.usage_cents + b.charges_cents AS subtotal_cents,
           coalesce(a.discount_cents, 0) AS discount_cents,
           coalesce(a.n_discounts, 0) AS n_discounts,
           coalesce(a.credit_cents, 0) AS credit_cents,
           round_div((b.plan_cents + b.usage_cents + b.charges_cents - coalesce(a.discount_cents, 0))
                     * b.rate_bp, 10000) AS tax_cents
    FROM _bill b LEFT JOIN _bill_adjust a USING (subscription_id)
)
"""

_INSERT_INVOICES_SQL = """
INSERT INTO invoices (invoice_id, subscription_id, customer_id, plan_id, period_start, period_end,
    issued_on, due_on, currency, subtotal_cents, discount_cents, tax_cents, credit_cents, total_cents,
    tax_rate_bp, status, run_id, finalized_at)
WITH """ + _TOTALS_CTE + """
SELECT t.invoice_id, t.subscription_id, t.customer_id, t.plan_id, CAST($p_start AS DATE),
       CAST($p_end AS DATE), CAST($issued AS DATE), CAST($due AS DATE), p.currency, t.subtotal_cents,
       t.discount_cents, t.tax_cents, t.credit_cents,
       t.subtotal_cents - t.discount_cents + t.tax_cents - t.credit_cents, t.rate_bp, 'finalized',
       $run_id, CAST($at AS TIMESTAMP)
FROM totals t JOIN plans p USING (plan_id)
"""

# Step 5. Lines in a fixed order of kinds: plan or proration, usage, charges, discounts (grant order),
# tax, credits. Line numbers are computed from the per-invoice counts, so no sort of all lines.
_INSERT_LINES_SQL = """
INSERT INTO invoice_lines (invoice_id, line_no, kind, description, quantity, unit_amount_cents,
    amount_cents, grant_id, charge_id)
WITH """ + _TOTALS_CTE + """,
inv AS (
    SELECT b.invoice_id, b.subscription_id,
           CAST(CASE WHEN b.over_units > 0 THEN 1 ELSE 0 END AS INTEGER) AS n_usage, b.n_charges,
           coalesce(a.n_discounts, 0) AS n_discounts
    FROM _bill b JOIN _bill_adjust a USING (subscription_id)
),
tax_label AS (
    -- the few distinct (region, rate) pairs first, then their labels
    SELECT region, rate_bp, 'Tax ' || region || ' ' || printf('%.2f', rate_bp / 100.0) || '%' AS label
    FROM (SELECT DISTINCT region, rate_bp FROM _bill)
),
charge_rows AS (
    SELECT ch.*, row_number() OVER (PARTITION BY ch.subscription_id ORDER BY ch.charge_id) AS rank
    FROM one_off_charges ch
    WHERE ch.period_start = $p_start AND ch.subscription_id IN (SELECT subscription_id FROM _bill)
),
final AS (
    SELECT b.invoice_id, 1 AS line_no,
           CASE WHEN b.days >= b.period_days THEN 'plan' ELSE 'proration' END AS kind,
           CASE WHEN b.days >= b.period_days THEN p.name
                ELSE p.name || ' (' || b.days || ' of ' || b.period_days || ' days)' END AS description,
           CAST(b.days AS BIGINT) AS quantity, b.monthly_price_cents AS unit_amount_cents,
           b.plan_cents AS amount_cents, CAST(NULL AS BIGINT) AS grant_id, CAST(NULL AS BIGINT) AS charge_id
    FROM _bill b JOIN plans p USING (plan_id)
    UNION ALL
    SELECT invoice_id, 2, 'usage', 'Usage over allowance: ' || over_units || ' units', over_units,
           overage_price_cents, usage_cents, NULL, NULL
    FROM _bill WHERE over_units > 0
    UNION ALL
    SELECT inv.invoice_id, 1 + (CASE WHEN inv.over_units > 0 THEN 1 ELSE 0 END) + ch.rank, 'charge', ch.description, 1, ch.amount_cents,
           ch.amount_cents, NULL, ch.charge_id
    FROM charge_rows ch JOIN _bill inv USING (subscription_id)
    UNION ALL
    SELECT inv.invoice_id, 1 + inv.n_usage + inv.n_charges + d.rank, 'discount', o.name, NULL, NULL,
           -d.applied_cents, d.grant_id, NULL
    FROM _bill_discount d JOIN inv USING (subscription_id) JOIN offers o USING (offer_id)
    UNION ALL
    SELECT b.invoice_id, 2 + (CASE WHEN b.over_units > 0 THEN 1 ELSE 0 END) + b.n_charges + b.n_discounts,
           'tax', t.label, NULL, NULL, b.tax_cents, NULL, NULL
    FROM totals b JOIN tax_label t USING (region, rate_bp)
    UNION ALL
    SELECT inv.invoice_id, 2 + inv.n_usage + inv.n_charges + inv.n_discounts + c.rank, 'credit',
           o.name || ' (credit)', NULL, NULL, -c.applied_cents, c.grant_id, NULL
    FROM _bill_credit c JOIN inv USING (subscription_id) JOIN offers o USING (offer_id)
)
SELECT * FROM final
"""

_TEMP_TABLES = ("_bill", "_bill_discount", "_bill_credit", "_bill_adjust")


def run_billing(con: duckdb.DuckDBPyConnection, period_start: dt.date, *, as_of: dt.date,
                at: dt.datetime | None = None, triggered_by: int | None = None,
                payment_terms_days: int = PAYMENT_TERMS_DAYS) -> Result:
    """Invoice every subscription active in the period that has no invoice for it yet.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    period_start : datetime.date
        First day of the calendar month to bill.
    as_of : datetime.date
        The run date: invoices are issued on it and due ``payment_terms_days`` later. A period is
        billed in arrears, and may not be billed before it has started.
    at : datetime.datetime, optional
        Instant recorded on the run (defaults to midnight of ``as_of``).
    triggered_by : int, optional
        users.user_id of who started the run (None = scheduled).

    Returns
    -------
    Result
        ``data``: run_id, invoices_created, lines_created, total_cents, subtotal_cents,
        discount_cents, tax_cents, credit_cents, seconds. A re-run of a billed period succeeds with
        zero created (``data['already_billed']`` True). Failures: ``invalid_input`` (not a first day
        of a month; a plan with no price or a region with no tax rate), ``period_not_started``,
        ``conflict`` (another run committed while this one ran: nothing written, run it again).

    Notes
    -----
    Rules (DESIGN.md section 4, :func:`billing.pricing.compute_invoice`): plan charge prorated by
    day; usage over the allowance at the overage price; percent and free-month discounts on the plan
    charge in grant order, never below zero, for ``cycles`` periods from ``first_period``; tax by the
    customer's region on the net, rounded per invoice half away from zero; fixed credits as negative
    lines capped at net + tax, the rest carried forward. Total = sum of lines.

    Invoice numbers continue from ``max(invoice_id)`` and the run number from ``max(run_id)``, both
    read in the run's transaction: of two runs racing, the second to commit collides on the
    ``billing_runs`` primary key (or on the invoices' unique key) and writes nothing, so numbers stay
    unique and gap-free without an index on ``invoice_id``.
    """
    if period_start.day != 1:
        return failure(INVALID_INPUT, f"a billing period starts on the first of a month, not {period_start}")
    if period_start > as_of:
        return failure(PERIOD_NOT_STARTED,
                       f"period {period_start:%Y-%m} has not started yet (as of {as_of}); nothing billed")
    started = time.perf_counter()
    at = at or dt.datetime.combine(as_of, dt.time())
    p_end = month_end(period_start)
    params = {"p_start": period_start, "p_end": p_end}
    try:
        with transaction(con):
            con.execute(_SUBS_SQL, params)
            missing = con.execute("""
                SELECT 'plan ' || plan_id || ' has no price for the period' FROM _bill
                WHERE monthly_price_cents IS NULL
                UNION ALL
                SELECT 'region ' || region || ' has no tax rate for the period' FROM _bill
                WHERE rate_bp IS NULL
                LIMIT 1""").fetchall()
            if missing:
                raise _Refused(missing[0][0])
            con.execute(_DISCOUNT_SQL, {"p_start": period_start})
            con.execute(_CREDIT_SQL, {"p_start": period_start})
            con.execute(_ADJUST_SQL)
            run_id = int(con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM billing_runs").fetchall()[0][0])
            con.execute("INSERT INTO billing_runs (run_id, period_start, started_at, status, triggered_by) "
                        "VALUES (?, ?, ?, 'running', ?)", [run_id, period_start, at, triggered_by])
            con.execute(_INSERT_INVOICES_SQL, {**params, "issued": as_of,
                                               "due": as_of + dt.timedelta(days=payment_terms_days),
                                               "run_id": run_id, "at": at})
            n_lines = con.execute(_INSERT_LINES_SQL, {"p_start": period_start}).fetchall()[0][0]
            sums = con.execute("""
                SELECT count(*), coalesce(sum(total_cents), 0), coalesce(sum(subtotal_cents), 0),
                       coalesce(sum(discount_cents), 0), coalesce(sum(tax_cents), 0),
                       coalesce(sum(credit_cents), 0)
                FROM invoices WHERE run_id = ?""", [run_id]).fetchall()[0]
            n_inv = int(sums[0])
            billed_before = n_inv == 0 and bool(con.execute(
                "SELECT count(*) FROM (SELECT 1 FROM invoices WHERE period_start = ? LIMIT 1)",
                [period_start]).fetchall()[0][0])
            con.execute("UPDATE billing_runs SET status = 'finished', finished_at = ?, invoices_created = ?, "
                        "lines_created = ?, total_cents = ? WHERE run_id = ?",
                        [at, n_inv, int(n_lines), int(sums[1]), run_id])
            audit.log(con, at=at, user_id=triggered_by, action="run_billing", entity="period",
                      entity_id=f"{period_start:%Y-%m}",
                      detail={"run_id": run_id, "invoices_created": n_inv, "total_cents": int(sums[1])})
    except _Refused as exc:
        return failure(INVALID_INPUT, f"billing {period_start:%Y-%m} refused: {exc}")
    except (duckdb.TransactionException, duckdb.ConstraintException) as exc:
        # Another run committed first since this one read max(run_id) and max(invoice_id): the run
        # number (billing_runs' key) or an invoice (the unique key) collides, and nothing is written.
        if isinstance(exc, duckdb.ConstraintException) and "duplicate key" not in str(exc).lower():
            raise
        return failure(CONFLICT, f"billing {period_start:%Y-%m} not written: another billing run committed "
                                 "while this one ran; nothing was written, run it again")
    finally:
        for name in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {name}")
    seconds = time.perf_counter() - started
    if n_inv:
        message = f"billed {period_start:%Y-%m}: {n_inv} invoices"
    elif billed_before:
        message = f"{period_start:%Y-%m} was already billed: nothing to do"
    else:
        message = f"nothing to bill for {period_start:%Y-%m}: no active subscriptions"

    return success(message, run_id=run_id, period=f"{period_start:%Y-%m}", invoices_created=n_inv,
                   lines_created=int(n_lines), total_cents=int(sums[1]), subtotal_cents=int(sums[2]),
                   discount_cents=int(sums[3]), tax_cents=int(sums[4]), credit_cents=int(sums[5]),
                   already_billed=billed_before, seconds=round(seconds, 3))


class _Refused(Exception):
    pass
