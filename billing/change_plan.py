"""Change plans: close the open subscription and open the next one on the new plan.

Bulk first: :func:`change_plans` validates and applies a DataFrame of changes with set-based SQL in
one transaction; :func:`change_plan` wraps a one-row frame; :func:`preview_plan_change` shows the
agent what the month of the change will cost (no writes). Proration needs no code here: the month
of a change has two subscriptions and :mod:`billing.run_billing` prorates each by its days.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pandas as pd

from billing.pricing import active_days, days_in_month, month_end, month_start, plan_charge
from billing.results import OK, Result, failure, success
from data.db import transaction
from data.money import format_cents

COLUMNS = ("row", "customer_id", "code", "why_not", "message", "old_subscription_id",
           "new_subscription_id", "old_plan_id", "new_plan_id", "effective_date")

# One row per requested change (grain: the input row), with its outcome. Reads the registered frame
# _cp_in (row, customer_id, new_plan_id, effective_date, user_id). A plain SELECT, so a preview can
# run it on a read-only connection.
_VALIDATE_SQL = """
WITH req AS (
    SELECT CAST("row" AS BIGINT) AS "row", CAST(customer_id AS BIGINT) AS customer_id,
           CAST(new_plan_id AS INTEGER) AS new_plan_id, CAST(effective_date AS DATE) AS effective_date,
           CAST(user_id AS BIGINT) AS user_id
    FROM _cp_in
),
open_sub AS (
    SELECT r."row", s.subscription_id, s.plan_id, s.start_date
    FROM req r JOIN subscriptions s ON s.customer_id = r.customer_id AND s.end_date IS NULL
    QUALIFY row_number() OVER (PARTITION BY r."row" ORDER BY s.start_date DESC, s.subscription_id DESC) = 1
),
-- only invoices ending on or after the earliest effective date can refuse a change ($billed_from:
-- a constant, so the scan skips older row groups); billed_through is exact wherever it refuses one
billed AS (
    SELECT o."row", max(i.period_end) AS billed_through
    FROM open_sub o JOIN invoices i ON i.subscription_id = o.subscription_id
    WHERE i.period_end >= $billed_from
    GROUP BY o."row"
),
checked AS (
    SELECT r.*, o.subscription_id AS old_subscription_id, o.plan_id AS old_plan_id, o.start_date,
           b.billed_through,
           CASE
               WHEN r.customer_id IS NULL OR r.new_plan_id IS NULL OR r.effective_date IS NULL
                   THEN 'missing_value'
               WHEN cu.customer_id IS NULL THEN 'customer_not_found'
               WHEN p.plan_id IS NULL THEN 'plan_not_found'
               WHEN o."row" IS NULL THEN 'no_open_subscription'
               WHEN NOT p.is_active THEN 'plan_inactive'
               WHEN o.plan_id = r.new_plan_id THEN 'same_plan'
               WHEN NOT EXISTS (SELECT 1 FROM plan_prices pp WHERE pp.plan_id = r.new_plan_id
                                AND pp.effective_from <= CAST(date_trunc('month', r.effective_date) AS DATE))
                   THEN 'plan_not_priced'
               WHEN r.effective_date < o.start_date THEN 'before_start'
               WHEN b.billed_through >= r.effective_date THEN 'already_billed'
           END AS why_first,
           p.name AS new_plan_name
    FROM req r
    LEFT JOIN customers cu ON cu.customer_id = r.customer_id
    LEFT JOIN plans p ON p.plan_id = r.new_plan_id
    LEFT JOIN open_sub o USING ("row")
    LEFT JOIN billed b USING ("row")
),
-- a second valid request for the same customer in one call is refused (apply it in a later call)
deduplicated AS (
    SELECT * EXCLUDE (why_first),
           coalesce(why_first,
                    CASE WHEN row_number() OVER (PARTITION BY customer_id, why_first IS NULL ORDER BY "row") > 1
                         THEN 'duplicate_customer' END) AS why_not
    FROM checked
),
final AS (
    SELECT *,
           CASE
               WHEN why_not IS NULL THEN 'ok'
               WHEN why_not IN ('customer_not_found', 'plan_not_found', 'no_open_subscription') THEN 'not_found'
               WHEN why_not = 'already_billed' THEN 'already_billed'
               ELSE 'invalid_input'
           END AS code,
           -- a change on the open subscription's first day switches its plan in place (it has served
           -- no day on the old plan, and a subscription cannot end before it starts)
           coalesce(why_not IS NULL AND effective_date = start_date, FALSE) AS in_place,
           CASE why_not
               WHEN 'missing_value' THEN 'customer, new plan and effective date are required'
               WHEN 'customer_not_found' THEN 'customer ' || customer_id || ' does not exist'
               WHEN 'plan_not_found' THEN 'plan ' || new_plan_id || ' does not exist'
               WHEN 'duplicate_customer' THEN 'only one plan change per customer in one request'
               WHEN 'no_open_subscription' THEN 'the customer has no open subscription to change'
               WHEN 'plan_inactive' THEN 'plan ' || new_plan_name || ' is no longer sold'
               WHEN 'same_plan' THEN 'the customer is already on ' || new_plan_name
               WHEN 'plan_not_priced' THEN 'plan ' || new_plan_name || ' has no price for '
                   || strftime(effective_date, '%Y-%m')
               WHEN 'before_start' THEN 'the change would take effect before the subscription starts ('
                   || CAST(start_date AS VARCHAR) || ')'
               WHEN 'already_billed' THEN 'the subscription is invoiced through '
                   || CAST(billed_through AS VARCHAR) || '; a change must take effect after that'
               ELSE 'plan changed to ' || new_plan_name || ' from ' || CAST(effective_date AS VARCHAR)
           END AS message
    FROM deduplicated
)
SELECT * FROM final ORDER BY "row"
"""


def _changes_frame(changes: pd.DataFrame, *, user_id: int | None) -> pd.DataFrame:
    """The typed frame the query reads; raises ValueError for a missing column (a caller's bug)."""
    missing = [c for c in ("customer_id", "new_plan_id", "effective_date") if c not in changes.columns]
    if missing:
        raise ValueError(f"changes need columns: {', '.join(missing)}")
    n = len(changes)
    users = (changes["user_id"].reset_index(drop=True) if "user_id" in changes.columns
             else pd.Series([user_id] * n, dtype=object))
    return pd.DataFrame({
        "row": range(n),
        "customer_id": pd.array(changes["customer_id"].reset_index(drop=True), dtype="Int64"),
        "new_plan_id": pd.array(changes["new_plan_id"].reset_index(drop=True), dtype="Int64"),
        "effective_date": pd.to_datetime(changes["effective_date"].reset_index(drop=True)).dt.normalize(),
        "user_id": pd.array(users, dtype="Int64"),
    })


def _validate(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, *, into: str | None = None):
    """Run the validation over a typed frame: a DataFrame, or with ``into`` a temp table."""
    earliest = frame["effective_date"].min()
    params = {"billed_from": None if pd.isna(earliest) else earliest.date()}
    con.register("_cp_in", frame)
    try:
        if into is None:
            return con.execute(_VALIDATE_SQL, params).df()
        con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS {_VALIDATE_SQL}", params)
        return None
    finally:
        con.unregister("_cp_in")


def _apply(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, *, at: dt.datetime) -> pd.DataFrame:
    """Validate and write the valid changes; the caller holds the transaction.

    ``frame`` is typed by :func:`_changes_frame`, its ``row`` values are returned unchanged (a caller
    such as billing.grant_offer may pass its own row numbers).
    """
    _validate(con, frame, into="_cp")
    try:
        base = con.execute("SELECT coalesce(max(subscription_id), 0) FROM subscriptions").fetchall()[0][0]
        # new subscriptions are numbered max + row_number over the rows that open one (gap-free)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _cp_ids AS
            SELECT "row",
                   CASE WHEN in_place THEN old_subscription_id
                        ELSE ? + row_number() OVER (PARTITION BY in_place ORDER BY "row") END
                       AS new_subscription_id
            FROM _cp WHERE code = 'ok'
        """, [base])
        con.execute("""
            UPDATE subscriptions SET end_date = CAST(c.effective_date - INTERVAL 1 DAY AS DATE),
                                     end_reason = 'plan_change'
            FROM _cp c
            WHERE c.code = 'ok' AND NOT c.in_place AND subscriptions.subscription_id = c.old_subscription_id
        """)
        con.execute("""
            UPDATE subscriptions SET plan_id = c.new_plan_id
            FROM _cp c
            WHERE c.code = 'ok' AND c.in_place AND subscriptions.subscription_id = c.old_subscription_id
        """)
        con.execute("""
            INSERT INTO subscriptions (subscription_id, customer_id, plan_id, start_date, previous_subscription_id)
            SELECT i.new_subscription_id, c.customer_id, c.new_plan_id, c.effective_date, c.old_subscription_id
            FROM _cp c JOIN _cp_ids i USING ("row")
            WHERE NOT c.in_place
            ORDER BY i.new_subscription_id
        """)
        # people's changes are audited (user_id null = the system, e.g. the simulator)
        con.execute("""
            INSERT INTO audit_log
            SELECT (SELECT coalesce(max(audit_id), 0) FROM audit_log) + row_number() OVER (ORDER BY c."row"),
                   CAST(? AS TIMESTAMP), c.user_id, 'change_plan', 'subscription',
                   CAST(i.new_subscription_id AS VARCHAR),
                   to_json({'customer_id': c.customer_id, 'effective_date': c.effective_date,
                            'from_plan_id': c.old_plan_id, 'in_place': c.in_place,
                            'old_subscription_id': c.old_subscription_id, 'to_plan_id': c.new_plan_id})
            FROM _cp c JOIN _cp_ids i USING ("row")
            WHERE c.user_id IS NOT NULL
        """, [at])
        out = con.execute("""
            SELECT c."row", c.customer_id, c.code, c.why_not, c.message, c.old_subscription_id,
                   i.new_subscription_id, c.old_plan_id, c.new_plan_id, c.effective_date
            FROM _cp c LEFT JOIN _cp_ids i USING ("row") ORDER BY c."row"
        """).df()
    finally:
        con.execute("DROP TABLE IF EXISTS _cp")
        con.execute("DROP TABLE IF EXISTS _cp_ids")
    return out


def change_plans(con: duckdb.DuckDBPyConnection, changes: pd.DataFrame, *, at: dt.datetime,
                 user_id: int | None = None) -> pd.DataFrame:
    """Move customers to new plans from an effective date, in one transaction.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    changes : pandas.DataFrame
        One row per change: ``customer_id``, ``new_plan_id``, ``effective_date`` (the first day on
        the new plan); optionally ``user_id`` per row (overrides the ``user_id`` argument).
    at : datetime.datetime
        When the change is made (recorded in the audit log).
    user_id : int, optional
        users.user_id of who makes the changes; audited when given (None = the system).

    Returns
    -------
    pandas.DataFrame
        One row per change in input order: ``row``, ``customer_id``, ``code`` (``ok``,
        ``not_found``, ``invalid_input``, ``already_billed``), ``why_not`` (null, or
        ``missing_value``, ``customer_not_found``, ``plan_not_found``, ``duplicate_customer``,
        ``no_open_subscription``, ``plan_inactive``, ``same_plan``, ``plan_not_priced``,
        ``before_start``, ``already_billed``), ``message``, ``old_subscription_id``,
        ``new_subscription_id``, ``old_plan_id``, ``new_plan_id``, ``effective_date``.
        Only the ``ok`` rows are written.

    Raises
    ------
    ValueError
        When a required column is missing (a caller's bug).

    Notes
    -----
    The open subscription (``end_date IS NULL``) is closed on ``effective_date - 1`` with
    end_reason ``plan_change`` and a new one opens on ``effective_date`` with
    ``previous_subscription_id`` pointing back. When ``effective_date`` is the open subscription's
    start date (e.g. a second change on the same day) the open subscription's plan is switched in
    place instead: it has served no day on the old plan, and a subscription cannot end before it
    starts; ``new_subscription_id`` is then the same subscription. Refused: no open subscription,
    the same plan, an unknown or withdrawn plan, a plan with no price for the month of
    ``effective_date``, a date before the open subscription starts, a date inside or before a
    period already invoiced for the subscription (``already_billed``), and a second change of the
    same customer in one call (apply it in a later call). Billing prorates the month of the change
    by the days of each subscription.
    """
    frame = _changes_frame(changes, user_id=user_id)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    with transaction(con):
        out = _apply(con, frame, at=at)
    return out


def change_plan(con: duckdb.DuckDBPyConnection, *, customer_id: int, new_plan_id: int,
                effective_date: dt.date, at: dt.datetime, user_id: int | None = None) -> Result:
    """Move one customer to a new plan from ``effective_date``; see :func:`change_plans`.

    Returns
    -------
    Result
        ``data``: old_subscription_id, new_subscription_id, effective_date; on failure the code of
        :func:`change_plans` with ``data['why_not']``.
    """
    out = change_plans(con, pd.DataFrame([{"customer_id": customer_id, "new_plan_id": new_plan_id,
                                           "effective_date": effective_date}]), at=at, user_id=user_id)
    r = out.iloc[0]
    if r["code"] != OK:
        return failure(r["code"], r["message"], why_not=r["why_not"])
    return success(r["message"], old_subscription_id=int(r["old_subscription_id"]),
                   new_subscription_id=int(r["new_subscription_id"]), effective_date=effective_date)


@dataclass(frozen=True)
class PlanChangePreview:
    """What the month of a plan change costs in plan charges (before discounts and tax), in cents."""

    customer_id: int
    period_start: dt.date
    period_end: dt.date
    effective_date: dt.date
    currency: str
    old_plan_id: int
    old_plan_name: str
    new_plan_id: int
    new_plan_name: str
    old_days: int
    new_days: int
    old_monthly_price_cents: int
    new_monthly_price_cents: int
    old_charge_cents: int
    new_charge_cents: int
    without_change_cents: int

    @property
    def total_cents(self) -> int:
        """Plan charges of the month with the change: old part + new part."""
        return self.old_charge_cents + self.new_charge_cents

    @property
    def difference_cents(self) -> int:
        """What the change adds to the month's plan charges (negative: saves)."""
        return self.total_cents - self.without_change_cents


def preview_plan_change(con: duckdb.DuckDBPyConnection, customer_id: int, new_plan_id: int,
                        effective_date: dt.date) -> Result:
    """Preview the plan charges of the month of a change (the agent desk's proration preview).

    Returns
    -------
    Result
        On success ``data['preview']`` is a :class:`PlanChangePreview`; failures are those
        :func:`change_plans` would return (same codes and ``why_not``). Nothing is written.

    Notes
    -----
    Computed by :mod:`billing.pricing` exactly as the billing run will: each subscription's days in
    the month times the plan's price for the month (the price in effect on its first day), rounded
    half away from zero; a full month is the full price. ``without_change_cents`` is what the old
    plan alone would charge for the month. Discounts, usage and tax are not included.
    """
    frame = _changes_frame(pd.DataFrame([{"customer_id": customer_id, "new_plan_id": new_plan_id,
                                          "effective_date": effective_date}]), user_id=None)
    r = _validate(con, frame).iloc[0]
    if r["code"] != OK:
        return failure(r["code"], r["message"], why_not=r["why_not"])
    period = month_start(effective_date)
    start = pd.Timestamp(r["start_date"]).date()
    prices = dict((pid, (name, price, cur)) for pid, name, price, cur in con.execute("""
        SELECT p.plan_id, p.name, pp.monthly_price_cents, p.currency
        FROM plans p JOIN plan_prices pp USING (plan_id)
        WHERE p.plan_id IN (?, ?) AND pp.effective_from <= ?
        QUALIFY row_number() OVER (PARTITION BY p.plan_id ORDER BY pp.effective_from DESC) = 1
    """, [int(r["old_plan_id"]), new_plan_id, period]).fetchall())
    old_name, old_price, currency = prices[int(r["old_plan_id"])]
    new_name, new_price, _ = prices[new_plan_id]
    period_days = days_in_month(period)
    old_days = active_days(start, effective_date - dt.timedelta(days=1), period) \
        if effective_date > start else 0
    new_days = active_days(effective_date, None, period)
    preview = PlanChangePreview(
        customer_id=customer_id, period_start=period, period_end=month_end(period),
        effective_date=effective_date, currency=currency,
        old_plan_id=int(r["old_plan_id"]), old_plan_name=old_name, new_plan_id=new_plan_id,
        new_plan_name=new_name, old_days=old_days, new_days=new_days,
        old_monthly_price_cents=int(old_price), new_monthly_price_cents=int(new_price),
        old_charge_cents=plan_charge(int(old_price), old_days, period_days) if old_days else 0,
        new_charge_cents=plan_charge(int(new_price), new_days, period_days),
        without_change_cents=plan_charge(int(old_price), active_days(start, None, period), period_days),
    )
    return success(f"{old_name} to {new_name} from {effective_date}: plan charges for {period:%Y-%m} "
                   f"{format_cents(preview.total_cents, currency)} instead of "
                   f"{format_cents(preview.without_change_cents, currency)}", preview=preview)
