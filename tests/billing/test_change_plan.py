"""billing/change_plan.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import pricing
from billing.cancel_subscription import cancel_subscription
from billing.change_plan import COLUMNS, change_plan, change_plans, preview_plan_change
from billing.manage_catalogue import define_plan
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, lines, new_db, table_counts

T = dt.datetime
D = dt.date
FEB, MAR, APR = D(2024, 2, 1), D(2024, 3, 1), D(2024, 4, 1)
BASIC, PLUS = 1, 2
PRICE = {BASIC: 1999, PLUS: 3100}


def subs(con, cid):
    return con.execute("SELECT subscription_id, plan_id, start_date, end_date, end_reason, previous_subscription_id "
                       "FROM subscriptions WHERE customer_id = ? ORDER BY start_date, subscription_id",
                       [cid]).fetchall()


def bill(con, *periods):
    for period in periods:
        res = run_billing(con, period, as_of=pricing.add_months(period, 1))
        assert res.ok, res.message


def plan_charges(con, cid, period):
    return con.execute("""
        SELECT i.plan_id, l.quantity, l.amount_cents FROM invoice_lines l JOIN invoices i USING (invoice_id)
        WHERE i.customer_id = ? AND i.period_start = ? AND l.kind IN ('plan', 'proration')
        ORDER BY i.subscription_id""", [cid, period]).fetchall()


def test_mid_month_change_closes_the_open_subscription_and_opens_a_linked_one():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    res = change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 3, 11), at=T(2024, 3, 11))
    assert res.ok, res.message
    assert (res["old_subscription_id"], res["new_subscription_id"]) == (1, 2)
    assert subs(con, cid) == [(1, PLUS, D(2023, 6, 1), D(2024, 3, 10), "plan_change", None),
                              (2, BASIC, D(2024, 3, 11), None, None, 1)]
    bill(con, MAR)
    assert plan_charges(con, cid, MAR) == [(PLUS, 10, pricing.plan_charge(3100, 10, 31)),
                                           (BASIC, 21, pricing.plan_charge(1999, 21, 31))]


def test_plan_changed_twice_in_one_month_bills_three_prorated_parts():
    con = new_db()
    assert define_plan(con, code="max", name="Max", rank=3, monthly_price_cents=4500, usage_allowance_units=100,
                       overage_price_cents=50, effective_from=D(2020, 1, 1)).ok
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=BASIC)
    assert change_plan(con, customer_id=cid, new_plan_id=3, effective_date=D(2024, 2, 10), at=T(2024, 2, 10)).ok
    assert change_plan(con, customer_id=cid, new_plan_id=PLUS, effective_date=D(2024, 2, 20), at=T(2024, 2, 20)).ok
    assert [(s[1], s[2], s[3], s[5]) for s in subs(con, cid)] == [
        (BASIC, D(2023, 6, 1), D(2024, 2, 9), None), (3, D(2024, 2, 10), D(2024, 2, 19), 1),
        (PLUS, D(2024, 2, 20), None, 2)]
    bill(con, FEB, MAR)
    parts = plan_charges(con, cid, FEB)
    expected = [(BASIC, 9, pricing.plan_charge(1999, 9, 29)), (3, 10, pricing.plan_charge(4500, 10, 29)),
                (PLUS, 10, pricing.plan_charge(3100, 10, 29))]
    assert parts == expected
    assert sum(a for _, _, a in parts) == sum(a for _, _, a in expected)
    assert sum(days for _, days, _ in parts) == 29
    assert plan_charges(con, cid, MAR) == [(PLUS, 31, 3100)]


def test_change_on_the_first_day_of_a_month_bills_two_full_months():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    assert change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=MAR, at=T(2024, 2, 20)).ok
    assert subs(con, cid)[0][3] == D(2024, 2, 29)                 # last day of February
    bill(con, FEB, MAR)
    assert lines(con, cid, FEB)[0] == ("plan", 3100)
    assert lines(con, cid, MAR)[0] == ("plan", 1999)


def test_change_on_the_last_day_of_a_month_bills_one_day_of_the_new_plan():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    assert change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 3, 31), at=T(2024, 3, 1)).ok
    bill(con, MAR)
    assert plan_charges(con, cid, MAR) == [(PLUS, 30, pricing.plan_charge(3100, 30, 31)),
                                           (BASIC, 1, pricing.plan_charge(1999, 1, 31))]


def test_change_on_the_subscriptions_start_date_switches_it_in_place():
    con = new_db()
    cid = add_customer(con, start=D(2024, 3, 11), plan_id=PLUS)
    res = change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 3, 11), at=T(2024, 3, 11))
    assert res.ok and res["new_subscription_id"] == res["old_subscription_id"] == 1
    assert subs(con, cid) == [(1, BASIC, D(2024, 3, 11), None, None, None)]


def test_second_change_on_the_same_day_switches_the_new_subscription_in_place():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    assert change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 3, 11), at=T(2024, 3, 11)).ok
    assert change_plan(con, customer_id=cid, new_plan_id=PLUS, effective_date=D(2024, 3, 11), at=T(2024, 3, 11)).ok
    assert [(s[1], s[2], s[3]) for s in subs(con, cid)] == [(PLUS, D(2023, 6, 1), D(2024, 3, 10)),
                                                          (PLUS, D(2024, 3, 11), None)]


def test_churned_customer_has_no_open_subscription_to_change():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 29), at=T(2024, 2, 1)).ok
    res = change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 3, 5), at=T(2024, 3, 5))
    assert (res.code, res["why_not"]) == ("not_found", "no_open_subscription")


def test_same_plan_is_refused():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    res = change_plan(con, customer_id=cid, new_plan_id=PLUS, effective_date=D(2024, 3, 5), at=T(2024, 3, 5))
    assert (res.code, res["why_not"]) == ("invalid_input", "same_plan")


def test_unknown_plan_and_unknown_customer_are_not_found():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    res = change_plan(con, customer_id=cid, new_plan_id=99, effective_date=D(2024, 3, 5), at=T(2024, 3, 5))
    assert (res.code, res["why_not"]) == ("not_found", "plan_not_found")
    res = change_plan(con, customer_id=999, new_plan_id=BASIC, effective_date=D(2024, 3, 5), at=T(2024, 3, 5))
    assert (res.code, res["why_not"]) == ("not_found", "customer_not_found")


def test_plan_without_a_price_for_the_month_of_the_change_is_refused():
    con = new_db()
    assert define_plan(con, code="future", name="Future", rank=1, monthly_price_cents=999, usage_allowance_units=5,
                       overage_price_cents=100, effective_from=APR).ok
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    res = change_plan(con, customer_id=cid, new_plan_id=3, effective_date=D(2024, 3, 20), at=T(2024, 3, 5))
    assert (res.code, res["why_not"]) == ("invalid_input", "plan_not_priced")
    assert change_plan(con, customer_id=cid, new_plan_id=3, effective_date=APR, at=T(2024, 3, 5)).ok


def test_withdrawn_plan_is_refused():
    con = new_db()
    con.execute("UPDATE plans SET is_active = FALSE WHERE plan_id = ?", [BASIC])   # no withdraw use case yet
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    res = change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 3, 5), at=T(2024, 3, 5))
    assert (res.code, res["why_not"]) == ("invalid_input", "plan_inactive")


def test_change_before_the_subscription_starts_is_refused():
    con = new_db()
    cid = add_customer(con, start=D(2024, 3, 10), plan_id=PLUS)
    res = change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 3, 9), at=T(2024, 3, 1))
    assert (res.code, res["why_not"]) == ("invalid_input", "before_start")


def test_change_inside_an_invoiced_period_is_already_billed_and_writes_nothing():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    bill(con, FEB)
    before = table_counts(con)
    res = change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 2, 29), at=T(2024, 3, 2))
    assert (res.code, res["why_not"]) == ("already_billed", "already_billed")
    assert table_counts(con) == before
    assert change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=MAR, at=T(2024, 3, 2)).ok


def test_bulk_already_billed_names_the_last_invoiced_day_whatever_the_other_rows_dates():
    # the billed check reads invoices ending on or after the batch's earliest date: the message is exact
    con = new_db()
    a = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    b = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    bill(con, D(2024, 1, 1), FEB)
    out = change_plans(con, pd.DataFrame({"customer_id": [a, b], "new_plan_id": [BASIC, BASIC],
                                          "effective_date": [D(2024, 2, 10), D(2024, 1, 5)]}), at=T(2024, 3, 2))
    assert list(out["why_not"]) == ["already_billed", "already_billed"]
    assert all("invoiced through 2024-02-29" in m for m in out["message"])


def test_bulk_changes_with_mixed_rows_write_only_the_ok_ones():
    con = new_db()
    a = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    b = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    c = add_customer(con, start=D(2023, 6, 1), plan_id=BASIC)
    out = change_plans(con, pd.DataFrame({
        "customer_id": [a, c, b, a, 999],
        "new_plan_id": [BASIC, BASIC, BASIC, BASIC, BASIC],
        "effective_date": [D(2024, 3, 5), D(2024, 3, 5), D(2024, 3, 6), D(2024, 3, 20), D(2024, 3, 5)]}),
        at=T(2024, 3, 5))
    assert list(out.columns) == list(COLUMNS)
    assert list(out["code"]) == ["ok", "invalid_input", "ok", "invalid_input", "not_found"]
    assert list(out["why_not"].fillna("")) == ["", "same_plan", "", "duplicate_customer", "customer_not_found"]
    assert [int(x) for x in out["new_subscription_id"].dropna()] == [4, 5]
    assert con.execute("SELECT count(*) FROM subscriptions").fetchall()[0][0] == 5


def test_changes_by_a_person_are_audited_and_the_systems_are_not():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    assert change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=D(2024, 3, 5), at=T(2024, 3, 5)).ok
    assert con.execute("SELECT count(*) FROM audit_log WHERE action = 'change_plan'").fetchall()[0][0] == 0
    assert change_plan(con, customer_id=cid, new_plan_id=PLUS, effective_date=D(2024, 3, 9), at=T(2024, 3, 9),
                       user_id=7).ok
    assert con.execute("SELECT user_id, entity_id FROM audit_log WHERE action = 'change_plan'").fetchall() == [(7, "3")]


def test_preview_shows_the_prorated_parts_and_writes_nothing():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    before = table_counts(con)
    res = preview_plan_change(con, cid, BASIC, D(2024, 3, 11))
    assert res.ok, res.message
    p = res["preview"]
    assert (p.old_days, p.new_days, p.period_start, p.period_end) == (10, 21, MAR, D(2024, 3, 31))
    assert p.old_charge_cents == pricing.plan_charge(3100, 10, 31)
    assert p.new_charge_cents == pricing.plan_charge(1999, 21, 31)
    assert p.without_change_cents == 3100
    assert p.difference_cents == p.total_cents - 3100 < 0
    assert table_counts(con) == before


def test_preview_of_a_refused_change_returns_the_same_code():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    res = preview_plan_change(con, cid, PLUS, D(2024, 3, 11))
    assert (res.code, res["why_not"]) == ("invalid_input", "same_plan")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start_day=st.integers(1, 28), change_day=st.integers(1, 29))
def test_preview_equals_what_the_billing_run_charges(start_day, change_day):
    con = new_db()
    start = D(2024, 2, start_day)
    cid = add_customer(con, start=start, plan_id=PLUS)
    effective = D(2024, 2, change_day)
    res = preview_plan_change(con, cid, BASIC, effective)
    if effective < start:
        assert res.code == "invalid_input"
        return
    assert res.ok
    assert change_plan(con, customer_id=cid, new_plan_id=BASIC, effective_date=effective, at=T(2024, 2, 1)).ok
    bill(con, FEB)
    billed = sum(a for _, _, a in plan_charges(con, cid, FEB))
    assert billed == res["preview"].total_cents


def test_missing_column_is_a_programming_error():
    with pytest.raises(ValueError, match="effective_date"):
        change_plans(new_db(), pd.DataFrame({"customer_id": [1], "new_plan_id": [1]}), at=T(2024, 1, 1))
