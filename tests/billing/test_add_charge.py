"""billing/add_charge.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from billing.add_charge import add_charge, add_charges
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, lines, new_db, table_counts

JAN, FEB, MAR = (dt.date(2024, m, 1) for m in (1, 2, 3))
AT = dt.datetime(2024, 1, 20, 9, 0)


def charge(con, **kw):
    args = {"subscription_id": 1, "period_start": JAN, "description": "Router delivery", "amount_cents": 500,
            "at": AT}
    args.update(kw)
    return add_charge(con, **args)


def test_charge_is_billed_as_a_charge_line_on_the_next_run():
    con = new_db()
    cid = add_customer(con, start=JAN)
    res = charge(con)
    assert res.ok and res["charge_id"] == 1
    assert run_billing(con, JAN, as_of=FEB).ok
    assert lines(con, cid, JAN) == [("plan", 1999), ("charge", 500), ("tax", 500)]
    row = con.execute("SELECT description, charge_id FROM invoice_lines WHERE kind = 'charge'").fetchall()
    assert row == [("Router delivery", 1)]


def test_duplicate_charge_is_billed_twice_as_the_simulator_injects_it():
    con = new_db()
    cid = add_customer(con, start=JAN)
    df = pd.DataFrame({"subscription_id": [1, 1], "period_start": [JAN, JAN],
                       "description": ["Router delivery"] * 2, "amount_cents": [500, 500]})
    res = add_charges(con, df, at=AT)
    assert res.ok and list(res["charge_ids"]) == [1, 2] and res["total_cents"] == 1000
    assert run_billing(con, JAN, as_of=FEB).ok
    assert [k for k, _ in lines(con, cid, JAN)] == ["plan", "charge", "charge", "tax"]
    assert con.execute("SELECT subtotal_cents FROM invoices").fetchall() == [(1999 + 1000,)]


def test_charge_for_a_period_already_invoiced_is_refused_already_billed():
    con = new_db()
    add_customer(con, start=JAN)
    assert run_billing(con, JAN, as_of=FEB).ok
    before = table_counts(con)
    res = charge(con)
    assert not res.ok and res.code == "already_billed"
    assert table_counts(con) == before


def test_bulk_over_several_periods_finds_the_billed_one_whatever_the_order():
    # the billed check reads only invoices of the batch's periods (first..last): both ends count
    con = new_db()
    add_customer(con, start=JAN)
    assert run_billing(con, JAN, as_of=FEB).ok
    for periods, row in (([MAR, FEB, JAN], 3), ([JAN, MAR], 1)):
        df = pd.DataFrame({"subscription_id": [1] * len(periods), "period_start": periods,
                           "description": ["Router delivery"] * len(periods), "amount_cents": [500] * len(periods)})
        res = add_charges(con, df, at=AT)
        assert res.code == "already_billed" and res.message == f"row {row}: subscription 1 is already billed for 2024-01"
    assert con.execute("SELECT count(*) FROM one_off_charges").fetchall()[0][0] == 0


def test_charge_for_the_next_period_after_billing_is_accepted():
    con = new_db()
    add_customer(con, start=JAN)
    assert run_billing(con, JAN, as_of=FEB).ok
    assert charge(con, period_start=FEB).ok


def test_unknown_subscription_is_not_found():
    con = new_db()
    assert charge(con, subscription_id=7).code == "not_found"


def test_period_before_the_subscription_starts_is_invalid_input():
    con = new_db()
    add_customer(con, start=FEB)
    res = charge(con, period_start=JAN)
    assert res.code == "invalid_input" and "not active" in res.message


def test_period_after_the_subscription_ended_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-01-31', end_reason = 'cancelled'")
    assert charge(con, period_start=FEB).code == "invalid_input"
    assert charge(con, period_start=JAN).ok                     # the last month served still bills


def test_period_not_on_the_first_of_a_month_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    assert charge(con, period_start=dt.date(2024, 1, 15)).code == "invalid_input"


def test_zero_or_negative_amount_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    assert charge(con, amount_cents=0).code == "invalid_input"
    assert charge(con, amount_cents=-1).code == "invalid_input"
    assert charge(con, amount_cents=1.5).code == "invalid_input"


def test_empty_description_is_invalid_input():
    con = new_db()
    add_customer(con, start=JAN)
    assert charge(con, description="  ").code == "invalid_input"


def test_bulk_is_all_or_nothing_and_names_the_first_bad_row():
    con = new_db()
    add_customer(con, start=JAN)
    add_customer(con, start=FEB)
    df = pd.DataFrame({"subscription_id": [1, 2, 1], "period_start": [JAN, JAN, JAN],
                       "description": ["a", "b", "c"], "amount_cents": [1, 2, 3]})
    res = add_charges(con, df, at=AT)
    assert res.code == "invalid_input" and res.message.startswith("row 2:")
    assert con.execute("SELECT count(*) FROM one_off_charges").fetchall()[0][0] == 0


def test_bulk_missing_column_is_invalid_input():
    con = new_db()
    res = add_charges(con, pd.DataFrame({"subscription_id": [1]}), at=AT)
    assert res.code == "invalid_input" and "period_start" in res.message


def test_description_with_sql_and_html_is_stored_verbatim():
    con = new_db()
    add_customer(con, start=JAN)
    nasty = "<b>fee</b>'); DELETE FROM invoices; --"
    assert charge(con, description=nasty).ok
    assert con.execute("SELECT description FROM one_off_charges").fetchall() == [(nasty,)]


def test_charge_added_by_a_person_is_audited():
    con = new_db()
    add_customer(con, start=JAN)
    charge(con, user_id=4)
    assert con.execute("SELECT user_id, action, entity_id FROM audit_log WHERE action = 'add_charges'").fetchall() \
        == [(4, "add_charges", "1")]
