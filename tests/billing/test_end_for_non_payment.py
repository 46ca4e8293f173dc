"""billing/end_for_non_payment.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

from billing.end_for_non_payment import end_for_non_payment
from billing.issue_credit_note import issue_credit_note
from billing.pricing import add_months
from billing.record_payment import record_payment
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, lines, new_db, table_counts

DEC, JAN, FEB, MAR, APR = dt.date(2023, 12, 1), *(dt.date(2024, m, 1) for m in (1, 2, 3, 4))
MONTH = 2399                       # Basic 19.99 + 20 % tax
RUN_DAY = dt.date(2024, 3, 20)     # January due 02-15 and February due 03-15 are both overdue
AT = dt.datetime(2024, 3, 20, 6, 0)


def bill(con, period, as_of=None):
    res = run_billing(con, period, as_of=as_of or add_months(period, 1))
    assert res.ok, res.message


def two_unpaid_months(con, start=DEC):
    cid = add_customer(con, start=start)
    bill(con, JAN)
    bill(con, FEB)
    return cid


def subscription(con, customer_id):
    return con.execute("SELECT end_date, end_reason FROM subscriptions WHERE customer_id = ?",
                       [customer_id]).fetchall()[0]


def churn(con, customer_id):
    return con.execute("SELECT churned_on, churn_kind, churn_reason FROM customers WHERE customer_id = ?",
                       [customer_id]).fetchall()[0]


def test_two_overdue_periods_end_the_subscription_the_day_before_the_run():
    con = new_db()
    cid = two_unpaid_months(con)
    res = end_for_non_payment(con, as_of=RUN_DAY, at=AT)
    assert res.ok and res["ended"] == 1 and res["customer_ids"] == [cid]
    assert res["overdue_cents"] == 2 * MONTH
    assert subscription(con, cid) == (dt.date(2024, 3, 19), "non_payment")
    assert churn(con, cid) == (dt.date(2024, 3, 19), "involuntary", "non_payment")


def test_one_overdue_period_does_not_end_the_subscription():
    con = new_db()
    cid = add_customer(con, start=DEC)
    bill(con, JAN)
    res = end_for_non_payment(con, as_of=RUN_DAY, at=AT)
    assert res.ok and res["ended"] == 0
    assert subscription(con, cid) == (None, None) and churn(con, cid) == (None, None, None)


def test_second_invoice_not_yet_due_does_not_count():
    con = new_db()
    cid = two_unpaid_months(con)
    res = end_for_non_payment(con, as_of=dt.date(2024, 3, 15), at=AT)      # February due 03-15: not late
    assert res["ended"] == 0 and subscription(con, cid) == (None, None)


def test_paying_in_time_prevents_it():
    con = new_db()
    cid = two_unpaid_months(con)
    assert record_payment(con, customer_id=cid, amount_cents=2 * MONTH, received_at=dt.datetime(2024, 3, 19),
                          method="card").ok
    res = end_for_non_payment(con, as_of=RUN_DAY, at=AT)
    assert res["ended"] == 0 and subscription(con, cid) == (None, None)


def test_paying_the_oldest_month_leaves_one_overdue_period_and_prevents_it():
    con = new_db()
    cid = two_unpaid_months(con)
    assert record_payment(con, customer_id=cid, amount_cents=MONTH, received_at=dt.datetime(2024, 3, 19),
                          method="card").ok
    assert end_for_non_payment(con, as_of=RUN_DAY, at=AT)["ended"] == 0


def test_partial_payment_leaving_both_periods_open_does_not_prevent_it():
    con = new_db()
    cid = two_unpaid_months(con)
    assert record_payment(con, customer_id=cid, amount_cents=MONTH - 1, received_at=dt.datetime(2024, 3, 19),
                          method="card").ok
    assert end_for_non_payment(con, as_of=RUN_DAY, at=AT)["customer_ids"] == [cid]


def test_failed_payment_does_not_prevent_it():
    con = new_db()
    cid = two_unpaid_months(con)
    assert record_payment(con, customer_id=cid, amount_cents=2 * MONTH, received_at=dt.datetime(2024, 3, 19),
                          method="direct_debit", status="failed").ok
    assert end_for_non_payment(con, as_of=RUN_DAY, at=AT)["customer_ids"] == [cid]


def test_credit_note_clearing_one_period_prevents_it():
    con = new_db()
    cid = two_unpaid_months(con)
    assert issue_credit_note(con, invoice_id=1, amount_cents=MONTH, reason="billing_error", at=AT).ok
    assert end_for_non_payment(con, as_of=RUN_DAY, at=AT)["ended"] == 0


def test_only_the_late_customers_are_ended():
    con = new_db()
    late = add_customer(con, start=DEC)
    payer = add_customer(con, start=DEC)
    bill(con, JAN)
    bill(con, FEB)
    assert record_payment(con, customer_id=payer, amount_cents=2 * MONTH, received_at=dt.datetime(2024, 3, 1),
                          method="card").ok
    res = end_for_non_payment(con, as_of=RUN_DAY, at=AT)
    assert res["customer_ids"] == [late]
    assert subscription(con, payer) == (None, None)


def test_running_twice_changes_nothing_the_second_time():
    con = new_db()
    two_unpaid_months(con)
    assert end_for_non_payment(con, as_of=RUN_DAY, at=AT)["ended"] == 1
    before = table_counts(con)
    again = end_for_non_payment(con, as_of=RUN_DAY, at=AT)
    after = table_counts(con)
    assert again.ok and again["ended"] == 0
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in before.items()
                                                                    if k != "audit_log"}


def test_end_date_never_falls_inside_an_already_invoiced_period():
    con = new_db()
    cid = two_unpaid_months(con)
    bill(con, MAR, as_of=dt.date(2024, 3, 10))            # March billed early (allowed once it started)
    end_for_non_payment(con, as_of=RUN_DAY, at=AT)
    assert subscription(con, cid) == (dt.date(2024, 3, 31), "non_payment")


def test_last_part_month_is_billed_up_to_the_end_date_and_nothing_after():
    con = new_db()
    cid = two_unpaid_months(con)
    end_for_non_payment(con, as_of=RUN_DAY, at=AT)
    bill(con, MAR)
    bill(con, APR)
    assert lines(con, cid, MAR)[0] == ("proration", round(1999 * 19 / 31))
    assert lines(con, cid, APR) == []


def test_run_on_the_first_day_after_a_billed_month_ends_on_its_last_day():
    con = new_db()
    cid = add_customer(con, start=DEC)
    for period in (JAN, FEB, MAR):
        bill(con, period)
    end_for_non_payment(con, as_of=APR, at=AT)
    assert subscription(con, cid) == (dt.date(2024, 3, 31), "non_payment")


def test_customer_without_an_open_subscription_is_left_alone():
    con = new_db()
    cid = two_unpaid_months(con)
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-02-29', end_reason = 'cancelled'")
    con.execute("UPDATE customers SET churned_on = DATE '2024-02-29', churn_kind = 'voluntary'")
    assert end_for_non_payment(con, as_of=RUN_DAY, at=AT)["ended"] == 0
    assert subscription(con, cid) == (dt.date(2024, 2, 29), "cancelled")
    assert churn(con, cid)[1] == "voluntary"


def test_the_run_is_audited():
    con = new_db()
    two_unpaid_months(con)
    end_for_non_payment(con, as_of=RUN_DAY, at=AT, user_id=3)
    rows = con.execute("SELECT user_id, entity_id FROM audit_log WHERE action = 'end_for_non_payment'").fetchall()
    assert rows == [(3, "2024-03-20")]
