"""billing/account.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pytest

from billing.account import customer_balance, open_invoices, overdue_ageing, overdue_customers
from billing.issue_credit_note import issue_credit_note
from billing.pricing import add_months
from billing.record_payment import record_payment
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, new_db

JAN, FEB, MAR = (dt.date(2024, m, 1) for m in (1, 2, 3))
MONTH = 2399                        # Basic 19.99 + 20 % tax; invoices due 14 days after the run
AT = dt.datetime(2024, 4, 1, 12, 0)


def bill(con, period):
    res = run_billing(con, period, as_of=add_months(period, 1))
    assert res.ok, res.message


def pay(con, customer_id, cents, when=dt.datetime(2024, 2, 10)):
    assert record_payment(con, customer_id=customer_id, amount_cents=cents, received_at=when, method="card").ok


def test_unknown_customer_has_no_balance():
    assert customer_balance(new_db(), 99) is None


def test_customer_without_invoices_has_zero_balances():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bal = customer_balance(con, cid, as_of=FEB)
    assert (bal.invoiced_cents, bal.paid_cents, bal.open_balance_cents, bal.credit_balance_cents,
            bal.overdue_cents, bal.overdue_invoices) == (0, 0, 0, 0, 0, 0)


def test_balance_identity_invoiced_minus_credited_minus_paid_is_open_minus_credit_balance():
    con = new_db()
    cid = add_customer(con, start=JAN)
    for period in (JAN, FEB, MAR):
        bill(con, period)
    pay(con, cid, 3000)
    assert issue_credit_note(con, invoice_id=2, amount_cents=500, reason="goodwill", at=AT).ok
    bal = customer_balance(con, cid, as_of=dt.date(2024, 4, 20))
    assert (bal.invoiced_cents, bal.credited_cents, bal.paid_cents) == (3 * MONTH, 500, 3000)
    assert bal.invoiced_cents - bal.credited_cents - bal.paid_cents == bal.net_position_cents
    assert bal.open_balance_cents == 3 * MONTH - 500 - 3000 and bal.credit_balance_cents == 0


def test_overpayment_shows_as_credit_balance_not_negative_open_balance():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    pay(con, cid, 5000)
    bal = customer_balance(con, cid)
    assert bal.open_balance_cents == 0 and bal.credit_balance_cents == 5000 - MONTH
    assert bal.net_position_cents == -(5000 - MONTH)


def test_overdue_fields_are_none_without_as_of():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    bal = customer_balance(con, cid)
    assert bal.overdue_cents is None and bal.overdue_invoices is None and bal.as_of is None


def test_invoice_due_today_is_not_overdue_yet():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)                                          # issued 2024-02-01, due 2024-02-15
    assert customer_balance(con, cid, as_of=dt.date(2024, 2, 15)).overdue_cents == 0
    assert customer_balance(con, cid, as_of=dt.date(2024, 2, 16)).overdue_cents == MONTH


def test_open_invoices_are_oldest_first_with_days_past_due():
    con = new_db()
    cid = add_customer(con, start=JAN)
    for period in (JAN, FEB, MAR):
        bill(con, period)
    pay(con, cid, MONTH)                                    # settles January
    got = open_invoices(con, cid, as_of=dt.date(2024, 4, 1))
    assert list(got["period_start"].dt.date) == [FEB, MAR]
    assert list(got["days_past_due"]) == [(dt.date(2024, 4, 1) - dt.date(2024, 3, 15)).days, 0]
    assert list(got["is_overdue"]) == [True, False]


def test_open_invoices_leave_out_invoices_issued_after_as_of():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    bill(con, FEB)                                          # issued 2024-03-01
    assert len(open_invoices(con, cid, as_of=dt.date(2024, 2, 20))) == 1


def test_fully_credited_invoice_is_not_open():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    assert issue_credit_note(con, invoice_id=1, amount_cents=MONTH, reason="billing_error", at=AT).ok
    assert open_invoices(con, cid, as_of=dt.date(2024, 5, 1)).empty


@pytest.mark.parametrize("days_late, bucket", [
    (-3, "current"), (0, "current"), (1, "1-30"), (30, "1-30"), (31, "31-60"), (60, "31-60"),
    (61, "61-90"), (90, "61-90"), (91, "90+"), (400, "90+")])
def test_ageing_bucket_boundaries(days_late, bucket):
    con = new_db()
    add_customer(con, start=JAN)
    bill(con, JAN)                                          # due 2024-02-15
    ageing = overdue_ageing(con, as_of=dt.date(2024, 2, 15) + dt.timedelta(days=days_late))
    assert list(ageing["bucket"]) == ["current", "1-30", "31-60", "61-90", "90+"]
    hit = ageing[ageing["invoice_count"] > 0]
    assert list(hit["bucket"]) == [bucket] and list(hit["amount_cents"]) == [MONTH]


def test_ageing_of_an_empty_book_has_five_zero_buckets():
    ageing = overdue_ageing(new_db(), as_of=FEB)
    assert len(ageing) == 5 and ageing["invoice_count"].sum() == 0 and ageing["amount_cents"].sum() == 0


def test_ageing_sums_open_balances_after_partial_payment():
    con = new_db()
    cid = add_customer(con, start=JAN)
    add_customer(con, start=JAN)
    bill(con, JAN)
    bill(con, FEB)
    pay(con, cid, 1000)
    ageing = overdue_ageing(con, as_of=dt.date(2024, 3, 20)).set_index("bucket")
    # January (due 02-15, 34 days late) and February (due 03-15, 5 days late) of two customers.
    assert ageing.loc["31-60", "amount_cents"] == 2 * MONTH - 1000
    assert ageing.loc["1-30", "amount_cents"] == 2 * MONTH
    assert ageing.loc["1-30", "customer_count"] == 2


def test_overdue_customers_need_two_distinct_periods():
    con = new_db()
    late = add_customer(con, start=JAN)
    one_period = add_customer(con, start=JAN)
    bill(con, JAN)
    bill(con, FEB)
    pay(con, one_period, MONTH)
    got = overdue_customers(con, as_of=dt.date(2024, 3, 16))
    assert list(got["customer_id"]) == [late]
    assert got.iloc[0]["overdue_periods"] == 2 and got.iloc[0]["overdue_cents"] == 2 * MONTH
    assert bool(got.iloc[0]["has_open_subscription"])
    assert set(overdue_customers(con, as_of=dt.date(2024, 3, 16), min_periods=1)["customer_id"]) == \
        {late, one_period}


def test_two_invoices_of_one_period_count_as_one_overdue_period():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    # A plan change on 2024-01-16: two subscriptions, two January invoices.
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-01-15', end_reason = 'plan_change'")
    con.execute("INSERT INTO subscriptions VALUES (2, ?, 2, DATE '2024-01-16', NULL, NULL, 1)", [cid])
    bill(con, JAN)
    got = overdue_customers(con, as_of=dt.date(2024, 3, 1), min_periods=1)
    assert got.iloc[0]["overdue_invoices"] == 2 and got.iloc[0]["overdue_periods"] == 1
    assert overdue_customers(con, as_of=dt.date(2024, 3, 1)).empty
