"""Tests for data/importers: the canonical folder import, the Telco import and the import command."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from data.db import connect
from data.importers import ImportReport, add_import_command, import_folder, import_telco, spec
from data.importers import canonical

ROOT = Path(__file__).resolve().parents[2]
GOOD = Path(__file__).with_name("fixtures") / "import" / "good"
TELCO = ROOT.parent / "shared" / "data" / "real" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
AT = dt.datetime(2024, 3, 5, 12, 0)
SNAPSHOT = dt.date(2024, 3, 31)

WRITTEN_TABLES = list(spec.ORDER) + ["audit_log"]


def table_counts(con) -> dict[str, int]:
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog <> 'temp' "
        "AND table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
    return {n: con.execute(f"SELECT count(*) FROM {n}").fetchall()[0][0] for n in names}


def csv_rows(path: Path) -> int:
    return len(pd.read_csv(path, dtype=str, keep_default_na=False))


@pytest.fixture
def con():
    c = connect(":memory:")
    yield c
    c.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    """A writable copy of the good folder."""
    dst = tmp_path / "import"
    shutil.copytree(GOOD, dst)
    return dst


def edit(folder: Path, file: str, old: str, new: str, count: int = 1) -> None:
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= count, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def problems(report: ImportReport) -> list[tuple]:
    return [(f, None if pd.isna(r) else int(r), c, reason)
            for f, r, c, reason in report.rejected.itertuples(index=False, name=None)]


def assert_rejected(report: ImportReport, file: str, row: int | None, column: str | None, reason: str) -> None:
    assert not report.ok
    found = [p for p in problems(report) if p[0] == file and p[1] == row and p[2] == column and reason in p[3]]
    assert found, f"no ({file}, {row}, {column}, ...{reason}...) in\n{report.rejected.to_string()}"


def to_parquet(src: Path, dst: Path, native: bool = True) -> None:
    """Write every CSV of ``src`` as Parquet in ``dst`` (native column types, or all text)."""
    dst.mkdir(parents=True, exist_ok=True)
    c = duckdb.connect()
    for csv in sorted(src.glob("*.csv")):
        opts = "header = true" + ("" if native else ", all_varchar = true")
        c.execute(f"COPY (SELECT * FROM read_csv('{csv}', {opts})) TO '{dst / (csv.stem + '.parquet')}' (FORMAT parquet)")
    c.close()


# ---------------------------------------------------------------------------------------------
# the good folder


@pytest.fixture(scope="module")
def imported():
    """A database holding the good folder (tests using it must not change it: imports they try are rejected)."""
    c = connect(":memory:")
    report = import_folder(c, GOOD, at=AT, user_id=7)
    yield c, report
    c.close()


def test_good_folder_imports_every_row_and_counts_match(imported):
    con, report = imported
    assert report.ok, report.rejected.to_string()
    assert report.rejected.empty
    expected = {p.stem: csv_rows(p) for p in GOOD.glob("*.csv")}
    assert dict(report.counts) == expected
    counts = table_counts(con)
    for table, n in expected.items():
        assert counts[table] == n, table
    assert "imported" in report.message and "\n" not in report.message


def test_good_folder_writes_one_audit_row_with_the_counts(imported):
    con, report = imported
    rows = con.execute("SELECT audit_id, logged_at, user_id, action, entity, detail FROM audit_log").fetchall()
    assert len(rows) == 1
    audit_id, logged_at, user_id, action, entity, detail = rows[0]
    assert (audit_id, logged_at, user_id, action, entity) == (1, AT, 7, "import", "import")
    assert json.loads(detail)["counts"] == dict(report.counts)


def test_derived_columns_are_filled_from_related_rows(imported):
    con, report = imported
    assert report.ok
    inv = con.execute("SELECT customer_id, plan_id, period_end, currency FROM invoices WHERE invoice_id = 4").fetchall()
    assert inv == [(1, 2, dt.date(2024, 2, 29), "EUR")]
    grants = con.execute("SELECT grant_id, kind, percent_off, credit_cents, cycles FROM offer_grants ORDER BY 1").fetchall()
    assert grants == [(1, "percent_off", 20, None, 3), (2, "fixed_credit", None, 1000, 1)]
    assert con.execute("SELECT customer_id, total_cents FROM credit_notes").fetchall() == [(1, 180)]
    assert con.execute("SELECT description FROM invoice_lines WHERE invoice_id = 6 AND line_no = 3").fetchall() == [("tax",)]
    assert con.execute("SELECT count(*) FROM customers WHERE created_at = ?", [AT]).fetchall()[0][0] == 3
    assert con.execute("SELECT name FROM customers WHERE customer_id = 3").fetchall() == [("Durand, Chloé",)]
    assert con.execute("SELECT eligible_reasons FROM offers WHERE offer_id = 1").fetchall()[0][0] == [
        "bill_higher_than_expected", "wants_cheaper_plan", "cancel_request"]
    assert con.execute("SELECT value FROM customer_attributes WHERE name = 'referred_by'").fetchall() == [(None,)]


def test_invoice_amount_columns_are_derived_from_lines_when_absent(con, folder):
    df = pd.read_csv(folder / "invoices.csv")
    df.drop(columns=["subtotal_cents", "discount_cents", "tax_cents", "credit_cents"]).to_csv(
        folder / "invoices.csv", index=False)
    assert import_folder(con, folder, at=AT).ok
    got = con.execute("SELECT invoice_id, subtotal_cents, discount_cents, tax_cents, credit_cents "
                      "FROM invoices ORDER BY 1").df()
    pd.testing.assert_frame_equal(got, df[got.columns.tolist()], check_dtype=False)


def test_csv_and_parquet_imports_give_the_same_database(tmp_path):
    to_parquet(GOOD, tmp_path / "native")
    to_parquet(GOOD, tmp_path / "text", native=False)
    dbs = {}
    for name, src in (("csv", GOOD), ("native", tmp_path / "native"), ("text", tmp_path / "text")):
        c = connect(":memory:")
        report = import_folder(c, src, at=AT)
        assert report.ok, (name, report.rejected.to_string())
        dbs[name] = {t: c.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in spec.ORDER}
        c.close()
    assert dbs["native"] == dbs["csv"]
    assert dbs["text"] == dbs["csv"]


def test_a_folder_may_mix_csv_and_parquet(con, folder):
    to_parquet(GOOD, folder / "pq")
    for table in ("invoices", "invoice_lines", "customers"):
        (folder / f"{table}.csv").unlink()
        shutil.copy(folder / "pq" / f"{table}.parquet", folder / f"{table}.parquet")
    shutil.rmtree(folder / "pq")
    report = import_folder(con, folder, at=AT)
    assert report.ok, report.rejected.to_string()
    assert report.counts["invoices"] == 6 and report.counts["invoice_lines"] == 16


def test_references_may_point_to_rows_already_in_the_database(con, tmp_path):
    assert import_folder(con, GOOD, at=AT).ok
    later = tmp_path / "later"
    later.mkdir()
    (later / "payments.csv").write_text(
        "payment_id,customer_id,received_at,amount_cents\n4,1,2024-03-05 00:00:00,2400\n", encoding="utf-8")
    (later / "README.txt").write_text("not a table file", encoding="utf-8")
    report = import_folder(con, later, at=AT)
    assert report.ok, report.rejected.to_string()
    assert con.execute("SELECT method, status FROM payments WHERE payment_id = 4").fetchall() == [("imported", "settled")]
    assert con.execute("SELECT count(*) FROM audit_log").fetchall()[0][0] == 2


# ---------------------------------------------------------------------------------------------
# bad files: nothing changes, and the problem is reported with file, row, column, reason

BAD_CASES = {
    "missing_required_column": (
        lambda f: pd.read_csv(f / "customers.csv", dtype=str).drop(columns=["signup_date"]).to_csv(
            f / "customers.csv", index=False),
        ("customers.csv", 1, "signup_date", "required column missing")),
    "unknown_column": (
        lambda f: edit(f, "users.csv", "agent_tier", "agent_tire"),
        ("users.csv", 1, "agent_tire", "unknown column")),
    "wrong_type_integer": (
        lambda f: edit(f, "subscriptions.csv", "4,3,1,2024-01-10", "4,3,basic,2024-01-10"),
        ("subscriptions.csv", 5, "plan_id", "not an integer: 'basic'")),
    "wrong_type_boolean": (
        lambda f: edit(f, "plans.csv", "2,plus,Plus,EUR,2,true", "2,plus,Plus,EUR,2,maybe"),
        ("plans.csv", 3, "is_active", "not a boolean")),
    "duplicate_key": (
        lambda f: edit(f, "customers.csv", "3,A-0003", "2,A-0003"),
        ("customers.csv", 4, "customer_id", "duplicate customer_id 2 (2 rows in this file)")),
    "duplicate_unique_column": (
        lambda f: edit(f, "customers.csv", "3,A-0003", "3,A-0002"),
        ("customers.csv", 3, "account_number", "duplicate account_number A-0002")),
    "broken_reference": (
        lambda f: edit(f, "subscriptions.csv", "4,3,1,2024-01-10", "4,99,1,2024-01-10"),
        ("subscriptions.csv", 5, "customer_id", "unknown customer_id 99")),
    "decimal_money": (
        lambda f: edit(f, "payments.csv", "1440", "14.40"),
        ("payments.csv", 2, "amount_cents", "decimal amount '14.40': money is in integer cents")),
    "negative_money": (
        lambda f: edit(f, "plan_prices.csv", "2,2023-01-01,2500", "2,2023-01-01,-2500"),
        ("plan_prices.csv", 4, "monthly_price_cents", "is below 0")),
    "bad_date": (
        lambda f: edit(f, "subscriptions.csv", "4,3,1,2024-01-10", "4,3,1,2024-02-30"),
        ("subscriptions.csv", 5, "start_date", "not a date (YYYY-MM-DD): '2024-02-30'")),
    "date_in_another_format": (
        lambda f: edit(f, "customers.csv", "1980-04-02", "02/04/1980"),
        ("customers.csv", 2, "birth_date", "not a date")),
    "bad_timestamp_offset": (
        lambda f: edit(f, "payments.csv", "2024-02-05 00:00:00", "2024-02-05 00:00:00+02:00"),
        ("payments.csv", 2, "received_at", "not a timestamp")),
    "bad_enum_contact_reason": (
        lambda f: edit(f, "contacts.csv", "bill_not_understood", "angry"),
        ("contacts.csv", 4, "reason", "invalid value 'angry'")),
    "bad_enum_role": (
        lambda f: edit(f, "users.csv", "Ann Agent,agent", "Ann Agent,boss"),
        ("users.csv", 2, "role", "invalid value 'boss'")),
    "bad_enum_line_kind": (
        lambda f: edit(f, "invoice_lines.csv", "2,2,usage,", "2,2,overage,"),
        ("invoice_lines.csv", 5, "kind", "invalid value 'overage'")),
    "bad_eligible_reason": (
        lambda f: edit(f, "offers.csv", "cancel_request,true\n2", "cancel_requests,true\n2"),
        ("offers.csv", 2, "eligible_reasons", "unknown contact reason(s): cancel_requests")),
    "total_not_sum_of_lines": (
        lambda f: edit(f, "invoices.csv", "1200,0,120,0,1320", "1200,0,130,0,1330"),
        ("invoices.csv", 2, "total_cents", "total_cents 1330 is not the sum of its lines (1320)")),
    "total_not_subtotal_minus_discount_plus_tax": (
        lambda f: edit(f, "invoices.csv", "2500,500,400,0,2400", "2500,400,400,0,2400"),
        ("invoices.csv", 5, "total_cents", "is not subtotal - discount + tax - credit (2500)")),
    "duplicate_invoice_for_a_period_in_the_file": (
        lambda f: edit(f, "invoices.csv", "6,4,2024-02-01", "6,4,2024-01-01"),
        ("invoices.csv", 7, "subscription_id, period_start", "duplicate (subscription_id, period_start) = (4, 2024-01-01)")),
    "price_not_from_the_first_of_a_month": (
        lambda f: edit(f, "plan_prices.csv", "1,2024-01-01", "1,2024-01-15"),
        ("plan_prices.csv", 3, "effective_from", "not the first day of a month")),
    "end_before_start": (
        lambda f: edit(f, "subscriptions.csv", "3,2,1,2023-12-01,2024-02-29", "3,2,1,2023-12-01,2023-11-30"),
        ("subscriptions.csv", 4, "end_date", "is before start_date")),
    "missing_required_value": (
        lambda f: edit(f, "customers.csv", "Alice Martin", ""),
        ("customers.csv", 2, "name", "missing value")),
    "discount_line_positive": (
        lambda f: (edit(f, "invoice_lines.csv", "-500,1,", "500,1,"),
                   edit(f, "invoices.csv", "2500,500,400,0,2400", "2500,-500,400,0,3400")),
        ("invoice_lines.csv", 10, "amount_cents", "discount lines are negative or zero")),
    "invoice_for_a_period_the_subscription_does_not_serve": (
        lambda f: (edit(f, "invoices.csv", "2,1,2024-01-01", "2,2,2024-01-01")),
        ("invoices.csv", 3, "period_start", "subscription 2 serves no day of this period")),
    "invoice_customer_differs_from_subscription": (
        lambda f: pd.read_csv(f / "invoices.csv").assign(customer_id=[2, 1, 3, 1, 2, 1]).to_csv(
            f / "invoices.csv", index=False),
        ("invoices.csv", 7, "customer_id", "is not the customer of subscription 4")),
    "contact_about_another_customers_invoice": (
        lambda f: edit(f, "contacts.csv", "1,true,resolved,false,2,", "1,true,resolved,false,1,"),
        ("contacts.csv", 2, "invoice_id", "invoice 1 belongs to customer 2, not 1")),
    "credit_note_lines_do_not_add_up": (
        lambda f: edit(f, "credit_note_lines.csv", "Tax on usage correction,30", "Tax on usage correction,40"),
        ("credit_notes.csv", 2, "total_cents", "is not the sum of its lines (190)")),
    "over_credited_invoice": (
        lambda f: (edit(f, "credit_notes.csv", "150,30,180", "1500,300,1800"),
                   edit(f, "credit_note_lines.csv", "Usage correction,150", "Usage correction,1770")),
        ("credit_notes.csv", 2, "total_cents", "credit notes on invoice 2 total 1800, more than the invoice total 1620")),
    "offer_kind_missing_its_value": (
        lambda f: edit(f, "offers.csv", "10 EUR credit,fixed_credit,,1000,", "10 EUR credit,fixed_credit,,,"),
        ("offers.csv", 3, "credit_cents", "a fixed_credit offer needs credit_cents")),
    "plan_without_a_price": (
        lambda f: edit(f, "plan_prices.csv", "2,2023-01-01,2500,500,3\n", ""),
        ("plans.csv", 3, "plan_id", "plan 2 has no price")),
    "unknown_table_file": (
        lambda f: shutil.copy(f / "customers.csv", f / "customer.csv"),
        ("customer.csv", None, None, "unknown table file")),
    "malformed_csv_record": (
        lambda f: edit(f, "payments.csv", "2,2,2024-02-10 00:00:00,1320,card,settled,",
                       "2,2,2024-02-10 00:00:00,1320,card,settled,,extra"),
        ("payments.csv", 3, None, "malformed CSV record")),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_file_changes_nothing_and_is_reported(con, folder, case):
    mutate, (file, row, column, reason) = BAD_CASES[case]
    mutate(folder)
    before = table_counts(con)
    report = import_folder(con, folder, at=AT)
    assert table_counts(con) == before
    assert_rejected(report, file, row, column, reason)
    assert report.message.startswith("import rejected, nothing was written") and "\n" not in report.message
    assert list(report.rejected.columns) == ["file", "row", "column", "reason"]


def test_bad_rows_are_all_reported_with_row_numbers_counting_the_header(con, folder):
    edit(folder, "payments.csv", "1440", "14.40")          # first record: row 2
    edit(folder, "payments.csv", "card,failed", "cheque,failed")  # third record: row 4
    report = import_folder(con, folder, at=AT)
    assert [(f, r, c) for f, r, c, _ in problems(report)] == [
        ("payments.csv", 2, "amount_cents"), ("payments.csv", 4, "method")]


def test_invoice_plan_differs_from_subscription_is_reported(con, folder):
    pd.read_csv(folder / "invoices.csv").assign(plan_id=[1, 1, 1, 2, 1, 2]).to_csv(
        folder / "invoices.csv", index=False)
    report = import_folder(con, folder, at=AT)
    assert_rejected(report, "invoices.csv", 7, "plan_id", "plan_id 2 is not the plan of subscription 4 (1)")


def test_duplicate_key_is_reported_row_by_row_next_to_other_problems(con, folder):
    # the in-file duplicate check of a key the table constraint enforces runs when a report is needed
    edit(folder, "customers.csv", "3,A-0003", "2,A-0003")
    edit(folder, "payments.csv", "1440", "14.40")
    before = table_counts(con)
    report = import_folder(con, folder, at=AT)
    assert table_counts(con) == before
    assert_rejected(report, "customers.csv", 3, "customer_id", "duplicate customer_id 2 (2 rows in this file)")
    assert_rejected(report, "customers.csv", 4, "customer_id", "duplicate customer_id 2 (2 rows in this file)")
    assert_rejected(report, "payments.csv", 2, "amount_cents", "decimal amount '14.40'")


@pytest.mark.parametrize("big_file", [0, 50_000])
def test_big_file_shortcuts_report_the_same_rows(con, folder, monkeypatch, big_file):
    # files of at least _BIG_FILE rows look for any problem first: the rows reported stay the same
    monkeypatch.setattr(canonical, "_BIG_FILE", big_file)
    edit(folder, "invoice_lines.csv", "2,2,usage,", "9,2,usage,")
    edit(folder, "invoice_lines.csv", "1,2,tax,", "1,1,tax,")
    edit(folder, "customers.csv", "3,A-0003", "2,A-0003")
    report = import_folder(con, folder, at=AT)
    assert_rejected(report, "invoice_lines.csv", 5, "invoice_id",
                    "unknown invoice_id 9: not in this import's invoices file")
    assert_rejected(report, "invoice_lines.csv", 2, "invoice_id, line_no", "duplicate (invoice_id, line_no) = (1, 1)")
    assert_rejected(report, "invoice_lines.csv", 3, "invoice_id, line_no", "duplicate (invoice_id, line_no) = (1, 1)")
    assert_rejected(report, "customers.csv", 4, "customer_id", "duplicate customer_id 2 (2 rows in this file)")


def test_good_folder_imports_the_same_with_big_file_shortcuts(con, folder, monkeypatch):
    monkeypatch.setattr(canonical, "_BIG_FILE", 0)
    report = import_folder(con, folder, at=AT)
    assert report.ok, report.message


def test_duplicate_invoice_against_existing_rows_changes_nothing(imported, tmp_path):
    con, _ = imported
    before = table_counts(con)
    later = tmp_path / "later"
    later.mkdir()
    (later / "invoices.csv").write_text(
        "invoice_id,subscription_id,period_start,issued_on,total_cents\n7,4,2024-02-01,2024-03-01,0\n", encoding="utf-8")
    report = import_folder(con, later, at=AT)
    assert table_counts(con) == before
    assert_rejected(report, "invoices.csv", 2, "subscription_id, period_start",
                    "(subscription_id, period_start) = (4, 2024-02-01) already exists in the database")


def test_keys_already_in_the_database_are_rejected(imported):
    con, _ = imported
    before = table_counts(con)
    report = import_folder(con, GOOD, at=AT)
    assert table_counts(con) == before
    assert_rejected(report, "customers.csv", 2, "customer_id", "customer_id 1 already exists in the database")
    assert_rejected(report, "invoices.csv", 2, "invoice_id", "invoice_id 1 already exists in the database")


def test_lines_may_not_be_added_to_an_invoice_already_in_the_database(imported, tmp_path):
    con, _ = imported
    before = table_counts(con)
    later = tmp_path / "later"
    later.mkdir()
    (later / "invoice_lines.csv").write_text("invoice_id,line_no,kind,amount_cents\n1,3,charge,100\n", encoding="utf-8")
    report = import_folder(con, later, at=AT)
    assert_rejected(report, "invoice_lines.csv", 2, "invoice_id", "never edited")
    assert table_counts(con) == before


def test_parquet_rows_are_numbered_like_csv_and_decimal_money_is_rejected(con, tmp_path):
    src = tmp_path / "pq"
    src.mkdir()
    c = duckdb.connect()
    c.execute(f"COPY (SELECT * FROM (VALUES (1, 'A-1', 'Ann', DATE '2024-01-01'), (2, 'A-2', 'Bob', DATE '2024-01-02')) "
              f"t(customer_id, account_number, name, signup_date)) TO '{src / 'customers.parquet'}'")
    c.execute(f"COPY (SELECT * FROM (VALUES (1, 1, TIMESTAMP '2024-02-01 00:00:00', 12.0), "
              f"(2, 2, TIMESTAMP '2024-02-01 00:00:00', 12.5)) t(payment_id, customer_id, received_at, amount_cents)) "
              f"TO '{src / 'payments.parquet'}'")
    c.close()
    report = import_folder(con, src, at=AT)
    assert problems(report) == [("payments.parquet", 3, "amount_cents",
                                 "decimal amount '12.5': money is in integer cents")]
    assert table_counts(con)["customers"] == 0


def test_parquet_column_of_an_impossible_type_is_rejected_at_the_header(con, tmp_path):
    src = tmp_path / "pq"
    src.mkdir()
    c = duckdb.connect()
    c.execute(f"COPY (SELECT 1 AS payment_id, 1 AS customer_id, TIMESTAMP '2024-02-01' AS received_at, "
              f"DATE '2024-01-01' AS amount_cents) TO '{src / 'payments.parquet'}'")
    c.close()
    report = import_folder(con, src, at=AT)
    assert_rejected(report, "payments.parquet", 1, "amount_cents", "Parquet type DATE cannot hold integer cents")


def test_a_failure_while_writing_rolls_everything_back(con, monkeypatch):
    def boom(*args, **kwargs):
        raise duckdb.ConstraintException("Constraint Error: simulated failure")
    monkeypatch.setattr(canonical, "write_audit", boom)
    before = table_counts(con)
    report = import_folder(con, GOOD, at=AT)
    assert not report.ok and "nothing was written" in report.message and "simulated failure" in report.message
    assert table_counts(con) == before


def test_no_temporary_tables_or_changed_settings_are_left_behind(con, folder):
    edit(folder, "payments.csv", "1440", "14.40")
    import_folder(con, folder, at=AT)
    import_folder(con, GOOD, at=AT)
    left = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'temp'").fetchall()
    assert left == [(0,)]
    assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0] in (True, "true")


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "f.csv").write_text("x\n") and p / "f.csv", "is not a folder"),
    (lambda p: p, "no table files"),
])
def test_bad_paths_give_a_one_line_message(con, tmp_path, setup, message):
    report = import_folder(con, setup(tmp_path), at=AT)
    assert not report.ok and message in report.message and "\n" not in report.message


def test_a_simulated_world_refuses_imports(con):
    con.execute("CREATE TABLE sim_truth_offer_effects (x INTEGER)")
    report = import_folder(con, GOOD, at=AT)
    assert not report.ok and "simulated world" in report.message
    assert table_counts(con)["customers"] == 0


def test_import_format_doc_lists_every_file_as_the_code_checks_it():
    doc = (ROOT / "docs" / "IMPORT_FORMAT.md").read_text(encoding="utf-8")
    for table in spec.ORDER:
        assert spec.table_markdown(table) in doc, f"docs/IMPORT_FORMAT.md is out of date for {table}"


# ---------------------------------------------------------------------------------------------
# 100k invoices through Parquet


def test_100k_generated_invoices_round_trip_through_parquet(con, tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    g = duckdb.connect()
    g.execute(f"""
        COPY (SELECT range + 1 AS customer_id, 'A' || (range + 1) AS account_number, 'C' || range AS name,
                     DATE '2023-01-01' AS signup_date FROM range(10000)) TO '{src / 'customers.parquet'}';
        COPY (SELECT 1 AS plan_id, 'basic' AS code, 'Basic' AS name, 1 AS rank) TO '{src / 'plans.parquet'}';
        COPY (SELECT 1 AS plan_id, DATE '2023-01-01' AS effective_from, 1000 AS monthly_price_cents)
            TO '{src / 'plan_prices.parquet'}';
        COPY (SELECT range + 1 AS subscription_id, range + 1 AS customer_id, 1 AS plan_id,
                     DATE '2023-01-01' AS start_date FROM range(10000)) TO '{src / 'subscriptions.parquet'}';
        CREATE TABLE inv AS
            SELECT s * 10 + m + 1 AS invoice_id, s + 1 AS subscription_id,
                   CAST(DATE '2023-01-01' + to_months(CAST(m AS INTEGER)) AS DATE) AS period_start,
                   1000 + (s * 7 + m) % 500 AS plan_cents
            FROM range(10000) a(s), range(10) b(m);
        COPY (SELECT invoice_id, subscription_id, period_start, CAST(period_start + INTERVAL 1 MONTH AS DATE) AS issued_on,
                     plan_cents + plan_cents // 5 AS total_cents, 2000 AS tax_rate_bp FROM inv)
            TO '{src / 'invoices.parquet'}';
        COPY (SELECT invoice_id, 1 AS line_no, 'plan' AS kind, plan_cents AS amount_cents FROM inv
              UNION ALL SELECT invoice_id, 2, 'tax', plan_cents // 5 FROM inv)
            TO '{src / 'invoice_lines.parquet'}';
    """)
    g.close()
    report = import_folder(con, src, at=AT)
    assert report.ok, report.rejected.head().to_string()
    assert report.counts["invoices"] == 100_000 and report.counts["invoice_lines"] == 200_000
    p = str(src / "invoices.parquet")
    diff = con.execute(
        "SELECT count(*) FROM (SELECT invoice_id, subscription_id, period_start, issued_on, total_cents, tax_rate_bp "
        "FROM invoices EXCEPT SELECT * FROM read_parquet(?))", [p]).fetchall()[0][0]
    assert diff == 0
    lines = con.execute("SELECT count(*), sum(amount_cents) FROM invoice_lines").fetchall()[0]
    assert lines == con.execute("SELECT count(*), sum(amount_cents) FROM read_parquet(?)",
                                [str(src / "invoice_lines.parquet")]).fetchall()[0]
    assert con.execute("SELECT count(*) FROM invoices WHERE subtotal_cents + tax_cents <> total_cents "
                       "OR customer_id <> subscription_id").fetchall()[0][0] == 0


def test_a_simulated_worlds_history_exported_to_parquet_imports_back_exactly(tmp_path):
    """What the real billing engine writes passes every check: no check is stricter than the engine."""
    simulate = pytest.importorskip("data.simulate")
    world = connect(":memory:")
    simulate.build_world(world, simulate.DEFAULT_DEMO.replace(customers=400, months=8, seed=5))
    src = tmp_path / "export"
    src.mkdir()
    for table in spec.ORDER:
        cols = ", ".join(spec.TABLES[table].column_names)
        world.execute(f"COPY (SELECT {cols} FROM {table}) TO '{src / (table + '.parquet')}' (FORMAT parquet)")
    con = connect(":memory:")
    report = import_folder(con, src, at=AT)
    assert report.ok, report.rejected.head(20).to_string()
    assert con.execute("SELECT count(*) FROM offer_grants").fetchall()[0][0] > 0  # the world exercised grants
    assert con.execute("SELECT count(*) FROM credit_notes").fetchall()[0][0] > 0
    for table in spec.ORDER:
        cols = ", ".join(spec.TABLES[table].column_names)
        theirs = world.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall()
        assert con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall() == theirs, table
    world.close()
    con.close()


# ---------------------------------------------------------------------------------------------
# the Telco churn file

needs_telco = pytest.mark.skipif(not TELCO.exists(), reason="shared Telco file not present")


@pytest.fixture(scope="module")
def telco():
    c = connect(":memory:")
    report = import_telco(c, TELCO, snapshot=SNAPSHOT, at=AT)
    yield c, report
    c.close()


@needs_telco
def test_telco_imports_every_customer_with_churn(telco):
    con, report = telco
    assert report.ok, report.rejected.head().to_string()
    assert report.counts == {"plans": 3, "customers": 7043, "subscriptions": 7043, "customer_attributes": 7043 * 19}
    assert con.execute("SELECT count(*) FROM customers").fetchall()[0][0] == 7043
    assert con.execute("SELECT count(*) FROM customers WHERE churned_on IS NOT NULL").fetchall()[0][0] == 1869
    churned = con.execute("SELECT DISTINCT churned_on, churn_kind, churn_reason FROM customers "
                          "WHERE churned_on IS NOT NULL").fetchall()
    assert churned == [(SNAPSHOT, "voluntary", None)]
    ends = con.execute("SELECT count(*) FILTER (end_date = ? AND end_reason = 'cancelled'), count(*) FILTER "
                       "(end_date IS NULL) FROM subscriptions", [SNAPSHOT]).fetchall()[0]
    assert ends == (1869, 7043 - 1869)


@needs_telco
def test_telco_contract_types_become_ranked_plans(telco):
    con, _ = telco
    counts = con.execute("SELECT p.name, p.rank, count(*) FROM subscriptions s JOIN plans p USING (plan_id) "
                         "GROUP BY ALL ORDER BY p.rank").fetchall()
    assert counts == [("Month-to-month", 1, 3875), ("One year", 2, 1473), ("Two year", 3, 1695)]
    assert con.execute("SELECT count(*) FROM plan_prices").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM invoices").fetchall()[0][0] == 0


@needs_telco
def test_telco_blank_total_charges_are_null_not_zero(telco):
    con, _ = telco
    blank = con.execute("SELECT a.value, t.value FROM customer_attributes a JOIN customer_attributes t "
                        "ON t.customer_id = a.customer_id AND t.name = 'tenure_months' "
                        "WHERE a.name = 'total_charges_cents' AND a.value IS NULL").fetchall()
    assert len(blank) == 11 and {t for _, t in blank} == {"0"}
    assert con.execute("SELECT count(*) FROM customer_attributes WHERE name = 'total_charges_cents' "
                       "AND value = '0'").fetchall()[0][0] == 0


@needs_telco
def test_telco_tenure_is_recoverable_exactly(telco):
    con, _ = telco
    src = pd.read_csv(TELCO, dtype=str)
    got = con.execute("""
        SELECT c.account_number, c.signup_date,
               (year(DATE '2024-03-31') - year(c.signup_date)) * 12 + month(DATE '2024-03-31') - month(c.signup_date)
                   AS months
        FROM customers c""").df().set_index("account_number")
    tenure = src.set_index("customerID")["tenure"].astype(int)
    assert (got.loc[tenure.index, "months"] == tenure).all()
    assert (pd.to_datetime(got["signup_date"]) <= pd.Timestamp(SNAPSHOT)).all()
    # a whole number of months: the signup day is the snapshot's day, or the last day of a shorter month
    days = pd.to_datetime(got["signup_date"])
    assert ((days.dt.day == SNAPSHOT.day) | days.dt.is_month_end).all()


@needs_telco
def test_telco_flags_and_attributes_follow_the_file(telco):
    con, _ = telco
    src = pd.read_csv(TELCO, dtype=str)
    autopay = int(src["PaymentMethod"].str.contains("(automatic)", regex=False).sum())
    paperless = int((src["PaperlessBilling"] == "Yes").sum())
    row = con.execute("SELECT count(*) FILTER (is_autopay), count(*) FILTER (is_paperless), "
                      "count(DISTINCT segment || region || channel || currency) FROM customers").fetchall()[0]
    assert row == (autopay, paperless, 1)
    assert con.execute("SELECT segment, region, channel, currency FROM customers LIMIT 1").fetchall() == [
        ("consumer", "unknown", "unknown", "USD")]
    first = dict(con.execute("SELECT a.name, a.value FROM customer_attributes a JOIN customers c USING (customer_id) "
                             "WHERE c.account_number = '7590-VHVEG'").fetchall())
    assert first["gender"] == "Female" and first["senior_citizen"] == "No" and first["monthly_charges_cents"] == "2985"
    assert first["total_charges_cents"] == "2985" and first["internet_service"] == "DSL"
    seniors = con.execute("SELECT count(*) FROM customer_attributes WHERE name = 'senior_citizen' "
                          "AND value = 'Yes'").fetchall()[0][0]
    assert seniors == int((src["SeniorCitizen"] == "1").sum())
    audit = con.execute("SELECT action, detail FROM audit_log").fetchall()
    assert len(audit) == 1 and json.loads(audit[0][1])["snapshot"] == "2024-03-31"


@needs_telco
def test_telco_file_without_a_column_is_a_one_line_error_and_writes_nothing(con, tmp_path):
    df = pd.read_csv(TELCO, dtype=str, keep_default_na=False)
    df.drop(columns=["Contract"]).to_csv(tmp_path / "telco.csv", index=False)
    report = import_telco(con, tmp_path / "telco.csv", snapshot=SNAPSHOT, at=AT)
    assert not report.ok and "missing column Contract" in report.message and "\n" not in report.message
    assert table_counts(con)["customers"] == 0 and table_counts(con)["plans"] == 0


@needs_telco
def test_telco_bad_values_are_reported_and_nothing_is_written(con, tmp_path):
    df = pd.read_csv(TELCO, dtype=str, keep_default_na=False)
    df.loc[0, "tenure"] = "1.5"
    df.loc[1, "Contract"] = "Three year"
    df.loc[2, "customerID"] = df.loc[3, "customerID"]
    df.loc[4, "MonthlyCharges"] = "56.955"
    df.to_csv(tmp_path / "telco.csv", index=False)
    before = table_counts(con)
    report = import_telco(con, tmp_path / "telco.csv", snapshot=SNAPSHOT, at=AT)
    assert table_counts(con) == before
    assert_rejected(report, "telco.csv", 2, "tenure", "not a whole number of months")
    assert_rejected(report, "telco.csv", 3, "Contract", "invalid value 'Three year'")
    assert_rejected(report, "telco.csv", 4, "customerID", "duplicate customerID")
    assert_rejected(report, "telco.csv", 5, "customerID", "duplicate customerID")
    assert_rejected(report, "telco.csv", 6, "MonthlyCharges", "not an amount with at most 2 decimals")


@needs_telco
def test_telco_import_twice_is_rejected_as_existing_accounts(telco):
    con, _ = telco
    before = table_counts(con)
    report = import_telco(con, TELCO, snapshot=SNAPSHOT, at=AT)
    assert table_counts(con) == before
    assert_rejected(report, TELCO.name, 2, "customerID", "already an account number in the database")


# ---------------------------------------------------------------------------------------------
# the cli.py import command


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cli.py")
    parser.add_argument("--db")
    sub = parser.add_subparsers(dest="command", required=True)
    add_import_command(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_import_prints_counts_and_exits_0(tmp_path, capsys):
    db = str(tmp_path / "x.duckdb")
    assert run_cli(["--db", db, "import", str(GOOD)]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "invoice_lines" in out and "16" in out
    c = connect(db)
    assert c.execute("SELECT count(*) FROM invoices").fetchall()[0][0] == 6
    c.close()


def test_cli_rejection_lists_50_rows_then_and_n_more_and_writes_the_full_report(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    rows = "\n".join(f"{i},1,2024-02-01 00:00:00,{i}.50" for i in range(1, 61))
    (src / "payments.csv").write_text("payment_id,customer_id,received_at,amount_cents\n" + rows + "\n")
    report_file = tmp_path / "rejected.csv"
    code = run_cli(["--db", str(tmp_path / "x.duckdb"), "import", str(src), "--report", str(report_file)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.count("payments.csv row") == 50
    assert "and 70 more" in captured.out  # 60 decimal amounts + 60 unknown customers, 50 shown
    assert captured.err.startswith("error: import rejected") and captured.err.count("\n") == 1
    full = pd.read_csv(report_file)
    assert list(full.columns) == ["file", "row", "column", "reason"] and len(full) == 120
    assert set(full["row"]) == set(range(2, 62))


def test_cli_report_cells_cannot_start_a_formula(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "=cmd.csv").write_text("a\n1\n")
    report_file = tmp_path / "rejected.csv"
    assert run_cli(["--db", str(tmp_path / "x.duckdb"), "import", str(src), "--report", str(report_file)]) == 1
    assert pd.read_csv(report_file)["file"].tolist() == ["'=cmd.csv"]


@pytest.mark.parametrize("argv, message", [
    (["import", "{tmp}/nope"], "does not exist"),
    (["import", "--format", "telco", "{tmp}"], "is not a file"),
    (["import", "{tmp}", "--snapshot", "2024-01-01"], "--snapshot applies to --format telco only"),
    (["import", "--format", "telco", "{good}/customers.csv", "--snapshot", "31/03/2024"], "is not a date"),
    (["import", "{good}", "--report", "{tmp}/no/such/dir/r.csv"], "cannot write the report"),
])
def test_cli_bad_paths_and_options_are_one_line_errors_with_exit_2(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, good=GOOD) for a in argv]
    assert run_cli(["--db", str(tmp_path / "x.duckdb")] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.duckdb").exists()


@needs_telco
def test_cli_imports_telco_with_a_snapshot(tmp_path, capsys):
    db = str(tmp_path / "t.duckdb")
    assert run_cli(["--db", db, "import", "--format", "telco", str(TELCO), "--snapshot", "2024-03-31"]) == 0
    assert "7,043" in capsys.readouterr().out
    c = connect(db)
    assert c.execute("SELECT max(signup_date) FROM customers").fetchall()[0][0] == SNAPSHOT
    c.close()
