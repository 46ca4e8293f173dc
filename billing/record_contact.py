"""Record contacts: each time a customer reaches care (the agent desk, the simulator's calls).

Bulk first: :func:`record_contacts` validates a DataFrame of contacts with one set-based query and
writes the valid ones in one transaction; :func:`record_contact` wraps a one-row frame.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from billing.results import OK, Result, failure, success
from data.db import transaction

CHANNELS = ("phone", "chat", "email")
REASONS = ("bill_higher_than_expected", "billing_error", "bill_not_understood", "wants_cheaper_plan",
           "service_issue", "cancel_request")
RESOLUTIONS = ("resolved", "unresolved", "escalated")

COLUMNS = ("row", "customer_id", "code", "why_not", "message", "contact_id")

# One row per contact (grain: the input row) with its outcome; reads the registered frame _rc_in.
_CHECK_SQL = """
CREATE OR REPLACE TEMP TABLE _rc AS
WITH req AS (
    SELECT CAST("row" AS BIGINT) AS "row", CAST(customer_id AS BIGINT) AS customer_id,
           CAST(contacted_at AS TIMESTAMP) AS contacted_at, CAST(channel AS VARCHAR) AS channel,
           CAST(reason AS VARCHAR) AS reason, CAST(wait_seconds AS INTEGER) AS wait_seconds,
           CAST(handle_seconds AS INTEGER) AS handle_seconds, CAST(agent_id AS BIGINT) AS agent_id,
           CAST(is_identity_verified AS BOOLEAN) AS is_identity_verified,
           CAST(resolution AS VARCHAR) AS resolution,
           CAST(is_intent_to_cancel AS BOOLEAN) AS is_intent_to_cancel,
           CAST(invoice_id AS BIGINT) AS invoice_id, CAST(notes AS VARCHAR) AS notes
    FROM _rc_in
),
checked AS (
    SELECT r.*,
           CASE
               WHEN r.customer_id IS NULL OR r.contacted_at IS NULL THEN 'missing_value'
               WHEN NOT coalesce(list_contains($channels, r.channel), FALSE) THEN 'invalid_channel'
               WHEN NOT coalesce(list_contains($reasons, r.reason), FALSE) THEN 'invalid_reason'
               WHEN NOT coalesce(list_contains($resolutions, r.resolution), FALSE) THEN 'invalid_resolution'
               WHEN r.wait_seconds < 0 OR r.handle_seconds < 0 THEN 'negative_seconds'
               WHEN cu.customer_id IS NULL THEN 'customer_not_found'
               WHEN r.agent_id IS NOT NULL AND u.user_id IS NULL THEN 'agent_not_found'
               WHEN r.invoice_id IS NOT NULL AND (i.invoice_id IS NULL OR i.customer_id <> r.customer_id)
                   THEN 'invoice_not_found'
           END AS why_not
    FROM req r
    LEFT JOIN customers cu ON cu.customer_id = r.customer_id
    LEFT JOIN users u ON u.user_id = r.agent_id
    LEFT JOIN invoices i ON i.invoice_id = r.invoice_id
),
final AS (
    SELECT *,
           CASE WHEN why_not IS NULL THEN 'ok'
                WHEN why_not IN ('customer_not_found', 'agent_not_found', 'invoice_not_found') THEN 'not_found'
                ELSE 'invalid_input' END AS code,
           CASE why_not
               WHEN 'missing_value' THEN 'customer and contact time are required'
               WHEN 'invalid_channel' THEN 'channel must be one of ' || array_to_string($channels, ', ')
               WHEN 'invalid_reason' THEN 'reason must be one of ' || array_to_string($reasons, ', ')
               WHEN 'invalid_resolution' THEN 'resolution must be one of ' || array_to_string($resolutions, ', ')
               WHEN 'negative_seconds' THEN 'wait and handle seconds must not be negative'
               WHEN 'customer_not_found' THEN 'customer ' || customer_id || ' does not exist'
               WHEN 'agent_not_found' THEN 'user ' || agent_id || ' does not exist'
               WHEN 'invoice_not_found' THEN 'invoice ' || invoice_id || ' is not an invoice of this customer'
               ELSE 'contact recorded'
           END AS message
    FROM checked
)
SELECT * FROM final
"""


def _contacts_frame(contacts: pd.DataFrame, at: dt.datetime) -> pd.DataFrame:
    """The typed frame the query reads; raises ValueError for a missing column (a caller's bug)."""
    missing = [c for c in ("customer_id", "channel", "reason", "resolution") if c not in contacts.columns]
    if missing:
        raise ValueError(f"contacts need columns: {', '.join(missing)}")
    df = contacts.reset_index(drop=True)
    n = len(df)

    def col(name, default=None):
        if name not in df.columns:
            return pd.Series([default] * n, dtype=object)
        return df[name].astype(object).where(df[name].notna(), default)

    contacted_at = pd.to_datetime(col("contacted_at", at))
    if getattr(contacted_at.dt, "tz", None) is not None:
        contacted_at = contacted_at.dt.tz_convert("UTC").dt.tz_localize(None)
    return pd.DataFrame({
        "row": range(n),
        "customer_id": pd.array(df["customer_id"], dtype="Int64"),
        "contacted_at": contacted_at,
        "channel": col("channel").astype("string"),
        "reason": col("reason").astype("string"),
        "wait_seconds": pd.array(col("wait_seconds"), dtype="Int64"),
        "handle_seconds": pd.array(col("handle_seconds"), dtype="Int64"),
        "agent_id": pd.array(col("agent_id"), dtype="Int64"),
        "is_identity_verified": col("is_identity_verified", False).astype(bool),
        "resolution": col("resolution").astype("string"),
        "is_intent_to_cancel": col("is_intent_to_cancel", False).astype(bool),
        "invoice_id": pd.array(col("invoice_id"), dtype="Int64"),
        "notes": col("notes").astype("string"),
    })


def record_contacts(con: duckdb.DuckDBPyConnection, contacts: pd.DataFrame, *,
                    at: dt.datetime) -> pd.DataFrame:
    """Record many contacts; the valid ones are written in one transaction.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    contacts : pandas.DataFrame
        One row per contact, the columns of the ``contacts`` table without ``contact_id``:
        ``customer_id``, ``channel``, ``reason``, ``resolution`` (required); ``contacted_at``
        (default ``at``), ``wait_seconds``, ``handle_seconds``, ``agent_id``,
        ``is_identity_verified`` (default False), ``is_intent_to_cancel`` (default False),
        ``invoice_id``, ``notes``.
    at : datetime.datetime
        When the contacts are recorded (audit log; default ``contacted_at``).

    Returns
    -------
    pandas.DataFrame
        One row per contact in input order: ``row``, ``customer_id``, ``code`` (``ok``,
        ``invalid_input``, ``not_found``), ``why_not`` (``missing_value``, ``invalid_channel``,
        ``invalid_reason``, ``invalid_resolution``, ``negative_seconds``, ``customer_not_found``,
        ``agent_not_found``, ``invoice_not_found``), ``message``, ``contact_id`` (null unless ok).

    Raises
    ------
    ValueError
        When a required column is missing (a caller's bug).

    Notes
    -----
    Enumerations are those of the schema (channels, the six contact reasons, resolutions). The
    agent must be an existing user; the invoice, when given, an invoice of the customer.
    ``contact_id`` = max + row_number over the written rows in input order. Contacts with an
    agent are audited under that agent.
    """
    frame = _contacts_frame(contacts, at)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    con.register("_rc_in", frame)
    try:
        with transaction(con):
            con.execute(_CHECK_SQL, {"channels": list(CHANNELS), "reasons": list(REASONS),
                                     "resolutions": list(RESOLUTIONS)})
            base = con.execute("SELECT coalesce(max(contact_id), 0) FROM contacts").fetchall()[0][0]
            con.execute("""
                CREATE OR REPLACE TEMP TABLE _rc_ids AS
                SELECT "row", ? + row_number() OVER (ORDER BY "row") AS contact_id FROM _rc WHERE code = 'ok'
            """, [base])
            con.execute("""
                INSERT INTO contacts (contact_id, customer_id, contacted_at, channel, reason, wait_seconds,
                    handle_seconds, agent_id, is_identity_verified, resolution, is_intent_to_cancel,
                    invoice_id, notes)
                SELECT i.contact_id, c.customer_id, c.contacted_at, c.channel, c.reason, c.wait_seconds,
                       c.handle_seconds, c.agent_id, c.is_identity_verified, c.resolution,
                       c.is_intent_to_cancel, c.invoice_id, c.notes
                FROM _rc c JOIN _rc_ids i USING ("row") ORDER BY i.contact_id
            """)
            con.execute("""
                INSERT INTO audit_log
                SELECT (SELECT coalesce(max(audit_id), 0) FROM audit_log) + row_number() OVER (ORDER BY i.contact_id),
                       CAST(? AS TIMESTAMP), c.agent_id, 'record_contact', 'contact', CAST(i.contact_id AS VARCHAR),
                       to_json({'channel': c.channel, 'customer_id': c.customer_id, 'reason': c.reason,
                                'resolution': c.resolution})
                FROM _rc c JOIN _rc_ids i USING ("row")
                WHERE c.agent_id IS NOT NULL
            """, [at])
            out = con.execute("""
                SELECT c."row", c.customer_id, c.code, c.why_not, c.message, i.contact_id
                FROM _rc c LEFT JOIN _rc_ids i USING ("row") ORDER BY c."row"
            """).df()
    finally:
        con.unregister("_rc_in")
        con.execute("DROP TABLE IF EXISTS _rc")
        con.execute("DROP TABLE IF EXISTS _rc_ids")
    return out


def record_contact(con: duckdb.DuckDBPyConnection, *, customer_id: int, channel: str, reason: str,
                   resolution: str, at: dt.datetime, contacted_at: dt.datetime | None = None,
                   agent_id: int | None = None, wait_seconds: int | None = None,
                   handle_seconds: int | None = None, is_identity_verified: bool = False,
                   is_intent_to_cancel: bool = False, invoice_id: int | None = None,
                   notes: str | None = None) -> Result:
    """Record one contact; see :func:`record_contacts`.

    Returns
    -------
    Result
        ``data['contact_id']``; on failure ``invalid_input`` or ``not_found`` with ``data['why_not']``.
    """
    out = record_contacts(con, pd.DataFrame([{
        "customer_id": customer_id, "contacted_at": contacted_at or at, "channel": channel,
        "reason": reason, "wait_seconds": wait_seconds, "handle_seconds": handle_seconds,
        "agent_id": agent_id, "is_identity_verified": is_identity_verified, "resolution": resolution,
        "is_intent_to_cancel": is_intent_to_cancel, "invoice_id": invoice_id, "notes": notes}]), at=at)
    r = out.iloc[0]
    if r["code"] != OK:
        return failure(r["code"], r["message"], why_not=r["why_not"])
    return success(r["message"], contact_id=int(r["contact_id"]))
