"""billing/grant_offer.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from billing import pricing
from billing.cancel_subscription import cancel_subscription
from billing.grant_offer import COLUMNS, grant_offer, grant_offers
from billing.manage_catalogue import define_offer
from billing.manage_users import create_user, set_user_active
from billing.record_contact import record_contact
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, lines, new_db, table_counts

T = dt.datetime
D = dt.date
JAN, FEB, MAR, APR, MAY = (D(2024, m, 1) for m in (1, 2, 3, 4, 5))
BASIC, PLUS = 1, 2
PCT20X3, FREE1, CREDIT50 = 1, 2, 3      # the offers of tests.billing.helpers.new_db


def user(con, login, role="agent", tier=1):
    res = create_user(con, login=login, display_name=login.title(), password=None, role=role,
                      agent_tier=tier, at=T(2023, 1, 1))
    assert res.ok, res.message
    return res["user_id"]


def bill(con, *periods):
    for period in periods:
        res = run_billing(con, period, as_of=pricing.add_months(period, 1))
        assert res.ok, res.message


def grants(con):
    return con.execute("SELECT * FROM offer_grants ORDER BY grant_id").df()


def test_grant_within_authority_snapshots_the_terms_and_is_audited():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    ann = user(con, "ann", tier=1)
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=ann, at=T(2024, 2, 14, 10))
    assert res.ok, res.message
    assert res["grant_id"] == 1 and res["first_period"] == FEB
    g = grants(con).iloc[0]
    assert (g["kind"], g["percent_off"], g["cycles"], g["granted_by"], g["assignment"]) == \
        ("percent_off", 20, 3, ann, "agent")
    assert pd.isna(g["credit_cents"])
    audit = con.execute("SELECT user_id, action, entity, entity_id FROM audit_log "
                        "WHERE action = 'grant_offer'").fetchall()
    assert audit == [(ann, "grant_offer", "offer_grant", "1")]


def test_later_catalogue_edit_does_not_change_a_grant():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=user(con, "ann"), at=T(2024, 2, 1)).ok
    con.execute("UPDATE offers SET percent_off = 50 WHERE offer_id = ?", [PCT20X3])
    bill(con, FEB)
    assert ("discount", -400) in lines(con, cid, FEB)


def test_grant_beyond_the_agents_tier_is_over_authority_and_writes_nothing():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    ann = user(con, "ann", tier=1)
    before = table_counts(con)
    res = grant_offer(con, customer_id=cid, offer_id=FREE1, agent_id=ann, at=T(2024, 2, 1))
    assert (res.ok, res.code, res["why_not"]) == (False, "over_authority", "tier_too_low")
    assert "tier 2" in res.message
    assert table_counts(con) == before


def test_supervisor_tier_may_grant_the_same_offer():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=FREE1, agent_id=user(con, "sue", tier=3),
                       at=T(2024, 2, 1)).ok


def test_admin_without_a_tier_has_full_authority():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    boss = user(con, "boss", role="admin", tier=None)
    assert grant_offer(con, customer_id=cid, offer_id=FREE1, agent_id=boss, at=T(2024, 2, 1)).ok


def test_analyst_may_not_grant():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=user(con, "ana", role="analyst", tier=None),
                      at=T(2024, 2, 1))
    assert (res.code, res["why_not"]) == ("not_permitted", "wrong_role")
    assert grants(con).empty


def test_disabled_agent_may_not_grant():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    ann = user(con, "ann")
    assert set_user_active(con, user_id=ann, is_active=False, at=T(2024, 1, 1)).ok
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=ann, at=T(2024, 2, 1))
    assert (res.code, res["why_not"]) == ("not_permitted", "user_inactive")


def test_unknown_agent_and_missing_agent_are_not_permitted():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=404, at=T(2024, 2, 1))
    assert (res.code, res["why_not"]) == ("not_permitted", "user_not_found")
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=None, at=T(2024, 2, 1))
    assert (res.code, res["why_not"]) == ("not_permitted", "no_agent")


def test_unknown_customer_or_offer_is_not_found():
    con = new_db()
    ann = user(con, "ann")
    assert grant_offer(con, customer_id=42, offer_id=PCT20X3, agent_id=ann, at=T(2024, 2, 1)).code == "not_found"
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=42, agent_id=ann, at=T(2024, 2, 1)).code == "not_found"


def test_grant_to_a_churned_customer_is_not_eligible_and_writes_nothing():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 1, 31), at=T(2024, 1, 20)).ok
    ann = user(con, "ann")
    before = table_counts(con)
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=ann, at=T(2024, 2, 5))
    assert (res.code, res["why_not"]) == ("not_eligible", "customer_not_active")
    assert table_counts(con) == before


def test_the_next_invoice_carries_a_granted_discount():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    bill(con, JAN)                                                  # January billed on 1 February
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=user(con, "ann"), at=T(2024, 2, 14))
    assert res["first_period"] == FEB
    bill(con, FEB)
    assert lines(con, cid, JAN) == [("plan", 1999), ("tax", 400)]  # the past is not touched
    assert lines(con, cid, FEB) == [("plan", 1999), ("discount", -400), ("tax", 320)]


def test_grant_in_a_month_already_invoiced_starts_with_the_next_month():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert run_billing(con, FEB, as_of=D(2024, 2, 20)).ok           # February billed early
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=user(con, "ann"), at=T(2024, 2, 25))
    assert res["first_period"] == MAR
    bill(con, MAR)
    assert ("discount", -400) in lines(con, cid, MAR)
    assert not any(kind == "discount" for kind, _ in lines(con, cid, FEB))


def test_percent_discount_covers_exactly_its_cycles():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=user(con, "ann"), at=T(2024, 1, 20)).ok
    bill(con, JAN, FEB, MAR, APR, MAY)
    want = pricing.apply_discounts(1999, [20])[0]
    discounts = {p: [a for k, a in lines(con, cid, p) if k == "discount"] for p in (JAN, FEB, MAR, APR, MAY)}
    assert discounts == {JAN: [-want], FEB: [-want], MAR: [-want], APR: [], MAY: []}


def test_free_month_bills_nothing_for_the_plan_for_one_period():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    res = grant_offer(con, customer_id=cid, offer_id=FREE1, agent_id=user(con, "sue", tier=2), at=T(2024, 3, 3))
    assert res.ok
    g = grants(con).iloc[0]
    assert (g["kind"], g["percent_off"], g["cycles"]) == ("free_months", 100, 1)
    bill(con, MAR, APR)
    assert lines(con, cid, MAR) == [("plan", 1999), ("discount", -1999), ("tax", 0)]
    assert lines(con, cid, APR) == [("plan", 1999), ("tax", 400)]


def test_fixed_credit_larger_than_the_invoice_carries_forward_to_the_next_invoices():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=CREDIT50, agent_id=user(con, "ann"), at=T(2024, 1, 5)).ok
    g = grants(con).iloc[0]
    assert (g["kind"], g["credit_cents"], g["cycles"]) == ("fixed_credit", 5000, 1)
    bill(con, JAN, FEB, MAR, APR)
    credits = {p: sum(a for k, a in lines(con, cid, p) if k == "credit") for p in (JAN, FEB, MAR, APR)}
    assert credits == {JAN: -2399, FEB: -2399, MAR: -202, APR: 0}
    totals = con.execute("SELECT total_cents FROM invoices WHERE customer_id = ? ORDER BY period_start",
                         [cid]).fetchall()
    assert [t for (t,) in totals] == [0, 0, 2399 - 202, 2399]


def test_discount_longer_than_the_remaining_subscription_stops_when_it_ends():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=user(con, "ann"), at=T(2024, 1, 10)).ok
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 14), at=T(2024, 1, 31)).ok
    bill(con, JAN, FEB, MAR, APR)
    feb_plan = pricing.plan_charge(1999, 14, 29)
    assert lines(con, cid, FEB)[:2] == [("proration", feb_plan),
                                        ("discount", -pricing.apply_discounts(feb_plan, [20])[0])]
    assert lines(con, cid, MAR) == [] and lines(con, cid, APR) == []
    assert con.execute("SELECT count(*) FROM invoices WHERE customer_id = ? AND period_start > ?",
                       [cid, FEB]).fetchall()[0][0] == 0


def test_bulk_grant_with_mixed_rows_writes_only_the_ok_ones():
    con = new_db()
    cids = [add_customer(con, start=D(2023, 6, 1)) for _ in range(4)]
    assert cancel_subscription(con, customer_id=cids[3], end_date=D(2024, 1, 31), at=T(2024, 1, 20)).ok
    ann, sue = user(con, "ann", tier=1), user(con, "sue", tier=2)
    before = table_counts(con)
    requests = pd.DataFrame({
        "customer_id": [cids[0], cids[1], 999, cids[3], cids[2], cids[0]],
        "offer_id":    [PCT20X3, FREE1, PCT20X3, PCT20X3, FREE1, FREE1],
        "granted_by":  [ann, ann, ann, ann, sue, sue],
    })
    out = grant_offers(con, requests, at=T(2024, 2, 10))
    assert list(out.columns) == list(COLUMNS)
    assert list(out["code"]) == ["ok", "over_authority", "not_found", "not_eligible", "ok", "not_eligible"]
    assert list(out["why_not"].fillna("")) == ["", "tier_too_low", "customer_not_found", "customer_not_active",
                                               "", "discount_active"]
    assert [None if pd.isna(g) else int(g) for g in out["grant_id"]] == [1, None, None, None, 2, None]
    written = grants(con)
    assert list(zip(written["grant_id"], written["customer_id"], written["offer_id"])) == \
        [(1, cids[0], PCT20X3), (2, cids[2], FREE1)]
    after = table_counts(con)
    assert after["offer_grants"] == before["offer_grants"] + 2
    assert after["audit_log"] == before["audit_log"] + 2


def test_two_discounts_for_one_customer_in_one_batch_keep_only_the_first():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    sue = user(con, "sue", tier=3)
    out = grant_offers(con, pd.DataFrame({"customer_id": [cid, cid], "offer_id": [FREE1, PCT20X3],
                                          "granted_by": [sue, sue]}), at=T(2024, 2, 10))
    assert list(out["code"]) == ["ok", "not_eligible"]
    assert out["why_not"].iloc[1] == "discount_active"
    assert len(grants(con)) == 1


def test_the_same_offer_twice_in_one_batch_respects_its_cooldown():
    con = new_db()
    assert define_offer(con, code="cool", name="Cool credit", kind="fixed_credit", credit_cents=300,
                        cooldown_months=3).ok
    cool = con.execute("SELECT offer_id FROM offers WHERE code = 'cool'").fetchall()[0][0]
    cid = add_customer(con, start=D(2023, 6, 1))
    ann = user(con, "ann")
    out = grant_offers(con, pd.DataFrame({
        "customer_id": [cid, cid, cid, cid], "offer_id": [cool, cool, CREDIT50, CREDIT50],
        "granted_by": [ann] * 4,
        "granted_at": [T(2024, 2, 10), T(2024, 1, 10), T(2024, 2, 10), T(2024, 2, 10)]}), at=T(2024, 2, 10))
    # the earlier grant wins the cooldown; an offer without cooldown may repeat
    assert list(out["code"]) == ["not_eligible", "ok", "ok", "ok"]
    assert out["why_not"].iloc[0] == "cooldown"


def test_holdout_assignment_is_recorded_without_an_agent_and_still_checks_eligibility():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    gone = add_customer(con, start=D(2023, 6, 1))
    assert cancel_subscription(con, customer_id=gone, end_date=D(2024, 1, 31), at=T(2024, 1, 20)).ok
    before = table_counts(con)
    out = grant_offers(con, pd.DataFrame({"customer_id": [cid, gone], "offer_id": [FREE1, FREE1],
                                          "assignment": ["holdout", "holdout"]}), at=T(2024, 2, 10))
    assert list(out["code"]) == ["ok", "not_eligible"]
    g = grants(con).iloc[0]
    assert g["assignment"] == "holdout" and pd.isna(g["granted_by"])
    assert table_counts(con)["audit_log"] == before["audit_log"]     # no person, no audit row
    single = grant_offer(con, customer_id=cid, offer_id=CREDIT50, agent_id=None, at=T(2024, 2, 11),
                         assignment="system")
    assert single.ok and grants(con).iloc[1]["assignment"] == "system"


def test_unknown_assignment_is_invalid_input():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    res = grant_offer(con, customer_id=cid, offer_id=PCT20X3, agent_id=None, at=T(2024, 2, 1), assignment="lottery")
    assert (res.code, res["why_not"]) == ("invalid_input", "invalid_assignment")


def test_the_contacts_reason_makes_a_reason_limited_offer_eligible():
    con = new_db()
    assert define_offer(con, code="save", name="Save", kind="percent_off", percent_off=30, cycles=2,
                        eligible_reasons=["cancel_request"]).ok
    save = con.execute("SELECT offer_id FROM offers WHERE code = 'save'").fetchall()[0][0]
    cid = add_customer(con, start=D(2023, 6, 1))
    other = add_customer(con, start=D(2023, 6, 1))
    ann = user(con, "ann")
    contact = record_contact(con, customer_id=cid, channel="phone", reason="cancel_request",
                             resolution="resolved", agent_id=ann, at=T(2024, 2, 1))["contact_id"]
    assert grant_offer(con, customer_id=cid, offer_id=save, agent_id=ann, at=T(2024, 2, 1),
                       reason="billing_error").code == "not_eligible"
    res = grant_offer(con, customer_id=cid, offer_id=save, agent_id=ann, contact_id=contact, at=T(2024, 2, 1))
    assert res.ok and grants(con).iloc[0]["contact_id"] == contact
    res = grant_offer(con, customer_id=other, offer_id=PCT20X3, agent_id=ann, contact_id=contact, at=T(2024, 2, 1))
    assert (res.code, res["why_not"]) == ("invalid_input", "contact_not_found")


def test_plan_move_grant_changes_the_plan_from_the_grant_date_and_bills_both_parts():
    con = new_db()
    assert define_offer(con, code="down", name="Move down", kind="plan_move", min_tier=2).ok
    down = con.execute("SELECT offer_id FROM offers WHERE code = 'down'").fetchall()[0][0]
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    res = grant_offer(con, customer_id=cid, offer_id=down, agent_id=user(con, "sue", tier=2), at=T(2024, 3, 11, 15))
    assert res.ok, res.message
    subs = con.execute("SELECT subscription_id, plan_id, start_date, end_date, end_reason, previous_subscription_id "
                       "FROM subscriptions WHERE customer_id = ? ORDER BY start_date", [cid]).fetchall()
    assert subs == [(1, PLUS, D(2023, 6, 1), D(2024, 3, 10), "plan_change", None),
                    (2, BASIC, D(2024, 3, 11), None, None, 1)]
    assert res["new_subscription_id"] == 2
    g = grants(con).iloc[0]
    assert (g["kind"], g["cycles"], g["first_period"]) == ("plan_move", 1, pd.Timestamp(MAR))
    bill(con, MAR)
    plan = sorted(a for k, a in lines(con, cid, MAR) if k == "proration")
    assert plan == sorted([pricing.plan_charge(3100, 10, 31), pricing.plan_charge(1999, 21, 31)])


def test_plan_move_in_a_month_already_invoiced_takes_effect_on_the_first_unbilled_day():
    con = new_db()
    assert define_offer(con, code="down", name="Move down", kind="plan_move").ok
    down = con.execute("SELECT offer_id FROM offers WHERE code = 'down'").fetchall()[0][0]
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    assert run_billing(con, MAR, as_of=D(2024, 3, 20)).ok
    assert grant_offer(con, customer_id=cid, offer_id=down, agent_id=user(con, "ann"), at=T(2024, 3, 25)).ok
    assert con.execute("SELECT plan_id, start_date FROM subscriptions WHERE end_date IS NULL AND customer_id = ?",
                       [cid]).fetchall() == [(BASIC, APR)]


def test_plan_move_refused_by_the_plan_change_refuses_the_grant():
    con = new_db()
    assert define_offer(con, code="down", name="Move down", kind="plan_move").ok
    down = con.execute("SELECT offer_id FROM offers WHERE code = 'down'").fetchall()[0][0]
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    # a scheduled cancellation: active today, but no open subscription to change
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 3, 31), at=T(2024, 3, 1)).ok
    before = table_counts(con)
    res = grant_offer(con, customer_id=cid, offer_id=down, agent_id=user(con, "ann"), at=T(2024, 3, 5))
    assert (res.code, res["why_not"]) == ("not_eligible", "no_open_subscription")
    after = table_counts(con)
    assert (after["offer_grants"], after["subscriptions"]) == (before["offer_grants"], before["subscriptions"])


def test_empty_request_frame_gives_an_empty_result():
    out = grant_offers(new_db(), pd.DataFrame(columns=["customer_id", "offer_id"]), at=T(2024, 1, 1))
    assert out.empty and list(out.columns) == list(COLUMNS)


def test_missing_column_is_a_programming_error():
    with pytest.raises(ValueError, match="offer_id"):
        grant_offers(new_db(), pd.DataFrame({"customer_id": [1]}), at=T(2024, 1, 1))
