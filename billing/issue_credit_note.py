"""Issue credit notes: corrections that reference an invoice and never edit it.

A credit note credits part or all of a finalized invoice (tax included) and lowers what is due on
it (``invoice_balances.due_cents = total - credited``); if the invoice was already paid, the freed
payment settles the next open invoice or becomes the customer's credit balance. The invoice row and
its lines stay exactly as issued.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Sequence

import duckdb
import numpy as np
import pandas as pd

from billing import audit
from billing.results import (INVALID_INPUT, NOT_ELIGIBLE, NOT_FOUND, OVER_LIMIT, Result, failure,
                             success)
from data.db import transaction
from data.money import format_cents, format_credit_note_number, round_div

REASONS = ("billing_error", "goodwill", "service_issue", "price_dispute", "other")


def split_gross(gross_cents: int, rate_bp: int) -> tuple[int, int]:
    """Split a tax-inclusive amount into ``(net, tax)`` at ``rate_bp`` basis points.

    Notes
    -----
    ``net = round_half_away(gross * 10000 / (10000 + rate))``, ``tax = gross - net``, so
    ``net + tax = gross`` exactly. Example: 21 cents at 5 % is 20 + 1; 3 cents at 20 % is
    2.5 -> 3 + 0.
    """
    net = round_div(int(gross_cents) * 10_000, 10_000 + int(rate_bp))
    return net, int(gross_cents) - net


def allocate(total_cents: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_cents`` over non-negative integer ``weights`` proportionally, summing exactly.

    Notes
    -----
    Largest remainder: each part gets ``floor(total * w / sum(w))``; the cents left go one each to the
    largest remainders (earliest first on ties). No part is negative.
    """
    weight_sum = sum(weights)
    if weight_sum <= 0:
        return [0] * len(weights)
    floors = [total_cents * w // weight_sum for w in weights]
    rest = total_cents - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(total_cents * weights[i] % weight_sum), i))
    for i in order[:rest]:
        floors[i] += 1
    return floors


def _credit_lines(lines: Sequence[tuple[str, int]], net: int, tax: int, rate_bp: int) -> list[tuple[str, int]]:
    """Credit note lines: each described gross amount's net share, then one tax line."""
    nets = allocate(net, [amount for _, amount in lines])
    out = [(desc, n) for (desc, _), n in zip(lines, nets)]
    if tax:
        out.append((f"Tax {rate_bp / 100:.2f}%", tax))
    return out


def _normalise_lines(lines: Iterable[Any]) -> list[tuple[str, int]] | str:
    """Lines as (description, gross cents) tuples, or a message naming the problem."""
    out = []
    for i, line in enumerate(lines, start=1):
        if isinstance(line, dict):
            desc, amount = line.get("description"), line.get("amount_cents")
        else:
            try:
                desc, amount = line
            except (TypeError, ValueError):
                return f"line {i}: give (description, amount_cents)"
        if not isinstance(desc, str) or not desc.strip():
            return f"line {i}: description is required"
        if isinstance(amount, bool) or not isinstance(amount, (int, np.integer)):
            return f"line {i}: amount_cents must be a whole number of cents"
        if amount <= 0:
            return f"line {i}: amount_cents must be positive"
        out.append((desc.strip(), int(amount)))
    if not out:
        return "give amount_cents or at least one line"
    return out


def issue_credit_notes(con: duckdb.DuckDBPyConnection, credit_notes: pd.DataFrame, *,
                       at: dt.datetime, user_id: int | None = None) -> Result:
    """Issue many credit notes at once (one line each), all or nothing.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    credit_notes : pandas.DataFrame
        One row per credit note: invoice_id, amount_cents (gross, tax included), reason; optional
        description (the line text), note, contact_id, issued_by (defaults to ``user_id``).
    at : datetime.datetime
        When they are issued.
    user_id : int, optional
        Who issued the batch (None = the system, e.g. the simulator correcting billing errors).

    Returns
    -------
    Result
        ``data``: count, total_cents, credit_note_ids (numpy array in input order). Failures name the
        first problem row and write nothing: ``invalid_input`` (missing column, bad amount or
        reason), ``not_found`` (unknown invoice), ``not_eligible`` (invoice not finalized),
        ``over_limit`` (the rows for an invoice exceed what is left to credit on it).

    Notes
    -----
    Left to credit = invoice total - credit notes already issued against it; several rows for one
    invoice count together. Each amount is split into net and tax at the invoice's ``tax_rate_bp``
    (:func:`split_gross`). Lines: the net amount, then a tax line when the tax is not zero.
    ``credit_note_id = max + row number`` in the writing transaction. One audit row per batch.
    """
    missing = [c for c in ("invoice_id", "amount_cents", "reason") if c not in credit_notes.columns]
    if missing:
        return failure(INVALID_INPUT, f"missing columns: {', '.join(missing)}")
    if credit_notes.empty:
        return success("no credit notes to issue", count=0, total_cents=0,
                       credit_note_ids=np.array([], dtype=np.int64))
    src = credit_notes.reset_index(drop=True)
    invoice = pd.to_numeric(src["invoice_id"], errors="coerce")
    amount = pd.to_numeric(src["amount_cents"], errors="coerce")
    checks = [
        ("invoice_id", invoice.isna() | (invoice != np.floor(invoice)), "is not an invoice number"),
        ("amount_cents", amount.isna() | (amount != np.floor(amount)), "must be a whole number of cents"),
        ("amount_cents", amount <= 0, "must be positive"),
        ("reason", ~src["reason"].isin(REASONS), f"must be one of {', '.join(REASONS)}"),
    ]
    first = None
    for column, mask, message in checks:
        bad = mask.fillna(True).to_numpy(dtype=bool)
        if bad.any() and (first is None or int(np.argmax(bad)) < first[0]):
            first = (int(np.argmax(bad)), column, message)
    if first is not None:
        row, column, message = first
        return failure(INVALID_INPUT, f"row {row + 1}: {column} {message} (got {_shown(src.iloc[row][column])})")

    def optional(name: str, default: Any = None) -> pd.Series:
        if name in src.columns:
            return src[name].astype(object).where(src[name].notna(), default)
        return pd.Series([default] * len(src), dtype=object)

    df = pd.DataFrame({
        "_row": np.arange(len(src), dtype=np.int64),
        "invoice_id": invoice.astype(np.int64),
        "amount_cents": amount.astype(np.int64),
        "reason": src["reason"].astype(str),
        "description": optional("description"),
        "note": optional("note"),
        "contact_id": optional("contact_id"),
        "issued_by": optional("issued_by", user_id),
    })
    con.register("_new_credit_notes", df)
    try:
        with transaction(con):
            con.execute("""
                CREATE OR REPLACE TEMP TABLE _cn AS
                WITH credited AS (
                    SELECT invoice_id, sum(total_cents) AS credited_cents FROM credit_notes
                    WHERE invoice_id IN (SELECT invoice_id FROM _new_credit_notes) GROUP BY invoice_id
                ),
                base AS (SELECT coalesce(max(credit_note_id), 0) AS n FROM credit_notes),
                joined AS (
                    SELECT n.*, i.invoice_id IS NOT NULL AS found, i.status, i.customer_id,
                           i.total_cents AS invoice_total_cents, i.tax_rate_bp,
                           i.total_cents - coalesce(c.credited_cents, 0) AS left_cents,
                           sum(n.amount_cents) OVER (PARTITION BY n.invoice_id ORDER BY n._row
                                                     ROWS UNBOUNDED PRECEDING) AS cum_cents
                    FROM _new_credit_notes n
                    LEFT JOIN invoices i ON i.invoice_id = n.invoice_id
                    LEFT JOIN credited c ON c.invoice_id = n.invoice_id
                ),
                final AS (
                    SELECT j.*, base.n + j._row + 1 AS credit_note_id,
                           round_div(j.amount_cents * 10000, 10000 + coalesce(j.tax_rate_bp, 0)) AS net_cents
                    FROM joined j CROSS JOIN base
                )
                SELECT *, amount_cents - net_cents AS tax_cents FROM final
            """)
            problem = con.execute("""
                SELECT code, msg FROM (
                    SELECT _row, 1 AS k, $not_found AS code,
                           'row ' || (_row + 1) || ': no invoice ' || invoice_id AS msg
                    FROM _cn WHERE NOT found
                    UNION ALL
                    SELECT _row, 2, $not_eligible,
                           'row ' || (_row + 1) || ': invoice ' || invoice_id || ' is ' || status ||
                           ', only a finalized invoice can be credited'
                    FROM _cn WHERE found AND status <> 'finalized'
                    UNION ALL
                    SELECT _row, 3, $over_limit,
                           'row ' || (_row + 1) || ': credit of ' || cum_cents || ' cents on invoice ' ||
                           invoice_id || ' is more than the ' || left_cents || ' cents left to credit'
                    FROM _cn WHERE found AND status = 'finalized' AND cum_cents > left_cents
                ) ORDER BY _row, k LIMIT 1
            """, {"not_found": NOT_FOUND, "not_eligible": NOT_ELIGIBLE, "over_limit": OVER_LIMIT}).fetchall()
            if problem:
                raise _Reject(*problem[0])
            con.execute("""
                INSERT INTO credit_notes (credit_note_id, invoice_id, customer_id, issued_at, reason,
                    net_cents, tax_cents, total_cents, issued_by, contact_id, note)
                SELECT credit_note_id, invoice_id, customer_id, CAST(? AS TIMESTAMP), reason, net_cents,
                       tax_cents, amount_cents, CAST(issued_by AS BIGINT), CAST(contact_id AS BIGINT),
                       CAST(note AS VARCHAR)
                FROM _cn ORDER BY _row
            """, [at])
            con.execute("""
                INSERT INTO credit_note_lines (credit_note_id, line_no, description, amount_cents)
                SELECT credit_note_id, 1,
                       coalesce(CAST(description AS VARCHAR),
                                'Credit against ' || 'INV-' || lpad(CAST(invoice_id AS VARCHAR), 8, '0')
                                || ' (' || replace(reason, '_', ' ') || ')'),
                       net_cents
                FROM _cn
                UNION ALL
                SELECT credit_note_id, 2, 'Tax ' || printf('%.2f', tax_rate_bp / 100.0) || '%', tax_cents
                FROM _cn WHERE tax_cents <> 0
            """)
            ids = con.execute("SELECT credit_note_id FROM _cn ORDER BY _row").fetchnumpy()["credit_note_id"]
            total = int(df["amount_cents"].sum())
            audit.log(con, at=at, user_id=user_id, action="issue_credit_notes", entity="credit_note",
                      entity_id=f"{int(ids[0])}-{int(ids[-1])}",
                      detail={"count": len(df), "total_cents": total})
    except _Reject as exc:
        return failure(exc.code, exc.message)
    finally:
        con.unregister("_new_credit_notes")
        con.execute("DROP TABLE IF EXISTS _cn")
    return success(f"{len(df)} credit notes issued", count=len(df), total_cents=total,
                   credit_note_ids=np.asarray(ids, dtype=np.int64))


def issue_credit_note(con: duckdb.DuckDBPyConnection, *, invoice_id: int, reason: str, at: dt.datetime,
                      amount_cents: int | None = None, lines: Sequence[Any] | None = None,
                      user_id: int | None = None, contact_id: int | None = None,
                      note: str | None = None) -> Result:
    """Credit part or all of one invoice with a new credit note that references it.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    invoice_id : int
    reason : str
        One of ``billing_error``, ``goodwill``, ``service_issue``, ``price_dispute``, ``other``.
    at : datetime.datetime
        When it is issued.
    amount_cents : int, optional
        Gross amount to credit (tax included). Give this or ``lines``.
    lines : sequence, optional
        ``(description, gross amount_cents)`` pairs or dicts with those keys; the credit note's
        amount is their sum.
    user_id : int, optional
        Who issues it (audited).
    contact_id : int, optional
        The care contact it resolves; must be a contact of the invoice's customer.
    note : str, optional
        Free text kept on the credit note.

    Returns
    -------
    Result
        ``data``: credit_note_id, number (``CN-00000007``), invoice_id, net_cents, tax_cents,
        total_cents, left_to_credit_cents (after this note). Failures: ``invalid_input`` (amount
        <= 0 or not whole cents, both or neither of amount and lines, unknown reason, contact of
        another customer), ``not_found`` (unknown invoice or contact), ``not_eligible`` (invoice
        not finalized), ``over_limit`` (more than total - already credited).

    Notes
    -----
    ``tax = gross - round_half_away(gross * 10000 / (10000 + tax_rate_bp))`` at the invoice's rate,
    so net + tax = gross exactly; with lines, the net is shared over them by largest remainder
    (:func:`allocate`) and the tax is one more line. The invoice row and its lines are not touched.
    """
    if (amount_cents is None) == (lines is None):
        return failure(INVALID_INPUT, "give either amount_cents or lines")
    if lines is not None:
        described = _normalise_lines(lines)
        if isinstance(described, str):
            return failure(INVALID_INPUT, described)
        gross = sum(amount for _, amount in described)
    else:
        if isinstance(amount_cents, bool) or not isinstance(amount_cents, (int, np.integer)):
            return failure(INVALID_INPUT, f"amount_cents must be a whole number of cents, got {amount_cents!r}")
        gross = int(amount_cents)
        described = None
    if gross <= 0:
        return failure(INVALID_INPUT, f"the amount to credit must be positive, got {gross}")
    if reason not in REASONS:
        return failure(INVALID_INPUT, f"reason must be one of {', '.join(REASONS)}, got {reason!r}")
    row = con.execute("""
        SELECT i.customer_id, i.status, i.total_cents, i.tax_rate_bp, i.currency,
               i.total_cents - coalesce((SELECT sum(c.total_cents) FROM credit_notes c
                                         WHERE c.invoice_id = i.invoice_id), 0)
        FROM invoices i WHERE i.invoice_id = ?""", [invoice_id]).fetchall()
    if not row:
        return failure(NOT_FOUND, f"no invoice {invoice_id}")
    customer_id, status, _total, rate_bp, currency, left = row[0]
    if status != "finalized":
        return failure(NOT_ELIGIBLE, f"invoice {invoice_id} is {status}; only a finalized invoice can be credited")
    if gross > left:
        return failure(OVER_LIMIT, f"{format_cents(gross, currency)} is more than the "
                                   f"{format_cents(left, currency)} left to credit on this invoice",
                       left_to_credit_cents=int(left))
    if contact_id is not None:
        contact = con.execute("SELECT customer_id FROM contacts WHERE contact_id = ?", [contact_id]).fetchall()
        if not contact:
            return failure(NOT_FOUND, f"no contact {contact_id}")
        if contact[0][0] != customer_id:
            return failure(INVALID_INPUT, f"contact {contact_id} is not about this invoice's customer")
    net, tax = split_gross(gross, rate_bp)
    if described is None:
        described = [(f"Credit against INV-{int(invoice_id):08d} ({reason.replace('_', ' ')})", gross)]
    credit_lines = _credit_lines(described, net, tax, rate_bp)
    with transaction(con):
        # Re-read inside the transaction: nothing may have been credited in between.
        left_now = con.execute(
            "SELECT i.total_cents - coalesce((SELECT sum(total_cents) FROM credit_notes c "
            "WHERE c.invoice_id = i.invoice_id), 0) FROM invoices i WHERE i.invoice_id = ?",
            [invoice_id]).fetchall()[0][0]
        if gross > left_now:
            raise RuntimeError("invoice credited concurrently")  # a bug: one writer per database
        credit_note_id = int(con.execute(
            "SELECT coalesce(max(credit_note_id), 0) + 1 FROM credit_notes").fetchall()[0][0])
        con.execute("""
            INSERT INTO credit_notes (credit_note_id, invoice_id, customer_id, issued_at, reason,
                net_cents, tax_cents, total_cents, issued_by, contact_id, note)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [credit_note_id, invoice_id, customer_id, at, reason, net, tax, gross, user_id,
                     contact_id, note])
        con.execute("""
            INSERT INTO credit_note_lines (credit_note_id, line_no, description, amount_cents)
            SELECT ?, CAST(line_no AS INTEGER), description, CAST(amount_cents AS BIGINT)
            FROM (SELECT unnest(?) AS description, unnest(?) AS amount_cents,
                         unnest(range(1, ?)) AS line_no)""",
                    [credit_note_id, [d for d, _ in credit_lines], [a for _, a in credit_lines],
                     len(credit_lines) + 1])
        audit.log(con, at=at, user_id=user_id, action="issue_credit_note", entity="invoice",
                  entity_id=invoice_id,
                  detail={"credit_note_id": credit_note_id, "total_cents": gross, "net_cents": net,
                          "tax_cents": tax, "reason": reason, "contact_id": contact_id})
    number = format_credit_note_number(credit_note_id)
    return success(f"{number} issued: {format_cents(gross, currency)} credited on invoice {invoice_id}",
                   credit_note_id=credit_note_id, number=number, invoice_id=int(invoice_id),
                   net_cents=net, tax_cents=tax, total_cents=gross,
                   left_to_credit_cents=int(left_now) - gross)


class _Reject(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _shown(value) -> str:
    """A cell value as people read it (numpy scalars as plain Python values)."""
    return repr(value.item() if hasattr(value, "item") else value)
