"""Add one-off charges (fees) to a subscription's bill for a period not yet invoiced.

:func:`billing.run_billing.run_billing` bills them as lines of kind ``charge`` on the subscription's
invoice for the period. A charge for a period already invoiced is refused (``already_billed``):
invoices are never edited, and a late fee goes on a later period. The simulator uses the bulk form to
inject billing errors (e.g. a duplicate charge).
"""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from billing import audit
from billing.results import ALREADY_BILLED, INVALID_INPUT, NOT_FOUND, Result, failure, success
from data.db import transaction

REQUIRED = ("subscription_id", "period_start", "description", "amount_cents")


def add_charges(con: duckdb.DuckDBPyConnection, charges: pd.DataFrame, *, at: dt.datetime,
                user_id: int | None = None) -> Result:
    """Add many one-off charges at once, all or nothing.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    charges : pandas.DataFrame
        One row per charge: subscription_id, period_start (first day of a month), description,
        amount_cents (positive integer cents).
    at : datetime.datetime
        When they are added.
    user_id : int, optional
        Who added them (None = the system or the simulator).

    Returns
    -------
    Result
        ``data``: count, total_cents, charge_ids (numpy array in input order). Failures name the first
        problem row and write nothing: ``invalid_input`` (missing column, bad amount, empty
        description, period not the first of a month, subscription not active in the period),
        ``not_found`` (unknown subscription), ``already_billed`` (the subscription already has an
        invoice for the period).

    Notes
    -----
    Active in the period: ``start_date <= period_end`` and ``end_date`` open or ``>= period_start``
    (only such subscriptions get an invoice for it). ``charge_id = max + row number``. One audit
    row per batch.
    """
    missing = [c for c in REQUIRED if c not in charges.columns]
    if missing:
        return failure(INVALID_INPUT, f"missing columns: {', '.join(missing)}")
    if charges.empty:
        return success("no charges to add", count=0, total_cents=0, charge_ids=np.array([], dtype=np.int64))
    src = charges.reset_index(drop=True)
    sub = pd.to_numeric(src["subscription_id"], errors="coerce")
    amount = pd.to_numeric(src["amount_cents"], errors="coerce")
    period = pd.to_datetime(src["period_start"], errors="coerce")
    desc = src["description"].astype(object)
    checks = [
        ("subscription_id", sub.isna() | (sub != np.floor(sub)), "is not an id"),
        ("period_start", period.isna(), "is not a date"),
        ("period_start", period.dt.day != 1, "must be the first day of a month"),
        ("description", desc.isna() | (desc.astype(str).str.strip() == ""), "is required"),
        ("amount_cents", amount.isna() | (amount != np.floor(amount)), "must be a whole number of cents"),
        ("amount_cents", amount <= 0, "must be positive"),
    ]
    first = None
    for column, mask, message in checks:
        bad = mask.fillna(True).to_numpy(dtype=bool)
        if bad.any() and (first is None or int(np.argmax(bad)) < first[0]):
            first = (int(np.argmax(bad)), column, message)
    if first is not None:
        row, column, message = first
        return failure(INVALID_INPUT, f"row {row + 1}: {column} {message} (got {_shown(src.iloc[row][column])})")
    df = pd.DataFrame({
        "_row": np.arange(len(src), dtype=np.int64),
        "subscription_id": sub.astype(np.int64),
        "period_start": period.dt.date,
        "description": desc.astype(str).str.strip(),
        "amount_cents": amount.astype(np.int64),
    })
    con.register("_new_charges", df)
    try:
        with transaction(con):
            problem = con.execute("""
                WITH n AS (
                    SELECT _row, subscription_id, CAST(period_start AS DATE) AS p_start,
                           CAST(last_day(CAST(period_start AS DATE)) AS DATE) AS p_end
                    FROM _new_charges
                ),
                -- materialized: read three times below, and each read would join the invoices again
                checked AS MATERIALIZED (
                    SELECT n._row, n.subscription_id, n.p_start, s.subscription_id IS NOT NULL AS found,
                           s.start_date <= n.p_end AND (s.end_date IS NULL OR s.end_date >= n.p_start)
                               AS active,
                           EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = n.subscription_id
                                   AND i.period_start = n.p_start
                                   -- redundant, but a constant range lets the scan skip older row groups
                                   AND i.period_start BETWEEN $first_period AND $last_period) AS billed
                    FROM n LEFT JOIN subscriptions s USING (subscription_id)
                ),
                final AS (
                    SELECT _row, 1 AS k, $not_found AS code,
                           'row ' || (_row + 1) || ': no subscription ' || subscription_id AS msg
                    FROM checked WHERE NOT found
                    UNION ALL
                    SELECT _row, 2, $already_billed,
                           'row ' || (_row + 1) || ': subscription ' || subscription_id || ' is already billed for '
                           || strftime(p_start, '%Y-%m')
                    FROM checked WHERE found AND billed
                    UNION ALL
                    SELECT _row, 3, $invalid,
                           'row ' || (_row + 1) || ': subscription ' || subscription_id || ' is not active in '
                           || strftime(p_start, '%Y-%m')
                    FROM checked WHERE found AND NOT billed AND NOT active
                )
                SELECT code, msg FROM final ORDER BY _row, k LIMIT 1
            """, {"not_found": NOT_FOUND, "already_billed": ALREADY_BILLED, "invalid": INVALID_INPUT,
                  "first_period": min(df["period_start"]), "last_period": max(df["period_start"])}).fetchall()
            if problem:
                raise _Reject(*problem[0])
            base = int(con.execute("SELECT coalesce(max(charge_id), 0) FROM one_off_charges").fetchall()[0][0])
            con.execute("""
                INSERT INTO one_off_charges (charge_id, subscription_id, period_start, description,
                                             amount_cents, created_at)
                SELECT ? + _row + 1, subscription_id, CAST(period_start AS DATE), description, amount_cents,
                       CAST(? AS TIMESTAMP)
                FROM _new_charges ORDER BY _row""", [base, at])
            total = int(df["amount_cents"].sum())
            audit.log(con, at=at, user_id=user_id, action="add_charges", entity="charge",
                      entity_id=f"{base + 1}-{base + len(df)}" if len(df) > 1 else base + 1,
                      detail={"count": len(df), "total_cents": total})
    except _Reject as exc:
        return failure(exc.code, exc.message)
    finally:
        con.unregister("_new_charges")
    return success(f"{len(df)} charges added", count=len(df), total_cents=total,
                   charge_ids=base + 1 + df["_row"].to_numpy())


def add_charge(con: duckdb.DuckDBPyConnection, *, subscription_id: int, period_start: dt.date,
               description: str, amount_cents: int, at: dt.datetime,
               user_id: int | None = None) -> Result:
    """Add one one-off charge; see :func:`add_charges`.

    Returns
    -------
    Result
        ``data['charge_id']`` on success; failures as :func:`add_charges`.
    """
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, (int, np.integer)):
        return failure(INVALID_INPUT, f"amount_cents must be a whole number of cents, got {amount_cents!r}")
    res = add_charges(con, pd.DataFrame([{"subscription_id": subscription_id, "period_start": period_start,
                                          "description": description, "amount_cents": int(amount_cents)}]),
                      at=at, user_id=user_id)
    if not res.ok:
        return res
    return success(f"charge added to {period_start:%Y-%m}", charge_id=int(res["charge_ids"][0]),
                   total_cents=int(amount_cents))


class _Reject(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _shown(value) -> str:
    """A cell value as people read it (numpy scalars as plain Python values)."""
    return repr(value.item() if hasattr(value, "item") else value)
