"""The database: where the file is, how to open it, its schema version, and transactions.

Everything that touches DuckDB opens it through :func:`connect`. The default file is
``data/retention.duckdb`` beside this module, overridden by the ``RETENTION_DB`` environment variable
or an explicit path (the CLI's ``--db``). ``":memory:"`` gives a private in-memory database (tests).
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

import duckdb

from data import migrations
from data.money import SQL_MACROS

SCHEMA_VERSION = migrations.SCHEMA_VERSION
SCHEMA_FILE = Path(__file__).with_name("schema.sql")
DEFAULT_DB = Path(__file__).with_name("retention.duckdb")

_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class DatabaseError(Exception):
    """A problem with the database file that the user can act on; its message is one line."""


class DatabaseBusyError(DatabaseError):
    """Another process (usually the running app) holds the database file."""


def resolve_path(path: str | os.PathLike | None = None) -> str:
    """The database location: ``path``, else ``$RETENTION_DB``, else ``data/retention.duckdb``."""
    if path is not None and str(path) != "":
        return str(path)
    env = os.environ.get("RETENTION_DB")
    if env:
        return env
    return str(DEFAULT_DB)


def connect(path: str | os.PathLike | None = None, *, read_only: bool = False,
            create: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the database, creating or upgrading its schema.

    Parameters
    ----------
    path : str or PathLike, optional
        File to open; see :func:`resolve_path`. ``":memory:"`` for a throw-away database.
    read_only : bool
        Open without write access (the schema must already be current).
    create : bool
        When False, a missing file is an error instead of a new empty database.

    Returns
    -------
    duckdb.DuckDBPyConnection

    Raises
    ------
    DatabaseBusyError
        When another process holds the file (DuckDB allows one writing process per file).
    DatabaseError
        When the file is missing (``create=False``), unreadable, or of a schema version this code
        cannot upgrade.
    """
    target = resolve_path(path)
    if target != ":memory:":
        p = Path(target)
        if not p.exists():
            if read_only or not create:
                raise DatabaseError(f"database file {target} does not exist "
                                    "(build one with 'python cli.py demo' or import data)")
            p.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(target, read_only=read_only, config=dict(_CONFIG))
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = re.search(r"PID (\d+)", text)
            who = f" (process {pid.group(1)}, probably the running app)" if pid else ""
            raise DatabaseBusyError(
                f"database file {target} is in use by another process{who}; stop it, or choose "
                "another file with --db or RETENTION_DB") from None
        raise DatabaseError(f"cannot open database file {target}: {text.splitlines()[0]}") from None
    except duckdb.Error as exc:
        raise DatabaseError(f"cannot open database file {target}: {str(exc).splitlines()[0]}") from None
    try:
        con.execute(SQL_MACROS)
        ensure_schema(con, read_only=read_only)
    except Exception:
        con.close()
        raise
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of ``con`` for one thread or one script run, with the connection's SQL macros.

    DuckDB's ``con.cursor()`` is a separate connection to the same database: temporary macros such
    as ``round_div`` do not carry over, so always take cursors through this function.
    """
    cur = con.cursor()
    cur.execute(SQL_MACROS)
    return cur


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version recorded in the database, or None for an empty database."""
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_meta' "
        "AND table_schema = 'main'").fetchall()[0][0]
    if not has_meta:
        return None
    row = con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchall()
    return int(row[0][0]) if row else None


def ensure_schema(con: duckdb.DuckDBPyConnection, *, read_only: bool = False) -> None:
    """Create the schema in an empty database, upgrade an older one in place, refuse a newer one."""
    version = schema_version(con)
    if version == SCHEMA_VERSION:
        return
    if version is not None and version > SCHEMA_VERSION:
        raise DatabaseError(
            f"database schema version {version} is newer than this Retention Desk understands "
            f"({SCHEMA_VERSION}); upgrade the application")
    if read_only:
        raise DatabaseError(
            f"database schema version {version} needs an upgrade to {SCHEMA_VERSION}; "
            "open it once for writing")
    if version is None:
        user_tables = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main'").fetchall()[0][0]
        if user_tables:
            raise DatabaseError("this DuckDB file is not a Retention Desk database (no schema version)")
        with transaction(con):
            con.execute(SCHEMA_FILE.read_text())
            con.execute("INSERT INTO schema_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        return
    steps = migrations.steps_from(version)
    if steps is None:
        raise DatabaseError(
            f"database schema version {version} is too old to upgrade automatically "
            f"(this Retention Desk has version {SCHEMA_VERSION}); rebuild or re-import it")
    with transaction(con):
        for sql in steps:
            con.execute(sql)
        con.execute("UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One explicit transaction: commit on success, roll back on any exception.

    Note that ``with con:`` in DuckDB closes the connection; use this instead.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


def next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    """The next free id of ``table.column`` (max + 1), to call inside the writing transaction.

    ``table`` and ``column`` are code constants, never user input.
    """
    if not re.fullmatch(r"[a-z_]+", table) or not re.fullmatch(r"[a-z_]+", column):
        raise ValueError("table and column must be identifiers")
    return int(con.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchall()[0][0])


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table or view of this name exists in the main schema."""
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [name]).fetchall()[0][0])
