"""data/db.py: locating, opening, versioning and locking the database."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pytest

from data import db, migrations


def test_new_database_gets_the_current_schema_version(tmp_path):
    con = db.connect(tmp_path / "a.duckdb")
    assert db.schema_version(con) == db.SCHEMA_VERSION
    assert db.has_table(con, "invoices") and db.has_table(con, "invoice_balances")


def test_reopening_keeps_the_data(tmp_path):
    path = tmp_path / "a.duckdb"
    con = db.connect(path)
    con.execute("INSERT INTO tax_rates VALUES ('north', DATE '2020-01-01', 2000)")
    con.close()
    con = db.connect(path)
    assert con.execute("SELECT count(*) FROM tax_rates").fetchall()[0][0] == 1


def test_environment_variable_chooses_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_DB", str(tmp_path / "env.duckdb"))
    assert db.resolve_path(None) == str(tmp_path / "env.duckdb")
    assert db.resolve_path(tmp_path / "x.duckdb") == str(tmp_path / "x.duckdb")


def test_newer_schema_version_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "a.duckdb"
    con = db.connect(path)
    con.execute("UPDATE schema_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(db.DatabaseError, match="newer than this Retention Desk"):
        db.connect(path)


def test_older_schema_is_upgraded_in_place(tmp_path, monkeypatch):
    path = tmp_path / "a.duckdb"
    con = db.connect(path)
    con.execute("UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", [str(db.SCHEMA_VERSION - 1)])
    con.close()
    monkeypatch.setitem(migrations.UPGRADES, db.SCHEMA_VERSION - 1,
                        ["CREATE TABLE upgraded_marker (x INTEGER)"])
    con = db.connect(path)
    assert db.schema_version(con) == db.SCHEMA_VERSION
    assert db.has_table(con, "upgraded_marker")


def test_older_schema_without_an_upgrade_path_is_refused(tmp_path):
    path = tmp_path / "a.duckdb"
    con = db.connect(path)
    con.execute("UPDATE schema_meta SET value = '0' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(db.DatabaseError, match="too old to upgrade"):
        db.connect(path)


def test_foreign_duckdb_file_is_refused(tmp_path):
    path = tmp_path / "other.duckdb"
    other = duckdb.connect(str(path))
    other.execute("CREATE TABLE something (x INTEGER)")
    other.close()
    with pytest.raises(db.DatabaseError, match="not a Retention Desk database"):
        db.connect(path)


def test_missing_file_is_an_error_when_not_creating(tmp_path):
    with pytest.raises(db.DatabaseError, match="does not exist"):
        db.connect(tmp_path / "missing.duckdb", create=False)


def test_file_held_by_another_process_gives_a_one_line_error(tmp_path):
    path = tmp_path / "held.duckdb"
    db.connect(path).close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(path)!r})
        print('ready', flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(db.DatabaseBusyError) as info:
            db.connect(path)
        message = str(info.value)
        assert "in use by another process" in message and "\n" not in message
        assert str(holder.pid) in message
    finally:
        holder.kill()
        holder.wait()


def test_transaction_rolls_back_on_error():
    con = db.connect(":memory:")
    with pytest.raises(RuntimeError):
        with db.transaction(con):
            con.execute("INSERT INTO tax_rates VALUES ('north', DATE '2020-01-01', 2000)")
            raise RuntimeError("boom")
    assert con.execute("SELECT count(*) FROM tax_rates").fetchall()[0][0] == 0


def test_cursors_have_the_money_macro():
    con = db.connect(":memory:")
    assert db.cursor(con).execute("SELECT round_div(5, 10)").fetchall()[0][0] == 1


def test_a_version_1_database_gets_the_customer_indexes_of_version_2(tmp_path):
    path = tmp_path / "v1.duckdb"
    con = db.connect(path)
    con.execute("DROP INDEX invoices_customer")
    con.execute("DROP INDEX payments_customer")
    con.execute("UPDATE schema_meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    con = db.connect(path)
    indexes = {r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    assert {"invoices_customer", "payments_customer"} <= indexes and db.schema_version(con) == 2
    con.close()
