"""billing/find_customers.py: search by name, email, phone, account number; escaped wildcards; limit."""
from __future__ import annotations

import datetime as dt

import pytest

from billing.find_customers import COLUMNS, escape_like, find_customers
from tests.billing.helpers import add_customer, new_db

START = dt.date(2024, 1, 1)


@pytest.fixture()
def con():
    con = new_db()
    add_customer(con, start=START, name="Alice Martin", email="alice.martin@example.com",
                 phone="+31 (0)20 555-0101", postcode="1011 AB", account_number="AC-1001")
    add_customer(con, start=START, name="Bob 50% Off", email="bob_b@example.com", phone="020 555 0202",
                 account_number="AC-1002")
    add_customer(con, start=START, name="Martina Alice", email="m@example.org", phone=None,
                 account_number="AC-1003", plan_id=2)
    add_customer(con, start=START, name="Bobby Tables'); DROP TABLE customers;--", email="x@example.net",
                 account_number="AC-1004")
    return con


def _names(res):
    assert res.ok, res.message
    return res["customers"]["name"].tolist()


def test_name_search_is_case_insensitive_and_prefix_matches_come_first(con):
    assert _names(find_customers(con, "alice")) == ["Alice Martin", "Martina Alice"]
    res = find_customers(con, "ALICE")
    assert res["customers"]["match"].tolist() == ["name", "contains"]


def test_email_exact_and_partial(con):
    res = find_customers(con, "Alice.Martin@Example.com")
    assert _names(res) == ["Alice Martin"] and res["customers"]["match"].iloc[0] == "email"
    assert set(_names(find_customers(con, "@example.com"))) == {"Alice Martin", "Bob 50% Off"}
    # without an '@' the text is not looked for in emails (a name search does not scan a million emails)
    assert _names(find_customers(con, "example.com")) == []


def test_phone_in_any_format_matches_on_digits(con):
    assert _names(find_customers(con, "555 0101")) == ["Alice Martin"]
    assert _names(find_customers(con, "(020) 555-0202")) == ["Bob 50% Off"]
    res = find_customers(con, "0205550202")
    assert res["customers"]["match"].tolist() == ["phone"]


def test_account_number_and_customer_id(con):
    res = find_customers(con, "ac-1003")
    assert _names(res) == ["Martina Alice"] and res["customers"]["match"].iloc[0] == "account"
    assert len(find_customers(con, "AC-10")["customers"]) == 4
    res = find_customers(con, "2")
    assert res.code == "invalid_input"  # one character is too short


def test_digits_also_find_the_customer_id(con):
    cid = int(find_customers(con, "Bobby")["customers"]["customer_id"].iloc[0])
    res = find_customers(con, f"{cid:03d}")
    assert res["customers"]["customer_id"].iloc[0] == cid
    assert res["customers"]["match"].iloc[0] == "account"


def test_wildcards_in_the_text_are_literal(con):
    assert _names(find_customers(con, "50%")) == ["Bob 50% Off"]
    assert find_customers(con, "%%")["customers"].empty
    assert find_customers(con, "__")["customers"].empty
    assert _names(find_customers(con, "bob_b@")) == ["Bob 50% Off"]
    assert find_customers(con, "bob_%@")["customers"].empty
    assert find_customers(con, "bo_b@")["customers"].empty
    assert find_customers(con, "a\\%")["customers"].empty


def test_phone_digits_match_whatever_the_separators(con):
    assert _names(find_customers(con, "(0)20-555 01")) == ["Alice Martin"]
    assert _names(find_customers(con, "+31020555")) == ["Alice Martin"]
    assert find_customers(con, "555 9999")["customers"].empty


def test_a_text_with_digits_also_searches_account_numbers(con):
    assert _names(find_customers(con, "c-100")) == ["Alice Martin", "Bob 50% Off", "Bobby Tables'); DROP TABLE "
                                                    "customers;--", "Martina Alice"]
    assert find_customers(con, "c-")["customers"].empty      # no digit: names only


def test_escape_like():
    assert escape_like("50%_x\\") == "50\\%\\_x\\\\"


def test_sql_in_the_text_is_just_text(con):
    res = find_customers(con, "'); DROP TABLE customers;--")
    assert _names(res) == ["Bobby Tables'); DROP TABLE customers;--"]
    assert con.execute("SELECT count(*) FROM customers").fetchall()[0][0] == 4


def test_limit_and_truncation(con):
    res = find_customers(con, "@example", limit=2)
    assert len(res["customers"]) == 2 and res["truncated"]
    assert "first 2" in res.message
    res = find_customers(con, "@example", limit=10)
    assert len(res["customers"]) == 4 and not res["truncated"]


@pytest.mark.parametrize("query,limit", [("", 5), (" a ", 5), ("x" * 101, 5), ("alice", 0), ("alice", 201),
                                         ("alice", True), (None, 5)])
def test_bad_input_is_refused_with_one_line(con, query, limit):
    res = find_customers(con, query, limit=limit)
    assert res.code == "invalid_input" and "\n" not in res.message


def test_no_match_is_an_empty_frame_with_all_columns(con):
    res = find_customers(con, "nobody-here")
    assert res.ok and res["customers"].empty and list(res["customers"].columns) == list(COLUMNS)
    assert "no customer" in res.message


def test_plan_and_activity_of_each_hit(con):
    df = find_customers(con, "Martina")["customers"]
    assert df["plan_name"].iloc[0] == "Plus" and bool(df["is_active"].iloc[0])
    con.execute("UPDATE subscriptions SET end_date = DATE '2024-02-29', end_reason = 'cancelled' "
                "WHERE customer_id = ?", [int(df["customer_id"].iloc[0])])
    df = find_customers(con, "Martina")["customers"]
    assert not bool(df["is_active"].iloc[0])


def test_empty_database():
    con = new_db()
    res = find_customers(con, "anyone")
    assert res.ok and res["customers"].empty
