"""Record payments received (and failed attempts), in bulk or one at a time.

Payments are an append-only ledger. Nothing here allocates a payment to an invoice: the
``invoice_balances`` view derives settlement (settled payments go to the oldest invoices first), and
what exceeds every invoice is the customer's credit balance, which settles the next invoices as they
are issued. Money received therefore never disappears.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from billing import audit
from billing.account import customer_balance
from billing.results import INVALID_INPUT, NOT_FOUND, Result, failure, success
from data.db import transaction

METHODS = ("card", "direct_debit", "bank_transfer", "cash", "imported")
STATUSES = ("settled", "failed")
REQUIRED = ("customer_id", "amount_cents", "received_at", "method", "status")


def _as_datetime(values: pd.Series) -> pd.Series:
    """``values`` as datetimes (unparseable = NaT); a column already of a datetime dtype is kept as is."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    return pd.to_datetime(values, errors="coerce")


def _first_problem(df: pd.DataFrame) -> str | None:
    """Message naming the first row problem found by vectorised checks, or None."""
    cid = pd.to_numeric(df["customer_id"], errors="coerce")
    amount = pd.to_numeric(df["amount_cents"], errors="coerce")
    received = _as_datetime(df["received_at"])
    checks = [
        ("customer_id", cid.isna() | (cid != np.floor(cid)), "is not an id"),
        ("amount_cents", amount.isna() | (amount != np.floor(amount)), "must be a whole number of cents"),
        ("amount_cents", amount <= 0, "must be positive"),
        ("received_at", received.isna(), "is missing or not a time"),
        ("method", ~df["method"].isin(METHODS), f"must be one of {', '.join(METHODS)}"),
        ("status", ~df["status"].isin(STATUSES), f"must be one of {', '.join(STATUSES)}"),
    ]
    first = None
    for column, mask, message in checks:
        bad = mask.fillna(True).to_numpy(dtype=bool)
        if bad.any():
            row = int(np.argmax(bad))
            if first is None or row < first[0]:
                first = (row, column, message)
    if first is None:
        return None
    row, column, message = first
    return f"row {row + 1}: {column} {message} (got {_shown(df.iloc[row][column])})"


def record_payments(con: duckdb.DuckDBPyConnection, payments: pd.DataFrame, *,
                    at: dt.datetime | None = None, user_id: int | None = None) -> Result:
    """Record many payments at once, all or nothing.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    payments : pandas.DataFrame
        One row per payment: customer_id, amount_cents (positive integer cents), received_at,
        method (card, direct_debit, bank_transfer, cash, imported), status (settled, failed);
        reference optional.
    at : datetime.datetime, optional
        When the batch is recorded (audit time); defaults to the latest ``received_at``.
    user_id : int, optional
        Who recorded them (None = the system: an import, the simulator, a payment provider feed).

    Returns
    -------
    Result
        ``data``: count, settled_cents, failed_count, payment_ids (numpy array in input order).
        ``invalid_input`` (missing column, bad amount, method or status) or ``not_found`` (unknown
        customer), naming the first problem row; nothing is written then.

    Notes
    -----
    ``payment_id = max(payment_id) + row number`` inside the writing transaction. Settlement is not
    stored: the ``invoice_balances`` view allocates settled payments to the oldest invoices first
    and the remainder is the customer's credit balance. One audit row per batch.
    """
    missing = [c for c in REQUIRED if c not in payments.columns]
    if missing:
        return failure(INVALID_INPUT, f"missing columns: {', '.join(missing)}")
    if payments.empty:
        return success("no payments to record", count=0, settled_cents=0, failed_count=0,
                       payment_ids=np.array([], dtype=np.int64))
    df = payments[[c for c in (*REQUIRED, "reference") if c in payments.columns]].reset_index(drop=True)
    if "reference" not in df.columns:
        df["reference"] = None
    problem = _first_problem(df)
    if problem:
        return failure(INVALID_INPUT, problem)
    df = pd.DataFrame({
        "_row": np.arange(len(df), dtype=np.int64),
        "customer_id": pd.to_numeric(df["customer_id"]).astype(np.int64),
        "amount_cents": pd.to_numeric(df["amount_cents"]).astype(np.int64),
        "received_at": _as_datetime(df["received_at"]),
        "method": df["method"].astype(str),
        "status": df["status"].astype(str),
        "reference": df["reference"].astype(object).where(df["reference"].notna(), None),
    })
    at = at or df["received_at"].max().to_pydatetime()
    con.register("_new_payments", df)
    try:
        unknown = con.execute("""
            SELECT n._row, n.customer_id FROM _new_payments n
            WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = n.customer_id)
            ORDER BY n._row LIMIT 1""").fetchall()
        if unknown:
            return failure(NOT_FOUND, f"row {unknown[0][0] + 1}: no customer {unknown[0][1]}")
        with transaction(con):
            base = int(con.execute("SELECT coalesce(max(payment_id), 0) FROM payments").fetchall()[0][0])
            con.execute("""
                INSERT INTO payments (payment_id, customer_id, received_at, amount_cents, method,
                                      status, reference)
                SELECT ? + _row + 1, customer_id, CAST(received_at AS TIMESTAMP), amount_cents, method,
                       status, CAST(reference AS VARCHAR)
                FROM _new_payments ORDER BY _row""", [base])
            settled = int(df.loc[df["status"] == "settled", "amount_cents"].sum())
            n_failed = int((df["status"] == "failed").sum())
            audit.log(con, at=at, user_id=user_id, action="record_payments", entity="payment",
                      entity_id=f"{base + 1}-{base + len(df)}",
                      detail={"count": len(df), "settled_cents": settled, "failed_count": n_failed})
    finally:
        con.unregister("_new_payments")
    ids = base + 1 + df["_row"].to_numpy()
    return success(f"{len(df)} payments recorded", count=len(df), settled_cents=settled,
                   failed_count=n_failed, payment_ids=ids)


def record_payment(con: duckdb.DuckDBPyConnection, *, customer_id: int, amount_cents: int,
                   received_at: dt.datetime, method: str, user_id: int | None = None,
                   reference: str | None = None, status: str = "settled",
                   at: dt.datetime | None = None) -> Result:
    """Record one payment of a customer; see :func:`record_payments`.

    Parameters
    ----------
    at : datetime.datetime, optional
        When it is recorded (audit time); defaults to ``received_at``.

    Returns
    -------
    Result
        ``data``: payment_id, balance_cents (open balance after the payment), credit_balance_cents
        (what the customer has paid beyond everything invoiced), settled (bool). Failures as
        :func:`record_payments`.
    """
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, (int, np.integer)):
        return failure(INVALID_INPUT, f"amount_cents must be a whole number of cents, got {amount_cents!r}")
    if received_at is None:
        return failure(INVALID_INPUT, "received_at is required")
    res = record_payments(con, pd.DataFrame([{
        "customer_id": customer_id, "amount_cents": int(amount_cents), "received_at": received_at,
        "method": method, "status": status, "reference": reference}]),
        at=at or received_at, user_id=user_id)
    if not res.ok:
        return res
    balance = customer_balance(con, customer_id)
    return success(f"payment of {amount_cents} cents recorded ({status})",
                   payment_id=int(res["payment_ids"][0]), balance_cents=balance.open_balance_cents,
                   credit_balance_cents=balance.credit_balance_cents, settled=status == "settled")


def _shown(value) -> str:
    """A cell value as people read it (numpy scalars as plain Python values)."""
    return repr(value.item() if hasattr(value, "item") else value)
