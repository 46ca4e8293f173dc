"""Invoicing and Data & models (admin): billing runs, invoices, payments, ageing, credit notes,
demo worlds, imports with their report, users."""
from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

from analytics.overview import business_date
from billing.account import receivables
from billing.snapshot_receivables import snapshot_receivables, stored_receivables
from data.db import connect
from data.money import format_invoice_number
from pages._ui import PAGES
from tests.pages.worlds import (ROOT, build_world, chart_titles, choose, downloads, open_page, sign_in,
                                submit, texts)

INVOICING = PAGES["invoicing"].path
DATA = PAGES["data_models"].path
GOOD = ROOT / "tests" / "data" / "fixtures" / "import" / "good"


def _one(db, sql, params=()):
    con = connect(db)
    try:
        return con.execute(sql, list(params)).fetchall()[0]
    finally:
        con.close()


@pytest.fixture()
def admin(fresh_world, app):
    at = app(fresh_world, "admin")
    return at, fresh_world


def test_invoicing_shows_ageing_overdue_customers_and_downloads(world, app):
    at = app(world, "admin")
    open_page(at, INVOICING)
    assert at.text_input(key="run_period").value        # a suggested next period
    choose(at, "inv_task", "Payments and overdue")
    assert "Overdue ageing" in chart_titles(at)
    assert "Customers with overdue invoices" in texts(at)
    assert len(downloads(at)) >= 1


def _business_day(con) -> dt.date:
    return business_date(con, today=dt.date.today())      # what the page works on (a simulated world's day)


def _shown_ageing(at) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "bucket" in d.value.columns)


def test_payments_and_overdue_read_the_stored_snapshot_while_it_is_current(admin):
    at, db = admin
    con = connect(db)
    try:
        day = _business_day(con)
        assert snapshot_receivables(con, as_of=day, at=dt.datetime(2001, 2, 3, 4, 5)).ok
        live = receivables(con, as_of=day, min_periods=1)
        # mark the stored rows: the page shows what is stored, it does not compute them again
        con.execute("UPDATE receivables_ageing SET amount_cents = 123456789 WHERE bucket = '90+'")
    finally:
        con.close()
    open_page(at, INVOICING)
    choose(at, "inv_task", "Payments and overdue")
    assert f"Receivables as of {day:%Y-%m-%d}, computed at 2001-02-03 04:05" in texts(at)
    shown = _shown_ageing(at)
    assert list(shown["amount_cents"]) == [*live.ageing["amount_cents"][:-1], 123456789]
    assert f"**Customers with overdue invoices:** {len(live.overdue_customers):,} " in texts(at)


def test_payments_and_overdue_compute_and_store_when_none_is_current_and_show_a_payment_at_once(admin):
    at, db = admin
    open_page(at, INVOICING)
    choose(at, "inv_task", "Payments and overdue")          # nothing stored yet: computed here and stored
    con = connect(db)
    try:
        day = _business_day(con)
        stored = stored_receivables(con, as_of=day)
        live = receivables(con, as_of=day, min_periods=1)
        pd.testing.assert_frame_equal(stored.ageing, live.ageing)
        pd.testing.assert_frame_equal(stored.overdue_customers, live.overdue_customers)
        late = live.overdue_customers
        cid = int(late.loc[late["overdue_cents"] >= 1234, "customer_id"].iloc[0])
        account = con.execute("SELECT account_number FROM customers WHERE customer_id = ?", [cid]).fetchall()[0][0]
    finally:
        con.close()
    assert f"computed at {stored.computed_at:%Y-%m-%d %H:%M}" in texts(at)
    pd.testing.assert_frame_equal(_shown_ageing(at), live.ageing)

    at.text_input(key="pay_account").input(account)
    at.text_input(key="pay_amount").input("12.34")
    submit(at, "payment", "Record payment")
    assert at.success and not at.error
    # the same run shows the figures with the payment: 12.34 less is open
    assert _shown_ageing(at)["amount_cents"].sum() == live.ageing["amount_cents"].sum() - 1234
    con = connect(db)
    try:
        after = stored_receivables(con, as_of=day)         # and stored them for the next load
        assert after is not None and after.ageing["amount_cents"].sum() == live.ageing["amount_cents"].sum() - 1234
    finally:
        con.close()


def test_a_billing_run_twice_creates_nothing_the_second_time(admin):
    at, db = admin
    open_page(at, INVOICING)
    period = at.text_input(key="run_period").value
    submit(at, "billing_run", "Run billing")
    assert any(f"billed {period}" in s.value for s in at.success)
    n = _one(db, "SELECT count(*) FROM invoices")[0]
    at.text_input(key="run_period").input(period)
    submit(at, "billing_run", "Run billing")
    assert any("already billed" in s.value for s in at.success)
    assert _one(db, "SELECT count(*) FROM invoices")[0] == n
    assert _one(db, "SELECT count(*) FROM audit_log WHERE action = 'run_billing'")[0] >= 2


def test_a_bad_period_is_one_line(admin):
    at, _ = admin
    open_page(at, INVOICING)
    at.text_input(key="run_period").input("next month")
    submit(at, "billing_run", "Run billing")
    assert len(at.error) == 1


def test_an_invoice_with_its_lines_explanation_and_printable_document(admin):
    at, db = admin
    open_page(at, INVOICING)
    choose(at, "inv_task", "Invoices")
    invoice_id, total = _one(db, "SELECT invoice_id, total_cents FROM invoices ORDER BY invoice_id DESC LIMIT 1")
    at.text_input(key="invoice_number").input(str(invoice_id))
    submit(at, "invoice_find", "Show")
    assert format_invoice_number(invoice_id) in texts(at)
    lines = at.dataframe[0].value
    assert lines["amount_cents"].sum() == total
    assert any(d.proto.label.startswith("Download printable") for d in downloads(at))
    at.text_input(key="invoice_number").input("INV-99999999")
    submit(at, "invoice_find", "Show")
    assert any("No invoice" in e.value for e in at.error)
    at.text_input(key="invoice_number").input("=cmd|'/C calc'!A0")
    submit(at, "invoice_find", "Show")
    assert any("not a INV number" in e.value for e in at.error)


def test_a_credit_note_and_a_payment(admin):
    at, db = admin
    open_page(at, INVOICING)
    choose(at, "inv_task", "Credit notes")
    invoice_id, customer_id, account = _one(db, """
        SELECT i.invoice_id, i.customer_id, c.account_number FROM invoices i JOIN customers c USING (customer_id)
        WHERE i.total_cents > 1000 ORDER BY i.invoice_id DESC LIMIT 1""")
    at.text_input(key="cn_invoice").input(format_invoice_number(invoice_id))
    at.text_input(key="cn_amount").input("5.00")
    at.selectbox(key="cn_reason").set_value("goodwill")
    submit(at, "credit_note", "Issue credit note")
    assert not at.error, [e.value for e in at.error]
    assert _one(db, "SELECT total_cents, issued_by FROM credit_notes WHERE invoice_id = ?", [invoice_id]) == \
        (500, at.session_state["auth.user"]["user_id"])
    at.text_input(key="cn_amount").input("999999")
    submit(at, "credit_note", "Issue credit note")
    assert any("over_limit" in e.value for e in at.error)

    choose(at, "inv_task", "Payments and overdue")
    paid_before = _one(db, "SELECT count(*) FROM payments WHERE customer_id = ?", [customer_id])[0]
    at.text_input(key="pay_account").input(account)
    at.text_input(key="pay_amount").input("12.34")
    submit(at, "payment", "Record payment")
    assert _one(db, "SELECT count(*) FROM payments WHERE customer_id = ?", [customer_id])[0] == paid_before + 1
    at.text_input(key="pay_account").input("NOPE-1")
    submit(at, "payment", "Record payment")
    assert any("No customer" in e.value for e in at.error)


def test_data_and_models_imports_into_a_new_file_with_a_report(admin, tmp_path):
    at, _ = admin
    open_page(at, DATA)
    target = tmp_path / "real.duckdb"
    at.text_input(key="import_path").input(str(GOOD))
    at.text_input(key="import_target").input(str(target))
    submit(at, "import_form", "Import")
    assert at.session_state["import.report"].ok, at.session_state["import.report"].message
    assert _one(target, "SELECT count(*) FROM customers")[0] > 0

    # a broken file: nothing written, the rejected rows listed with a download
    bad = tmp_path / "bad"
    shutil.copytree(GOOD, bad)
    text = (bad / "customers.csv").read_text().splitlines()
    text[1] = text[1].replace("2023-11-15", "15/11/2023")
    (bad / "customers.csv").write_text("\n".join(text) + "\n")
    other = tmp_path / "other.duckdb"
    at.text_input(key="import_path").input(str(bad))
    at.text_input(key="import_target").input(str(other))
    submit(at, "import_form", "Import")
    report = at.session_state["import.report"]
    assert not report.ok and not report.rejected.empty
    assert "Rejected rows" in texts(at)
    assert any(d.proto.label == "Download CSV" for d in downloads(at))
    assert _one(other, "SELECT count(*) FROM customers")[0] == 0


def test_a_simulated_world_refuses_an_import_into_itself(admin):
    at, db = admin
    con = connect(db)
    try:
        simulated = bool(con.execute("SELECT count(*) FROM information_schema.tables "
                                     "WHERE table_name = 'sim_world'").fetchall()[0][0])
    finally:
        con.close()
    if not simulated:
        pytest.skip("the fallback world is not simulated")
    open_page(at, DATA)
    at.text_input(key="import_path").input(str(GOOD))
    at.text_input(key="import_target").input(str(db))
    submit(at, "import_form", "Import")
    assert "simulated world" in at.session_state["import.report"].message


def test_users_are_created_by_an_admin(admin):
    at, db = admin
    open_page(at, DATA)
    at.text_input(key="user_login").input("new.agent")
    at.text_input(key="user_name").input("New Agent")
    at.selectbox(key="user_role").set_value("agent")
    at.selectbox(key="user_tier").set_value(2)
    at.text_input(key="user_password").input("a-long-password")
    submit(at, "user_create", "Create user")
    assert any("created" in s.value for s in at.success), [e.value for e in at.error]
    assert _one(db, "SELECT role, agent_tier FROM users WHERE login = 'new.agent'") == ("agent", 2)
    at.text_input(key="user_login").input("short")
    at.text_input(key="user_name").input("Short")
    at.selectbox(key="user_role").set_value("analyst")
    at.text_input(key="user_password").input("short")
    submit(at, "user_create", "Create user")
    assert any("at least 8" in e.value for e in at.error)
    # the new user can sign in
    other = sign_in(at.__class__.from_file(str(ROOT / "app.py"), default_timeout=60).run(), "new.agent",
                    "a-long-password")
    assert other.session_state["auth.user"]["agent_tier"] == 2
    assert [t.value for t in other.title] == ["Overview"]


@pytest.mark.skipif(build_world is None, reason="the simulator (data.simulate) is not there yet")
def test_a_demo_world_is_built_into_a_new_file(admin, tmp_path):
    at, db = admin
    open_page(at, DATA)
    target = tmp_path / "demo.duckdb"
    at.number_input(key="demo_customers").set_value(120)
    at.number_input(key="demo_months").set_value(2)
    at.text_input(key="demo_target").input(str(target))
    submit(at, "demo_build", "Build the world")
    assert any("Built" in s.value for s in at.success), [e.value for e in at.error]
    assert _one(target, "SELECT count(*) FROM customers")[0] > 0
    at.text_input(key="demo_target").input(str(db))
    submit(at, "demo_build", "Build the world")
    assert any("already exists" in e.value for e in at.error)


def test_parts_not_built_yet_say_so(world, app):
    at = app(world, "admin")
    open_page(at, DATA)
    page = texts(at)
    assert "No model trained yet" in page and "Retrain" in " ".join(b.label for b in at.button)
