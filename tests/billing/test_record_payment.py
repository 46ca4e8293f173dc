"""billing/record_payment.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from billing.account import customer_balance, open_invoices
from billing.pricing import add_months
from billing.record_payment import record_payment, record_payments
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, new_db, table_counts

JAN, FEB, MAR = (dt.date(2024, m, 1) for m in (1, 2, 3))
PAID_AT = dt.datetime(2024, 2, 3, 10, 0)
MONTH = 2399                       # Basic 19.99 + 20 % tax


def bill(con, period):
    res = run_billing(con, period, as_of=add_months(period, 1))
    assert res.ok, res.message


def balances(con, customer_id):
    return [tuple(r) for r in con.execute(
        "SELECT period_start, paid_cents, balance_cents FROM invoice_balances WHERE customer_id = ? "
        "ORDER BY period_start", [customer_id]).fetchall()]


def frame(**overrides):
    row = {"customer_id": 1, "amount_cents": 1000, "received_at": PAID_AT, "method": "card",
           "status": "settled", "reference": "r-1"}
    row.update(overrides)
    return pd.DataFrame([row])


def test_payment_of_exactly_the_balance_settles_the_invoice():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    res = record_payment(con, customer_id=cid, amount_cents=MONTH, received_at=PAID_AT, method="card")
    assert res.ok and res["balance_cents"] == 0 and res["credit_balance_cents"] == 0
    assert balances(con, cid) == [(JAN, MONTH, 0)]


def test_payment_larger_than_the_balance_becomes_credit_balance_and_settles_the_next_invoice():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    res = record_payment(con, customer_id=cid, amount_cents=3000, received_at=PAID_AT, method="bank_transfer")
    assert res.ok
    assert res["balance_cents"] == 0 and res["credit_balance_cents"] == 3000 - MONTH
    bill(con, FEB)
    assert balances(con, cid) == [(JAN, MONTH, 0), (FEB, 3000 - MONTH, MONTH - (3000 - MONTH))]
    after = customer_balance(con, cid)
    assert after.credit_balance_cents == 0 and after.open_balance_cents == 2 * MONTH - 3000


def test_payments_settle_the_oldest_open_invoice_first():
    con = new_db()
    cid = add_customer(con, start=JAN)
    for period in (JAN, FEB, MAR):
        bill(con, period)
    assert record_payment(con, customer_id=cid, amount_cents=MONTH + 100, received_at=PAID_AT,
                          method="card").ok
    assert balances(con, cid) == [(JAN, MONTH, 0), (FEB, 100, MONTH - 100), (MAR, 0, MONTH)]
    assert list(open_invoices(con, cid, as_of=dt.date(2024, 4, 30))["period_start"].dt.date) == [FEB, MAR]


def test_failed_payment_is_recorded_but_settles_nothing():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    res = record_payment(con, customer_id=cid, amount_cents=MONTH, received_at=PAID_AT,
                         method="direct_debit", status="failed")
    assert res.ok and not res["settled"] and res["balance_cents"] == MONTH
    assert customer_balance(con, cid).failed_payments == 1


def test_payment_before_any_invoice_is_all_credit_balance():
    con = new_db()
    cid = add_customer(con, start=JAN)
    res = record_payment(con, customer_id=cid, amount_cents=500, received_at=PAID_AT, method="cash")
    assert res.ok and res["credit_balance_cents"] == 500 and res["balance_cents"] == 0


def test_unknown_customer_is_not_found_and_nothing_is_written():
    con = new_db()
    before = table_counts(con)
    res = record_payment(con, customer_id=42, amount_cents=100, received_at=PAID_AT, method="card")
    assert not res.ok and res.code == "not_found" and "42" in res.message
    assert table_counts(con) == before


def test_zero_amount_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    res = record_payment(con, customer_id=1, amount_cents=0, received_at=PAID_AT, method="card")
    assert not res.ok and res.code == "invalid_input"


def test_negative_amount_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    assert record_payments(con, frame(amount_cents=-5)).code == "invalid_input"


def test_fractional_cents_are_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    assert record_payment(con, customer_id=1, amount_cents=10.5, received_at=PAID_AT, method="card").code \
        == "invalid_input"
    assert record_payments(con, frame(amount_cents=10.5)).code == "invalid_input"


def test_float_column_of_whole_cents_is_accepted():
    con = new_db()
    add_customer(con, start=JAN)
    res = record_payments(con, frame(amount_cents=1000.0))
    assert res.ok
    assert con.execute("SELECT amount_cents FROM payments").fetchall() == [(1000,)]


def test_unknown_method_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    res = record_payments(con, frame(method="bitcoin"))
    assert not res.ok and res.code == "invalid_input" and "method" in res.message


def test_unknown_status_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    res = record_payments(con, frame(status="pending"))
    assert not res.ok and res.code == "invalid_input" and "status" in res.message


def test_missing_received_at_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    assert record_payments(con, frame(received_at=None)).code == "invalid_input"


def test_missing_column_is_invalid_input():
    con = new_db()
    res = record_payments(con, frame().drop(columns=["method"]))
    assert not res.ok and res.code == "invalid_input" and "method" in res.message


def test_bulk_is_all_or_nothing_and_names_the_first_bad_row():
    con = new_db()
    add_customer(con, start=JAN)
    df = pd.concat([frame(), frame(amount_cents=0), frame(method="cheque")], ignore_index=True)
    before = table_counts(con)
    res = record_payments(con, df)
    assert not res.ok and res.message.startswith("row 2:")
    assert table_counts(con) == before


def test_bulk_with_an_unknown_customer_writes_nothing():
    con = new_db()
    add_customer(con, start=JAN)
    df = pd.concat([frame(), frame(customer_id=99)], ignore_index=True)
    res = record_payments(con, df)
    assert res.code == "not_found" and res.message.startswith("row 2:")
    assert con.execute("SELECT count(*) FROM payments").fetchall()[0][0] == 0


def test_bulk_ids_are_max_plus_row_number_in_input_order():
    con = new_db()
    for _ in range(3):
        add_customer(con, start=JAN)
    assert record_payment(con, customer_id=1, amount_cents=1, received_at=PAID_AT, method="card")["payment_id"] == 1
    df = pd.DataFrame({"customer_id": [3, 1, 2], "amount_cents": [30, 10, 20],
                       "received_at": [PAID_AT] * 3, "method": ["card"] * 3,
                       "status": ["settled", "failed", "settled"]})
    res = record_payments(con, df)
    assert res.ok and list(res["payment_ids"]) == [2, 3, 4]
    assert res["settled_cents"] == 50 and res["failed_count"] == 1
    rows = con.execute("SELECT payment_id, customer_id, amount_cents, reference FROM payments "
                       "ORDER BY payment_id").fetchall()
    assert rows == [(1, 1, 1, None), (2, 3, 30, None), (3, 1, 10, None), (4, 2, 20, None)]


def test_empty_frame_records_nothing():
    con = new_db()
    res = record_payments(con, frame().iloc[0:0])
    assert res.ok and res["count"] == 0


def test_reference_with_sql_text_is_stored_verbatim():
    con = new_db()
    cid = add_customer(con, start=JAN)
    nasty = "x'); DROP TABLE payments; --"
    assert record_payment(con, customer_id=cid, amount_cents=1, received_at=PAID_AT, method="card",
                          reference=nasty).ok
    assert con.execute("SELECT reference FROM payments").fetchall() == [(nasty,)]


def test_payment_recorded_by_a_person_is_audited():
    con = new_db()
    cid = add_customer(con, start=JAN)
    res = record_payment(con, customer_id=cid, amount_cents=700, received_at=PAID_AT, method="cash", user_id=7)
    row = con.execute("SELECT user_id, action, entity, logged_at FROM audit_log "
                      "WHERE action = 'record_payments'").fetchall()
    assert res.ok and row == [(7, "record_payments", "payment", PAID_AT)]
