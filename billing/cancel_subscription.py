"""Cancel subscriptions: end the open subscription on its last day served and mark the churn.

Bulk first: :func:`cancel_subscriptions` validates and applies a DataFrame of cancellations with
set-based SQL in one transaction (the simulator's churners, billing.end_for_non_payment's
involuntary ones); :func:`cancel_subscription` wraps a one-row frame. The last month is prorated by
the billing run like any part month.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from billing.results import OK, Result, failure, success
from data.db import transaction

CHURN_KINDS = ("voluntary", "involuntary")
END_REASONS = ("cancelled", "non_payment", "imported")

COLUMNS = ("row", "customer_id", "code", "why_not", "message", "subscription_id", "end_date")

# One row per requested cancellation (grain: the input row) with its outcome; reads the registered
# frame _cs_in (row, customer_id, end_date, churn_reason, churn_kind, end_reason, user_id).
_VALIDATE_SQL = """
WITH req AS (
    SELECT CAST("row" AS BIGINT) AS "row", CAST(customer_id AS BIGINT) AS customer_id,
           CAST(end_date AS DATE) AS end_date, CAST(churn_reason AS VARCHAR) AS churn_reason,
           CAST(churn_kind AS VARCHAR) AS churn_kind, CAST(end_reason AS VARCHAR) AS end_reason,
           CAST(user_id AS BIGINT) AS user_id
    FROM _cs_in
),
open_sub AS (
    SELECT r."row", s.subscription_id, s.start_date
    FROM req r JOIN subscriptions s ON s.customer_id = r.customer_id AND s.end_date IS NULL
    QUALIFY row_number() OVER (PARTITION BY r."row" ORDER BY s.start_date DESC, s.subscription_id DESC) = 1
),
-- only invoices ending on or after the earliest end date can refuse a cancellation ($billed_from:
-- a constant, so the scan skips older row groups); billed_through is exact wherever it refuses one
billed AS (
    SELECT o."row", max(i.period_end) AS billed_through
    FROM open_sub o JOIN invoices i ON i.subscription_id = o.subscription_id
    WHERE i.period_end >= $billed_from
    GROUP BY o."row"
),
checked AS (
    SELECT r.*, o.subscription_id, o.start_date, b.billed_through,
           CASE
               WHEN r.customer_id IS NULL OR r.end_date IS NULL THEN 'missing_value'
               WHEN NOT coalesce(list_contains($churn_kinds, r.churn_kind), FALSE) THEN 'invalid_churn_kind'
               WHEN NOT coalesce(list_contains($end_reasons, r.end_reason), FALSE) THEN 'invalid_end_reason'
               WHEN cu.customer_id IS NULL THEN 'customer_not_found'
               WHEN o."row" IS NULL THEN 'no_open_subscription'
               WHEN r.end_date < o.start_date THEN 'end_before_start'
               WHEN b.billed_through > r.end_date THEN 'already_billed'
           END AS why_first
    FROM req r
    LEFT JOIN customers cu ON cu.customer_id = r.customer_id
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
               WHEN why_not IN ('customer_not_found', 'no_open_subscription') THEN 'not_found'
               WHEN why_not = 'already_billed' THEN 'already_billed'
               ELSE 'invalid_input'
           END AS code,
           CASE why_not
               WHEN 'missing_value' THEN 'customer and end date are required'
               WHEN 'invalid_churn_kind' THEN 'churn kind must be one of ' || array_to_string($churn_kinds, ', ')
               WHEN 'invalid_end_reason' THEN 'end reason must be one of ' || array_to_string($end_reasons, ', ')
               WHEN 'customer_not_found' THEN 'customer ' || customer_id || ' does not exist'
               WHEN 'duplicate_customer' THEN 'only one cancellation per customer in one request'
               WHEN 'no_open_subscription' THEN 'the customer has no open subscription to cancel'
               WHEN 'end_before_start' THEN 'the subscription starts on ' || CAST(start_date AS VARCHAR)
                   || ', after the requested end date'
               WHEN 'already_billed' THEN 'the subscription is invoiced through '
                   || CAST(billed_through AS VARCHAR) || '; it cannot end before that'
               ELSE 'subscription ends after ' || CAST(end_date AS VARCHAR)
           END AS message
    FROM deduplicated
)
SELECT * FROM final ORDER BY "row"
"""


def _cancellations_frame(cancellations: pd.DataFrame, *, user_id: int | None) -> pd.DataFrame:
    """The typed frame the query reads; raises ValueError for a missing column (a caller's bug)."""
    missing = [c for c in ("customer_id", "end_date") if c not in cancellations.columns]
    if missing:
        raise ValueError(f"cancellations need columns: {', '.join(missing)}")
    df = cancellations.reset_index(drop=True)
    n = len(df)

    def col(name, default):
        if name not in df.columns:
            return pd.Series([default] * n, dtype=object)
        return df[name].astype(object).where(df[name].notna(), default)

    return pd.DataFrame({
        "row": range(n),
        "customer_id": pd.array(df["customer_id"], dtype="Int64"),
        "end_date": pd.to_datetime(df["end_date"]).dt.normalize(),
        "churn_reason": col("churn_reason", None).astype("string"),
        "churn_kind": col("churn_kind", "voluntary").astype("string"),
        "end_reason": col("end_reason", "cancelled").astype("string"),
        "user_id": pd.array(col("user_id", user_id), dtype="Int64"),
    })


def _apply(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, *, at: dt.datetime) -> pd.DataFrame:
    """Validate and write the valid cancellations; the caller holds the transaction."""
    con.register("_cs_in", frame)
    try:
        earliest = frame["end_date"].min()
        con.execute(f"CREATE OR REPLACE TEMP TABLE _cs AS {_VALIDATE_SQL}",
                    {"churn_kinds": list(CHURN_KINDS), "end_reasons": list(END_REASONS),
                     "billed_from": None if pd.isna(earliest) else earliest.date()})
        con.execute("""
            UPDATE subscriptions SET end_date = c.end_date, end_reason = c.end_reason
            FROM _cs c WHERE c.code = 'ok' AND subscriptions.subscription_id = c.subscription_id
        """)
        con.execute("""
            UPDATE customers SET churned_on = c.end_date, churn_kind = c.churn_kind,
                                 churn_reason = c.churn_reason
            FROM _cs c WHERE c.code = 'ok' AND customers.customer_id = c.customer_id
        """)
        con.execute("""
            INSERT INTO audit_log
            SELECT (SELECT coalesce(max(audit_id), 0) FROM audit_log) + row_number() OVER (ORDER BY "row"),
                   CAST(? AS TIMESTAMP), user_id, 'cancel_subscription', 'subscription',
                   CAST(subscription_id AS VARCHAR),
                   to_json({'churn_kind': churn_kind, 'churn_reason': churn_reason,
                            'customer_id': customer_id, 'end_date': end_date, 'end_reason': end_reason})
            FROM _cs WHERE code = 'ok' AND user_id IS NOT NULL
        """, [at])
        out = con.execute("""
            SELECT "row", customer_id, code, why_not, message, subscription_id, end_date
            FROM _cs ORDER BY "row"
        """).df()
    finally:
        con.unregister("_cs_in")
        con.execute("DROP TABLE IF EXISTS _cs")
    return out


def cancel_subscriptions(con: duckdb.DuckDBPyConnection, cancellations: pd.DataFrame, *,
                         at: dt.datetime, user_id: int | None = None) -> pd.DataFrame:
    """End customers' open subscriptions and record their churn, in one transaction.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    cancellations : pandas.DataFrame
        One row per customer: ``customer_id``, ``end_date`` (last day served, inclusive);
        optionally ``churn_reason``, ``churn_kind`` (``voluntary`` default, ``involuntary``),
        ``end_reason`` (``cancelled`` default, ``non_payment``, ``imported``) and ``user_id`` per
        row (overrides the ``user_id`` argument).
    at : datetime.datetime
        When the cancellation is recorded (audit log).
    user_id : int, optional
        users.user_id of who records it; audited when given (None = the system).

    Returns
    -------
    pandas.DataFrame
        One row per cancellation in input order: ``row``, ``customer_id``, ``code`` (``ok``,
        ``not_found``, ``invalid_input``, ``already_billed``), ``why_not`` (null, or
        ``missing_value``, ``invalid_churn_kind``, ``invalid_end_reason``, ``customer_not_found``,
        ``duplicate_customer``, ``no_open_subscription``, ``end_before_start``, ``already_billed``),
        ``message``, ``subscription_id``, ``end_date``. Only the ``ok`` rows are written.

    Raises
    ------
    ValueError
        When a required column is missing (a caller's bug).

    Notes
    -----
    The open subscription (``end_date IS NULL``) gets ``end_date`` and ``end_reason``; the customer
    gets ``churned_on = end_date``, ``churn_kind`` and ``churn_reason``. An end date in the future
    is a scheduled cancellation (served until then). Refused: no open subscription, an end date
    before the subscription starts, and an end date before the end of a period already invoiced
    for the subscription (``already_billed``: that invoice charged days after it; correct it with
    a credit note instead).
    """
    frame = _cancellations_frame(cancellations, user_id=user_id)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    with transaction(con):
        out = _apply(con, frame, at=at)
    return out


def cancel_subscription(con: duckdb.DuckDBPyConnection, *, customer_id: int, end_date: dt.date,
                        at: dt.datetime, churn_reason: str | None = None,
                        churn_kind: str = "voluntary", end_reason: str = "cancelled",
                        user_id: int | None = None) -> Result:
    """End one customer's open subscription on ``end_date``; see :func:`cancel_subscriptions`.

    Returns
    -------
    Result
        ``data``: subscription_id, end_date; on failure the code of :func:`cancel_subscriptions`
        with ``data['why_not']``.
    """
    out = cancel_subscriptions(con, pd.DataFrame([{
        "customer_id": customer_id, "end_date": end_date, "churn_reason": churn_reason,
        "churn_kind": churn_kind, "end_reason": end_reason}]), at=at, user_id=user_id)
    r = out.iloc[0]
    if r["code"] != OK:
        return failure(r["code"], r["message"], why_not=r["why_not"])
    return success(r["message"], subscription_id=int(r["subscription_id"]), end_date=end_date)
