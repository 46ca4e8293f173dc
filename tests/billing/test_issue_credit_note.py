"""billing/issue_credit_note.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from billing.account import customer_balance
from billing.issue_credit_note import allocate, issue_credit_note, issue_credit_notes, split_gross
from billing.record_payment import record_payment
from billing.run_billing import run_billing
from data.money import round_div, tax_of
from tests.billing.helpers import add_customer, new_db, table_counts

JAN, FEB = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
MONTH = 2399                       # Basic 19.99 + 20 % tax = 4.00
AT = dt.datetime(2024, 2, 10, 11, 0)


def billed(tax_bp=2000, n=1):
    con = new_db(tax_bp=tax_bp)
    for _ in range(n):
        add_customer(con, start=JAN)
    assert run_billing(con, JAN, as_of=FEB).ok
    return con


def credit(con, **kw):
    args = {"invoice_id": 1, "amount_cents": 500, "reason": "billing_error", "at": AT}
    args.update(kw)
    return issue_credit_note(con, **args)


def test_partial_credit_is_split_into_net_and_tax_at_the_invoice_rate():
    con = billed()
    res = credit(con, amount_cents=1200)
    assert res.ok and res["number"] == "CN-00000001"
    assert (res["net_cents"], res["tax_cents"], res["total_cents"]) == (1000, 200, 1200)
    assert res["left_to_credit_cents"] == MONTH - 1200
    rows = con.execute("SELECT line_no, description, amount_cents FROM credit_note_lines ORDER BY line_no").fetchall()
    assert [r[2] for r in rows] == [1000, 200] and rows[1][1] == "Tax 20.00%"


def test_full_credit_of_the_invoice_reproduces_its_net_and_tax():
    con = billed()
    res = credit(con, amount_cents=MONTH)
    assert (res["net_cents"], res["tax_cents"]) == (1999, 400)


def test_credit_larger_than_the_invoice_is_refused_over_limit():
    con = billed()
    before = table_counts(con)
    res = credit(con, amount_cents=MONTH + 1)
    assert not res.ok and res.code == "over_limit" and res["left_to_credit_cents"] == MONTH
    assert table_counts(con) == before


def test_credit_beyond_what_is_left_after_earlier_credit_notes_is_refused():
    con = billed()
    assert credit(con, amount_cents=2000).ok
    assert credit(con, amount_cents=400).code == "over_limit"
    last = credit(con, amount_cents=399)
    assert last.ok and last["left_to_credit_cents"] == 0
    assert credit(con, amount_cents=1).code == "over_limit"


def test_a_finalized_invoice_is_never_edited_by_a_credit_note():
    con = billed()
    invoice = con.execute("SELECT * FROM invoices WHERE invoice_id = 1").fetchall()
    inv_lines = con.execute("SELECT * FROM invoice_lines WHERE invoice_id = 1 ORDER BY line_no").fetchall()
    assert credit(con, amount_cents=MONTH).ok
    assert con.execute("SELECT * FROM invoices WHERE invoice_id = 1").fetchall() == invoice
    assert con.execute("SELECT * FROM invoice_lines WHERE invoice_id = 1 ORDER BY line_no").fetchall() == inv_lines


def test_zero_amount_is_invalid_input():
    assert credit(billed(), amount_cents=0).code == "invalid_input"


def test_negative_amount_is_invalid_input():
    assert credit(billed(), amount_cents=-100).code == "invalid_input"


def test_fractional_amount_is_invalid_input():
    assert credit(billed(), amount_cents=10.5).code == "invalid_input"


def test_amount_and_lines_together_are_invalid_input():
    assert credit(billed(), amount_cents=100, lines=[("x", 100)]).code == "invalid_input"


def test_unknown_invoice_is_not_found():
    res = credit(billed(), invoice_id=999)
    assert not res.ok and res.code == "not_found"


def test_unknown_reason_is_invalid_input():
    res = credit(billed(), reason="because")
    assert not res.ok and res.code == "invalid_input" and "reason" in res.message


def test_void_invoice_is_not_eligible():
    con = billed()
    con.execute("UPDATE invoices SET status = 'void' WHERE invoice_id = 1")
    assert credit(con).code == "not_eligible"


def test_contact_of_another_customer_is_invalid_input():
    con = billed(n=2)
    con.execute("INSERT INTO contacts (contact_id, customer_id, contacted_at, channel, reason, resolution) "
                "VALUES (1, 2, ?, 'phone', 'billing_error', 'resolved')", [AT])
    assert credit(con, contact_id=1).code == "invalid_input"
    assert credit(con, contact_id=2).code == "not_found"


def test_lines_share_the_net_and_add_one_tax_line():
    con = billed()
    res = credit(con, amount_cents=None, lines=[("Duplicate charge", 600), {"description": "Late fee",
                                                                            "amount_cents": 601}])
    assert res.ok and res["total_cents"] == 1201
    rows = con.execute("SELECT description, amount_cents FROM credit_note_lines ORDER BY line_no").fetchall()
    assert [d for d, _ in rows] == ["Duplicate charge", "Late fee", "Tax 20.00%"]
    assert sum(a for _, a in rows) == 1201 and rows[2][1] == res["tax_cents"]
    assert rows[0][1] + rows[1][1] == res["net_cents"] == round_div(1201 * 10000, 12000)


def test_line_with_zero_amount_is_invalid_input():
    assert credit(billed(), amount_cents=None, lines=[("x", 0)]).code == "invalid_input"


def test_credit_note_numbers_are_sequential():
    con = billed(n=2)
    assert [credit(con, invoice_id=i, amount_cents=100)["credit_note_id"] for i in (1, 2, 1)] == [1, 2, 3]


def test_credit_note_is_audited_with_who_and_why():
    con = billed()
    credit(con, user_id=5, note="duplicate line")
    row = con.execute("SELECT user_id, action, entity, entity_id FROM audit_log "
                      "WHERE action = 'issue_credit_note'").fetchall()
    assert row == [(5, "issue_credit_note", "invoice", "1")]
    assert con.execute("SELECT issued_by, note FROM credit_notes").fetchall() == [(5, "duplicate line")]


def test_credit_on_an_unpaid_invoice_lowers_what_is_due():
    con = billed()
    credit(con, amount_cents=400)
    assert con.execute("SELECT due_cents, balance_cents FROM invoice_balances").fetchall() == [(MONTH - 400,) * 2]


def test_credit_on_a_paid_invoice_becomes_credit_balance():
    con = billed()
    assert record_payment(con, customer_id=1, amount_cents=MONTH, received_at=AT, method="card").ok
    credit(con, amount_cents=400)
    bal = customer_balance(con, 1)
    assert bal.open_balance_cents == 0 and bal.credit_balance_cents == 400


# Half cents: the split rounds the net half away from zero; tax = gross - net.
@pytest.mark.parametrize("gross, rate_bp, net, tax", [
    (21, 500, 20, 1),           # exact: 20 net + 5 % = 1
    (3, 2000, 3, 0),            # 3 / 1.2 = 2.5 -> 3 (half a cent rounds up), tax 0
    (9, 2000, 8, 1),            # 7.5 -> 8
    (1, 10000, 1, 0),           # 0.5 -> 1 at a 100 % rate
    (2399, 2000, 1999, 400),
    (777, 0, 777, 0),
])
def test_split_of_a_gross_amount_at_exactly_half_a_cent(gross, rate_bp, net, tax):
    assert split_gross(gross, rate_bp) == (net, tax)


def test_tax_of_exactly_half_a_cent_rounds_away_from_zero():
    assert tax_of(10, 500) == 1                     # net 10 cents at 5 % = 0.5 -> 1
    assert round_div(-1, 2) == -1                   # -0.5 -> -1
    assert round_div(1, 2) == 1 and round_div(-3, 2) == -2


def test_credit_of_three_cents_at_twenty_percent_has_no_tax_line():
    con = billed()
    res = credit(con, amount_cents=3)
    assert (res["net_cents"], res["tax_cents"]) == (3, 0)
    assert con.execute("SELECT count(*) FROM credit_note_lines").fetchall()[0][0] == 1


@pytest.mark.parametrize("total, weights", [(10, [1, 1, 1]), (1201, [600, 601]), (5, [0, 3]), (0, [4, 4]),
                                            (7, [1, 1, 1, 1, 1, 1, 1, 1])])
def test_allocate_sums_exactly_and_never_goes_negative(total, weights):
    parts = allocate(total, weights)
    assert sum(parts) == total and min(parts) >= 0


def test_bulk_issues_one_credit_note_per_row():
    con = billed(n=2)
    res = issue_credit_notes(con, pd.DataFrame({"invoice_id": [2, 1], "amount_cents": [100, 1200],
                                                "reason": ["billing_error", "goodwill"]}), at=AT)
    assert res.ok and list(res["credit_note_ids"]) == [1, 2]
    rows = con.execute("SELECT credit_note_id, invoice_id, customer_id, net_cents, tax_cents, total_cents "
                       "FROM credit_notes ORDER BY 1").fetchall()
    assert rows == [(1, 2, 2, 83, 17, 100), (2, 1, 1, 1000, 200, 1200)]
    sums = con.execute("SELECT credit_note_id, sum(amount_cents) FROM credit_note_lines GROUP BY 1 "
                       "ORDER BY 1").fetchall()
    assert sums == [(1, 100), (2, 1200)]


def test_bulk_rows_for_one_invoice_count_together_against_the_limit():
    con = billed()
    before = table_counts(con)
    res = issue_credit_notes(con, pd.DataFrame({"invoice_id": [1, 1], "amount_cents": [2000, 400],
                                                "reason": ["billing_error"] * 2}), at=AT)
    assert res.code == "over_limit" and res.message.startswith("row 2:")
    assert table_counts(con) == before


def test_bulk_with_an_unknown_invoice_writes_nothing():
    con = billed()
    res = issue_credit_notes(con, pd.DataFrame({"invoice_id": [1, 9], "amount_cents": [100, 100],
                                                "reason": ["billing_error"] * 2}), at=AT)
    assert res.code == "not_found" and con.execute("SELECT count(*) FROM credit_notes").fetchall()[0][0] == 0


def test_bulk_with_a_bad_reason_is_invalid_input():
    con = billed()
    res = issue_credit_notes(con, pd.DataFrame({"invoice_id": [1], "amount_cents": [100], "reason": ["x"]}), at=AT)
    assert res.code == "invalid_input"
