"""What every importer shares: the report type, reading files into DuckDB, temp-table hygiene, audit.

Row numbers in reports count the header as row 1, so the first data record is row 2: the row number
a spreadsheet shows next to it (and, for a CSV file without line breaks inside quoted values, its
line number). Parquet files are numbered the same way (first record = row 2). Problems with a whole
file have no row number; problems with the header (a missing or unknown column) are on row 1.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import duckdb
import pandas as pd

REJECT_COLUMNS = ["file", "row", "column", "reason"]


@dataclass(frozen=True)
class ImportReport:
    """The outcome of an import.

    Attributes
    ----------
    ok : bool
        True when everything was written; False when nothing was written.
    counts : Mapping[str, int]
        Rows per table: written when ``ok``, read from the files otherwise.
    rejected : pandas.DataFrame
        One row per problem: ``file``, ``row`` (header = row 1, first record = row 2; empty for a
        problem with the whole file), ``column`` (empty when not about one column), ``reason``.
        Empty when ``ok``.
    message : str
        One line for people.
    """

    ok: bool
    counts: Mapping[str, int]
    rejected: pd.DataFrame = field(repr=False)
    message: str


def rejects_frame(rows: list[tuple[Any, Any, Any, Any]] | None = None) -> pd.DataFrame:
    """A rejected-rows frame with the report's columns and dtypes."""
    df = pd.DataFrame(rows or [], columns=REJECT_COLUMNS)
    df["row"] = df["row"].astype("Int64")
    for c in ("file", "column", "reason"):
        df[c] = df[c].astype("object")
    return df


def failed(message: str, rejected: pd.DataFrame | None = None,
           counts: Mapping[str, int] | None = None) -> ImportReport:
    return ImportReport(ok=False, counts=dict(counts or {}),
                        rejected=rejected if rejected is not None else rejects_frame(), message=message)


def naive_utc(at: dt.datetime) -> dt.datetime:
    """``at`` as a naive UTC timestamp (the database stores TIMESTAMP in UTC)."""
    if at.tzinfo is not None:
        at = at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return at


def timestamp_literal(at: dt.datetime) -> str:
    """A SQL TIMESTAMP literal for a datetime made by code (never for user text)."""
    if not isinstance(at, dt.datetime):
        raise TypeError("at must be a datetime.datetime")
    return f"TIMESTAMP '{naive_utc(at).isoformat(sep=' ')}'"


def token() -> str:
    """A short random prefix for this import's temporary tables."""
    return "_imp_" + secrets.token_hex(4) + "_"


def drop_temp(con: duckdb.DuckDBPyConnection, prefix: str) -> None:
    """Drop every temporary table and view whose name starts with ``prefix``."""
    rows = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_catalog = 'temp' AND starts_with(table_name, ?)", [prefix]).fetchall()
    for name, kind in rows:
        what = "VIEW" if kind == "VIEW" else "TABLE"
        con.execute(f'DROP {what} IF EXISTS temp."{name}"')


@contextlib.contextmanager
def insertion_order(con: duckdb.DuckDBPyConnection, preserve: bool) -> Iterator[None]:
    """Set DuckDB's ``preserve_insertion_order`` for a block, then restore the caller's setting.

    Loading needs it on (row numbers follow the file); the final bulk insert may run without it
    (rows of a table have no order), which lets DuckDB insert in parallel.
    """
    before = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute(f"SET preserve_insertion_order = {'true' if preserve else 'false'}")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if before else 'false'}")


def has_simulated_world(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database holds a simulated world (``sim_*`` tables): imports go to a fresh file."""
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog <> 'temp' "
        "AND starts_with(table_name, 'sim_')").fetchall()[0][0])


def read_csv_header(path: Path) -> list[str]:
    """The header fields of a CSV file (UTF-8, optional BOM, comma-separated).

    Raises
    ------
    ValueError
        When the file is empty or not UTF-8 text.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    if not header or all(not h.strip() for h in header):
        raise ValueError("empty file (a header row is required)")
    return header


def normalize(name: str) -> str:
    return name.strip().lower()


def csv_source_sql(n_columns: int, rejects_table: str, rejects_scan: str) -> str:
    """A subquery over ``read_csv(?)`` with all columns as text named c0..c{n-1} and ``_row``.

    The file path is the one bound parameter. Columns get positional names so no header text from
    the file is ever written into SQL. Malformed records (wrong number of fields, broken quotes)
    go to ``rejects_table`` instead of failing the read.
    """
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(n_columns))
    return (
        "(SELECT row_number() OVER () + 1 AS _row, * FROM read_csv(?, auto_detect = false, header = true, "
        f"columns = {{{cols}}}, delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
        f"store_rejects = true, rejects_table = '{rejects_table}', rejects_scan = '{rejects_scan}'))")


def csv_structure_problems(con: duckdb.DuckDBPyConnection, rejects_table: str, file: str,
                           names: list[str]) -> list[tuple[Any, Any, Any, Any]]:
    """The malformed records DuckDB set aside while reading a CSV file, as report rows."""
    rows = con.execute(
        f'SELECT line, column_idx, error_type, error_message FROM temp."{rejects_table}" '
        "ORDER BY line").fetchall()
    out = []
    for line, column_idx, error_type, error_message in rows:
        col = None
        if column_idx is not None and 0 < int(column_idx) <= len(names):
            col = names[int(column_idx) - 1]
        reason = f"malformed CSV record ({str(error_type).lower()}): {error_message}"
        out.append((file, int(line) if line is not None else None, col, reason))
    return out


def write_audit(con: duckdb.DuckDBPyConnection, *, at: dt.datetime, user_id: int | None,
                entity_id: str, detail: dict[str, Any]) -> None:
    """Append the audit row of an import (inside the import's transaction); id = max + 1."""
    con.execute(
        "INSERT INTO audit_log SELECT coalesce(max(audit_id), 0) + 1, ?, ?, 'import', 'import', ?, ? "
        "FROM audit_log",
        [naive_utc(at), user_id, entity_id, json.dumps(detail, default=str, sort_keys=True)])
