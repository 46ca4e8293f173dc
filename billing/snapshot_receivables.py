"""Snapshot the receivables: the overdue ageing and the overdue customers, stored for the Invoicing page.

:func:`billing.account.receivables` derives the open balance of every invoice from the ledgers
(15 M invoices and 14 M payments at a million customers: about 4 s), too long for a page's first
load. :func:`snapshot_receivables` computes it once and stores it with a :class:`Watermark` of the
ledgers it was computed from, in the ``receivables_*`` tables (:data:`SNAPSHOT_DDL`, created on first
use); :func:`stored_receivables` reads a snapshot back in the shape of
:func:`billing.account.receivables`, only while the watermark still matches the ledgers.

Who stores one: ``python cli.py receivables``; ``python cli.py bill`` after a run that created
invoices; the app's first-start background analyses; and :func:`current_receivables`, which the
Invoicing page calls, when none is current (so the next load reads it).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass

import duckdb
import pandas as pd

from billing.account import HAS_OPEN_SUBSCRIPTION_SQL, Receivables, receivables
from billing.results import CONFLICT, INVALID_INPUT, Result, failure, success
from data.db import has_table, transaction

__all__ = ["SNAPSHOT_DDL", "KEEP", "Watermark", "watermark", "snapshot_receivables", "stored_receivables",
           "current_receivables"]

KEEP = 4    # at most this many snapshots are kept (each of the current books; see snapshot_receivables)

# The ledgers balances are derived from: (watermark name, table, id column). All three are
# append-only: no code updates or deletes their rows (corrections are new credit notes).
_LEDGERS = (("invoice", "invoices", "invoice_id"),
            ("payment", "payments", "payment_id"),
            ("credit_note", "credit_notes", "credit_note_id"))
WATERMARK_COLUMNS = tuple(c for name, _, _ in _LEDGERS for c in (f"{name}_rows", f"max_{name}_id"))

# One row per snapshot; per snapshot the five ageing buckets in order and one row per overdue
# customer (has_open_subscription is not stored: subscriptions are ended in place, so it is read live).
SNAPSHOT_DDL = """
CREATE TABLE IF NOT EXISTS receivables_snapshots (
    snapshot_id        BIGINT    PRIMARY KEY,
    as_of              DATE      NOT NULL,
    min_periods        INTEGER   NOT NULL,
    created_at         TIMESTAMP NOT NULL,
    seconds            DOUBLE    NOT NULL,   -- computing the receivables took this long
    invoice_rows       BIGINT    NOT NULL,   -- the watermark: rows and highest id of each ledger
    max_invoice_id     BIGINT,
    payment_rows       BIGINT    NOT NULL,
    max_payment_id     BIGINT,
    credit_note_rows   BIGINT    NOT NULL,
    max_credit_note_id BIGINT
);
CREATE TABLE IF NOT EXISTS receivables_ageing (
    snapshot_id    BIGINT  NOT NULL,
    position       INTEGER NOT NULL,
    bucket         VARCHAR NOT NULL,
    min_days       INTEGER,
    max_days       INTEGER,
    invoice_count  BIGINT  NOT NULL,
    customer_count BIGINT  NOT NULL,
    amount_cents   BIGINT  NOT NULL,
    PRIMARY KEY (snapshot_id, position)
);
CREATE TABLE IF NOT EXISTS receivables_overdue_customers (
    snapshot_id       BIGINT  NOT NULL,
    customer_id       BIGINT  NOT NULL,
    overdue_periods   BIGINT  NOT NULL,
    overdue_invoices  BIGINT  NOT NULL,
    overdue_cents     BIGINT  NOT NULL,
    oldest_due_on     DATE    NOT NULL,
    max_days_past_due INTEGER NOT NULL
);
"""
_AGEING_COLUMNS = ("bucket", "min_days", "max_days", "invoice_count", "customer_count", "amount_cents")
_OVERDUE_COLUMNS = ("customer_id", "overdue_periods", "overdue_invoices", "overdue_cents", "oldest_due_on",
                    "max_days_past_due")


@dataclass(frozen=True)
class Watermark:
    """How far the ledgers have grown: the row count and the highest id of invoices, payments and
    credit notes (ids None while a ledger is empty).

    Notes
    -----
    The ledgers are append-only, so every write that can change a balance (a billing run that
    creates invoices, a payment, settled or failed, a credit note, an import) adds rows and changes
    the watermark, and a watermark never comes back: a snapshot whose watermark differs from the
    ledgers' is stale for good.
    """

    invoice_rows: int
    max_invoice_id: int | None
    payment_rows: int
    max_payment_id: int | None
    credit_note_rows: int
    max_credit_note_id: int | None


_WATERMARK_SQL = "SELECT * FROM " + ", ".join(
    f"(SELECT count(*) AS {name}_rows, max({column}) AS max_{name}_id FROM {table})"
    for name, table, column in _LEDGERS)
# The snapshot's watermark equals the bound one ($invoice_rows, ...).
_SAME_WATERMARK = " AND ".join(f"{c} IS NOT DISTINCT FROM ${c}" for c in WATERMARK_COLUMNS)


def watermark(con: duckdb.DuckDBPyConnection) -> Watermark:
    """The ledgers' current :class:`Watermark` (a count and a max of three id columns: a few ms at a
    million customers)."""
    row = con.execute(_WATERMARK_SQL).fetchall()[0]
    return Watermark(*(None if v is None else int(v) for v in row))


def _invalid(as_of, min_periods) -> str | None:
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        return f"as_of must be a date (datetime.date), got {as_of!r}"
    if isinstance(min_periods, bool) or not isinstance(min_periods, int) or min_periods < 1:
        return f"min_periods must be a whole number of at least 1, got {min_periods!r}"
    return None


def snapshot_receivables(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, at: dt.datetime,
                         min_periods: int = 1) -> Result:
    """Compute :func:`billing.account.receivables` and store it as the snapshot for ``as_of`` and
    ``min_periods``, with the watermark of the ledgers it was computed from.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A writable connection.
    as_of : datetime.date
        The day overdue is judged on.
    at : datetime.datetime
        When the snapshot is made (its ``created_at``, shown as "computed at").
    min_periods : int
        Overdue customers with at least this many distinct overdue periods (1 or more).

    Returns
    -------
    Result
        ``data``: snapshot_id, as_of, min_periods, created_at, seconds (computing), watermark
        (dict), overdue_customers (count), removed (older snapshots deleted), receivables (the
        :class:`~billing.account.Receivables` stored, ``computed_at`` = ``at``). Failures:
        ``invalid_input`` (``as_of`` not a date, ``min_periods`` not a whole number >= 1, ``at`` not
        a datetime), ``conflict`` (another session stored a snapshot at the same time: nothing
        written; ``data['receivables']`` holds the figures computed).

    Notes
    -----
    The watermark is read and the receivables computed in the same transaction as the write, so
    the snapshot holds exactly the ledgers its watermark describes. The write replaces the snapshot
    of the same ``as_of`` and ``min_periods``, deletes every snapshot whose watermark differs (stale
    for good, see :class:`Watermark`) and keeps at most :data:`KEEP` snapshots, so the tables hold
    only snapshots of the current books. Creates the tables of :data:`SNAPSHOT_DDL` if needed.
    """
    problem = _invalid(as_of, min_periods)
    if problem is None and not isinstance(at, dt.datetime):
        problem = f"at must be a datetime, got {at!r}"
    if problem:
        return failure(INVALID_INPUT, f"receivables snapshot refused: {problem}")
    min_periods = int(min_periods)
    con.execute(SNAPSHOT_DDL)
    owed = None
    try:
        with transaction(con):
            started = time.perf_counter()
            mark = watermark(con)
            owed = dataclasses.replace(receivables(con, as_of=as_of, min_periods=min_periods), computed_at=at)
            seconds = round(time.perf_counter() - started, 3)
            params = {"as_of": as_of, "min_periods": min_periods, "keep": KEEP - 1, **dataclasses.asdict(mark)}
            removed = con.execute(f"""
                DELETE FROM receivables_snapshots
                WHERE (as_of = $as_of AND min_periods = $min_periods) OR NOT ({_SAME_WATERMARK})
                   OR snapshot_id NOT IN (SELECT snapshot_id FROM receivables_snapshots
                                          ORDER BY snapshot_id DESC LIMIT $keep)""", params).fetchall()[0][0]
            for table in ("receivables_ageing", "receivables_overdue_customers"):
                con.execute(f"DELETE FROM {table} "
                            "WHERE snapshot_id NOT IN (SELECT snapshot_id FROM receivables_snapshots)")
            snapshot_id = int(con.execute("SELECT coalesce(max(snapshot_id), 0) + 1 "
                                          "FROM receivables_snapshots").fetchall()[0][0])
            con.execute(f"""INSERT INTO receivables_snapshots
                            (snapshot_id, as_of, min_periods, created_at, seconds, {', '.join(WATERMARK_COLUMNS)})
                            VALUES (?, ?, ?, ?, ?, {', '.join('?' * len(WATERMARK_COLUMNS))})""",
                        [snapshot_id, as_of, min_periods, at, seconds, *dataclasses.astuple(mark)])
            _insert(con, "receivables_ageing", owed.ageing[list(_AGEING_COLUMNS)].assign(
                snapshot_id=snapshot_id, position=range(len(owed.ageing))))
            _insert(con, "receivables_overdue_customers",
                    owed.overdue_customers[list(_OVERDUE_COLUMNS)].assign(snapshot_id=snapshot_id))
    except duckdb.TransactionException:
        return failure(CONFLICT, f"receivables as of {as_of} not stored: another session stored a snapshot "
                                 "at the same time", **({"receivables": owed} if owed is not None else {}))
    late = owed.overdue_customers
    return success(f"receivables as of {as_of} stored (snapshot {snapshot_id}): {len(late):,} customers with "
                   f"invoices overdue for {min_periods} period{'s' if min_periods > 1 else ''} or more",
                   snapshot_id=snapshot_id, as_of=as_of, min_periods=min_periods, created_at=at, seconds=seconds,
                   watermark=dataclasses.asdict(mark), overdue_customers=len(late), removed=int(removed),
                   receivables=owed)


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Append a frame's rows to ``table`` (a code constant) in one statement, by column name."""
    con.register("_snapshot_rows", frame)
    try:
        cols = ", ".join(frame.columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _snapshot_rows")
    finally:
        con.unregister("_snapshot_rows")


def stored_receivables(con: duckdb.DuckDBPyConnection, *, as_of: dt.date,
                       min_periods: int = 1) -> Receivables | None:
    """The stored snapshot of the receivables for ``as_of`` and ``min_periods``, if it is current.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Read-only is enough.
    as_of : datetime.date
    min_periods : int

    Returns
    -------
    Receivables or None
        As :func:`billing.account.receivables` returns it (the same columns, dtypes and row order),
        with ``computed_at`` = when the snapshot was made; None when no snapshot of this ``as_of``
        and ``min_periods`` matches the ledgers' current :class:`Watermark`.

    Raises
    ------
    ValueError
        When ``as_of`` is not a date or ``min_periods`` not a whole number >= 1.

    Notes
    -----
    Current = its watermark equals the ledgers' now: no invoice, payment or credit note has been
    written since it was computed, so every balance in it is still what
    :func:`billing.account.receivables` would compute. ``has_open_subscription`` is read from the
    subscriptions now, as the live function does. Costs the watermark (a few ms) and reading the
    stored rows.
    """
    problem = _invalid(as_of, min_periods)
    if problem:
        raise ValueError(problem)
    if not has_table(con, "receivables_snapshots"):
        return None
    with transaction(con):     # one consistent view: a concurrent snapshot may replace this one
        found = con.execute(f"""
            SELECT s.snapshot_id, s.created_at FROM receivables_snapshots s, ({_WATERMARK_SQL}) w
            WHERE s.as_of = $as_of AND s.min_periods = $min_periods
              AND {' AND '.join(f's.{c} IS NOT DISTINCT FROM w.{c}' for c in WATERMARK_COLUMNS)}
            ORDER BY s.snapshot_id DESC LIMIT 1""", {"as_of": as_of, "min_periods": int(min_periods)}).fetchall()
        if not found:
            return None
        snapshot_id, created_at = found[0]
        ageing = con.execute(f"SELECT {', '.join(_AGEING_COLUMNS)} FROM receivables_ageing "
                             "WHERE snapshot_id = ? ORDER BY position", [snapshot_id]).df()
        late = con.execute(f"""
            SELECT {', '.join(f'p.{c}' for c in _OVERDUE_COLUMNS)}, {HAS_OPEN_SUBSCRIPTION_SQL} AS has_open_subscription
            FROM receivables_overdue_customers p WHERE p.snapshot_id = ?
            ORDER BY p.overdue_periods DESC, p.customer_id""", [snapshot_id]).df()
    return Receivables(as_of=as_of, ageing=ageing, overdue_customers=late, min_periods=int(min_periods),
                       computed_at=pd.Timestamp(created_at).to_pydatetime())


def current_receivables(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, at: dt.datetime,
                        min_periods: int = 1) -> Result:
    """The receivables for ``as_of``: the stored snapshot while it is current, otherwise computed
    and stored (so the next call reads it). What the Invoicing page shows.

    Returns
    -------
    Result
        ``data['receivables']`` (:class:`~billing.account.Receivables`) and ``data['stored']`` (True
        when read from a current snapshot); the failures of :func:`snapshot_receivables` otherwise
        (a ``conflict`` still carries the figures it computed).

    Notes
    -----
    :func:`stored_receivables`, then :func:`snapshot_receivables` when it finds none.
    """
    problem = _invalid(as_of, min_periods)
    if problem:
        return failure(INVALID_INPUT, f"receivables refused: {problem}")
    owed = stored_receivables(con, as_of=as_of, min_periods=min_periods)
    if owed is not None:
        return success(f"receivables as of {as_of} read from the snapshot computed at {owed.computed_at}",
                       receivables=owed, stored=True)
    res = snapshot_receivables(con, as_of=as_of, at=at, min_periods=min_periods)
    return dataclasses.replace(res, data={**res.data, "stored": False})
