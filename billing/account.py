"""Read-only account queries: balances, open invoices, overdue ageing, overdue customers.

Used by the agent desk, the CLI and :mod:`billing.end_for_non_payment`. Nothing here writes.
Balances come from the ``invoice_balances`` view (``data/schema.sql``): settled payments settle the
oldest invoices first (FIFO by issue date, then invoice number), and what exceeds every invoice is
the customer's credit balance, which settles the next invoices as they are issued.

The book-wide readers (:func:`overdue_ageing`, :func:`overdue_customers` and the non-payment run)
do not run the view's allocation window over every invoice ever issued: :func:`open_balances_cte`
gives the same balances for the only invoices that can still be open (see its Notes), and
tests/billing/test_account_fast_path.py checks it against the view.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pandas as pd

# Ageing buckets by days past due (as_of - due_on). "current" = open but not yet past due.
AGEING_BUCKETS = (
    ("current", None, 0),
    ("1-30", 1, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("90+", 91, None),
)


@dataclass(frozen=True)
class CustomerBalance:
    """One customer's money position (all amounts in cents of ``currency``).

    Attributes
    ----------
    customer_id : int
    currency : str
    invoiced_cents : int
        Sum of the totals of the customer's finalized invoices.
    credited_cents : int
        Sum of the credit notes issued against them.
    paid_cents : int
        Sum of the customer's settled payments (failed attempts excluded).
    open_balance_cents : int
        What the customer still owes: sum of the invoices' balances.
    credit_balance_cents : int
        Settled payments beyond everything due; it settles the next invoices.
    overdue_cents : int or None
        Open balance of invoices whose due date is before ``as_of`` (None when no ``as_of``).
    overdue_invoices : int or None
        How many such invoices.
    overdue_periods : int or None
        How many distinct billing periods they cover.
    as_of : datetime.date or None
    failed_payments : int
        Failed payment attempts recorded.
    """

    customer_id: int
    currency: str
    invoiced_cents: int
    credited_cents: int
    paid_cents: int
    open_balance_cents: int
    credit_balance_cents: int
    overdue_cents: int | None
    overdue_invoices: int | None
    overdue_periods: int | None
    as_of: dt.date | None
    failed_payments: int

    @property
    def net_position_cents(self) -> int:
        """Open balance minus credit balance: positive = the customer owes, negative = we owe."""
        return self.open_balance_cents - self.credit_balance_cents


_BALANCE_SQL = """
WITH cust AS (
    SELECT customer_id, currency FROM customers WHERE customer_id = $cid
),
inv AS (
    SELECT coalesce(sum(total_cents), 0) AS invoiced_cents,
           coalesce(sum(credited_cents), 0) AS credited_cents,
           coalesce(sum(due_cents), 0) AS due_cents,
           coalesce(sum(balance_cents), 0) AS open_balance_cents,
           coalesce(sum(balance_cents) FILTER (WHERE balance_cents > 0 AND due_on < $as_of), 0)
               AS overdue_cents,
           count(*) FILTER (WHERE balance_cents > 0 AND due_on < $as_of) AS overdue_invoices,
           count(DISTINCT period_start) FILTER (WHERE balance_cents > 0 AND due_on < $as_of)
               AS overdue_periods
    FROM invoice_balances WHERE customer_id = $cid
),
pay AS (
    SELECT coalesce(sum(amount_cents) FILTER (WHERE status = 'settled'), 0) AS paid_cents,
           count(*) FILTER (WHERE status = 'failed') AS failed_payments
    FROM payments WHERE customer_id = $cid
),
final AS (
    SELECT cust.customer_id, cust.currency, inv.invoiced_cents, inv.credited_cents, pay.paid_cents,
           inv.open_balance_cents,
           greatest(0, pay.paid_cents - inv.due_cents) AS credit_balance_cents,
           inv.overdue_cents, inv.overdue_invoices, inv.overdue_periods, pay.failed_payments
    FROM cust, inv, pay
)
SELECT * FROM final
"""


# How far back (days before the bound) the allocation window looks first; a customer whose unpaid
# amount is not covered by the invoices issued since then gets the window over the whole history.
RECENT_DAYS = 100


def open_balances_cte(issued_before_sql: str, customers_sql: str | None = None) -> str:
    """SQL of CTEs ending in ``open_balances``: the ``invoice_balances`` rows of the invoices that may
    still be open among those issued before a bound (the FIFO window over few invoices, not all).

    Parameters
    ----------
    issued_before_sql : str
        A SQL expression (a code constant, never user input) of the exclusive bound on ``issued_on``
        of the invoices the caller asks about, e.g. ``"CAST($as_of AS DATE)"``.
    customers_sql : str, optional
        A SQL query (a code constant) of the only customer_ids the caller asks about; without it,
        every customer.

    Returns
    -------
    str
        ``name AS (...), ..., open_balances AS (...)`` to follow ``WITH``; ``open_balances`` has the
        view's columns. Every invoice issued before the bound with a positive balance in the view
        is in it, with the view's figures; an invoice left out has balance 0 or was issued later
        (every invoice of an irregular customer, see Notes, is in it).

    Notes
    -----
    Per customer, ``P`` = settled payments, ``D`` = sum of ``due`` over finalized invoices and, in the
    view's order, ``before_i`` = sum of ``due`` of the invoices before invoice ``i``:
    ``paid_i = least(due_i, greatest(0, P - before_i))``, so invoice ``i`` is open iff ``due_i > 0``
    and ``before_i + due_i > P``.

    1. Candidates: a customer can have an open invoice issued before the bound only if the dues of
       the invoices issued before the bound exceed ``P`` (every invoice before such an invoice in
       the view's order was issued before the bound too). Irregular customers, with a negative due
       (credited beyond the total) or a due date before an issue date (an overdue invoice issued
       after the bound), are always candidates and get the full window. The engine and the
       importers write neither.
    2. Recent window: when dues are not negative, the open invoices are the newest ones whose dues
       reach the unpaid amount ``D - P``; if the invoices issued in the last :data:`RECENT_DAYS`
       days before the bound (a suffix of the order) reach it, older invoices are fully paid and
       ``before_i = D - (due of i and every later invoice)`` needs only the recent ones. Otherwise
       (or when irregular) the window covers the customer's whole history.
    """
    recent = f"({issued_before_sql} - {RECENT_DAYS})"
    order_key = "(CAST(date_diff('day', DATE '1970-01-01', issued_on) AS BIGINT) * 1099511627776 + invoice_id)"
    window_rows = """SELECT i.invoice_id, i.customer_id, i.subscription_id, i.period_start, i.issued_on, i.due_on,
           i.total_cents, coalesce(c.credited_cents, 0) AS credited_cents,
           i.total_cents - coalesce(c.credited_cents, 0) AS due_cents, k.due_total_cents, k.customer_paid_cents
    FROM invoices i JOIN fp_window k USING (customer_id) LEFT JOIN fp_credited c USING (invoice_id)
    WHERE i.status = 'finalized' AND {rows}"""
    only = f"WHERE customer_id IN ({customers_sql})" if customers_sql else ""
    return f"""
fp_credited AS (
    SELECT invoice_id, CAST(sum(total_cents) AS BIGINT) AS credited_cents
    FROM credit_notes GROUP BY invoice_id
),
fp_paid AS (
    SELECT customer_id, CAST(sum(amount_cents) AS BIGINT) AS paid_cents
    FROM payments WHERE status = 'settled' GROUP BY customer_id
),
fp_reach AS (
    SELECT customer_id, sum(total_cents) AS total_cents
    FROM invoices WHERE status = 'finalized' AND issued_on < {issued_before_sql} GROUP BY customer_id
),
fp_credited_customer AS (
    SELECT i.customer_id,
           sum(c.credited_cents) AS credited_cents,
           coalesce(sum(c.credited_cents) FILTER (WHERE i.issued_on < {issued_before_sql}), 0)
               AS reach_credited_cents,
           coalesce(sum(c.credited_cents) FILTER (WHERE i.issued_on >= {recent}), 0) AS recent_credited_cents,
           bool_or(c.credited_cents > i.total_cents) AS is_irregular
    FROM fp_credited c JOIN invoices i USING (invoice_id)
    WHERE i.status = 'finalized' GROUP BY i.customer_id
),
fp_irregular AS (
    SELECT DISTINCT customer_id FROM invoices WHERE status = 'finalized' AND due_on < issued_on
    UNION
    SELECT customer_id FROM fp_credited_customer WHERE is_irregular
),
fp_candidate_id AS (
    SELECT customer_id FROM (
        SELECT r.customer_id
        FROM fp_reach r LEFT JOIN fp_credited_customer c USING (customer_id) LEFT JOIN fp_paid p USING (customer_id)
        WHERE r.total_cents - coalesce(c.reach_credited_cents, 0) > coalesce(p.paid_cents, 0)
        UNION
        SELECT customer_id FROM fp_irregular
    ) {only}
),
fp_late AS (
    SELECT customer_id,
           sum(total_cents) AS recent_total_cents,
           coalesce(sum(total_cents) FILTER (WHERE issued_on >= {issued_before_sql}), 0) AS after_total_cents,
           -- the latest invoice before the bound in the view's order (issued_on, invoice_id), by a
           -- numeric key (days * 2^40 + id; struct keys aggregate several times slower)
           arg_max(invoice_id, {order_key}) FILTER (WHERE issued_on < {issued_before_sql}) AS last_invoice_id,
           arg_max(total_cents, {order_key}) FILTER (WHERE issued_on < {issued_before_sql}) AS last_total_cents
    FROM invoices
    WHERE status = 'finalized' AND issued_on >= {recent}
      AND customer_id IN (SELECT customer_id FROM fp_candidate_id)
    GROUP BY customer_id
),
fp_customer AS (
    SELECT k.customer_id,
           coalesce(r.total_cents, 0) + coalesce(l.after_total_cents, 0) - coalesce(c.credited_cents, 0)
               AS due_total_cents,
           coalesce(r.total_cents, 0) - coalesce(c.reach_credited_cents, 0) AS reach_due_cents,
           coalesce(l.recent_total_cents, 0) - coalesce(c.recent_credited_cents, 0) AS recent_due_cents,
           k.customer_id IN (SELECT customer_id FROM fp_irregular) AS is_irregular,
           coalesce(p.paid_cents, 0) AS customer_paid_cents,
           l.last_invoice_id, l.last_total_cents
    FROM fp_candidate_id k LEFT JOIN fp_reach r USING (customer_id) LEFT JOIN fp_late l USING (customer_id)
    LEFT JOIN fp_credited_customer c USING (customer_id) LEFT JOIN fp_paid p USING (customer_id)
),
fp_candidate AS (
    SELECT f.customer_id, f.due_total_cents, f.customer_paid_cents, f.last_invoice_id,
           coalesce(lc.credited_cents, 0) AS last_credited_cents,
           f.last_total_cents - coalesce(lc.credited_cents, 0) AS last_due_cents,
           f.reach_due_cents - f.customer_paid_cents AS reach_unpaid_cents,
           f.is_irregular OR f.recent_due_cents < f.due_total_cents - f.customer_paid_cents AS is_full_history,
           NOT f.is_irregular AND f.last_invoice_id IS NOT NULL
               AND f.last_total_cents - coalesce(lc.credited_cents, 0) >= f.reach_due_cents - f.customer_paid_cents
               AS is_last_only
    FROM fp_customer f LEFT JOIN fp_credited lc ON lc.invoice_id = f.last_invoice_id
),
fp_last_only AS (
    -- the common case: the latest invoice before the bound covers what is unpaid, so it is the only
    -- open one and its balance is that unpaid amount (no allocation window needed)
    SELECT i.invoice_id, i.customer_id, i.subscription_id, i.period_start, i.issued_on, i.due_on,
           i.total_cents, k.last_credited_cents AS credited_cents, k.last_due_cents AS due_cents,
           CAST(k.last_due_cents - k.reach_unpaid_cents AS BIGINT) AS paid_cents
    FROM invoices i JOIN fp_candidate k ON k.last_invoice_id = i.invoice_id AND k.customer_id = i.customer_id
    WHERE k.is_last_only AND i.issued_on >= {recent}
),
fp_window AS (
    SELECT * FROM fp_candidate WHERE NOT is_last_only
),
fp_due AS (
    -- recent invoices of customers whose recent ones cover the unpaid amount, all of the others'
    {window_rows.format(rows=f"NOT k.is_full_history AND i.issued_on >= {recent}")}
    UNION ALL
    {window_rows.format(rows="k.is_full_history")}
),
fp_ordered AS (
    SELECT *,
           CAST(due_total_cents - sum(due_cents) OVER (
               PARTITION BY customer_id ORDER BY issued_on, invoice_id
               ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS BIGINT) AS due_before_cents
    FROM fp_due
),
fp_final AS (
    SELECT invoice_id, customer_id, subscription_id, period_start, issued_on, due_on, total_cents,
           credited_cents, due_cents,
           CAST(least(due_cents, greatest(0, customer_paid_cents - due_before_cents)) AS BIGINT) AS paid_cents
    FROM fp_ordered
    UNION ALL
    SELECT * FROM fp_last_only
),
open_balances AS (
    SELECT *, due_cents - paid_cents AS balance_cents FROM fp_final
)"""


# Group-bys by customer over the whole book (millions of rows, up to a million customers) run as
# perfect hash aggregates (an array indexed by customer_id) when the id range fits in this many bits.
PERFECT_HASH_BITS = 21


@contextlib.contextmanager
def customer_group_by(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block with DuckDB's ``perfect_ht_threshold`` raised to :data:`PERFECT_HASH_BITS`, then
    put the connection's setting back.

    Notes
    -----
    A speed setting only (same results): DuckDB groups by an integer key whose range, known from
    the table's statistics, fits in that many bits with a perfect hash table (one slot per key,
    at most 2**21 slots) instead of a general one; wider ranges use the general one as before.
    Grouping 15 M payments by a million customers takes about a fifth of the CPU.
    """
    old = con.execute("SELECT current_setting('perfect_ht_threshold')").fetchall()[0][0]
    con.execute(f"SET perfect_ht_threshold = {int(PERFECT_HASH_BITS)}")
    try:
        yield con
    finally:
        con.execute(f"SET perfect_ht_threshold = {int(old)}")


_ISSUED_BY_AS_OF = "(CAST($as_of AS DATE) + 1)"     # issued on or before as_of
_ISSUED_BEFORE_AS_OF = "CAST($as_of AS DATE)"        # due before as_of implies issued before it


def customer_balance(con: duckdb.DuckDBPyConnection, customer_id: int, *,
                     as_of: dt.date | None = None) -> CustomerBalance | None:
    """The customer's invoiced, credited and paid totals, open and credit balance, overdue amount.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customer_id : int
    as_of : datetime.date, optional
        The day overdue is judged on; without it the overdue fields are None.

    Returns
    -------
    CustomerBalance or None
        None when there is no such customer.

    Notes
    -----
    ``open_balance = sum(invoice balance)``; ``credit_balance = max(0, settled payments - sum(due))``
    where ``due = total - credited`` per invoice; hence
    ``invoiced - credited - paid = open_balance - credit_balance``. Overdue: balance > 0 and
    ``due_on < as_of``. Balances reflect every payment and credit note recorded so far.
    """
    rows = con.execute(_BALANCE_SQL, {"cid": int(customer_id),
                                      "as_of": as_of or dt.date(1, 1, 1)}).fetchall()
    if not rows:
        return None
    (cid, currency, invoiced, credited, paid, open_balance, credit_balance, overdue, n_overdue,
     n_periods, failed) = rows[0]
    known = as_of is not None
    return CustomerBalance(
        customer_id=int(cid), currency=currency, invoiced_cents=int(invoiced),
        credited_cents=int(credited), paid_cents=int(paid), open_balance_cents=int(open_balance),
        credit_balance_cents=int(credit_balance),
        overdue_cents=int(overdue) if known else None,
        overdue_invoices=int(n_overdue) if known else None,
        overdue_periods=int(n_periods) if known else None,
        as_of=as_of, failed_payments=int(failed))


def open_invoices(con: duckdb.DuckDBPyConnection, customer_id: int, *, as_of: dt.date) -> pd.DataFrame:
    """The customer's invoices with something left to pay, oldest first.

    Returns
    -------
    pandas.DataFrame
        One row per open invoice issued on or before ``as_of``: invoice_id, period_start, issued_on,
        due_on, total_cents, credited_cents, paid_cents, balance_cents, days_past_due (0 when not
        yet due), is_overdue.

    Notes
    -----
    Open: ``balance_cents > 0``. Overdue: open and ``due_on < as_of``;
    ``days_past_due = max(0, as_of - due_on)``.
    """
    return con.execute("""
        WITH open_inv AS (
            SELECT * FROM invoice_balances
            WHERE customer_id = $cid AND balance_cents > 0 AND issued_on <= $as_of
        ),
        final AS (
            SELECT invoice_id, subscription_id, period_start, issued_on, due_on, total_cents,
                   credited_cents, paid_cents, balance_cents,
                   CAST(greatest(0, date_diff('day', due_on, CAST($as_of AS DATE))) AS INTEGER)
                       AS days_past_due,
                   due_on < $as_of AS is_overdue
            FROM open_inv
        )
        SELECT * FROM final ORDER BY issued_on, invoice_id
    """, {"cid": int(customer_id), "as_of": as_of}).df()


def overdue_ageing(con: duckdb.DuckDBPyConnection, *, as_of: dt.date) -> pd.DataFrame:
    """Open receivables by how long they are past due.

    Returns
    -------
    pandas.DataFrame
        One row per bucket, always all five in order (``current``, ``1-30``, ``31-60``, ``61-90``,
        ``90+``): bucket, min_days, max_days, invoice_count, customer_count, amount_cents.

    Notes
    -----
    Over open invoices (balance > 0) issued on or before ``as_of``;
    ``days_past_due = as_of - due_on``: ``current`` when <= 0 (not yet due), otherwise the bucket
    whose inclusive day range holds it. ``amount_cents`` sums the open balances.
    """
    with customer_group_by(con):
        return _ageing(con, "WITH " + open_balances_cte(_ISSUED_BY_AS_OF) + ",", as_of)


_AGEING_TAIL = """
open_inv AS (
    SELECT customer_id, balance_cents, date_diff('day', due_on, CAST($as_of AS DATE)) AS days_past_due
    FROM open_balances WHERE balance_cents > 0 AND issued_on <= $as_of
),
bucketed AS (
    SELECT b.bucket_order, o.customer_id, o.balance_cents
    FROM open_inv o JOIN _ageing_buckets b
      ON o.days_past_due >= coalesce(b.min_days, -2147483648)
     AND o.days_past_due <= coalesce(b.max_days, 2147483647)
),
final AS (
    SELECT b.bucket, CAST(b.min_days AS INTEGER) AS min_days, CAST(b.max_days AS INTEGER) AS max_days,
           count(x.balance_cents) AS invoice_count,
           count(DISTINCT x.customer_id) AS customer_count,
           CAST(coalesce(sum(x.balance_cents), 0) AS BIGINT) AS amount_cents,
           b.bucket_order
    FROM _ageing_buckets b LEFT JOIN bucketed x USING (bucket_order)
    GROUP BY ALL
)
SELECT * EXCLUDE (bucket_order) FROM final ORDER BY bucket_order
"""


def _ageing(con: duckdb.DuckDBPyConnection, head: str, as_of: dt.date) -> pd.DataFrame:
    """The ageing buckets over ``open_balances`` as defined by ``head`` (``WITH ...,``)."""
    buckets = pd.DataFrame(
        [(i, name, lo, hi) for i, (name, lo, hi) in enumerate(AGEING_BUCKETS)],
        columns=["bucket_order", "bucket", "min_days", "max_days"])
    con.register("_ageing_buckets", buckets)
    try:
        return con.execute(head + _AGEING_TAIL, {"as_of": as_of}).df()
    finally:
        con.unregister("_ageing_buckets")


# A customer with invoices overdue in this many distinct billing periods has their subscription ended
# for non-payment (billing.end_for_non_payment).
MIN_OVERDUE_PERIODS = 2


@dataclass(frozen=True)
class Receivables:
    """What the book is owed on a day: the ageing buckets and the customers with overdue invoices.

    Attributes
    ----------
    as_of : datetime.date
    ageing : pandas.DataFrame
        As :func:`overdue_ageing`.
    overdue_customers : pandas.DataFrame
        As :func:`overdue_customers` with ``min_periods``.
    min_periods : int
    computed_at : datetime.datetime or None
        When the figures were computed, for a snapshot stored by
        :func:`billing.snapshot_receivables.snapshot_receivables`; None when computed by this call.
    """

    as_of: dt.date
    ageing: pd.DataFrame
    overdue_customers: pd.DataFrame
    min_periods: int
    computed_at: dt.datetime | None = None

    @property
    def n_to_end(self) -> int:
        """Overdue customers whose subscription ends for non-payment unless they pay: overdue in at
        least :data:`MIN_OVERDUE_PERIODS` periods."""
        late = self.overdue_customers
        return int((late["overdue_periods"] >= MIN_OVERDUE_PERIODS).sum()) if len(late) else 0


def receivables(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, min_periods: int = 1) -> Receivables:
    """:func:`overdue_ageing` and :func:`overdue_customers` from one computation of the open balances.

    Notes
    -----
    Same definitions as the two functions. The open invoices issued on or before ``as_of`` are
    allocated once (into a temporary table of this connection) and both summaries are read from
    them: an invoice overdue on ``as_of`` (``due_on < as_of``) was issued before it, so it is among
    them, and an invoice's balance does not depend on the day asked about.
    """
    params = {"as_of": as_of, "min_periods": int(min_periods)}
    with customer_group_by(con):
        con.execute("CREATE OR REPLACE TEMP TABLE _open_receivables AS WITH "
                    + open_balances_cte(_ISSUED_BY_AS_OF)
                    + " SELECT * FROM open_balances WHERE balance_cents > 0", {"as_of": as_of})
    try:
        head = "WITH open_balances AS (SELECT * FROM _open_receivables),"
        ageing = _ageing(con, head, as_of)
        late = con.execute(head.rstrip(",") + _OVERDUE_CUSTOMERS_TAIL
                           + " ORDER BY overdue_periods DESC, customer_id", params).df()
    finally:
        con.execute("DROP TABLE IF EXISTS _open_receivables")
    return Receivables(as_of=as_of, ageing=ageing, overdue_customers=late, min_periods=int(min_periods))


def overdue_customers_sql(customers_sql: str | None = None) -> str:
    """SQL of :func:`overdue_customers` (parameters ``$as_of``, ``$min_periods``), optionally only
    for the customer_ids of the query ``customers_sql`` (a code constant)."""
    return "WITH " + open_balances_cte(_ISSUED_BEFORE_AS_OF, customers_sql) + _OVERDUE_CUSTOMERS_TAIL


# Whether customer ``p`` has a subscription that is still open, now (subscriptions are ended in place,
# so the stored snapshots of billing.snapshot_receivables read this live too).
HAS_OPEN_SUBSCRIPTION_SQL = ("EXISTS (SELECT 1 FROM subscriptions s "
                             "WHERE s.customer_id = p.customer_id AND s.end_date IS NULL)")

_OVERDUE_CUSTOMERS_TAIL = """,
overdue AS (
    SELECT customer_id, invoice_id, period_start, due_on, balance_cents
    FROM open_balances
    WHERE balance_cents > 0 AND due_on < $as_of
),
per_customer AS (
    SELECT customer_id,
           count(DISTINCT period_start) AS overdue_periods,
           count(*) AS overdue_invoices,
           CAST(sum(balance_cents) AS BIGINT) AS overdue_cents,
           min(due_on) AS oldest_due_on
    FROM overdue GROUP BY customer_id
),
final AS (
    SELECT p.customer_id, p.overdue_periods, p.overdue_invoices, p.overdue_cents, p.oldest_due_on,
           CAST(date_diff('day', p.oldest_due_on, CAST($as_of AS DATE)) AS INTEGER) AS max_days_past_due,
           """ + HAS_OPEN_SUBSCRIPTION_SQL + """ AS has_open_subscription
    FROM per_customer p
    WHERE p.overdue_periods >= $min_periods
)
SELECT * FROM final
"""

OVERDUE_CUSTOMERS_SQL = overdue_customers_sql()


def overdue_customers(con: duckdb.DuckDBPyConnection, *, as_of: dt.date,
                      min_periods: int = 2) -> pd.DataFrame:
    """Customers with unpaid invoices of at least ``min_periods`` distinct periods past due.

    Returns
    -------
    pandas.DataFrame
        One row per customer, most periods first: customer_id, overdue_periods, overdue_invoices,
        overdue_cents, oldest_due_on, max_days_past_due, has_open_subscription.

    Notes
    -----
    An invoice is overdue on ``as_of`` when its balance is positive and ``due_on < as_of``.
    Distinct periods, not invoices, count: a plan change makes two invoices for one period.
    This is the rule :func:`billing.end_for_non_payment.end_for_non_payment` applies with
    ``min_periods = 2``.
    """
    with customer_group_by(con):
        return con.execute(OVERDUE_CUSTOMERS_SQL + " ORDER BY overdue_periods DESC, customer_id",
                           {"as_of": as_of, "min_periods": int(min_periods)}).df()


def customer_payments(con: duckdb.DuckDBPyConnection, customer_id: int, *, as_of: dt.date,
                      limit: int = 24) -> pd.DataFrame:
    """The customer's payments received up to ``as_of``, newest first (settled and failed).

    Returns
    -------
    pandas.DataFrame
        One row per payment: payment_id, received_at, amount_cents, method, status, reference.
    """
    return con.execute("""
        SELECT payment_id, received_at, amount_cents, method, status, reference
        FROM payments
        WHERE customer_id = ? AND CAST(received_at AS DATE) <= ?
        ORDER BY received_at DESC, payment_id DESC
        LIMIT ?""", [customer_id, as_of, limit]).df()


def customer_contacts(con: duckdb.DuckDBPyConnection, customer_id: int, *, as_of: dt.date,
                      limit: int = 24) -> pd.DataFrame:
    """The customer's contacts with care up to ``as_of``, newest first.

    Returns
    -------
    pandas.DataFrame
        One row per contact: contact_id, contacted_at, channel, reason, wait_minutes, resolution,
        is_intent_to_cancel, agent (display name), offer granted at it (offer code, if any).
    """
    return con.execute("""
        WITH grants AS (
            SELECT g.contact_id, string_agg(o.code, ', ' ORDER BY g.grant_id) AS offers_granted
            FROM offer_grants g JOIN offers o USING (offer_id)
            WHERE g.customer_id = ? AND g.contact_id IS NOT NULL
            GROUP BY g.contact_id
        ),
        final AS (
            SELECT c.contact_id, c.contacted_at, c.channel, c.reason,
                   round(c.wait_seconds / 60.0, 1) AS wait_minutes, c.resolution, c.is_intent_to_cancel,
                   u.display_name AS agent, g.offers_granted
            FROM contacts c
            LEFT JOIN users u ON u.user_id = c.agent_id
            LEFT JOIN grants g USING (contact_id)
            WHERE c.customer_id = ? AND CAST(c.contacted_at AS DATE) <= ?
        )
        SELECT * FROM final ORDER BY contacted_at DESC, contact_id DESC LIMIT ?""",
                       [customer_id, customer_id, as_of, limit]).df()


def active_discounts(con: duckdb.DuckDBPyConnection, customer_id: int, *, as_of: dt.date) -> pd.DataFrame:
    """Discounts and credits of the customer that still affect a bill at ``as_of``.

    Returns
    -------
    pandas.DataFrame
        One row per grant: grant_id, offer (name), kind, percent_off, first_period, last_period,
        credit_cents, credit_left_cents, granted_at, assignment.

    Notes
    -----
    A percent or free-month grant is active while ``as_of``'s month is at most its last covered
    period (``first_period + cycles - 1`` months); a fixed credit while some of it is unused
    (credit minus the credit lines billed against it). Plan moves are not discounts.
    """
    return con.execute("""
        WITH used AS (
            SELECT l.grant_id, -sum(l.amount_cents) AS used_cents
            FROM invoice_lines l
            WHERE l.kind = 'credit' AND l.grant_id IN (SELECT grant_id FROM offer_grants WHERE customer_id = ?)
            GROUP BY l.grant_id
        ),
        grants AS (
            SELECT g.grant_id, o.name AS offer, g.kind, g.percent_off, g.first_period,
                   CAST(g.first_period + to_months(g.cycles - 1) AS DATE) AS last_period,
                   g.credit_cents, g.credit_cents - coalesce(u.used_cents, 0) AS credit_left_cents,
                   g.granted_at, g.assignment
            FROM offer_grants g JOIN offers o USING (offer_id) LEFT JOIN used u USING (grant_id)
            WHERE g.customer_id = ? AND CAST(g.granted_at AS DATE) <= ?
        ),
        final AS (
            SELECT * FROM grants
            WHERE (kind IN ('percent_off', 'free_months') AND last_period >= date_trunc('month', CAST(? AS DATE)))
               OR (kind = 'fixed_credit' AND credit_left_cents > 0)
        )
        SELECT * FROM final ORDER BY granted_at DESC, grant_id DESC""",
                       [customer_id, customer_id, as_of, as_of]).df()
