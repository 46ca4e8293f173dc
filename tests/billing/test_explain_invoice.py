"""billing/explain_invoice.py: one context per edge case; the deltas always add up."""
from __future__ import annotations

import datetime as dt

import pytest

from billing.add_charge import add_charge
from billing.explain_invoice import CHANGE_KINDS, explain_invoice
from billing.manage_catalogue import set_plan_price, set_tax_rate
from billing.pricing import add_months, percent_of, prorate
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, grant, new_db

DEC, JAN, FEB, MAR, APR = dt.date(2023, 12, 1), *(dt.date(2024, m, 1) for m in (1, 2, 3, 4))
AT = dt.datetime(2024, 1, 5)


def bill(con, *periods):
    for period in periods:
        res = run_billing(con, period, as_of=add_months(period, 1))
        assert res.ok, res.message


def invoice_of(con, customer_id, period, subscription_id=None):
    sql = "SELECT max(invoice_id) FROM invoices WHERE customer_id = ? AND period_start = ?"
    args = [customer_id, period]
    if subscription_id is not None:
        sql += " AND subscription_id = ?"
        args.append(subscription_id)
    return con.execute(sql, args).fetchall()[0][0]


def kinds(exp):
    return {c.kind: c.amount_delta_cents for c in exp.changes}


def assert_adds_up(exp):
    assert sum(c.amount_delta_cents for c in exp.changes) == exp.total_delta_cents
    assert all(c.kind in CHANGE_KINDS and c.reason for c in exp.changes)


def change_plan_directly(con, customer_id, plan_id, on):
    """Close the open subscription the day before ``on`` and open one on ``plan_id`` (no change_plan here)."""
    old = con.execute("SELECT subscription_id FROM subscriptions WHERE customer_id = ? AND end_date IS NULL",
                      [customer_id]).fetchall()[0][0]
    con.execute("UPDATE subscriptions SET end_date = ?, end_reason = 'plan_change' WHERE subscription_id = ?",
                [on - dt.timedelta(days=1), old])
    new = con.execute("SELECT max(subscription_id) + 1 FROM subscriptions").fetchall()[0][0]
    con.execute("INSERT INTO subscriptions VALUES (?, ?, ?, ?, NULL, NULL, ?)", [new, customer_id, plan_id, on, old])
    return new


def test_unknown_invoice_has_no_explanation():
    assert explain_invoice(new_db(), 5) is None


def test_first_invoice_is_explained_as_a_whole():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    exp = explain_invoice(con, invoice_of(con, cid, JAN))
    assert exp.previous is None and kinds(exp) == {"first_invoice": 2399}
    assert [line.kind for line in exp.lines] == ["plan", "tax"]
    assert exp.invoice.number == "INV-00000001" and "First invoice" in exp.summary
    assert_adds_up(exp)


def test_unchanged_bill_has_no_changes():
    con = new_db()
    cid = add_customer(con, start=DEC)
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert exp.changes == () and exp.total_delta_cents == 0 and "Same total" in exp.summary


def test_price_rise_is_a_price_change_and_the_tax_follows():
    con = new_db()
    cid = add_customer(con, start=DEC)
    assert set_plan_price(con, plan_id=1, effective_from=FEB, monthly_price_cents=2299).ok
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(exp) == {"price_change": 300, "tax": 60}
    price = exp.changes[0]
    assert "rose" in price.reason and "€19.99" in price.reason and "€22.99" in price.reason
    assert "2024-02-01" in price.reason
    assert "€3.60 more" in exp.summary
    assert_adds_up(exp)


def test_discount_ended_brings_the_full_price_back():
    con = new_db()
    cid = add_customer(con, start=DEC)
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN)
    bill(con, JAN, FEB, MAR, APR)
    exp = explain_invoice(con, invoice_of(con, cid, APR))
    assert kinds(exp) == {"discount_ended": 400, "tax": 80}
    assert "20% off for 3 months" in exp.changes[0].reason and "ended" in exp.changes[0].reason
    assert_adds_up(exp)


def test_discount_started_takes_its_amount_off():
    con = new_db()
    cid = add_customer(con, start=DEC)
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=FEB)
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(exp) == {"discount_started": -400, "tax": -80}
    assert_adds_up(exp)


def test_discount_that_follows_a_price_rise_is_a_discount_change():
    con = new_db()
    cid = add_customer(con, start=DEC)
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN)
    assert set_plan_price(con, plan_id=1, effective_from=FEB, monthly_price_cents=2299).ok
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(exp)["discount_changed"] == -(percent_of(2299, 20) - percent_of(1999, 20))
    assert_adds_up(exp)


def test_usage_over_the_allowance_is_a_usage_change():
    con = new_db()
    cid = add_customer(con, start=DEC)
    con.execute("INSERT INTO usage_records VALUES (1, ?, 25, NULL)", [FEB])
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(exp) == {"usage": 15 * 150, "tax": 450}
    assert "15 units" in exp.changes[0].reason
    assert_adds_up(exp)


def test_usage_falling_back_within_the_allowance_is_a_negative_usage_change():
    con = new_db()
    cid = add_customer(con, start=DEC)
    con.execute("INSERT INTO usage_records VALUES (1, ?, 12, NULL)", [JAN])
    bill(con, JAN, FEB)
    assert kinds(explain_invoice(con, invoice_of(con, cid, FEB)))["usage"] == -300


def test_plan_change_mid_month_is_a_plan_change_and_a_proration():
    con = new_db()
    cid = add_customer(con, start=DEC)
    new_sub = change_plan_directly(con, cid, 2, dt.date(2024, 2, 16))
    bill(con, JAN, FEB, MAR)
    exp = explain_invoice(con, invoice_of(con, cid, FEB, new_sub))
    assert exp.previous.period_start == JAN and exp.previous.plan_name == "Basic"
    got = kinds(exp)
    assert got["plan_change"] == 3100 - 1999
    assert got["proration"] == prorate(3100, 14, 29) - 3100
    assert "Basic" in exp.changes[0].reason and "Plus" in exp.changes[0].reason
    assert_adds_up(exp)
    # March on the new plan, compared with the new plan's part month (same subscription preferred).
    march = explain_invoice(con, invoice_of(con, cid, MAR))
    assert march.previous.subscription_id == new_sub
    assert set(kinds(march)) == {"proration", "tax"}
    assert "started on 2024-02-16" in march.changes[0].reason
    assert_adds_up(march)


def test_plan_change_on_the_first_of_a_month_is_a_plan_change_only():
    con = new_db()
    cid = add_customer(con, start=DEC)
    change_plan_directly(con, cid, 2, FEB)
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(exp) == {"plan_change": 3100 - 1999, "tax": 2 * (3100 - 1999) // 10}
    assert_adds_up(exp)


def test_first_part_month_then_full_month_is_a_proration():
    con = new_db()
    cid = add_customer(con, start=dt.date(2024, 1, 20))
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(exp)["proration"] == 1999 - prorate(1999, 12, 31)
    assert "12 of 31 days" in exp.changes[0].reason
    assert_adds_up(exp)


def test_one_time_credit_applied_is_a_credit_change():
    con = new_db()
    cid = add_customer(con, start=DEC)
    grant(con, grant_id=1, customer_id=cid, offer_code="credit50", first_period=FEB)
    may = dt.date(2024, 5, 1)
    bill(con, JAN, FEB, MAR, APR, may)
    feb = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(feb) == {"credit": -2399}
    assert "credit of €23.99 was applied" in feb.changes[0].reason
    apr = explain_invoice(con, invoice_of(con, cid, APR))            # the remainder: 50.00 - 2 x 23.99
    assert kinds(apr) == {"credit": 2399 - (5000 - 2 * 2399)}
    after = explain_invoice(con, invoice_of(con, cid, may))
    assert kinds(after) == {"credit": 5000 - 2 * 2399}
    assert "No one-time credit" in after.changes[0].reason
    for exp in (feb, apr, after):
        assert_adds_up(exp)


def test_one_off_charge_is_a_charge_change():
    con = new_db()
    cid = add_customer(con, start=DEC)
    assert add_charge(con, subscription_id=1, period_start=FEB, description="Duplicate line", amount_cents=1999,
                      at=AT).ok
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(exp) == {"charge": 1999, "tax": 400}
    assert "Duplicate line" in exp.changes[0].reason
    assert_adds_up(exp)


def test_tax_rate_change_is_a_tax_change():
    con = new_db()
    cid = add_customer(con, start=DEC)
    assert set_tax_rate(con, region="north", rate_bp=2100, effective_from=FEB).ok
    bill(con, JAN, FEB)
    exp = explain_invoice(con, invoice_of(con, cid, FEB))
    assert kinds(exp) == {"tax": 20}
    assert "20.00% to 21.00%" in exp.changes[0].reason
    assert_adds_up(exp)


def test_gap_of_unbilled_months_compares_with_the_latest_earlier_invoice():
    con = new_db()
    cid = add_customer(con, start=DEC)
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-01-31', end_reason = 'cancelled'")
    con.execute("INSERT INTO subscriptions VALUES (2, ?, 1, DATE '2024-03-01', NULL, NULL, NULL)", [cid])
    bill(con, JAN, FEB, MAR)
    exp = explain_invoice(con, invoice_of(con, cid, MAR))
    assert exp.previous.period_start == JAN and exp.changes == ()


@pytest.mark.parametrize("scenario", ["everything_at_once", "everything_reversed"])
def test_deltas_add_up_to_the_total_difference_when_everything_changes(scenario):
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 10))
    if scenario == "everything_at_once":
        grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=FEB)
        grant(con, grant_id=2, customer_id=cid, offer_code="credit50", first_period=FEB)
        con.execute("INSERT INTO usage_records VALUES (1, ?, 33, NULL)", [FEB])
        assert add_charge(con, subscription_id=1, period_start=FEB, description="Fee", amount_cents=250, at=AT).ok
        assert set_plan_price(con, plan_id=1, effective_from=FEB, monthly_price_cents=2499).ok
        assert set_tax_rate(con, region="north", rate_bp=1900, effective_from=FEB).ok
        con.execute("UPDATE subscriptions SET end_date = DATE '2024-02-20', end_reason = 'cancelled'")
        periods = (DEC, JAN, FEB)
    else:
        grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=DEC)
        grant(con, grant_id=2, customer_id=cid, offer_code="credit50", first_period=DEC)
        con.execute("INSERT INTO usage_records VALUES (1, ?, 33, NULL)", [DEC])
        assert add_charge(con, subscription_id=1, period_start=DEC, description="Fee", amount_cents=250, at=AT).ok
        periods = (DEC, JAN)
    bill(con, *periods)
    exp = explain_invoice(con, invoice_of(con, cid, periods[-1]))
    assert len(exp.changes) >= 4
    assert_adds_up(exp)
