"""billing/record_contact.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from billing import pricing
from billing.manage_users import create_user
from billing.record_contact import COLUMNS, record_contact, record_contacts
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, new_db, table_counts

T = dt.datetime
D = dt.date


def agent(con, login="ann"):
    return create_user(con, login=login, display_name=login.title(), password=None, role="agent",
                       agent_tier=1, at=T(2023, 1, 1))["user_id"]


def contact_row(**changes):
    row = {"customer_id": 1, "contacted_at": T(2024, 3, 4, 9, 30), "channel": "phone",
           "reason": "bill_higher_than_expected", "wait_seconds": 120, "handle_seconds": 300,
           "agent_id": None, "is_identity_verified": True, "resolution": "resolved",
           "is_intent_to_cancel": False, "invoice_id": None, "notes": None}
    row.update(changes)
    return row


def test_contact_with_an_agent_is_recorded_with_all_its_fields_and_audited():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    ann = agent(con)
    res = record_contact(con, customer_id=cid, channel="chat", reason="wants_cheaper_plan", resolution="escalated",
                         at=T(2024, 3, 4, 10), contacted_at=T(2024, 3, 4, 9, 30), agent_id=ann, wait_seconds=45,
                         handle_seconds=600, is_identity_verified=True, is_intent_to_cancel=True,
                         notes="asked for a cheaper plan")
    assert res.ok and res["contact_id"] == 1
    row = con.execute("SELECT customer_id, contacted_at, channel, reason, wait_seconds, handle_seconds, agent_id, "
                      "is_identity_verified, resolution, is_intent_to_cancel, invoice_id, notes FROM contacts").fetchall()
    assert row == [(cid, T(2024, 3, 4, 9, 30), "chat", "wants_cheaper_plan", 45, 600, ann, True, "escalated",
                    True, None, "asked for a cheaper plan")]
    assert con.execute("SELECT user_id, action, entity_id FROM audit_log WHERE action = 'record_contact'"
                       ).fetchall() == [(ann, "record_contact", "1")]


def test_contact_time_defaults_to_the_recording_time_and_flags_to_false():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    out = record_contacts(con, pd.DataFrame([{"customer_id": cid, "channel": "email", "reason": "service_issue",
                                              "resolution": "unresolved"}]), at=T(2024, 3, 5, 8))
    assert list(out["code"]) == ["ok"]
    assert con.execute("SELECT contacted_at, is_identity_verified, is_intent_to_cancel, agent_id FROM contacts"
                       ).fetchall() == [(T(2024, 3, 5, 8), False, False, None)]
    assert con.execute("SELECT count(*) FROM audit_log WHERE action = 'record_contact'").fetchall()[0][0] == 0


def test_contact_about_an_invoice_of_the_customer_links_it():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    other = add_customer(con, start=D(2023, 6, 1))
    assert run_billing(con, D(2024, 2, 1), as_of=pricing.add_months(D(2024, 2, 1), 1)).ok
    own, foreign = [i for (i,) in con.execute("SELECT invoice_id FROM invoices ORDER BY customer_id").fetchall()]
    res = record_contact(con, customer_id=cid, channel="phone", reason="billing_error", resolution="resolved",
                         invoice_id=own, at=T(2024, 3, 2))
    assert res.ok
    res = record_contact(con, customer_id=cid, channel="phone", reason="billing_error", resolution="resolved",
                         invoice_id=foreign, at=T(2024, 3, 2))
    assert (res.code, res["why_not"]) == ("not_found", "invoice_not_found")
    assert other


@pytest.mark.parametrize("field, value, why_not", [
    ("channel", "fax", "invalid_channel"),
    ("reason", "just_chatting", "invalid_reason"),
    ("reason", None, "invalid_reason"),
    ("resolution", "maybe", "invalid_resolution"),
    ("wait_seconds", -1, "negative_seconds"),
    ("handle_seconds", -5, "negative_seconds"),
])
def test_value_outside_the_enumerations_is_invalid_input(field, value, why_not):
    con = new_db()
    add_customer(con, start=D(2023, 6, 1))
    before = table_counts(con)
    out = record_contacts(con, pd.DataFrame([contact_row(**{field: value})]), at=T(2024, 3, 4))
    assert (out["code"].iloc[0], out["why_not"].iloc[0]) == ("invalid_input", why_not)
    assert table_counts(con) == before


def test_unknown_customer_or_agent_is_not_found():
    con = new_db()
    add_customer(con, start=D(2023, 6, 1))
    out = record_contacts(con, pd.DataFrame([contact_row(customer_id=99), contact_row(agent_id=99)]), at=T(2024, 3, 4))
    assert list(out["code"]) == ["not_found", "not_found"]
    assert list(out["why_not"]) == ["customer_not_found", "agent_not_found"]


def test_bulk_with_mixed_rows_writes_only_the_ok_ones_with_consecutive_ids():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    ann = agent(con)
    assert record_contact(con, customer_id=cid, channel="phone", reason="billing_error", resolution="resolved",
                          at=T(2024, 3, 1)).ok
    out = record_contacts(con, pd.DataFrame([contact_row(agent_id=ann), contact_row(channel="pigeon"),
                                             contact_row(reason="cancel_request", is_intent_to_cancel=True)]),
                          at=T(2024, 3, 4))
    assert list(out.columns) == list(COLUMNS)
    assert list(out["code"]) == ["ok", "invalid_input", "ok"]
    assert [None if pd.isna(c) else int(c) for c in out["contact_id"]] == [2, None, 3]
    assert con.execute("SELECT contact_id, reason FROM contacts ORDER BY contact_id").fetchall() == [
        (1, "billing_error"), (2, "bill_higher_than_expected"), (3, "cancel_request")]


def test_missing_column_is_a_programming_error():
    with pytest.raises(ValueError, match="resolution"):
        record_contacts(new_db(), pd.DataFrame({"customer_id": [1], "channel": ["phone"], "reason": ["billing_error"]}),
                        at=T(2024, 1, 1))
