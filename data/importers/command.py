"""The ``cli.py import`` command (registered by cli.py through :func:`add_import_command`).

    python cli.py [--db PATH] import FOLDER [--report FILE]
    python cli.py [--db PATH] import --format telco FILE [--snapshot YYYY-MM-DD] [--report FILE]

Exit status: 0 imported; 1 rejected (nothing written; the rejected rows are listed, at most
:data:`MAX_SHOWN`, and all of them go to ``--report FILE``); 2 the command could not run (a bad path
or option; one line on stderr, no traceback). This module is part of the command line, so it is the
one place in ``data/importers`` that reads the clock (the import time and the default snapshot).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import pandas as pd

from data.db import DatabaseError, connect
from data.importers.canonical import import_folder
from data.importers.common import ImportReport
from data.importers.telco import import_telco

MAX_SHOWN = 50
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def add_import_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``import`` subcommand to ``cli.py``'s subparsers; its ``func`` is :func:`run_import`."""
    p = subparsers.add_parser(
        "import", help="import a business's history (folder of CSV/Parquet files) or the Telco churn CSV",
        description="Import all or nothing: every rejected row is reported and nothing is written. "
                    "Layout: docs/IMPORT_FORMAT.md.")
    p.add_argument("source", metavar="PATH",
                   help="folder with one <table>.csv or <table>.parquet per table; with --format telco, the CSV file")
    p.add_argument("--format", choices=("canonical", "telco"), default="canonical",
                   help="canonical (default): the documented folder layout; telco: the IBM Telco churn CSV")
    p.add_argument("--snapshot", metavar="YYYY-MM-DD",
                   help="telco only: the date the file describes (default today); tenures count back from it")
    p.add_argument("--report", metavar="FILE", help="write every rejected row (file,row,column,reason) to this CSV")
    p.set_defaults(func=run_import)
    return p


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_import(args: argparse.Namespace) -> int:
    """Run ``cli.py import``; print counts or the rejected rows; return the exit status."""
    source = Path(args.source)
    fmt = getattr(args, "format", "canonical") or "canonical"
    snapshot_text = getattr(args, "snapshot", None)
    report_path = Path(args.report) if getattr(args, "report", None) else None
    if not source.exists():
        return _error(f"{source} does not exist")
    if fmt == "canonical" and not source.is_dir():
        return _error(f"{source} is not a folder (for the Telco churn CSV use --format telco)")
    if fmt == "telco" and not source.is_file():
        return _error(f"{source} is not a file (--format telco takes the CSV file)")
    if snapshot_text and fmt != "telco":
        return _error("--snapshot applies to --format telco only")
    snapshot = dt.date.today()
    if snapshot_text:
        try:
            snapshot = dt.date.fromisoformat(snapshot_text)
        except ValueError:
            return _error(f"--snapshot {snapshot_text!r} is not a date (YYYY-MM-DD)")
    if report_path is not None and not report_path.parent.is_dir():
        return _error(f"cannot write the report: folder {report_path.parent} does not exist")

    at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    try:
        con = connect(getattr(args, "db", None))
    except DatabaseError as exc:
        return _error(str(exc))
    try:
        if fmt == "telco":
            report = import_telco(con, source, snapshot=snapshot, at=at)
        else:
            report = import_folder(con, source, at=at)
    finally:
        con.close()

    if report_path is not None:
        try:
            write_report(report, report_path)
        except OSError as exc:
            print(f"error: cannot write the report {report_path}: {exc.strerror or exc}", file=sys.stderr)
    print_report(report, report_path)
    return 0 if report.ok else 1


def print_report(report: ImportReport, report_path: Path | None = None) -> None:
    """Counts on success; otherwise up to :data:`MAX_SHOWN` rejected rows, then 'and N more'."""
    if report.ok:
        print(report.message)
        for table, n in report.counts.items():
            print(f"  {table:<22}{n:>12,}")
        return
    print(f"error: {report.message}", file=sys.stderr)
    rejected = report.rejected
    if rejected.empty:
        return
    for file, row, column, reason in rejected.head(MAX_SHOWN).itertuples(index=False, name=None):
        where = str(file) if file is not None else ""
        if row is not None and not pd.isna(row):
            where += f" row {int(row)}"
        if column:
            where += f" [{column}]"
        print(f"  {where}: {reason}")
    if len(rejected) > MAX_SHOWN:
        more = len(rejected) - MAX_SHOWN
        hint = f" (all in {report_path})" if report_path else " (use --report FILE for the full list)"
        print(f"  and {more:,} more{hint}")
    print("rows are numbered with the header as row 1 (the first record is row 2)")


def _safe(value: object) -> object:
    """Make a text cell harmless in a spreadsheet (no formula injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_report(report: ImportReport, path: Path) -> None:
    """Write every rejected row to a CSV file (header file,row,column,reason; empty when imported)."""
    df = report.rejected.copy()
    for col in ("file", "column", "reason"):
        df[col] = df[col].map(_safe)
    df.to_csv(path, index=False)
