"""Customer snapshot features for the churn-risk model, and the churn label.

A *snapshot* is a day ``as_of``. Its population is every customer served on that day by a
subscription that started before it; every feature is computed from rows dated strictly before
``as_of`` (contacts, invoices issued, payments received, grants, credit notes, subscription
changes), so a model trained on past snapshots can score a customer today with the same code.
The label (:func:`churn_labels`) is the only thing that looks at ``as_of`` and after.

Set-based SQL, one statement per snapshot (a loop over months, never over customers). A sample of
customers is drawn with a deterministic hash of ``customer_id`` so that models can be trained on
very large databases.

Also here: :func:`telco_frame`, the documented adapter from the IBM Telco churn file (imported
with :func:`data.importers.import_telco`) to a feature frame and label.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Sequence

import duckdb
import numpy as np
import pandas as pd

__all__ = [
    "FEATURES",
    "CATEGORICAL",
    "NUMERIC",
    "snapshot_features",
    "churn_labels",
    "snapshot_frame",
    "monthly_snapshots",
    "SNAPSHOT_DAY",
    "FEATURE_DEFINITIONS",
    "data_end",
    "latest_period",
    "telco_frame",
    "TELCO_CATEGORICAL",
    "TELCO_NUMERIC",
]

# Feature name -> definition (also the order of the columns). Windows count back from as_of;
# "before" always means strictly before the day as_of.
FEATURE_DEFINITIONS: dict[str, str] = {
    "tenure_months": "months from signup_date to as_of (days / 30.4375)",
    "segment": "customers.segment",
    "region": "customers.region",
    "channel": "customers.channel (acquisition channel)",
    "is_autopay": "customers.is_autopay (as stored: the schema keeps no history of it)",
    "is_paperless": "customers.is_paperless (as stored)",
    "plan_rank": "rank of the plan serving the day before as_of (1 = cheapest)",
    "price_cents": "list price of that plan effective the day before as_of",
    "price_rise_pct_90": "rise of that plan's list price over the last 90 days, percent",
    "plan_changes_365": "plan changes (subscriptions closed with end_reason plan_change) in the last 365 days",
    "downgraded_180": "a plan change to a lower rank in the last 180 days",
    "invoices_count": "invoices issued before as_of",
    "last_bill_cents": "total of the last invoice issued",
    "bill_change_pct": "last invoice total vs the one before, percent of the earlier (0 with fewer than two)",
    "max_bill_rise_pct_90": "largest rise of an invoice total over its predecessor among invoices issued in the last 90 days, percent",
    "last_discount_cents": "discount on the last invoice issued",
    "recurring_change_pct": "rise of the recurring charge (list price of the invoice's plan and period minus its discount) "
                            "from the invoice before the last to the last, percent of max(earlier, half the last list price); "
                            "0 with fewer than two invoices",
    "extra_charges_cents": "last invoice subtotal minus the plan's list price for that period (usage over the allowance, fees)",
    "usage_share": "usage of the last invoiced period / the plan's allowance",
    "grants_365": "offers granted in the last 365 days",
    "days_since_grant": "days since the last grant (3650 when none)",
    "discount_active": "a percent-off or free-month grant covers the month of as_of",
    "discount_ends_soon": "such a grant's last covered month is the month of as_of or the next: a bill rise is coming",
    "contacts_90": "contacts in the last 90 days",
    "contacts_365": "contacts in the last 365 days",
    "bill_contacts_90": "contacts about the bill (higher than expected, billing error, not understood) in 90 days",
    "cheaper_contacts_90": "contacts asking for a cheaper plan in 90 days",
    "cancel_requests_90": "cancel requests in 90 days",
    "service_contacts_90": "service-issue contacts in 90 days",
    "intent_to_cancel_90": "contacts with a stated intent to cancel in 90 days",
    "unresolved_90": "contacts left unresolved or escalated in 90 days",
    "wait_minutes_90": "mean wait in minutes of the contacts in 90 days (0 when none)",
    "max_wait_minutes_90": "longest wait in minutes in 90 days (0 when none)",
    "days_since_contact": "days since the last contact (3650 when none)",
    "credit_notes_180": "credit notes issued in the last 180 days",
    "failed_payments_90": "failed payment attempts in the last 90 days",
    "balance_cents": "invoiced (issued before) - credited - settled payments (received before)",
    "overdue_cents": "part of the balance on invoices already past their due date (>= 0)",
}
FEATURES: tuple[str, ...] = tuple(FEATURE_DEFINITIONS)
SNAPSHOT_DAY = 2   # monthly snapshots on the 2nd: the day after the billing run, its bills known
CATEGORICAL: tuple[str, ...] = ("segment", "region", "channel")
NUMERIC: tuple[str, ...] = tuple(f for f in FEATURES if f not in CATEGORICAL)

# The snapshot's population: customers served on the eve of as_of who did not leave that day (a
# subscription ending on the eve by a plan change continues in the next one). Optionally restricted
# to the registered frame _mf_ids(customer_id) ($use_ids) and to a hash sample ($rate).
_POPULATION_SQL = """
    SELECT DISTINCT s.customer_id
    FROM subscriptions s
    WHERE s.start_date <= CAST($as_of AS DATE) - 1
      AND (s.end_date IS NULL OR s.end_date >= CAST($as_of AS DATE)
           OR (s.end_date = CAST($as_of AS DATE) - 1 AND s.end_reason = 'plan_change'))
      AND ($use_ids = FALSE OR s.customer_id IN (SELECT customer_id FROM _mf_ids))
      AND ($rate >= 1.0 OR ((s.customer_id * 2654435761) % 4294967296) < $rate * 4294967296)
"""

# One row per customer served on as_of (grain: customer). Parameters: $as_of (DATE), $rate (sample
# share in (0, 1]), and the registered frame _mf_ids(customer_id) when $use_ids.
_SNAPSHOT_SQL = """
WITH params AS (
    SELECT CAST($as_of AS DATE) AS as_of,
           CAST(CAST($as_of AS DATE) - INTERVAL 1 DAY AS DATE) AS eve,
           CAST(date_trunc('month', CAST($as_of AS DATE)) AS DATE) AS as_month
),
population AS (
    {population}
),
serving AS (
    -- the subscription serving the eve of as_of (the latest if several)
    SELECT s.customer_id, s.plan_id, pl.rank AS plan_rank
    FROM subscriptions s JOIN population USING (customer_id) JOIN plans pl USING (plan_id), params p
    WHERE s.start_date <= p.eve AND (s.end_date IS NULL OR s.end_date >= p.eve)
    QUALIFY row_number() OVER (PARTITION BY s.customer_id ORDER BY s.start_date DESC, s.subscription_id DESC) = 1
),
price AS (
    SELECT sv.customer_id,
           arg_max(pp.monthly_price_cents, pp.effective_from) AS price_cents,
           arg_max(pp.usage_allowance_units, pp.effective_from) AS allowance_units
    FROM serving sv JOIN plan_prices pp ON pp.plan_id = sv.plan_id, params p
    WHERE pp.effective_from <= p.eve
    GROUP BY sv.customer_id
),
price_before AS (
    SELECT sv.customer_id, arg_max(pp.monthly_price_cents, pp.effective_from) AS price_90_cents
    FROM serving sv JOIN plan_prices pp ON pp.plan_id = sv.plan_id, params p
    WHERE pp.effective_from <= CAST(p.as_of - INTERVAL 90 DAY AS DATE)
    GROUP BY sv.customer_id
),
changes AS (
    SELECT s.customer_id,
           count(*) FILTER (WHERE s.end_date >= p.as_of - INTERVAL 365 DAY) AS plan_changes_365,
           bool_or(nx_pl.rank < pl.rank AND s.end_date >= p.as_of - INTERVAL 180 DAY) AS downgraded_180
    FROM subscriptions s JOIN population USING (customer_id) JOIN plans pl ON pl.plan_id = s.plan_id
    JOIN subscriptions nx ON nx.previous_subscription_id = s.subscription_id AND nx.start_date < (SELECT as_of FROM params)
    JOIN plans nx_pl ON nx_pl.plan_id = nx.plan_id, params p
    WHERE s.end_reason = 'plan_change' AND s.end_date < p.as_of
    GROUP BY s.customer_id
),
inv AS (
    SELECT i.customer_id, i.invoice_id, i.subscription_id, i.plan_id, i.period_start, i.issued_on,
           i.due_on, i.subtotal_cents, i.discount_cents, i.total_cents,
           row_number() OVER (PARTITION BY i.customer_id ORDER BY i.issued_on DESC, i.invoice_id DESC) AS recency,
           lag(i.total_cents) OVER (PARTITION BY i.customer_id ORDER BY i.issued_on, i.invoice_id) AS previous_total
    FROM invoices i JOIN population USING (customer_id), params p
    WHERE i.issued_on < p.as_of AND i.status <> 'void'
),
bills AS (
    SELECT customer_id,
           count(*) AS invoices_count,
           max(total_cents) FILTER (WHERE recency = 1) AS last_bill_cents,
           max(previous_total) FILTER (WHERE recency = 1) AS prev_bill_cents,
           max(discount_cents) FILTER (WHERE recency = 1) AS last_discount_cents,
           max(subtotal_cents) FILTER (WHERE recency = 1) AS last_subtotal_cents,
           max(plan_id) FILTER (WHERE recency = 1) AS last_plan_id,
           max(period_start) FILTER (WHERE recency = 1) AS last_period,
           max(subscription_id) FILTER (WHERE recency = 1) AS last_subscription_id,
           max(100.0 * (total_cents - previous_total) / greatest(previous_total, 100))
               FILTER (WHERE issued_on >= (SELECT as_of FROM params) - INTERVAL 90 DAY
                       AND previous_total IS NOT NULL) AS max_bill_rise_pct_90
    FROM inv GROUP BY customer_id
),
recurring AS (
    -- the recurring charge of the last two invoices: list price of the plan for the period - discount
    SELECT i.customer_id,
           max(lp.list_cents) FILTER (WHERE i.recency = 1) AS list_cents,
           max(lp.list_cents - i.discount_cents) FILTER (WHERE i.recency = 1) AS rec_last,
           max(lp.list_cents - i.discount_cents) FILTER (WHERE i.recency = 2) AS rec_prev
    FROM inv i
    JOIN (SELECT i2.invoice_id, arg_max(pp.monthly_price_cents, pp.effective_from) AS list_cents
          FROM inv i2 JOIN plan_prices pp ON pp.plan_id = i2.plan_id AND pp.effective_from <= i2.period_start
          WHERE i2.recency <= 2 GROUP BY i2.invoice_id) lp USING (invoice_id)
    WHERE i.recency <= 2
    GROUP BY i.customer_id
),
usage AS (
    SELECT b.customer_id, sum(u.units) AS units
    FROM bills b JOIN usage_records u ON u.subscription_id = b.last_subscription_id
                                     AND u.period_start = b.last_period
    GROUP BY b.customer_id
),
grants AS (
    SELECT g.customer_id,
           count(*) FILTER (WHERE g.granted_at >= p.as_of - INTERVAL 365 DAY) AS grants_365,
           min(date_diff('day', CAST(g.granted_at AS DATE), p.as_of)) AS days_since_grant,
           bool_or(g.kind IN ('percent_off', 'free_months') AND g.first_period <= p.as_month
                   AND p.as_month < g.first_period + to_months(g.cycles)) AS discount_active,
           bool_or(g.kind IN ('percent_off', 'free_months') AND g.first_period <= p.as_month + INTERVAL 1 MONTH
                   AND g.first_period + to_months(g.cycles - 1) IN (p.as_month, p.as_month + INTERVAL 1 MONTH))
               AS discount_ends_soon
    FROM offer_grants g JOIN population USING (customer_id), params p
    WHERE g.granted_at < p.as_of
    GROUP BY g.customer_id
),
care AS (
    SELECT c.customer_id,
           count(*) FILTER (WHERE w90) AS contacts_90,
           count(*) FILTER (WHERE c.contacted_at >= p.as_of - INTERVAL 365 DAY) AS contacts_365,
           count(*) FILTER (WHERE w90 AND c.reason IN ('bill_higher_than_expected', 'billing_error',
                                                      'bill_not_understood')) AS bill_contacts_90,
           count(*) FILTER (WHERE w90 AND c.reason = 'wants_cheaper_plan') AS cheaper_contacts_90,
           count(*) FILTER (WHERE w90 AND c.reason = 'cancel_request') AS cancel_requests_90,
           count(*) FILTER (WHERE w90 AND c.reason = 'service_issue') AS service_contacts_90,
           count(*) FILTER (WHERE w90 AND c.is_intent_to_cancel) AS intent_to_cancel_90,
           count(*) FILTER (WHERE w90 AND c.resolution <> 'resolved') AS unresolved_90,
           avg(c.wait_seconds / 60.0) FILTER (WHERE w90) AS wait_minutes_90,
           max(c.wait_seconds / 60.0) FILTER (WHERE w90) AS max_wait_minutes_90,
           min(date_diff('day', CAST(c.contacted_at AS DATE), p.as_of)) AS days_since_contact
    FROM (SELECT *, contacted_at >= (SELECT as_of FROM params) - INTERVAL 90 DAY AS w90 FROM contacts) c
    JOIN population USING (customer_id), params p
    WHERE c.contacted_at < p.as_of
    GROUP BY c.customer_id
),
credits AS (
    SELECT n.customer_id,
           count(*) FILTER (WHERE n.issued_at >= p.as_of - INTERVAL 180 DAY) AS credit_notes_180,
           sum(n.total_cents) AS credited_cents,
           sum(n.total_cents) FILTER (WHERE i.due_on < p.as_of) AS credited_due_cents
    FROM credit_notes n JOIN population USING (customer_id) JOIN invoices i USING (invoice_id), params p
    WHERE n.issued_at < p.as_of
    GROUP BY n.customer_id
),
invoiced AS (
    SELECT customer_id, sum(total_cents) AS invoiced_cents,
           sum(total_cents) FILTER (WHERE due_on < (SELECT as_of FROM params)) AS due_cents
    FROM inv GROUP BY customer_id
),
paid AS (
    SELECT y.customer_id,
           sum(y.amount_cents) FILTER (WHERE y.status = 'settled') AS paid_cents,
           count(*) FILTER (WHERE y.status = 'failed' AND y.received_at >= p.as_of - INTERVAL 90 DAY)
               AS failed_payments_90
    FROM payments y JOIN population USING (customer_id), params p
    WHERE y.received_at < p.as_of
    GROUP BY y.customer_id
),
final AS (
    SELECT pop.customer_id,
           date_diff('day', cu.signup_date, p.as_of) / 30.4375 AS tenure_months,
           cu.segment, cu.region, cu.channel,
           CAST(cu.is_autopay AS INTEGER) AS is_autopay,
           CAST(cu.is_paperless AS INTEGER) AS is_paperless,
           sv.plan_rank,
           pr.price_cents,
           coalesce(100.0 * (pr.price_cents - pb.price_90_cents) / nullif(pb.price_90_cents, 0), 0.0)
               AS price_rise_pct_90,
           coalesce(ch.plan_changes_365, 0) AS plan_changes_365,
           CAST(coalesce(ch.downgraded_180, FALSE) AS INTEGER) AS downgraded_180,
           coalesce(b.invoices_count, 0) AS invoices_count,
           coalesce(b.last_bill_cents, 0) AS last_bill_cents,
           coalesce(100.0 * (b.last_bill_cents - b.prev_bill_cents) / greatest(b.prev_bill_cents, 100), 0.0)
               AS bill_change_pct,
           coalesce(b.max_bill_rise_pct_90, 0.0) AS max_bill_rise_pct_90,
           coalesce(b.last_discount_cents, 0) AS last_discount_cents,
           coalesce(100.0 * (rc.rec_last - rc.rec_prev) / greatest(rc.rec_prev, rc.list_cents / 2.0, 1), 0.0)
               AS recurring_change_pct,
           coalesce(b.last_subtotal_cents - rc.list_cents, 0) AS extra_charges_cents,
           coalesce(u.units / nullif(pr.allowance_units, 0), 0.0) AS usage_share,
           coalesce(g.grants_365, 0) AS grants_365,
           coalesce(g.days_since_grant, 3650) AS days_since_grant,
           CAST(coalesce(g.discount_active, FALSE) AS INTEGER) AS discount_active,
           CAST(coalesce(g.discount_ends_soon, FALSE) AS INTEGER) AS discount_ends_soon,
           coalesce(k.contacts_90, 0) AS contacts_90,
           coalesce(k.contacts_365, 0) AS contacts_365,
           coalesce(k.bill_contacts_90, 0) AS bill_contacts_90,
           coalesce(k.cheaper_contacts_90, 0) AS cheaper_contacts_90,
           coalesce(k.cancel_requests_90, 0) AS cancel_requests_90,
           coalesce(k.service_contacts_90, 0) AS service_contacts_90,
           coalesce(k.intent_to_cancel_90, 0) AS intent_to_cancel_90,
           coalesce(k.unresolved_90, 0) AS unresolved_90,
           coalesce(k.wait_minutes_90, 0.0) AS wait_minutes_90,
           coalesce(k.max_wait_minutes_90, 0.0) AS max_wait_minutes_90,
           coalesce(k.days_since_contact, 3650) AS days_since_contact,
           coalesce(cn.credit_notes_180, 0) AS credit_notes_180,
           coalesce(y.failed_payments_90, 0) AS failed_payments_90,
           coalesce(iv.invoiced_cents, 0) - coalesce(cn.credited_cents, 0) - coalesce(y.paid_cents, 0)
               AS balance_cents,
           greatest(0, coalesce(iv.due_cents, 0) - coalesce(cn.credited_due_cents, 0) - coalesce(y.paid_cents, 0))
               AS overdue_cents
    FROM population pop
    JOIN customers cu USING (customer_id)
    CROSS JOIN params p
    LEFT JOIN serving sv USING (customer_id)
    LEFT JOIN price pr USING (customer_id)
    LEFT JOIN price_before pb USING (customer_id)
    LEFT JOIN changes ch USING (customer_id)
    LEFT JOIN bills b USING (customer_id)
    LEFT JOIN recurring rc USING (customer_id)
    LEFT JOIN usage u USING (customer_id)
    LEFT JOIN grants g USING (customer_id)
    LEFT JOIN care k USING (customer_id)
    LEFT JOIN credits cn USING (customer_id)
    LEFT JOIN invoiced iv USING (customer_id)
    LEFT JOIN paid y USING (customer_id)
)
SELECT * FROM final ORDER BY customer_id
""".replace("{population}", _POPULATION_SQL)

# Grain: one row per customer served on as_of (same population as the features).
_LABEL_SQL = """
WITH population AS (
    {population}
),
ends AS (
    SELECT customer_id, min(end_date) AS churned_on
    FROM subscriptions
    WHERE end_reason IN ('cancelled', 'non_payment')
      AND end_date >= CAST($as_of AS DATE)
      AND end_date < CAST($as_of AS DATE) + to_days(CAST($horizon AS INTEGER))
    GROUP BY customer_id
),
final AS (
    SELECT p.customer_id, e.churned_on IS NOT NULL AS churned, e.churned_on
    FROM population p LEFT JOIN ends e USING (customer_id)
)
SELECT * FROM final ORDER BY customer_id
""".replace("{population}", _POPULATION_SQL)


def _run(con: duckdb.DuckDBPyConnection, sql: str, as_of: dt.date, customer_ids, sample: float,
         extra: dict | None = None) -> pd.DataFrame:
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        raise TypeError("as_of must be a datetime.date")
    if not 0.0 < float(sample) <= 1.0:
        raise ValueError(f"sample must be in (0, 1], got {sample!r}")
    use_ids = customer_ids is not None
    params = {"as_of": as_of, "rate": float(sample), "use_ids": use_ids, **(extra or {})}
    # a sample's cursor (see _sampled) holds the copies the query must read: use it as it is
    cur = con if id(con) in _SAMPLED else con.cursor()
    try:
        ids = pd.DataFrame({"customer_id": pd.array(list(customer_ids) if use_ids else [], dtype="int64")})
        cur.register("_mf_ids", ids)
        out = cur.execute(sql, params).df()
        cur.unregister("_mf_ids")
        return out
    finally:
        if cur is not con:
            cur.close()


# Tables the snapshot queries read that hold rows per customer (usage_records: per subscription).
_SAMPLED_TABLES = ("customers", "subscriptions", "invoices", "payments", "credit_notes", "contacts", "offer_grants")
_SAMPLED: dict[int, float] = {}   # id of each open _sampled cursor -> its sample share


# The period of the usage a snapshot at $as_of reads: that of the latest invoice issued before it
# (the ``usage`` step of _SNAPSHOT_SQL), on a cursor holding one customer's invoices.
_LAST_BILLED_PERIOD_SQL = """
SELECT period_start FROM temp.invoices
WHERE issued_on < CAST($as_of AS DATE) AND status <> 'void'
ORDER BY issued_on DESC, invoice_id DESC LIMIT 1
"""


@contextlib.contextmanager
def _scoped(con: duckdb.DuckDBPyConnection, keep: str, params: dict, share: float, as_of: dt.date | None = None):
    """A private cursor on which each per-customer table is a temporary copy of the rows that
    ``keep`` (a code constant over ``customer_id``) selects; the snapshot queries run on it as is.
    With ``as_of`` (one customer), usage_records holds only the usage a snapshot at ``as_of`` reads."""
    cur = con.cursor()
    try:
        db = '"' + str(cur.execute("SELECT current_database()").fetchall()[0][0]).replace('"', '""') + '"'
        for table in _SAMPLED_TABLES:
            cur.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM {db}.main.{table} WHERE {keep}", params)
        usage = (f"CREATE TEMP TABLE usage_records AS SELECT * FROM {db}.main.usage_records "
                 "WHERE subscription_id IN (SELECT subscription_id FROM temp.subscriptions)")
        if as_of is None:
            cur.execute(usage)
        else:
            # one period: the scan skips the row groups of every other month (usage is written by month)
            last = cur.execute(_LAST_BILLED_PERIOD_SQL, {"as_of": as_of}).fetchall()
            cur.execute(usage + " AND period_start = CAST($period AS DATE)",
                        {"period": last[0][0] if last else dt.date(1, 1, 1)})
        _SAMPLED[id(cur)] = float(share)
        yield cur
    finally:
        _SAMPLED.pop(id(cur), None)
        cur.close()


def _sampled(con: duckdb.DuckDBPyConnection, sample: float):
    """A private cursor on which the per-customer tables hold only the hash sample's customers.

    The sample is a deterministic hash of ``customer_id`` (the population filter of the queries),
    the same at every snapshot: copying the sampled customers' rows once lets every snapshot read
    a few percent of the history instead of scanning all of it again. Same results (every row a
    sampled customer's query reads belongs to that customer, or to one of its subscriptions).
    """
    return _scoped(con, "((customer_id * 2654435761) % 4294967296) < $rate * 4294967296",
                   {"rate": float(sample)}, sample)


def one_customer_history(con: duckdb.DuckDBPyConnection, customer_id: int, *, as_of: dt.date | None = None):
    """A private cursor on which the per-customer tables hold one customer's rows only.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customer_id : int
    as_of : datetime.date, optional
        The one snapshot day the cursor is for: then usage_records holds only the usage that
        :func:`snapshot_features` at ``as_of`` reads (the period of the customer's latest invoice
        issued before it), so the copy reads one month of usage instead of all of it. Without it,
        every usage record of the customer's subscriptions (any snapshot day).

    Returns
    -------
    contextlib.AbstractContextManager
        Use with ``with``: it yields a cursor of ``con`` on which customers, subscriptions, invoices,
        payments, credit notes, contacts, offer grants and usage records are temporary copies of the
        customer's rows (shadowing the stored tables), and closes it with its copies on exit.

    Notes
    -----
    For :func:`snapshot_features` of that one customer (the churn risk shown at a live contact):
    each history table is scanned once, by its ``customer_id``, instead of in every step of the
    snapshot query. Same results for that customer (every row its snapshot reads is its own or one
    of its subscriptions'); any other customer has no rows on it.
    """
    return _scoped(con, "customer_id = $cid", {"cid": int(customer_id)}, 1.0, as_of)


def snapshot_features(con: duckdb.DuckDBPyConnection, *, as_of: dt.date,
                      customer_ids: Iterable[int] | None = None, sample: float = 1.0) -> pd.DataFrame:
    """Features of every customer served on ``as_of``, from data strictly before ``as_of``.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        The snapshot day. A live score for today uses today's date: today's own events are not
        counted (they are counted from tomorrow on).
    customer_ids : iterable of int, optional
        Restrict to these customers (those not served on ``as_of`` are left out).
    sample : float, default 1.0
        Keep a deterministic pseudo-random share of customers (a hash of ``customer_id``, so the
        same customers are kept at every snapshot).

    Returns
    -------
    pandas.DataFrame
        One row per customer: ``customer_id``, ``as_of`` and the columns of :data:`FEATURES`.

    Notes
    -----
    Population: customers served on the day before ``as_of`` who did not leave on that day
    (a subscription serving it that does not end on it, or ends on it by a plan change). Every feature is defined in :data:`FEATURE_DEFINITIONS`; each reads only rows dated
    before ``as_of`` (``contacted_at``, ``issued_on``, ``received_at``, ``granted_at``,
    ``issued_at``, subscription start and end days, price ``effective_from``), so deleting every
    row dated on or after ``as_of`` does not change them (tests/models/test_features.py checks it).
    Customer attributes (segment, region, channel, autopay, paperless) are used as stored: the
    schema keeps no history of them.
    """
    out = _run(con, _SNAPSHOT_SQL, as_of, customer_ids, sample)
    out.insert(1, "as_of", pd.Timestamp(as_of))
    for col in NUMERIC:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    for col in CATEGORICAL:
        out[col] = out[col].astype(object)
    return out


def churn_labels(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, horizon_days: int = 90,
                 customer_ids: Iterable[int] | None = None, sample: float = 1.0) -> pd.DataFrame:
    """Whether each customer served on ``as_of`` churns within ``horizon_days``.

    Returns
    -------
    pandas.DataFrame
        One row per customer of the snapshot population: ``customer_id``, ``churned`` (bool),
        ``churned_on`` (last day served, or NaT).

    Notes
    -----
    Churn = a subscription of the customer ends by cancellation or non-payment (not a plan change)
    with its last day served in ``[as_of, as_of + horizon_days)``. The label is only complete when
    the data reaches ``as_of + horizon_days - 1`` (see :func:`monthly_snapshots`).
    """
    if int(horizon_days) < 1:
        raise ValueError("horizon_days must be at least 1")
    return _run(con, _LABEL_SQL, as_of, customer_ids, sample, {"horizon": int(horizon_days)})


def snapshot_frame(con: duckdb.DuckDBPyConnection, snapshots: Sequence[dt.date], *, horizon_days: int = 90,
                   sample: float = 1.0, progress=None) -> pd.DataFrame:
    """Features and labels for several snapshots stacked (one row per customer and snapshot).

    Parameters
    ----------
    snapshots : sequence of datetime.date
    horizon_days, sample
        As in :func:`churn_labels` and :func:`snapshot_features`.
    progress : callable, optional
        ``progress(done, total)`` after each snapshot.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``as_of``, the features, ``churned``.
    """
    parts = []
    # a sample: its customers' history copied once, then every snapshot reads the copy
    scope = _sampled(con, sample) if float(sample) < 1.0 and len(snapshots) > 1 else contextlib.nullcontext(con)
    with scope as cur:
        for k, day in enumerate(snapshots):
            feats = snapshot_features(cur, as_of=day, sample=sample)
            labels = churn_labels(cur, as_of=day, horizon_days=horizon_days, sample=sample)
            parts.append(feats.merge(labels[["customer_id", "churned"]], on="customer_id", how="left",
                                     validate="one_to_one"))
            if progress is not None:
                progress(k + 1, len(snapshots))
    if not parts:
        return pd.DataFrame(columns=["customer_id", "as_of", *FEATURES, "churned"])
    out = pd.concat(parts, ignore_index=True)
    out["churned"] = out["churned"].fillna(False).astype(bool)
    return out


def data_end(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The last day the database has records for.

    Notes
    -----
    The latest of: the end of the latest invoiced period, the day of the latest contact, the day
    of the latest payment. None for an empty database.
    """
    row = con.execute("""
        SELECT greatest((SELECT max(period_end) FROM invoices),
                        (SELECT CAST(max(contacted_at) AS DATE) FROM contacts),
                        (SELECT CAST(max(received_at) AS DATE) FROM payments))
    """).fetchall()[0][0]
    return row


def latest_period(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """First day of the latest invoiced billing period (None when nothing is invoiced)."""
    return con.execute("SELECT max(period_start) FROM invoices").fetchall()[0][0]


def monthly_snapshots(con: duckdb.DuckDBPyConnection, *, horizon_days: int = 90, first: dt.date | None = None,
                      last_day: dt.date | None = None, min_history_months: int = 3,
                      day: int = SNAPSHOT_DAY) -> list[dt.date]:
    """Monthly snapshot days whose churn label is complete.

    Parameters
    ----------
    horizon_days : int
        The label's horizon: a snapshot ``S`` qualifies when ``S + horizon_days - 1 <= last_day``.
    first : datetime.date, optional
        Earliest month; default ``min_history_months`` after the first invoiced period (so the
        features have some history).
    last_day : datetime.date, optional
        Default :func:`data_end`.
    day : int, default :data:`SNAPSHOT_DAY` (2)
        Day of the month of each snapshot. The monthly billing run happens on the first day after
        the period, so on the 2nd the month's new bill (and its rise) is known: features count
        rows dated strictly before the snapshot day.

    Returns
    -------
    list of datetime.date
        Snapshot days in increasing order (empty when the data is too short).
    """
    end = last_day or data_end(con)
    start = con.execute("SELECT min(period_start) FROM invoices").fetchall()[0][0]
    if end is None or start is None:
        return []
    if first is None:
        first = (pd.Timestamp(start) + pd.DateOffset(months=int(min_history_months))).date()
    first = pd.Timestamp(first).to_period("M").to_timestamp().date()
    if not 1 <= int(day) <= 28:
        raise ValueError("day must be between 1 and 28")
    days = []
    s = pd.Timestamp(first) + pd.Timedelta(days=int(day) - 1)
    while (s + pd.Timedelta(days=int(horizon_days) - 1)).date() <= end:
        days.append(s.date())
        s = s + pd.DateOffset(months=1)
    return days


# ---------------------------------------------------------------------------------------------
# The IBM Telco file (imported by data.importers.import_telco)
# ---------------------------------------------------------------------------------------------

TELCO_NUMERIC: tuple[str, ...] = ("tenure_months", "monthly_charges", "total_charges", "senior_citizen",
                                  "is_autopay", "is_paperless")
TELCO_CATEGORICAL: tuple[str, ...] = ("gender", "partner", "dependents", "phone_service", "multiple_lines",
                                      "internet_service", "online_security", "online_backup",
                                      "device_protection", "tech_support", "streaming_tv",
                                      "streaming_movies", "contract", "payment_method")

_TELCO_SQL = """
WITH attrs AS (
    SELECT customer_id,
           max(value) FILTER (WHERE name = 'gender') AS gender,
           max(value) FILTER (WHERE name = 'senior_citizen') AS senior_citizen,
           max(value) FILTER (WHERE name = 'partner') AS partner,
           max(value) FILTER (WHERE name = 'dependents') AS dependents,
           max(value) FILTER (WHERE name = 'tenure_months') AS tenure_months,
           max(value) FILTER (WHERE name = 'phone_service') AS phone_service,
           max(value) FILTER (WHERE name = 'multiple_lines') AS multiple_lines,
           max(value) FILTER (WHERE name = 'internet_service') AS internet_service,
           max(value) FILTER (WHERE name = 'online_security') AS online_security,
           max(value) FILTER (WHERE name = 'online_backup') AS online_backup,
           max(value) FILTER (WHERE name = 'device_protection') AS device_protection,
           max(value) FILTER (WHERE name = 'tech_support') AS tech_support,
           max(value) FILTER (WHERE name = 'streaming_tv') AS streaming_tv,
           max(value) FILTER (WHERE name = 'streaming_movies') AS streaming_movies,
           max(value) FILTER (WHERE name = 'contract') AS contract,
           max(value) FILTER (WHERE name = 'payment_method') AS payment_method,
           max(value) FILTER (WHERE name = 'monthly_charges_cents') AS monthly_charges_cents,
           max(value) FILTER (WHERE name = 'total_charges_cents') AS total_charges_cents
    FROM customer_attributes GROUP BY customer_id
),
final AS (
    SELECT c.customer_id, a.*  EXCLUDE (customer_id),
           CAST(c.is_autopay AS INTEGER) AS is_autopay, CAST(c.is_paperless AS INTEGER) AS is_paperless,
           c.churned_on IS NOT NULL AS churned
    FROM customers c JOIN attrs a USING (customer_id)
)
SELECT * FROM final ORDER BY customer_id
"""


def telco_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The IBM Telco churn sample, as imported, in the shape the churn model takes.

    Returns
    -------
    pandas.DataFrame
        One row per imported customer: ``customer_id``, :data:`TELCO_NUMERIC`,
        :data:`TELCO_CATEGORICAL` and ``churned`` (bool).

    Notes
    -----
    The adapter: every attribute of ``customer_attributes`` the importer wrote becomes a feature;
    money in cents becomes ``monthly_charges`` and ``total_charges`` in currency units
    (``total_charges`` is missing for the 11 customers with tenure 0, left missing for the model's
    imputer); ``senior_citizen`` Yes/No becomes 1/0; autopay and paperless come from the customer
    row. The label is the file's ``Churn`` (the importer ends churned customers at the snapshot,
    so ``churned_on`` is set). The file is one cross-section: this is a held-out-split benchmark,
    not a time-based one.
    """
    df = con.execute(_TELCO_SQL).df()
    out = pd.DataFrame({"customer_id": df["customer_id"].astype("int64")})
    out["tenure_months"] = pd.to_numeric(df["tenure_months"], errors="coerce")
    out["monthly_charges"] = pd.to_numeric(df["monthly_charges_cents"], errors="coerce") / 100.0
    out["total_charges"] = pd.to_numeric(df["total_charges_cents"], errors="coerce") / 100.0
    out["senior_citizen"] = np.where(df["senior_citizen"].eq("Yes"), 1.0, 0.0)
    out["is_autopay"] = df["is_autopay"].astype(float)
    out["is_paperless"] = df["is_paperless"].astype(float)
    for col in TELCO_CATEGORICAL:
        out[col] = df[col].astype(object)
    out["churned"] = df["churned"].astype(bool)
    return out
