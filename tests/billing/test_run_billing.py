"""billing/run_billing.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pytest

from billing import pricing
from billing.run_billing import run_billing
from billing.manage_catalogue import set_plan_price
from tests.billing.helpers import add_customer, grant, lines, new_db, table_counts

JAN, FEB, MAR, APR = (dt.date(2024, m, 1) for m in (1, 2, 3, 4))


def bill(con, period, as_of=None):
    res = run_billing(con, period, as_of=as_of or pricing.add_months(period, 1))
    assert res.ok, res.message
    return res


def test_full_month_is_billed_at_the_plan_price_with_tax():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    bill(con, JAN)
    assert lines(con, cid, JAN) == [("plan", 1999), ("tax", 400)]
    total = con.execute("SELECT total_cents FROM invoices WHERE customer_id = ?", [cid]).fetchall()[0][0]
    assert total == 2399


def test_start_on_first_day_of_month_is_a_full_period():
    con = new_db()
    cid = add_customer(con, start=JAN)
    bill(con, JAN)
    assert lines(con, cid, JAN)[0] == ("plan", 1999)


def test_start_on_last_day_of_month_bills_one_day():
    con = new_db()
    cid = add_customer(con, start=dt.date(2024, 1, 31))
    bill(con, JAN)
    assert lines(con, cid, JAN)[0] == ("proration", pricing.prorate(1999, 1, 31)) == ("proration", 64)


def test_end_on_last_day_of_month_is_a_full_period_and_nothing_after():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 11, 1))
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-01-31', end_reason = 'cancelled' "
                "WHERE customer_id = ?", [cid])
    bill(con, JAN)
    bill(con, FEB)
    assert lines(con, cid, JAN)[0] == ("plan", 1999)
    assert lines(con, cid, FEB) == []


def test_end_on_first_day_of_month_bills_one_day():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 11, 1))
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-02-01', end_reason = 'cancelled' "
                "WHERE customer_id = ?", [cid])
    bill(con, FEB)
    assert lines(con, cid, FEB)[0] == ("proration", pricing.prorate(1999, 1, 29))


def test_mid_month_start_is_prorated_by_day():
    con = new_db()
    cid = add_customer(con, start=dt.date(2024, 1, 15))
    bill(con, JAN)
    assert lines(con, cid, JAN)[0] == ("proration", round(1999 * 17 / 31))


def test_usage_over_allowance_is_charged_at_the_overage_price():
    con = new_db()
    cid = add_customer(con, start=JAN)
    sub = con.execute("SELECT subscription_id FROM subscriptions WHERE customer_id = ?", [cid]).fetchall()[0][0]
    con.execute("INSERT INTO usage_records VALUES (?, ?, 20, NULL), (?, ?, 5, NULL)", [sub, JAN, sub, JAN])
    bill(con, JAN)
    assert ("usage", 15 * 150) in lines(con, cid, JAN)


def test_usage_within_allowance_has_no_usage_line():
    con = new_db()
    cid = add_customer(con, start=JAN)
    sub = con.execute("SELECT subscription_id FROM subscriptions WHERE customer_id = ?", [cid]).fetchall()[0][0]
    con.execute("INSERT INTO usage_records VALUES (?, ?, 10, NULL)", [sub, JAN])
    bill(con, JAN)
    assert [k for k, _ in lines(con, cid, JAN)] == ["plan", "tax"]


def test_tax_at_exactly_half_a_cent_rounds_away_from_zero():
    con = new_db(tax_bp=500)                     # 5 %
    from billing.manage_catalogue import define_plan
    plan = define_plan(con, code="tiny", name="Tiny", rank=0, monthly_price_cents=10, usage_allowance_units=0,
                       overage_price_cents=0, effective_from=dt.date(2020, 1, 1))["plan_id"]
    cid = add_customer(con, start=JAN, plan_id=plan)
    bill(con, JAN)
    assert lines(con, cid, JAN) == [("plan", 10), ("tax", 1)]   # 10 x 5 % = 0.5 cent -> 1 cent


def test_price_rise_applies_from_its_effective_period():
    con = new_db()
    cid = add_customer(con, start=JAN)
    assert set_plan_price(con, plan_id=1, effective_from=FEB, monthly_price_cents=2299).ok
    bill(con, JAN)
    bill(con, FEB)
    assert lines(con, cid, JAN)[0] == ("plan", 1999)
    assert lines(con, cid, FEB)[0] == ("plan", 2299)


def test_percent_discount_covers_exactly_its_cycles():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN)
    for period in (JAN, FEB, MAR, APR):
        bill(con, period)
    discounts = [[a for k, a in lines(con, cid, p) if k == "discount"] for p in (JAN, FEB, MAR, APR)]
    assert discounts == [[-400], [-400], [-400], []]


def test_two_discounts_never_take_the_charge_below_zero():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN,
          granted_at=dt.datetime(2024, 1, 2))
    grant(con, grant_id=2, customer_id=cid, offer_code="free1", first_period=JAN,
          granted_at=dt.datetime(2024, 1, 3))
    bill(con, JAN)
    got = lines(con, cid, JAN)
    assert got == [("plan", 1999), ("discount", -400), ("discount", -1599), ("tax", 0)]


def test_discount_longer_than_the_remaining_subscription_stops_at_the_end():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-02-14', end_reason = 'cancelled' "
                "WHERE customer_id = ?", [cid])
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN)
    for period in (JAN, FEB, MAR):
        bill(con, period)
    feb_plan = pricing.prorate(1999, 14, 29)
    assert lines(con, cid, FEB)[:2] == [("proration", feb_plan), ("discount", -pricing.percent_of(feb_plan, 20))]
    assert lines(con, cid, MAR) == []


def test_credit_larger_than_the_invoice_is_capped_and_carried_forward():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    grant(con, grant_id=1, customer_id=cid, offer_code="credit50", first_period=JAN)   # 50.00 > 23.99
    bill(con, JAN)
    bill(con, FEB)
    bill(con, MAR)
    assert lines(con, cid, JAN)[-1] == ("credit", -2399)
    assert lines(con, cid, FEB)[-1] == ("credit", -2399)
    assert lines(con, cid, MAR)[-1] == ("credit", -(5000 - 2 * 2399))
    totals = [r[0] for r in con.execute("SELECT total_cents FROM invoices WHERE customer_id = ? "
                                        "ORDER BY period_start", [cid]).fetchall()]
    assert totals == [0, 0, 2399 - 202]


def test_invoice_total_equals_the_sum_of_its_lines():
    con = new_db()
    for start in (dt.date(2023, 12, 1), dt.date(2024, 1, 9), dt.date(2024, 1, 31)):
        add_customer(con, start=start)
    grant(con, grant_id=1, customer_id=1, offer_code="pct20x3", first_period=JAN)
    grant(con, grant_id=2, customer_id=2, offer_code="credit50", first_period=JAN)
    bill(con, JAN)
    bad = con.execute("""SELECT i.invoice_id FROM invoices i JOIN invoice_lines l USING (invoice_id)
                         GROUP BY i.invoice_id, i.total_cents
                         HAVING sum(l.amount_cents) <> i.total_cents""").fetchall()
    assert bad == []


def test_rerun_of_a_billed_period_adds_no_rows():
    con = new_db()
    add_customer(con, start=dt.date(2023, 12, 1))
    bill(con, JAN)
    before = table_counts(con)
    again = bill(con, JAN)
    after = table_counts(con)
    assert again["invoices_created"] == 0 and again["already_billed"]
    assert {k: v for k, v in after.items() if k not in ("billing_runs", "audit_log")} == \
           {k: v for k, v in before.items() if k not in ("billing_runs", "audit_log")}
    assert after["billing_runs"] == before["billing_runs"] + 1      # the run itself is recorded


def test_unique_key_refuses_a_second_invoice_for_the_same_subscription_and_period():
    import duckdb
    con = new_db()
    add_customer(con, start=dt.date(2023, 12, 1))
    bill(con, JAN)
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO invoices SELECT invoice_id + 100, subscription_id, customer_id, plan_id, "
                    "period_start, period_end, issued_on, due_on, currency, subtotal_cents, discount_cents, "
                    "tax_cents, credit_cents, total_cents, tax_rate_bp, status, run_id, finalized_at FROM invoices")


class _RacedCursor:
    """A cursor on which another run bills January on its own cursor just before this one's
    statement containing ``before`` runs (inside this run's transaction)."""

    def __init__(self, con, before):
        from data.db import cursor
        self.cur, self.rival, self.before, self.raced = cursor(con), cursor(con), before, []

    def execute(self, sql, *args):
        if self.before in sql and not self.raced:
            self.raced.append(run_billing(self.rival, JAN, as_of=FEB))
        return self.cur.execute(sql, *args)


@pytest.mark.parametrize("rival_runs_before", [
    "INSERT INTO billing_runs",     # the rival commits after this run read max(run_id) and max(invoice_id)
    "INSERT INTO audit_log",        # ... after this run wrote its run number and invoices, before it commits
])
def test_two_runs_racing_never_share_a_number_and_the_second_to_commit_writes_nothing(rival_runs_before):
    # invoice_id has no index: the run number's key serializes runs; the second to commit says conflict
    con = new_db()
    for day in (1, 5, 9):
        add_customer(con, start=dt.date(2023, 12, day))
    raced = _RacedCursor(con, rival_runs_before)
    res = run_billing(raced, FEB, as_of=MAR)
    rival = raced.raced[0]
    assert rival.ok and rival["invoices_created"] == 3
    assert not res.ok and res.code == "conflict" and "nothing was written" in res.message
    assert table_counts(con)["invoices"] == 3 and table_counts(con)["billing_runs"] == 1
    again = bill(con, FEB)                                      # run again: the numbers carry on
    assert again["invoices_created"] == 3
    ids = [r[0] for r in con.execute("SELECT invoice_id FROM invoices ORDER BY invoice_id").fetchall()]
    assert ids == [1, 2, 3, 4, 5, 6]


def test_invoice_numbers_are_sequential_and_gap_free_across_runs():
    con = new_db()
    for day in (1, 5, 9):
        add_customer(con, start=dt.date(2024, 1, day))
    bill(con, JAN)
    bill(con, JAN)
    bill(con, FEB)
    ids = [r[0] for r in con.execute("SELECT invoice_id FROM invoices ORDER BY invoice_id").fetchall()]
    assert ids == list(range(1, 7))


def test_invoice_numbers_follow_subscription_order_over_many_row_groups():
    # 300,000 subscriptions inserted in shuffled order span several row groups, so DuckDB scans
    # and sorts them in parallel: the numbers must still be gap-free and follow subscription_id.
    con = new_db()
    n = 300_000
    con.execute(f"""
        INSERT INTO customers (customer_id, account_number, name, segment, region, channel, signup_date,
                               currency, is_autopay, is_paperless, created_at)
        SELECT i, 'AC' || lpad(CAST(i AS VARCHAR), 8, '0'), 'Customer ' || i, 'consumer', 'north', 'web',
               DATE '2023-06-01', 'EUR', true, true, TIMESTAMP '2023-06-01'
        FROM range(1, {n} + 1) r(i)""")
    con.execute(f"""
        INSERT INTO subscriptions (subscription_id, customer_id, plan_id, start_date)
        SELECT i, i, 1, DATE '2023-06-01' FROM range(1, {n} + 1) r(i) ORDER BY hash(i)""")
    bill(con, JAN)
    wrong = con.execute("""
        SELECT count(*) FROM (
            SELECT invoice_id, row_number() OVER (ORDER BY subscription_id) AS expected FROM invoices)
        WHERE invoice_id <> expected""").fetchall()[0][0]
    assert con.execute("SELECT count(*) FROM invoices").fetchall()[0][0] == n
    assert wrong == 0


def test_period_not_starting_on_the_first_is_refused():
    con = new_db()
    res = run_billing(con, dt.date(2024, 1, 2), as_of=dt.date(2024, 2, 1))
    assert not res.ok and res.code == "invalid_input"


def test_period_that_has_not_started_is_refused_and_nothing_written():
    con = new_db()
    add_customer(con, start=dt.date(2023, 12, 1))
    before = table_counts(con)
    res = run_billing(con, MAR, as_of=dt.date(2024, 2, 20))
    assert not res.ok and res.code == "period_not_started"
    assert table_counts(con) == before


def test_region_without_a_tax_rate_refuses_the_whole_run():
    con = new_db()
    add_customer(con, start=dt.date(2023, 12, 1))
    add_customer(con, start=dt.date(2023, 12, 1), region="atlantis")
    before = table_counts(con)
    res = run_billing(con, JAN, as_of=FEB)
    assert not res.ok and "atlantis" in res.message
    assert table_counts(con) == before


def test_churned_customer_is_not_billed_again():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-01-10', end_reason = 'cancelled' "
                "WHERE customer_id = ?", [cid])
    bill(con, JAN)
    bill(con, FEB)
    n = con.execute("SELECT count(*) FROM invoices WHERE customer_id = ? AND period_start > ?", [cid, JAN]).fetchall()
    assert n[0][0] == 0


def test_run_agrees_with_the_pure_pricing_rules():
    con = new_db(tax_bp=2100)
    cid = add_customer(con, start=dt.date(2024, 1, 12), plan_id=2)
    sub = con.execute("SELECT subscription_id FROM subscriptions WHERE customer_id = ?", [cid]).fetchall()[0][0]
    con.execute("INSERT INTO usage_records VALUES (?, ?, 73, NULL)", [sub, JAN])
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN)
    grant(con, grant_id=2, customer_id=cid, offer_code="credit50", first_period=JAN)
    bill(con, JAN)
    calc = pricing.compute_invoice(monthly_price_cents=3100, days=20, period_days=31, units=73,
                                   allowance_units=50, overage_price_cents=100, discount_percents=[20],
                                   tax_rate_bp=2100, credit_available_cents=5000)
    row = con.execute("SELECT subtotal_cents, discount_cents, tax_cents, credit_cents, total_cents "
                      "FROM invoices WHERE customer_id = ?", [cid]).fetchall()[0]
    assert row == (calc.subtotal_cents, calc.discount_cents, calc.tax_cents, calc.credit_cents, calc.total_cents)
