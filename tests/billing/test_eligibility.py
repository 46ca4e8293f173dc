"""billing/eligibility.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from billing.cancel_subscription import cancel_subscription
from billing.eligibility import COLUMNS, check_offer, offer_eligibility
from billing.grant_offer import grant_offer
from billing.manage_catalogue import define_offer, define_plan
from billing.manage_users import create_user
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, new_db, table_counts

T = dt.datetime
D = dt.date
BASIC, PLUS = 1, 2


def offer_id(con, code):
    return con.execute("SELECT offer_id FROM offers WHERE code = ?", [code]).fetchall()[0][0]


def one(con, customer_id, code, at, reason=None, agent_tier=None):
    out = offer_eligibility(con, pd.DataFrame([{"customer_id": customer_id, "offer_id": offer_id(con, code),
                                                "at": at, "reason": reason, "agent_tier": agent_tier}]))
    return out.iloc[0]


def agent(con, tier=3):
    return create_user(con, login=f"agent{tier}", display_name=f"Agent {tier}", password=None,
                       role="agent", agent_tier=tier, at=T(2023, 1, 1))["user_id"]


def test_active_customer_is_eligible_and_the_first_period_is_the_current_month():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    r = one(con, cid, "pct20x3", T(2024, 3, 10, 14), agent_tier=1)
    assert bool(r["eligible"]) and r["why_not"] is None
    assert r["first_period"] == pd.Timestamp(2024, 3, 1)
    assert bool(r["may_grant"]) and r["needs_tier"] == 1


def test_first_period_skips_months_already_invoiced():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert run_billing(con, D(2024, 3, 1), as_of=D(2024, 3, 20)).ok   # March billed early
    r = one(con, cid, "pct20x3", T(2024, 3, 25))
    assert r["first_period"] == pd.Timestamp(2024, 4, 1)


def test_unknown_offer_and_unknown_customer_are_reported_per_row():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    out = offer_eligibility(con, pd.DataFrame({"customer_id": [cid, 999], "offer_id": [999, 1],
                                               "at": [T(2024, 3, 1)] * 2}))
    assert list(out["why_not"]) == ["offer_not_found", "customer_not_found"]
    assert not out["eligible"].any()
    assert check_offer(con, 999, 1, at=T(2024, 3, 1)).code == "not_found"


def test_withdrawn_offer_is_not_eligible():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    # the catalogue has no withdraw use case yet: flag it directly
    con.execute("UPDATE offers SET is_active = FALSE WHERE code = 'pct20x3'")
    assert one(con, cid, "pct20x3", T(2024, 3, 1))["why_not"] == "offer_inactive"


def test_churned_customer_is_not_active_after_the_last_day_served_but_is_on_it():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert cancel_subscription(con, customer_id=cid, end_date=D(2024, 2, 29), at=T(2024, 2, 20)).ok
    assert bool(one(con, cid, "pct20x3", T(2024, 2, 29, 23, 59))["eligible"])
    r = one(con, cid, "pct20x3", T(2024, 3, 1))
    assert r["why_not"] == "customer_not_active" and not r["eligible"]
    res = check_offer(con, cid, offer_id(con, "pct20x3"), at=T(2024, 3, 1))
    assert (res.code, res["why_not"]) == ("not_eligible", "customer_not_active")


def test_customer_whose_subscription_starts_later_is_not_active_yet():
    con = new_db()
    cid = add_customer(con, start=D(2024, 4, 1))
    assert one(con, cid, "pct20x3", T(2024, 3, 31))["why_not"] == "customer_not_active"


def test_tenure_counts_calendar_months_from_signup():
    con = new_db()
    assert define_offer(con, code="loyal", name="Loyalty", kind="percent_off", percent_off=10, cycles=2,
                        min_tenure_months=6).ok
    cid = add_customer(con, start=D(2024, 1, 31))
    assert one(con, cid, "loyal", T(2024, 7, 30, 23))["why_not"] == "tenure_too_short"
    assert bool(one(con, cid, "loyal", T(2024, 7, 31))["eligible"])


def test_offer_limited_to_reasons_needs_a_listed_reason():
    con = new_db()
    assert define_offer(con, code="save", name="Save", kind="percent_off", percent_off=30, cycles=3,
                        eligible_reasons=["cancel_request", "wants_cheaper_plan"]).ok
    cid = add_customer(con, start=D(2023, 6, 1))
    assert one(con, cid, "save", T(2024, 3, 1))["why_not"] == "reason_not_eligible"
    assert one(con, cid, "save", T(2024, 3, 1), reason="billing_error")["why_not"] == "reason_not_eligible"
    assert bool(one(con, cid, "save", T(2024, 3, 1), reason="cancel_request")["eligible"])


def test_cooldown_blocks_a_second_grant_until_the_months_have_passed():
    con = new_db()
    assert define_offer(con, code="cool", name="Cool", kind="fixed_credit", credit_cents=500,
                        cooldown_months=6).ok
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=offer_id(con, "cool"), agent_id=agent(con),
                       at=T(2024, 1, 10, 12)).ok
    assert one(con, cid, "cool", T(2024, 7, 10, 11))["why_not"] == "cooldown"
    assert bool(one(con, cid, "cool", T(2024, 7, 10, 12))["eligible"])


def test_offer_without_cooldown_may_be_granted_again():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=offer_id(con, "credit50"), agent_id=agent(con),
                       at=T(2024, 1, 10)).ok
    assert bool(one(con, cid, "credit50", T(2024, 1, 11))["eligible"])


def test_discount_active_while_a_percent_grant_covers_the_next_period_and_free_after_it():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    assert grant_offer(con, customer_id=cid, offer_id=offer_id(con, "pct20x3"), agent_id=agent(con),
                       at=T(2024, 1, 10)).ok        # covers January to March
    assert one(con, cid, "free1", T(2024, 3, 31))["why_not"] == "discount_active"
    assert bool(one(con, cid, "free1", T(2024, 4, 1))["eligible"])
    # a one-time credit is not a percent discount: not blocked
    assert bool(one(con, cid, "credit50", T(2024, 2, 1))["eligible"])


def test_plan_move_targets_the_next_cheaper_plan():
    con = new_db()
    assert define_plan(con, code="mid", name="Mid", rank=2, monthly_price_cents=2500,
                       usage_allowance_units=20, overage_price_cents=120, effective_from=D(2020, 1, 1)).ok
    con.execute("UPDATE plans SET rank = 3 WHERE code = 'plus'")   # basic 1 < mid 2 < plus 3
    assert define_offer(con, code="down", name="Move down", kind="plan_move").ok
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=PLUS)
    r = one(con, cid, "down", T(2024, 3, 1))
    assert bool(r["eligible"]) and r["target_plan_id"] == 3


def test_plan_move_on_the_cheapest_plan_has_no_cheaper_plan():
    con = new_db()
    assert define_offer(con, code="down", name="Move down", kind="plan_move").ok
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=BASIC)
    assert one(con, cid, "down", T(2024, 3, 1))["why_not"] == "no_cheaper_plan"


def test_plan_move_to_a_target_that_is_not_cheaper_is_refused():
    con = new_db()
    assert define_offer(con, code="up", name="Move to Plus", kind="plan_move", target_plan_id=PLUS).ok
    cid = add_customer(con, start=D(2023, 6, 1), plan_id=BASIC)
    assert one(con, cid, "up", T(2024, 3, 1))["why_not"] == "no_cheaper_plan"


def test_agent_below_the_offer_tier_may_not_grant_an_eligible_offer():
    con = new_db()
    cid = add_customer(con, start=D(2023, 6, 1))
    r = one(con, cid, "free1", T(2024, 3, 1), agent_tier=1)
    assert bool(r["eligible"]) and not r["may_grant"] and r["needs_tier"] == 2
    res = check_offer(con, cid, offer_id(con, "free1"), at=T(2024, 3, 1), agent_tier=1)
    assert res.code == "over_authority" and res["eligible"] and res["needs_tier"] == 2
    assert check_offer(con, cid, offer_id(con, "free1"), at=T(2024, 3, 1), agent_tier=2).ok
    # no tier given: eligibility only
    assert check_offer(con, cid, offer_id(con, "free1"), at=T(2024, 3, 1)).ok


def test_bulk_check_keeps_input_order_and_writes_nothing():
    con = new_db()
    cids = [add_customer(con, start=D(2023, 6, 1)) for _ in range(3)]
    before = table_counts(con)
    frame = pd.DataFrame({"customer_id": [cids[2], 999, cids[0], cids[1]],
                          "offer_id": [1, 1, 2, 99], "at": [T(2024, 3, 1)] * 4},
                         index=[10, 11, 12, 13])
    out = offer_eligibility(con, frame)
    assert list(out.columns) == list(COLUMNS)
    assert list(out["row"]) == [0, 1, 2, 3]
    assert list(out["customer_id"]) == [cids[2], 999, cids[0], cids[1]]
    assert list(out["eligible"]) == [True, False, True, False]
    assert table_counts(con) == before


def test_empty_candidates_give_an_empty_frame_with_the_columns():
    out = offer_eligibility(new_db(), pd.DataFrame(columns=["customer_id", "offer_id", "at"]))
    assert out.empty and list(out.columns) == list(COLUMNS)


def test_missing_column_is_a_programming_error():
    with pytest.raises(ValueError, match="at"):
        offer_eligibility(new_db(), pd.DataFrame({"customer_id": [1], "offer_id": [1]}))
