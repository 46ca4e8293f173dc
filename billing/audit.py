"""The audit log: who viewed or changed what, when. Append-only."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb


def log(con: duckdb.DuckDBPyConnection, *, at: dt.datetime, user_id: int | None, action: str,
        entity: str, entity_id: Any = None, detail: dict[str, Any] | None = None) -> None:
    """Append one audit row (call inside the caller's transaction so both commit together).

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    at : datetime.datetime
        When it happened (UTC).
    user_id : int or None
        Who did it (None for the system, e.g. a scheduled billing run).
    action : str
        Verb such as ``view_account``, ``verify_identity``, ``grant_offer``, ``issue_credit_note``,
        ``run_billing``, ``import``.
    entity, entity_id
        What it concerned (``customer``, 42).
    detail : dict, optional
        Extra facts, stored as JSON text.
    """
    con.execute(
        "INSERT INTO audit_log SELECT coalesce(max(audit_id), 0) + 1, ?, ?, ?, ?, ?, ? FROM audit_log",
        [at, user_id, action, entity, None if entity_id is None else str(entity_id),
         json.dumps(detail or {}, default=str, sort_keys=True)])
