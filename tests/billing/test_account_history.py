"""billing/account.py history readers for the agent desk, and manage_users.list_users."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from billing.account import active_discounts, customer_contacts, customer_payments
from billing.manage_users import create_user, list_users
from billing.record_contact import record_contact
from billing.record_payment import record_payment
from billing.run_billing import run_billing
from tests.billing.helpers import AT, add_customer, grant, new_db

JAN, FEB, MAR = (dt.date(2024, m, 1) for m in (1, 2, 3))


def test_payments_newest_first_and_not_after_as_of():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    for day in (5, 20):
        assert record_payment(con, customer_id=cid, amount_cents=1000, received_at=dt.datetime(2024, 1, day),
                              method="card").ok
    assert record_payment(con, customer_id=cid, amount_cents=500, received_at=dt.datetime(2024, 3, 1),
                          method="card").ok
    got = customer_payments(con, cid, as_of=dt.date(2024, 2, 1))
    assert list(got["received_at"].dt.day) == [20, 5]
    assert list(got["amount_cents"]) == [1000, 1000]


def test_contacts_show_the_offer_granted_at_them():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    agent = create_user(con, login="ann", display_name="Ann", password="long-password", role="agent",
                        agent_tier=1, at=AT)["user_id"]
    contact = record_contact(con, customer_id=cid, channel="phone", reason="bill_higher_than_expected",
                             resolution="resolved", agent_id=agent, wait_seconds=90,
                             contacted_at=dt.datetime(2024, 1, 10), at=dt.datetime(2024, 1, 10))
    assert contact.ok, contact.message
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN)
    con.execute("UPDATE offer_grants SET contact_id = ?", [contact["contact_id"]])
    got = customer_contacts(con, cid, as_of=dt.date(2024, 2, 1))
    assert len(got) == 1
    row = got.iloc[0]
    assert row["wait_minutes"] == 1.5 and row["agent"] == "Ann" and row["offers_granted"] == "pct20x3"


def test_active_discounts_end_after_their_last_cycle_and_credits_when_used_up():
    con = new_db()
    cid = add_customer(con, start=dt.date(2023, 12, 1))
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN)      # Jan..Mar
    grant(con, grant_id=2, customer_id=cid, offer_code="credit50", first_period=JAN)     # 50.00
    assert set(active_discounts(con, cid, as_of=dt.date(2024, 1, 15))["grant_id"]) == {1, 2}
    for period in (JAN, FEB, MAR):
        assert run_billing(con, period, as_of=period.replace(month=period.month + 1)).ok
    later = active_discounts(con, cid, as_of=dt.date(2024, 4, 2))
    assert list(later["grant_id"]) == []            # discount over, credit used up (3 x 19.19 > 50)
    still = active_discounts(con, cid, as_of=dt.date(2024, 3, 31))
    assert list(still["grant_id"]) == [1]


def test_list_users_never_shows_password_hashes():
    con = new_db()
    create_user(con, login="boss", display_name="Boss", password="long-password", role="admin", at=AT)
    users = list_users(con)
    assert list(users["login"]) == ["boss"] and "password_hash" not in users.columns
    assert bool(users["can_sign_in"].iloc[0])
