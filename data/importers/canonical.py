"""Import a business's history from a folder of canonical CSV or Parquet files, all or nothing.

Grain: one file per table (``customers.csv`` or ``customers.parquet`` ...), layout in
:mod:`data.importers.spec` and ``docs/IMPORT_FORMAT.md``.

Steps, each set-based in DuckDB (no Python loop over rows):

1. find the files; check each header (missing required, unknown or duplicated columns; Parquet
   column types that cannot hold the column);
2. load each file into a typed temporary table in one pass, keeping the text of every cell that
   does not convert (decimal money, bad dates, ...) as a reason; malformed CSV records are set aside;
3. fill derived columns (an invoice's customer from its subscription, its subtotal from its lines ...);
4. run the checks (required values, enumerations, ranges, keys unique in the file and against the
   database, references into the import or the database, invariants) as SQL queries that append
   (file, row, column, reason) to a rejection table;
5. if nothing was rejected, insert every table and one audit row in one transaction.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
import duckdb

from data.db import transaction
from data.importers import spec
from data.importers.common import (ImportReport, csv_source_sql, csv_structure_problems, drop_temp, failed,
                                   has_simulated_world, insertion_order, normalize, read_csv_header, rejects_frame,
                                   timestamp_literal, token, write_audit)
from data.importers.spec import TABLES, Col

EXTENSIONS = ("csv", "parquet")

_INT_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
              "UBIGINT", "UHUGEINT"}
_FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}
_TS_TYPES = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE",
             "DATETIME"}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
# From this many rows, a file's duplicate and reference checks look for any problem first and go back
# to the rows only when there is one (joining a big file back costs more than the search).
_BIG_FILE = 50_000
_TS_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?)?Z?"


@dataclass
class _File:
    """One input file while it is being imported."""

    table: str
    path: Path
    fmt: str                                      # 'csv' or 'parquet'
    names: list[str] = field(default_factory=list)      # header names as in the file
    source: dict[str, str] = field(default_factory=dict)   # spec column -> source expression
    source_type: dict[str, str] = field(default_factory=dict)
    errors: set[str] = field(default_factory=set)         # columns with a conversion-error column
    rows: int = 0

    @property
    def file(self) -> str:
        return self.path.name


def import_folder(con: duckdb.DuckDBPyConnection, folder: str | Path, *, at: dt.datetime,
                  user_id: int | None = None) -> ImportReport:
    """Import the canonical files of ``folder`` into the database, all or nothing.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A database opened with :func:`data.db.connect`.
    folder : str or Path
        A folder holding one file per table, named ``<table>.csv`` or ``<table>.parquet``
        (see ``docs/IMPORT_FORMAT.md``). Every file is optional; at least one must be there.
    at : datetime.datetime
        When the import happens (UTC); stamps the audit row and default ``created_at`` values.
    user_id : int, optional
        Who imports (None = the system), recorded in the audit log.

    Returns
    -------
    ImportReport
        ``ok`` with rows written per table; or not ``ok`` with every rejected row, and nothing written.

    Notes
    -----
    References may point to rows in the same import or already in the database; keys must be new.
    Rows are numbered as a spreadsheet does: header = row 1, first record = row 2 (Parquet alike).
    Problems with files or headers are reported before (and instead of) row checks. A database
    holding a simulated world (``sim_*`` tables) refuses imports: import into a new database file.
    """
    folder = Path(folder)
    if not folder.exists():
        return failed(f"import folder {folder} does not exist")
    if not folder.is_dir():
        return failed(f"{folder} is not a folder (use --format telco for a Telco CSV file)")
    if has_simulated_world(con):
        return failed("this database holds a simulated world; import real data into a new database file "
                      "(--db or RETENTION_DB)")

    files, problems = _find_files(folder)
    if problems:
        return _rejected(problems, {}, files)
    if not files:
        expected = ", ".join(f"{t}.csv" for t in spec.ORDER)
        return failed(f"no table files in {folder} (expected some of: {expected}; or .parquet)")

    prefix = token()
    try:
        for f in files.values():
            problems.extend(_read_header(con, f))
        if problems:
            return _rejected(problems, {}, files)
        names = {t: f"{prefix}{t}" for t in spec.ORDER}
        names["line_sums"] = f"{prefix}line_sums"
        at_sql = timestamp_literal(at)
        with insertion_order(con, True):  # row numbers follow the file
            for table in spec.ORDER:
                if table in files:
                    problems.extend(_load(con, files[table], names[table], prefix, at_sql))
                else:
                    _create_empty(con, table, names[table])
        counts = {t: files[t].rows for t in spec.ORDER if t in files}
        if problems:
            return _rejected(problems, counts, files)
        views = _create_union_views(con, names, prefix)
        _derive(con, names, views, set(files))
        # Duplicate keys within a file that a table constraint refuses anyway are looked for only when
        # the report is needed: with other rejections, or when the insert below hits the constraint.
        enforced = _enforced_keys(con)
        rejected = _check(con, files, names, views, prefix, skip_keys=enforced)
        if rejected:
            return _rejected(_in_report_order(rejected + _check(con, files, names, views, prefix,
                                                                only_keys=enforced), files), counts, files)
        try:
            with insertion_order(con, False), transaction(con):
                for table in spec.ORDER:
                    if table in files:
                        cols = ", ".join(TABLES[table].column_names)
                        con.execute(f'INSERT INTO {table} ({cols}) SELECT {cols} FROM temp."{names[table]}"')
                write_audit(con, at=at, user_id=user_id, entity_id=str(folder),
                            detail={"format": "canonical", "source": str(folder),
                                    "files": sorted(f.file for f in files.values()), "counts": counts})
        except duckdb.Error as exc:  # a rule the checks missed: nothing was written
            duplicates = _check(con, files, names, views, prefix, only_keys=enforced)
            if duplicates:
                return _rejected(duplicates, counts, files)
            first = str(exc).splitlines()[0]
            return failed(f"the database refused the import, nothing was written: {first}",
                          rejects_frame([(None, None, None, first)]), counts)
        total = sum(counts.values())
        summary = ", ".join(f"{t} {counts[t]:,}" for t in spec.ORDER if t in counts)
        return ImportReport(ok=True, counts=counts, rejected=rejects_frame(),
                            message=f"imported {total:,} rows from {len(files)} files: {summary}")
    finally:
        drop_temp(con, prefix)


# ---------------------------------------------------------------------------------------------
# 1. files and headers


def _find_files(folder: Path) -> tuple[dict[str, _File], list[tuple]]:
    files: dict[str, _File] = {}
    problems: list[tuple] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        stem, dot, ext = path.name.rpartition(".")
        if not dot or ext.lower() not in EXTENSIONS:
            continue  # README, notes ...: not table files
        table = stem.lower()
        if table not in TABLES:
            problems.append((path.name, None, None,
                             "unknown table file; expected one of: " + ", ".join(spec.ORDER)))
            continue
        if table in files:
            problems.append((path.name, None, None,
                             f"{table} given twice ({files[table].file} and {path.name}); keep one"))
            continue
        files[table] = _File(table=table, path=path, fmt=ext.lower())
    return files, problems


def _read_header(con: duckdb.DuckDBPyConnection, f: _File) -> list[tuple]:
    """Check one file's header; fill ``f.names``, ``f.source`` and ``f.source_type``."""
    table = TABLES[f.table]
    problems: list[tuple] = []
    if f.fmt == "csv":
        try:
            f.names = read_csv_header(f.path)
        except (OSError, ValueError) as exc:
            return [(f.file, None, None, f"cannot read the file: {exc}")]
        types = ["VARCHAR"] * len(f.names)
        exprs = [f"c{i}" for i in range(len(f.names))]
    else:
        try:
            desc = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(f.path)]).fetchall()
        except duckdb.Error as exc:
            return [(f.file, None, None, f"cannot read the Parquet file: {str(exc).splitlines()[0]}")]
        f.names = [r[0] for r in desc]
        types = [str(r[1]) for r in desc]
        exprs = ['"' + n.replace('"', '""') + '"' for n in f.names]
    seen: set[str] = set()
    for name, typ, expr in zip(f.names, types, exprs):
        col = normalize(name)
        if col in seen:
            problems.append((f.file, 1, name, "column appears twice in the header"))
            continue
        seen.add(col)
        if col not in table.column_names:
            hint = ""
            if f.fmt == "csv" and len(f.names) == 1 and (";" in name or "\t" in name):
                hint = " (the file looks semicolon- or tab-separated; files must be comma-separated)"
            problems.append((f.file, 1, name, f"unknown column for {f.table}{hint}"))
            continue
        c = table.col(col)
        if not _compatible(typ, c):
            problems.append((f.file, 1, name, f"Parquet type {typ} cannot hold {spec.TYPE_DOC[c.type]} values"))
            continue
        f.source[col] = expr
        f.source_type[col] = typ
    for c in table.columns:
        if c.required and c.name not in seen:
            problems.append((f.file, 1, c.name, "required column missing from the header"))
    return problems


def _family(typ: str) -> str:
    t = typ.upper()
    if t in _INT_TYPES:
        return "int"
    if t in _FLOAT_TYPES or t.startswith("DECIMAL"):
        return "float"
    if t in _TS_TYPES:
        return "ts"
    if t == "DATE":
        return "date"
    if t == "BOOLEAN":
        return "bool"
    if t == "VARCHAR":
        return "text"
    if t.endswith("[]"):
        return "list"
    if t == '"NULL"' or t == "NULL":
        return "null"
    return "other"


def _compatible(typ: str, c: Col) -> bool:
    fam = _family(typ)
    if fam in ("text", "null"):
        return True
    return {
        "id": ("int", "float"), "int": ("int", "float"), "count": ("int", "float"), "cents": ("int", "float"),
        "date": ("date", "ts"), "month": ("date", "ts"), "ts": ("date", "ts"),
        "bool": ("bool", "int"), "text": ("int", "float", "date", "ts", "bool"), "reasons": ("list",),
    }[c.type].__contains__(fam)


# ---------------------------------------------------------------------------------------------
# 2. typed loading


def _quote(value: str) -> str:
    """A SQL string literal of a code constant (reasons, enum values)."""
    return "'" + value.replace("'", "''") + "'"


def _shown(v: str) -> str:
    """SQL for the offending value as shown in a reason (quoted, at most 40 characters)."""
    return f"'''' || left(CAST({v} AS VARCHAR), 40) || ''''"


def _convert(c: Col, v: str, fam: str) -> tuple[str, str | None]:
    """(typed expression, reason expression or None) for source value ``v`` of family ``fam``.

    ``v`` is already trimmed with empty text as NULL. The reason expression is evaluated only where
    ``v`` is not NULL and the typed value is NULL.
    """
    T = c.sql_type
    if fam == "null":
        return f"CAST(NULL AS {T})", None
    if c.type in ("id", "int", "count", "cents"):
        if fam == "float":
            decimal = ("'decimal amount ' || " + _shown(v) + " || ': money is in integer cents'"
                       if c.type == "cents" else "'not an integer: ' || " + _shown(v))
            return (f"CASE WHEN {v} = trunc({v}) THEN TRY_CAST({v} AS {T}) END",
                    f"CASE WHEN {v} <> trunc({v}) THEN {decimal} ELSE 'integer out of range' END")
        if fam == "int":
            return f"TRY_CAST({v} AS {T})", "'integer out of range'"
        decimal = ("'decimal amount ' || " + _shown(v) + " || ': money is in integer cents'"
                   if c.type == "cents" else "'not an integer: ' || " + _shown(v))
        return (f"CASE WHEN regexp_full_match({v}, '[+-]?[0-9]+') THEN TRY_CAST({v} AS {T}) END",
                f"CASE WHEN regexp_full_match({v}, '[+-]?[0-9]*[.,][0-9]+') THEN {decimal} "
                f"WHEN regexp_full_match({v}, '[+-]?[0-9]+') THEN 'integer out of range' "
                f"ELSE 'not an integer: ' || {_shown(v)} END")
    if c.type in ("date", "month"):
        if fam == "date":
            return v, None
        if fam == "ts":
            return (f"CASE WHEN CAST({v} AS TIMESTAMP) = date_trunc('day', CAST({v} AS TIMESTAMP)) "
                    f"THEN CAST(CAST({v} AS TIMESTAMP) AS DATE) END",
                    "'has a time of day; expected a date: ' || " + _shown(v))
        return (f"CASE WHEN regexp_full_match({v}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') "
                f"THEN TRY_CAST({v} AS DATE) END",
                "'not a date (YYYY-MM-DD): ' || " + _shown(v))
    if c.type == "ts":
        if fam in ("date", "ts"):
            return f"CAST({v} AS TIMESTAMP)", None
        return (f"CASE WHEN regexp_full_match({v}, '{_TS_PATTERN}') "
                f"THEN TRY_CAST(rtrim({v}, 'Z') AS TIMESTAMP) END",
                "'not a timestamp (YYYY-MM-DD HH:MM:SS, UTC): ' || " + _shown(v))
    if c.type == "bool":
        if fam == "bool":
            return v, None
        if fam == "int":
            return f"CASE WHEN {v} = 1 THEN TRUE WHEN {v} = 0 THEN FALSE END", \
                "'not a boolean (true/false): ' || " + _shown(v)
        trues = ", ".join(_quote(x) for x in _TRUE)
        falses = ", ".join(_quote(x) for x in _FALSE)
        return (f"CASE WHEN lower({v}) IN ({trues}) THEN TRUE WHEN lower({v}) IN ({falses}) THEN FALSE END",
                "'not a boolean (true/false): ' || " + _shown(v))
    if c.type == "reasons":
        if fam == "list":
            return f"CAST({v} AS VARCHAR[])", None
        return (f"list_filter(list_transform(string_split({v}, '|'), lambda x: trim(x)), lambda x: x <> '')", None)
    # text
    if fam == "text":
        return v, None
    return f"CAST({v} AS VARCHAR)", None


def _load(con: duckdb.DuckDBPyConnection, f: _File, name: str, prefix: str, at_sql: str) -> list[tuple]:
    """Load one file into the typed temp table ``name`` in one pass; return malformed-CSV problems."""
    table = TABLES[f.table]
    rej_table, rej_scan = f"{prefix}rej_{f.table}", f"{prefix}rejscan_{f.table}"
    if f.fmt == "csv":
        source = csv_source_sql(len(f.names), rej_table, rej_scan)
    else:
        source = "(SELECT file_row_number + 2 AS _row, * FROM read_parquet(?, file_row_number = true))"
    level1 = ["_row"]
    level2 = ["_row"]
    level3 = ["_row"]
    for c in table.columns:
        if c.name not in f.source:
            default = "NULL" if c.default is None else (at_sql if c.default == "@at" else c.default)
            level3.append(f"CAST({default} AS {c.sql_type}) AS {c.name}")
            continue
        fam = _family(f.source_type[c.name])
        expr = f.source[c.name]
        raw = f"nullif(trim({expr}), '')" if fam == "text" else expr
        level1.append(f"{raw} AS v_{c.name}")
        if f.source_type[c.name].upper() == c.sql_type:
            typed, reason = f"v_{c.name}", None      # already the right type (Parquet)
        else:
            typed, reason = _convert(c, f"v_{c.name}", fam)
        level2.append(f"v_{c.name}")
        level2.append(f"{typed} AS t_{c.name}")
        out = f"t_{c.name}"
        if c.default is not None:
            default = at_sql if c.default == "@at" else c.default
            out = f"coalesce(t_{c.name}, CAST({default} AS {c.sql_type}))"
        level3.append(f"{out} AS {c.name}")
        if reason is not None:
            f.errors.add(c.name)
            level3.append(f"CASE WHEN v_{c.name} IS NOT NULL AND t_{c.name} IS NULL THEN {reason} END "
                          f"AS _e_{c.name}")
    sql = (f'CREATE TEMP TABLE "{name}" AS SELECT {", ".join(level3)} FROM ('
           f'SELECT {", ".join(level2)} FROM (SELECT {", ".join(level1)} FROM {source}))')
    try:
        con.execute(sql, [str(f.path)])
    except duckdb.Error as exc:
        return [(f.file, None, None, f"cannot read the file: {str(exc).splitlines()[0]}")]
    f.rows = int(con.execute(f'SELECT count(*) FROM temp."{name}"').fetchall()[0][0])
    if f.fmt == "csv":
        return csv_structure_problems(con, rej_table, f.file, f.names)
    return []


def _create_empty(con: duckdb.DuckDBPyConnection, table: str, name: str) -> None:
    cols = ", ".join(f"{c.name} {c.sql_type}" for c in TABLES[table].columns)
    con.execute(f'CREATE TEMP TABLE "{name}" (_row BIGINT, {cols})')


def _create_union_views(con: duckdb.DuckDBPyConnection, names: dict[str, str], prefix: str) -> dict[str, str]:
    """Per table, a view of its rows in this import and in the database (for references)."""
    views = {}
    for table in spec.ORDER:
        cols = ", ".join(TABLES[table].column_names)
        views[table] = f"{prefix}all_{table}"
        con.execute(f'CREATE TEMP VIEW "{views[table]}" AS SELECT {cols} FROM temp."{names[table]}" '
                    f"UNION ALL SELECT {cols} FROM {table}")
    return views


# ---------------------------------------------------------------------------------------------
# 3. derived columns


def _derive(con: duckdb.DuckDBPyConnection, names: dict[str, str], views: dict[str, str],
            present: set[str]) -> None:
    n = {t: f'temp."{v}"' for t, v in names.items()}
    u = {t: f'temp."{v}"' for t, v in views.items()}
    # One row per imported invoice_id that has lines: the total the invoice must agree with.
    con.execute(f"""
        CREATE TEMP TABLE {n['line_sums']} AS
        SELECT invoice_id, CAST(sum(amount_cents) AS BIGINT) AS amount_cents
        FROM {n['invoice_lines']} WHERE invoice_id IS NOT NULL GROUP BY invoice_id""")
    if "subscriptions" in present:
        con.execute(f"UPDATE {n['subscriptions']} SET end_reason = 'imported' "
                    "WHERE end_reason IS NULL AND end_date IS NOT NULL")
    if "invoice_lines" in present:
        con.execute(f"UPDATE {n['invoice_lines']} SET description = kind WHERE description IS NULL")
    if "invoices" in present:
        inv = n["invoices"]
        need = con.execute(f"""
            SELECT count(*) FILTER (customer_id IS NULL OR plan_id IS NULL),
                   count(*) FILTER (currency IS NULL),
                   count(*) FILTER (period_end IS NULL OR due_on IS NULL),
                   count(*) FILTER (subtotal_cents IS NULL OR discount_cents IS NULL OR tax_cents IS NULL
                                    OR credit_cents IS NULL)
            FROM {inv}""").fetchall()[0]
        if need[0]:
            con.execute(f"""
                UPDATE {inv} SET customer_id = coalesce({inv}.customer_id, s.customer_id),
                                 plan_id = coalesce({inv}.plan_id, s.plan_id)
                FROM (SELECT subscription_id, any_value(customer_id) AS customer_id, any_value(plan_id) AS plan_id
                      FROM {u['subscriptions']} GROUP BY subscription_id) s
                WHERE s.subscription_id = {inv}.subscription_id
                  AND ({inv}.customer_id IS NULL OR {inv}.plan_id IS NULL)""")
        if need[1] or need[0]:
            con.execute(f"""
                UPDATE {inv} SET currency = c.currency
                FROM (SELECT customer_id, any_value(currency) AS currency FROM {u['customers']} GROUP BY customer_id) c
                WHERE c.customer_id = {inv}.customer_id AND {inv}.currency IS NULL""")
        if need[2]:
            con.execute(f"""
                UPDATE {inv} SET period_end = coalesce(period_end, last_day(period_start)),
                                 due_on = coalesce(due_on, issued_on)
                WHERE period_end IS NULL OR due_on IS NULL""")
        if need[3]:
            con.execute(f"""
                UPDATE {inv} SET subtotal_cents = coalesce({inv}.subtotal_cents, coalesce(l.subtotal_cents, 0)),
                                 discount_cents = coalesce({inv}.discount_cents, coalesce(l.discount_cents, 0)),
                                 tax_cents = coalesce({inv}.tax_cents, coalesce(l.tax_cents, 0)),
                                 credit_cents = coalesce({inv}.credit_cents, coalesce(l.credit_cents, 0))
                FROM (SELECT i.invoice_id, s.subtotal_cents, s.discount_cents, s.tax_cents, s.credit_cents
                      FROM {inv} i LEFT JOIN (
                          SELECT invoice_id,
                                 CAST(sum(amount_cents) FILTER (kind IN ('plan', 'proration', 'usage', 'charge'))
                                      AS BIGINT) AS subtotal_cents,
                                 CAST(-sum(amount_cents) FILTER (kind = 'discount') AS BIGINT) AS discount_cents,
                                 CAST(sum(amount_cents) FILTER (kind = 'tax') AS BIGINT) AS tax_cents,
                                 CAST(-sum(amount_cents) FILTER (kind = 'credit') AS BIGINT) AS credit_cents
                          FROM {n['invoice_lines']} WHERE invoice_id IS NOT NULL GROUP BY invoice_id) s
                      USING (invoice_id)) l
                WHERE l.invoice_id = {inv}.invoice_id
                  AND ({inv}.subtotal_cents IS NULL OR {inv}.discount_cents IS NULL
                       OR {inv}.tax_cents IS NULL OR {inv}.credit_cents IS NULL)""")
    if "credit_notes" in present:
        cn = n["credit_notes"]
        con.execute(f"""
            UPDATE {cn} SET customer_id = i.customer_id
            FROM (SELECT invoice_id, any_value(customer_id) AS customer_id FROM {u['invoices']} GROUP BY invoice_id) i
            WHERE i.invoice_id = {cn}.invoice_id AND {cn}.customer_id IS NULL""")
        con.execute(f"UPDATE {cn} SET total_cents = net_cents + tax_cents WHERE total_cents IS NULL")
    if "offer_grants" in present:
        g = n["offer_grants"]
        con.execute(f"""
            UPDATE {g} SET kind = coalesce({g}.kind, o.kind),
                           percent_off = coalesce({g}.percent_off, o.percent_off),
                           credit_cents = coalesce({g}.credit_cents, o.credit_cents),
                           cycles = coalesce({g}.cycles, o.cycles, 1)
            FROM (SELECT offer_id, any_value(kind) AS kind, any_value(percent_off) AS percent_off,
                         any_value(credit_cents) AS credit_cents, any_value(cycles) AS cycles
                  FROM {u['offers']} GROUP BY offer_id) o
            WHERE o.offer_id = {g}.offer_id
              AND ({g}.kind IS NULL OR {g}.percent_off IS NULL OR {g}.credit_cents IS NULL OR {g}.cycles IS NULL)""")


# ---------------------------------------------------------------------------------------------
# 4. checks

_CURRENCY = "NOT regexp_full_match(t.currency, '[A-Z]{{3}}')"  # braces doubled: str.format later
_CURRENCY_REASON = "'not a currency code (3 capital letters): ''' || t.currency || ''''"

# Checks beyond the generic ones, as (table, column, SQL). Each SQL selects (_row, reason) from the
# import table ``t``; {n[x]} is table x of this import, {u[x]} its rows in the import and the database.
# A check whose column is None selects (_row, column, reason): several rules sharing one join.
CUSTOM_CHECKS: list[tuple[str, str | None, str]] = [
    ("customers", "churned_on",
     "SELECT _row, 'churned_on ' || churned_on || ' is before signup_date ' || signup_date FROM {n[customers]} t "
     "WHERE churned_on < signup_date"),
    ("customers", "churn_kind",
     "SELECT _row, 'churn_kind given without churned_on' FROM {n[customers]} t "
     "WHERE churn_kind IS NOT NULL AND churned_on IS NULL"),
    ("customers", "currency", f"SELECT _row, {_CURRENCY_REASON} FROM {{n[customers]}} t WHERE {_CURRENCY}"),
    ("plans", "currency", f"SELECT _row, {_CURRENCY_REASON} FROM {{n[plans]}} t WHERE {_CURRENCY}"),
    ("plans", "plan_id",
     "SELECT _row, 'plan ' || plan_id || ' has no price (no plan_prices row in the import or the database)' "
     "FROM {n[plans]} t WHERE plan_id IS NOT NULL "
     "AND NOT EXISTS (SELECT 1 FROM {u[plan_prices]} p WHERE p.plan_id = t.plan_id)"),
    ("subscriptions", "end_date",
     "SELECT _row, 'end_date ' || end_date || ' is before start_date ' || start_date FROM {n[subscriptions]} t "
     "WHERE end_date < start_date"),
    ("subscriptions", "end_reason",
     "SELECT _row, 'end_reason given without end_date' FROM {n[subscriptions]} t "
     "WHERE end_reason IS NOT NULL AND end_date IS NULL"),
    ("offers", "percent_off",
     "SELECT _row, 'a percent_off offer needs percent_off and cycles' FROM {n[offers]} t "
     "WHERE kind = 'percent_off' AND (percent_off IS NULL OR cycles IS NULL)"),
    ("offers", "cycles",
     "SELECT _row, 'a free_months offer needs cycles' FROM {n[offers]} t WHERE kind = 'free_months' AND cycles IS NULL"),
    ("offers", "credit_cents",
     "SELECT _row, 'a fixed_credit offer needs credit_cents' FROM {n[offers]} t "
     "WHERE kind = 'fixed_credit' AND credit_cents IS NULL"),
    ("offers", "eligible_reasons",
     "SELECT _row, 'unknown contact reason(s): ' || array_to_string(list_filter(eligible_reasons, "
     "lambda x: x NOT IN (" + ", ".join(_quote(r) for r in spec.CONTACT_REASONS) + ")), ', ') "
     "FROM {n[offers]} t WHERE len(list_filter(eligible_reasons, lambda x: x NOT IN ("
     + ", ".join(_quote(r) for r in spec.CONTACT_REASONS) + "))) > 0"),
    ("contacts", "invoice_id",
     "SELECT t._row, 'invoice ' || t.invoice_id || ' belongs to customer ' || i.customer_id || ', not ' "
     "|| t.customer_id FROM {n[contacts]} t JOIN {u[invoices]} i ON i.invoice_id = t.invoice_id "
     "WHERE i.customer_id <> t.customer_id"),
    ("offer_grants", "contact_id",
     "SELECT t._row, 'contact ' || t.contact_id || ' belongs to customer ' || c.customer_id || ', not ' "
     "|| t.customer_id FROM {n[offer_grants]} t JOIN {u[contacts]} c ON c.contact_id = t.contact_id "
     "WHERE c.customer_id <> t.customer_id"),
    # customer_id, plan_id and period_start against the invoice's subscription, in one join
    ("invoices", None,
     "SELECT _row, p.c, p.r FROM (SELECT t._row, unnest(list_filter(["
     "struct_pack(c := 'customer_id', r := CASE WHEN t.customer_id <> s.customer_id THEN "
     "'customer_id ' || t.customer_id || ' is not the customer of subscription ' "
     "|| t.subscription_id || ' (' || s.customer_id || ')' END), "
     "struct_pack(c := 'plan_id', r := CASE WHEN t.plan_id <> s.plan_id THEN "
     "'plan_id ' || t.plan_id || ' is not the plan of subscription ' "
     "|| t.subscription_id || ' (' || s.plan_id || ')' END), "
     "struct_pack(c := 'period_start', r := CASE WHEN s.start_date > last_day(t.period_start) "
     "OR s.end_date < t.period_start THEN "
     "'subscription ' || t.subscription_id || ' serves no day of this period (it serves ' "
     "|| s.start_date || ' to ' || coalesce(CAST(s.end_date AS VARCHAR), 'open') || ')' END)], "
     "lambda x: x.r IS NOT NULL)) AS p FROM {n[invoices]} t "
     "JOIN {u[subscriptions]} s ON s.subscription_id = t.subscription_id "
     "WHERE t.customer_id <> s.customer_id OR t.plan_id <> s.plan_id "
     "OR s.start_date > last_day(t.period_start) OR s.end_date < t.period_start)"),
    ("invoices", "period_end",
     "SELECT _row, 'period_end ' || period_end || ' is not the last day of the period''s month (' "
     "|| last_day(period_start) || ')' FROM {n[invoices]} t WHERE period_end <> last_day(period_start)"),
    ("invoices", "due_on",
     "SELECT _row, 'due_on ' || due_on || ' is before issued_on ' || issued_on FROM {n[invoices]} t "
     "WHERE due_on < issued_on"),
    ("invoices", "total_cents",
     "SELECT t._row, 'total_cents ' || t.total_cents || ' is not the sum of its lines (' "
     "|| coalesce(l.amount_cents, 0) || CASE WHEN l.invoice_id IS NULL THEN ', no lines in invoice_lines' "
     "ELSE '' END || ')' FROM {n[invoices]} t LEFT JOIN {n[line_sums]} l "
     "ON l.invoice_id = t.invoice_id WHERE t.total_cents <> coalesce(l.amount_cents, 0)"),
    ("invoices", "total_cents",
     "SELECT _row, 'total_cents ' || total_cents || ' is not subtotal - discount + tax - credit (' "
     "|| (subtotal_cents - discount_cents + tax_cents - credit_cents) || ')' FROM {n[invoices]} t "
     "WHERE total_cents <> subtotal_cents - discount_cents + tax_cents - credit_cents"),
    ("invoice_lines", "amount_cents",
     "SELECT _row, kind || ' lines are negative or zero: ' || amount_cents FROM {n[invoice_lines]} t "
     "WHERE kind IN ('discount', 'credit') AND amount_cents > 0"),
    ("invoice_lines", "amount_cents",
     "SELECT _row, kind || ' lines are not negative: ' || amount_cents FROM {n[invoice_lines]} t "
     "WHERE kind IN ('plan', 'usage', 'charge') AND amount_cents < 0"),
    ("credit_notes", "customer_id",
     "SELECT t._row, 'customer_id ' || t.customer_id || ' is not the customer of invoice ' || t.invoice_id "
     "|| ' (' || i.customer_id || ')' FROM {n[credit_notes]} t JOIN {u[invoices]} i ON i.invoice_id = t.invoice_id "
     "WHERE t.customer_id <> i.customer_id"),
    ("credit_notes", "total_cents",
     "SELECT _row, 'total_cents ' || total_cents || ' is not net_cents + tax_cents (' || (net_cents + tax_cents) "
     "|| ')' FROM {n[credit_notes]} t WHERE total_cents <> net_cents + tax_cents"),
    ("credit_notes", "total_cents",
     "SELECT t._row, 'total_cents ' || t.total_cents || ' is not the sum of its lines (' "
     "|| coalesce(l.amount_cents, 0) || CASE WHEN l.amount_cents IS NULL THEN ', no lines in credit_note_lines' "
     "ELSE '' END || ')' FROM {n[credit_notes]} t "
     "LEFT JOIN (SELECT credit_note_id, sum(amount_cents) AS amount_cents FROM {n[credit_note_lines]} "
     "GROUP BY credit_note_id) l ON l.credit_note_id = t.credit_note_id "
     "WHERE t.total_cents <> coalesce(l.amount_cents, 0)"),
    ("credit_notes", "total_cents",
     "SELECT t._row, 'credit notes on invoice ' || t.invoice_id || ' total ' || c.credited || ', more than the '"
     "|| 'invoice total ' || i.total_cents FROM {n[credit_notes]} t "
     "JOIN (SELECT invoice_id, sum(total_cents) AS credited FROM {u[credit_notes]} GROUP BY invoice_id) c "
     "ON c.invoice_id = t.invoice_id "
     "JOIN (SELECT invoice_id, any_value(total_cents) AS total_cents FROM {u[invoices]} GROUP BY invoice_id) i "
     "ON i.invoice_id = t.invoice_id WHERE c.credited > i.total_cents"),
]


def _key_text(cols: tuple[str, ...], alias: str = "t") -> str:
    if len(cols) == 1:
        return f"'{cols[0]} ' || {alias}.{cols[0]}"
    parts = " || ', ' || ".join(f"{alias}.{c}" for c in cols)
    return f"'({', '.join(cols)}) = (' || {parts} || ')'"


def _enforced_keys(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple[str, ...]]]:
    """Per table, the column sets that a PRIMARY KEY or UNIQUE constraint of the database enforces."""
    out: dict[str, set[tuple[str, ...]]] = {}
    for table, cols in con.execute(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE') AND database_name <> 'temp'").fetchall():
        out.setdefault(table, set()).add(tuple(cols))
    return out


def _check(con: duckdb.DuckDBPyConnection, files: dict[str, _File], names: dict[str, str],
           views: dict[str, str], prefix: str, *, skip_keys: dict[str, set[tuple[str, ...]]] | None = None,
           only_keys: dict[str, set[tuple[str, ...]]] | None = None) -> list[tuple]:
    """The rejected rows of the import, in report order.

    ``skip_keys`` leaves out the in-file duplicate checks of those keys (per table); ``only_keys``
    runs nothing but those checks. Together the two calls give exactly the rows of one full call.
    """
    rej = f'temp."{prefix}rejected"'
    con.execute(f"CREATE OR REPLACE TEMP TABLE \"{prefix}rejected\" "
                "(file VARCHAR, row BIGINT, col VARCHAR, reason VARCHAR)")
    n = {t: f'temp."{v}"' for t, v in names.items()}
    u = {t: f'temp."{v}"' for t, v in views.items()}

    pending: dict[str, list[str]] = {t: [] for t in files}

    def add(table: str, column: str, select_sql: str) -> None:
        pending[table].append(f"SELECT {_quote(files[table].file)}, _row, {_quote(column)}, reason "
                              f"FROM ({select_sql}) AS q(_row, reason)")

    in_db = dict(zip(spec.ORDER, con.execute(
        "SELECT " + ", ".join(f"(SELECT count(*) > 0 FROM (SELECT 1 FROM {t} LIMIT 1))" for t in spec.ORDER)
    ).fetchall()[0]))

    for table, f in files.items():
        t = TABLES[table]
        src = n[table]
        if only_keys is None:
            # Every per-value rule of the table in one scan: (column, condition, reason) per rule.
            rules: list[tuple[str, str, str]] = []
            for c in t.columns:
                if c.name in f.errors:
                    rules.append((c.name, f"_e_{c.name} IS NOT NULL", f"_e_{c.name}"))
                if c.required:
                    extra = f" AND _e_{c.name} IS NULL" if c.name in f.errors else ""
                    rules.append((c.name, f"{c.name} IS NULL{extra}", "'missing value'"))
                if c.enum:
                    values = ", ".join(_quote(v) for v in c.enum)
                    rules.append((c.name, f"{c.name} NOT IN ({values})",
                                  f"'invalid value ''' || {c.name} || ''' (expected one of {', '.join(c.enum)})'"))
                if c.min is not None:
                    rules.append((c.name, f"{c.name} < {int(c.min)}",
                                  f"'{c.name} ' || {c.name} || ' is below {c.min}'"))
                if c.max is not None:
                    rules.append((c.name, f"{c.name} > {int(c.max)}",
                                  f"'{c.name} ' || {c.name} || ' is above {c.max}'"))
                if c.type == "month":
                    rules.append((c.name, f"day({c.name}) <> 1",
                                  f"'{c.name} ' || {c.name} || ' is not the first day of a month'"))
            if rules:
                found = ", ".join(f"struct_pack(c := {_quote(col)}, r := CASE WHEN {cond} THEN {reason} END)"
                                  for col, cond, reason in rules)
                any_bad = " OR ".join(f"coalesce({cond}, false)" for _, cond, _ in rules)
                pending[table].append(
                    f"SELECT {_quote(f.file)}, _row, p.c, p.r FROM (SELECT _row, unnest(list_filter([{found}], "
                    f"lambda x: x.r IS NOT NULL)) AS p FROM {src} WHERE {any_bad})")
        for key in ((t.key,) if t.key else ()) + t.unique:
            if only_keys is None:
                in_file = key not in (skip_keys or {}).get(table, set())
            else:
                in_file = key in only_keys.get(table, set())
            cols = ", ".join(key)
            not_null = " AND ".join(f"{c} IS NOT NULL" for c in key)
            join = " AND ".join(f"d.{c} = t.{c}" for c in key)
            dups = f"SELECT {cols}, count(*) AS n FROM {src} WHERE {not_null} GROUP BY {cols} HAVING count(*) > 1"
            # big files: look for duplicates before joining back (the join would hash the whole file)
            if in_file and (f.rows < _BIG_FILE or con.execute(f"SELECT count(*) FROM ({dups})").fetchall()[0][0]):
                add(table, ", ".join(key),
                    f"SELECT t._row, 'duplicate ' || {_key_text(key)} || ' (' || d.n || ' rows in this file)' "
                    f"FROM {src} t JOIN ({dups}) d ON {join}")
            if in_db[table] and only_keys is None:
                join_e = " AND ".join(f"e.{c} = t.{c}" for c in key)
                add(table, ", ".join(key),
                    f"SELECT t._row, {_key_text(key)} || ' already exists in the database' FROM {src} t "
                    f"WHERE EXISTS (SELECT 1 FROM {table} e WHERE {join_e})")
        for r in t.refs if only_keys is None else ():
            if r.scope == "import":
                where = (f"NOT EXISTS (SELECT 1 FROM {n[r.parent]} p WHERE p.{r.parent_column} = t.{r.column})")
                reason = (f"'unknown {r.column} ' || t.{r.column} || ': not in this import''s {r.parent} file "
                          f"(rows already in the database are never edited)'")
            else:
                where = f"NOT EXISTS (SELECT 1 FROM {n[r.parent]} p WHERE p.{r.parent_column} = t.{r.column})"
                if in_db[r.parent]:
                    where += f" AND NOT EXISTS (SELECT 1 FROM {r.parent} p WHERE p.{r.parent_column} = t.{r.column})"
                reason = (f"'unknown {r.column} ' || t.{r.column} || ': not in the {r.parent} file "
                          f"nor in the database'")
            if (table, r.column) == ("invoice_lines", "invoice_id") and f.rows >= _BIG_FILE and not con.execute(
                    f"SELECT count(*) FROM {n['line_sums']} t WHERE {where}").fetchall()[0][0]:
                continue  # every invoice the lines name is known: the distinct ids say so, the 2M rows need not
            add(table, r.column, f"SELECT t._row, {reason} FROM {src} t WHERE t.{r.column} IS NOT NULL AND {where}")
    for table, column, sql in CUSTOM_CHECKS if only_keys is None else ():
        if table in files and column is None:
            pending[table].append(f"SELECT {_quote(files[table].file)}, _row, col, reason "
                                  f"FROM ({sql.format(n=n, u=u)}) AS q(_row, col, reason)")
        elif table in files:
            add(table, column, sql.format(n=n, u=u))
    for table, selects in pending.items():
        if selects:
            con.execute(f"INSERT INTO {rej} " + " UNION ALL ".join(selects))
    return _in_report_order(con.execute(f"SELECT file, row, col, reason FROM {rej}").fetchall(), files)


def _in_report_order(rows: list[tuple], files: dict[str, _File]) -> list[tuple]:
    """Rejected rows by table (import order), row, column (file order) and reason."""
    by_file = {f.file: (spec.ORDER.index(t), TABLES[t].column_names) for t, f in files.items()}

    def position(r: tuple) -> tuple:
        table_pos, columns = by_file[r[0]]
        first_col = (r[2] or "").split(",")[0]
        return (table_pos, r[1] if r[1] is not None else -1,
                columns.index(first_col) if first_col in columns else len(columns), r[3])

    rows.sort(key=position)
    return rows


def _rejected(problems: list[tuple], counts: dict[str, int], files: dict[str, _File]) -> ImportReport:
    rejected = rejects_frame(problems)
    n_rows = rejected.dropna(subset=["row"]).groupby(["file", "row"]).ngroups
    n_files = rejected["file"].nunique()
    first = problems[0]
    where = f"{first[0]}" + (f" row {first[1]}" if first[1] is not None else "") + \
        (f" column {first[2]}" if first[2] else "")
    message = (f"import rejected, nothing was written: {len(problems):,} problem"
               f"{'s' if len(problems) != 1 else ''} in {n_files} file{'s' if n_files != 1 else ''}"
               + (f" ({n_rows:,} rows)" if n_rows else "") + f"; first: {where}: {first[3]}")
    return failed(message, rejected, counts)


__all__ = ["import_folder", "EXTENSIONS"]
