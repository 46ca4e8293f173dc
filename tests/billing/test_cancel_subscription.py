"""billing/cancel_subscription.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from billing import pricing
from billing.cancel_subscription import COLUMNS, cancel_subscription, cancel_subscriptions
from billing.change_plan import change_plan
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, lines, new_db, table_counts

T = dt.datetime
D = dt.date
JAN, FEB, MAR, APR = (D(2024, m, 1) for m in (1, 2, 3, 4))


def bill(con, *periods):
    for period in periods:
        res = run_billing(con, period, as_of=pricing.add_months(period, 1))
        assert res.ok, res.message


def customer(con, cid):
    return con.execute("SELECT churned_on, churn_kind, churn_reason FROM customers WHERE customer_id = ?",
                       [cid]).fetchall()[0]


def subscription(con, cid):
    return con.execute("SELECT end_date, end_reason FROM subscriptions WHERE customer_id = ?", [cid]).fetchall()


def test_mid_month_cancellation_ends_the_subscription_and_records_the_churn():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    res = cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 14), churn_reason="too_expensive",
                              at=T(2024, 2, 10))
    assert res.ok and res["subscription_id"] == 1
    assert subscription(con, cid) == [(D(2024, 2, 14), "cancelled")]
    assert customer(con, cid) == (D(2024, 2, 14), "voluntary", "too_expensive")
    bill(con, FEB, MAR)
    assert lines(con, cid, FEB)[0] == ("proration", pricing.plan_charge(1999, 14, 29))
    assert lines(con, cid, MAR) == []


def test_end_on_the_last_day_of_a_month_bills_the_full_month_and_nothing_after():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 29), at=T(2024, 2, 10)).ok
    bill(con, FEB, MAR)
    assert lines(con, cid, FEB)[0] == ("plan", 1999)
    assert lines(con, cid, MAR) == []


def test_end_on_the_first_day_of_a_month_bills_one_day():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert cancel_subscription(con, customer_id=cid, end_date=MAR, at=T(2024, 2, 10)).ok
    bill(con, FEB, MAR, APR)
    assert lines(con, cid, FEB)[0] == ("plan", 1999)
    assert lines(con, cid, MAR)[0] == ("proration", pricing.plan_charge(1999, 1, 31))
    assert lines(con, cid, APR) == []


def test_start_on_the_first_and_end_on_the_last_day_of_the_same_month_is_one_full_period():
    con = new_db()
    cid = add_customer(con, start=FEB)
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 29), at=T(2024, 2, 1)).ok
    bill(con, JAN, FEB, MAR)
    assert lines(con, cid, JAN) == [] and lines(con, cid, MAR) == []
    assert lines(con, cid, FEB) == [("plan", 1999), ("tax", 400)]


def test_start_on_the_last_day_and_end_on_the_first_day_of_the_next_month_bills_a_day_each():
    con = new_db()
    cid = add_customer(con, start=D(2024, 1, 31))
    assert cancel_subscription(con, customer_id=cid, end_date=FEB, at=T(2024, 1, 31)).ok
    bill(con, JAN, FEB, MAR)
    assert lines(con, cid, JAN)[0] == ("proration", pricing.plan_charge(1999, 1, 31))
    assert lines(con, cid, FEB)[0] == ("proration", pricing.plan_charge(1999, 1, 29))
    assert lines(con, cid, MAR) == []


def test_cancel_on_the_start_day_serves_one_day():
    con = new_db()
    cid = add_customer(con, start=D(2024, 2, 10))
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 10), at=T(2024, 2, 10)).ok
    bill(con, FEB)
    assert lines(con, cid, FEB)[0] == ("proration", pricing.plan_charge(1999, 1, 29))


def test_involuntary_non_payment_cancellation_is_recorded_as_such():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    out = cancel_subscriptions(con, pd.DataFrame({"customer_id": [cid], "end_date": [D(2024, 3, 15)],
                                                  "churn_reason": ["non_payment"], "churn_kind": ["involuntary"],
                                                  "end_reason": ["non_payment"]}), at=T(2024, 3, 16))
    assert list(out["code"]) == ["ok"]
    assert subscription(con, cid) == [(D(2024, 3, 15), "non_payment")]
    assert customer(con, cid) == (D(2024, 3, 15), "involuntary", "non_payment")


def test_cancelling_twice_finds_no_open_subscription():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 14), at=T(2024, 2, 10)).ok
    res = cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 20), at=T(2024, 2, 11))
    assert (res.code, res["why_not"]) == ("not_found", "no_open_subscription")
    assert subscription(con, cid) == [(D(2024, 2, 14), "cancelled")]


def test_end_before_the_start_is_refused():
    con = new_db()
    cid = add_customer(con, start=D(2024, 3, 10))
    res = cancel_subscription(con, customer_id=cid, end_date=D(2024, 3, 9), at=T(2024, 3, 1))
    assert (res.code, res["why_not"]) == ("invalid_input", "end_before_start")


def test_end_inside_a_period_already_invoiced_is_already_billed_and_writes_nothing():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    bill(con, FEB)
    before = table_counts(con)
    res = cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 14), at=T(2024, 3, 2))
    assert (res.code, res["why_not"]) == ("already_billed", "already_billed")
    assert table_counts(con) == before and customer(con, cid) == (None, None, None)
    # the last day of the invoiced period is fine
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 29), at=T(2024, 3, 2)).ok


def test_cancellation_after_a_plan_change_ends_the_new_subscription():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=2)
    assert change_plan(con, customer_id=cid, new_plan_id=1, effective_date=D(2024, 3, 10), at=T(2024, 3, 10)).ok
    res = cancel_subscription(con, customer_id=cid, end_date=D(2024, 3, 20), at=T(2024, 3, 12))
    assert res.ok and res["subscription_id"] == 2
    assert subscription(con, cid) == [(D(2024, 3, 9), "plan_change"), (D(2024, 3, 20), "cancelled")]


def test_bulk_with_mixed_rows_writes_only_the_ok_ones_and_audits_a_person():
    con = new_db()
    a, b = add_customer(con, start=D(2023, 6, 1)), add_customer(con, start=D(2023, 6, 1))
    before = table_counts(con)
    out = cancel_subscriptions(con, pd.DataFrame({
        "customer_id": [a, 999, a, b, b],
        "end_date": [D(2024, 3, 31)] * 5,
        "churn_kind": ["voluntary", None, None, "bored", None]}), at=T(2024, 3, 5), user_id=4)
    assert list(out.columns) == list(COLUMNS)
    assert list(out["code"]) == ["ok", "not_found", "invalid_input", "invalid_input", "ok"]
    assert list(out["why_not"].fillna("")) == ["", "customer_not_found", "duplicate_customer",
                                               "invalid_churn_kind", ""]
    after = table_counts(con)
    assert after["audit_log"] == before["audit_log"] + 2
    assert con.execute("SELECT DISTINCT user_id, action FROM audit_log").fetchall() == [(4, "cancel_subscription")]
    assert customer(con, b) == (D(2024, 3, 31), "voluntary", None)


def test_missing_column_is_a_programming_error():
    with pytest.raises(ValueError, match="end_date"):
        cancel_subscriptions(new_db(), pd.DataFrame({"customer_id": [1]}), at=T(2024, 1, 1))
