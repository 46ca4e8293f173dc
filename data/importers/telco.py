"""Import the IBM Telco Customer Churn sample file into customers, subscriptions and attributes.

The file is one cross-sectional snapshot of 7,043 customers with their tenure in months and a churn
flag; it has no dates, no invoices and no contacts. The mapping (documented in
``docs/IMPORT_FORMAT.md``) states only what the file says:

- one customer per row: ``account_number`` = ``name`` = ``customerID``; ``signup_date`` = snapshot
  minus ``tenure`` months; segment ``consumer``, region and channel ``unknown``; currency USD;
  ``is_paperless`` from PaperlessBilling; ``is_autopay`` when PaymentMethod says "(automatic)";
- one plan per contract type (Month-to-month, One year, Two year; ranks 1, 2, 3), no plan prices;
- one subscription per customer from signup on the contract's plan; ``Churn = Yes`` ends it at the
  snapshot (``end_reason`` cancelled) and sets ``churned_on`` = snapshot, ``churn_kind`` voluntary,
  ``churn_reason`` unknown (NULL); the others stay open;
- every other column, and the monthly and total charges in cents, go to ``customer_attributes``
  (``total_charges_cents`` NULL where the file has a blank, never 0 or a guess).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from data.db import transaction
from data.importers.common import (ImportReport, csv_source_sql, csv_structure_problems, drop_temp, failed,
                                   has_simulated_world, insertion_order, naive_utc, normalize, read_csv_header,
                                   rejects_frame, token, write_audit)

# The file's columns -> our names (code constants; the file's own header text never enters SQL).
COLUMNS = {
    "customerID": "customer_ref", "gender": "gender", "SeniorCitizen": "senior_citizen", "Partner": "partner",
    "Dependents": "dependents", "tenure": "tenure", "PhoneService": "phone_service",
    "MultipleLines": "multiple_lines", "InternetService": "internet_service",
    "OnlineSecurity": "online_security", "OnlineBackup": "online_backup",
    "DeviceProtection": "device_protection", "TechSupport": "tech_support", "StreamingTV": "streaming_tv",
    "StreamingMovies": "streaming_movies", "Contract": "contract", "PaperlessBilling": "paperless_billing",
    "PaymentMethod": "payment_method", "MonthlyCharges": "monthly_charges", "TotalCharges": "total_charges",
    "Churn": "churn",
}

# Contract -> (plan code, rank). Rank orders the plans by length of commitment.
PLANS = {"Month-to-month": ("month_to_month", 1), "One year": ("one_year", 2), "Two year": ("two_year", 3)}

# Attributes written to customer_attributes, in this order: (attribute name, SQL over the typed table).
ATTRIBUTES = [
    ("gender", "gender"),
    ("senior_citizen", "CASE senior_citizen WHEN '1' THEN 'Yes' WHEN '0' THEN 'No' END"),
    ("partner", "partner"),
    ("dependents", "dependents"),
    ("tenure_months", "CAST(tenure_months AS VARCHAR)"),
    ("phone_service", "phone_service"),
    ("multiple_lines", "multiple_lines"),
    ("internet_service", "internet_service"),
    ("online_security", "online_security"),
    ("online_backup", "online_backup"),
    ("device_protection", "device_protection"),
    ("tech_support", "tech_support"),
    ("streaming_tv", "streaming_tv"),
    ("streaming_movies", "streaming_movies"),
    ("contract", "contract"),
    ("paperless_billing", "paperless_billing"),
    ("payment_method", "payment_method"),
    ("monthly_charges_cents", "CAST(monthly_charges_cents AS VARCHAR)"),
    ("total_charges_cents", "CAST(total_charges_cents AS VARCHAR)"),
]

_YES_NO = ("partner", "dependents", "phone_service", "paperless_billing", "churn")
_AMOUNT = r"[0-9]+([.][0-9]{1,2})?"
MAX_TENURE_MONTHS = 1200


def import_telco(con: duckdb.DuckDBPyConnection, path: str | Path, *, snapshot: dt.date, at: dt.datetime,
                 user_id: int | None = None) -> ImportReport:
    """Import the IBM Telco Customer Churn CSV as customers with subscriptions, churn and attributes.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    path : str or Path
        ``WA_Fn-UseC_-Telco-Customer-Churn.csv`` or a file of the same layout (CRLF or LF).
    snapshot : datetime.date
        The day the file describes: tenures count back from it and churned customers end on it.
    at : datetime.datetime
        When the import happens (UTC): the audit row and ``customers.created_at``.
    user_id : int, optional
        Who imports, for the audit log.

    Returns
    -------
    ImportReport
        Counts of plans created, customers, subscriptions and customer_attributes; or the rejected
        rows (header = row 1) with nothing written.

    Notes
    -----
    ``signup_date = snapshot - tenure months`` (month arithmetic, clamped to the month's last day), so
    the number of months from signup_date to snapshot is exactly ``tenure``. Customer and subscription
    ids continue after the database's largest; existing plans with the same codes are reused.
    """
    path = Path(path)
    if not isinstance(snapshot, dt.date) or isinstance(snapshot, dt.datetime):
        raise TypeError("snapshot must be a datetime.date")
    if not path.exists():
        return failed(f"Telco file {path} does not exist")
    if not path.is_file():
        return failed(f"{path} is not a file (the Telco format takes one CSV file)")
    if has_simulated_world(con):
        return failed("this database holds a simulated world; import real data into a new database file "
                      "(--db or RETENTION_DB)")
    file = path.name
    try:
        header = read_csv_header(path)
    except (OSError, ValueError) as exc:
        return failed(f"cannot read {file}: {exc}")
    positions = {}
    for i, name in enumerate(header):
        positions.setdefault(normalize(name), i)
    missing = [c for c in COLUMNS if c.lower() not in positions]
    if missing:
        return failed(f"{file} is not the Telco churn layout: missing column{'s' if len(missing) > 1 else ''} "
                      + ", ".join(missing),
                      rejects_frame([(file, 1, c, "required column missing from the header") for c in missing]))

    prefix = token()
    raw, typed, rej = f'temp."{prefix}raw"', f'temp."{prefix}telco"', f'temp."{prefix}rejected"'
    try:
        select = ", ".join(f"c{positions[c.lower()]} AS {ours}" for c, ours in COLUMNS.items())
        try:
            with insertion_order(con, True):  # row numbers follow the file
                con.execute(f"CREATE TEMP TABLE \"{prefix}raw\" AS SELECT _row, {select} FROM "
                            + csv_source_sql(len(header), f"{prefix}rej", f"{prefix}rejscan"), [str(path)])
        except duckdb.Error as exc:
            return failed(f"cannot read {file}: {str(exc).splitlines()[0]}")
        rows = int(con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0][0])
        structure = csv_structure_problems(con, f"{prefix}rej", file, header)
        if structure:
            return _rejected(file, structure, rows)
        trimmed = ", ".join(f"nullif(trim({ours}), '') AS {ours}" for ours in COLUMNS.values())
        con.execute(f"""
            CREATE TEMP TABLE "{prefix}telco" AS
            WITH src AS (SELECT _row, {trimmed} FROM {raw}),
            final AS (
                SELECT *,
                    CASE WHEN regexp_full_match(tenure, '[0-9]+') THEN TRY_CAST(tenure AS INTEGER) END AS tenure_months,
                    CASE WHEN regexp_full_match(monthly_charges, '{_AMOUNT}')
                         THEN CAST(CAST(monthly_charges AS DECIMAL(18, 2)) * 100 AS BIGINT) END AS monthly_charges_cents,
                    CASE WHEN regexp_full_match(total_charges, '{_AMOUNT}')
                         THEN CAST(CAST(total_charges AS DECIMAL(18, 2)) * 100 AS BIGINT) END AS total_charges_cents
                FROM src)
            SELECT * FROM final""")
        con.execute(f'CREATE TEMP TABLE "{prefix}rejected" (row BIGINT, col VARCHAR, reason VARCHAR)')
        for column, sql in _checks(typed):
            con.execute(f"INSERT INTO {rej} SELECT _row, ?, reason FROM ({sql}) AS q(_row, reason)", [column])
        problems = [(file, r, c, reason) for r, c, reason in
                    con.execute(f"SELECT row, col, reason FROM {rej} ORDER BY row, col").fetchall()]
        if problems:
            return _rejected(file, problems, rows)
        counts = _write(con, typed, prefix, snapshot=snapshot, at=at, user_id=user_id, path=path)
        return ImportReport(ok=True, counts=counts, rejected=rejects_frame(),
                            message=(f"imported {counts['customers']:,} Telco customers from {file} "
                                     f"(snapshot {snapshot.isoformat()}): {counts['subscriptions']:,} subscriptions, "
                                     f"{counts['customer_attributes']:,} attributes, {counts['plans']} new plans"))
    finally:
        drop_temp(con, prefix)


def _checks(typed: str) -> list[tuple[str, str]]:
    """(column as named in the file, SQL selecting (_row, reason) of bad rows)."""
    name = {ours: theirs for theirs, ours in COLUMNS.items()}
    checks: list[tuple[str, str]] = []
    for ours in COLUMNS.values():
        if ours != "total_charges":  # blank TotalCharges is allowed: it becomes NULL
            checks.append((name[ours], f"SELECT _row, 'missing value' FROM {typed} WHERE {ours} IS NULL"))
    checks += [
        ("customerID", f"SELECT t._row, 'duplicate customerID ' || t.customer_ref || ' (' || d.n || ' rows in this file)' "
                       f"FROM {typed} t JOIN (SELECT customer_ref, count(*) AS n FROM {typed} "
                       f"WHERE customer_ref IS NOT NULL GROUP BY customer_ref HAVING count(*) > 1) d USING (customer_ref)"),
        ("customerID", f"SELECT t._row, 'customerID ' || t.customer_ref || ' is already an account number in the database' "
                       f"FROM {typed} t WHERE EXISTS (SELECT 1 FROM customers c WHERE c.account_number = t.customer_ref)"),
        ("tenure", f"SELECT _row, 'not a whole number of months: ''' || tenure || '''' FROM {typed} "
                   f"WHERE tenure IS NOT NULL AND tenure_months IS NULL"),
        ("tenure", f"SELECT _row, 'tenure ' || tenure_months || ' is above {MAX_TENURE_MONTHS} months' FROM {typed} "
                   f"WHERE tenure_months > {MAX_TENURE_MONTHS}"),
        ("SeniorCitizen", f"SELECT _row, 'invalid value ''' || senior_citizen || ''' (expected 0 or 1)' FROM {typed} "
                          f"WHERE senior_citizen NOT IN ('0', '1')"),
        ("Contract", f"SELECT _row, 'invalid value ''' || contract || ''' (expected " + ", ".join(PLANS) + ")' "
                     f"FROM {typed} WHERE contract NOT IN (" + ", ".join(f"'{c}'" for c in PLANS) + ")"),
        ("MonthlyCharges", f"SELECT _row, 'not an amount with at most 2 decimals: ''' || monthly_charges || '''' "
                           f"FROM {typed} WHERE monthly_charges IS NOT NULL AND monthly_charges_cents IS NULL"),
        ("TotalCharges", f"SELECT _row, 'not an amount with at most 2 decimals: ''' || total_charges || '''' "
                         f"FROM {typed} WHERE total_charges IS NOT NULL AND total_charges_cents IS NULL"),
    ]
    for ours in _YES_NO:
        checks.append((name[ours], f"SELECT _row, 'invalid value ''' || {ours} || ''' (expected Yes or No)' "
                                   f"FROM {typed} WHERE {ours} NOT IN ('Yes', 'No')"))
    return checks


def _write(con: duckdb.DuckDBPyConnection, typed: str, prefix: str, *, snapshot: dt.date, at: dt.datetime,
           user_id: int | None, path: Path) -> dict[str, int]:
    """Insert plans, customers, subscriptions and attributes and the audit row in one transaction."""
    created = naive_utc(at)
    ids = f'temp."{prefix}ids"'
    with transaction(con):
        new_plans = 0
        for contract, (code, rank) in PLANS.items():
            exists = con.execute("SELECT count(*) FROM plans WHERE code = ?", [code]).fetchall()[0][0]
            if not exists:
                con.execute("INSERT INTO plans (plan_id, code, name, currency, rank, is_active) "
                            "SELECT coalesce(max(plan_id), 0) + 1, ?, ?, 'USD', ?, TRUE FROM plans",
                            [code, contract, rank])
                new_plans += 1
        plan_case = "CASE t.contract " + " ".join(f"WHEN '{c}' THEN '{code}'" for c, (code, _) in PLANS.items()) + " END"
        con.execute(f"""
            CREATE TEMP TABLE "{prefix}ids" AS
            SELECT t._row,
                   (SELECT coalesce(max(customer_id), 0) FROM customers) + row_number() OVER (ORDER BY t._row) AS customer_id,
                   (SELECT coalesce(max(subscription_id), 0) FROM subscriptions) + row_number() OVER (ORDER BY t._row)
                       AS subscription_id,
                   p.plan_id,
                   CAST(CAST(? AS DATE) - to_months(t.tenure_months) AS DATE) AS signup_date,
                   CASE WHEN t.churn = 'Yes' THEN CAST(? AS DATE) END AS churned_on
            FROM {typed} t JOIN plans p ON p.code = {plan_case}""", [snapshot, snapshot])
        con.execute(f"""
            INSERT INTO customers (customer_id, account_number, name, segment, region, channel, signup_date,
                                   currency, is_autopay, is_paperless, churned_on, churn_kind, churn_reason, created_at)
            SELECT i.customer_id, t.customer_ref, t.customer_ref, 'consumer', 'unknown', 'unknown', i.signup_date,
                   'USD', contains(t.payment_method, '(automatic)'), t.paperless_billing = 'Yes', i.churned_on,
                   CASE WHEN i.churned_on IS NOT NULL THEN 'voluntary' END, NULL, ?
            FROM {typed} t JOIN {ids} i USING (_row) ORDER BY t._row""", [created])
        con.execute(f"""
            INSERT INTO subscriptions (subscription_id, customer_id, plan_id, start_date, end_date, end_reason,
                                       previous_subscription_id)
            SELECT subscription_id, customer_id, plan_id, signup_date, churned_on,
                   CASE WHEN churned_on IS NOT NULL THEN 'cancelled' END, NULL
            FROM {ids} ORDER BY _row""")
        names = ", ".join(f"'{n}'" for n, _ in ATTRIBUTES)
        values = ", ".join(expr for _, expr in ATTRIBUTES)
        con.execute(f"""
            INSERT INTO customer_attributes (customer_id, name, value)
            SELECT customer_id, unnest([{names}]), unnest([{values}])
            FROM {typed} JOIN {ids} USING (_row) ORDER BY _row""")
        con.execute(f"DROP TABLE {ids}")
        counts = {
            "plans": new_plans,
            "customers": int(con.execute(f"SELECT count(*) FROM {typed}").fetchall()[0][0]),
        }
        counts["subscriptions"] = counts["customers"]
        counts["customer_attributes"] = counts["customers"] * len(ATTRIBUTES)
        write_audit(con, at=at, user_id=user_id, entity_id=str(path),
                    detail={"format": "telco", "source": str(path), "snapshot": snapshot.isoformat(),
                            "counts": counts})
    return counts


def _rejected(file: str, problems: list[tuple], rows: int) -> ImportReport:
    n_rows = len({p[1] for p in problems if p[1] is not None})
    first = problems[0]
    where = file + (f" row {first[1]}" if first[1] is not None else "") + (f" column {first[2]}" if first[2] else "")
    return failed(f"import rejected, nothing was written: {len(problems):,} problem{'s' if len(problems) != 1 else ''}"
                  f" in {n_rows:,} row{'s' if n_rows != 1 else ''} of {file}; first: {where}: {first[3]}",
                  rejects_frame(problems), {"telco_rows": rows})
