"""Tests for analytics.discounts: contact features on a hand-made history (every number computed by
hand below), and the contact dataset's invariants on a small simulated world.

The hand-made story (tax and invoice lines do not matter here, only invoice totals and dates):

C1  consumer/north/web, signup 2024-01-10, autopay, basic (1000 a month, 1200 from April).
    Bills (issued the 1st of the next month, due 14 days later): Jan 800; Feb 1200; Mar 900 with a
    300 discount; Apr 1440. Payments: 800 on 2 Feb, 1200 on 2 Mar, a failed 900 on 2 Apr, 900 on
    20 Apr. Contacts: 5 Mar (bill higher, unresolved; grant of 25 % off), 3 Apr 12:00 (billing
    error, intent to cancel; a credit granted at 12:10). Credit notes: 100 for a billing error on
    10 Apr, 50 goodwill on 12 Apr.
C2  small_business/north/partner, signup 2023-06-01 on plus (2000); moved to basic at a contact on
    10 Mar 2024 11:00 (plus ends 9 Mar, basic starts 10 Mar).
C3  student/south/retail, signup 2024-05-01 on basic, no bill yet.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.discounts import (CATEGORICAL, FEATURES, NUMERIC, TENURE_BANDS, contact_dataset,
                                 contact_features, tenure_band)
from data.db import connect
from data.simulate import DEFAULT_DEMO
from tests.worlds import open_world

D, T = dt.date, dt.datetime
SMALL = DEFAULT_DEMO.replace(customers=2500, months=20, seed=3, start="2023-01")


def insert(con, table, rows):
    frame = pd.DataFrame(rows)
    con.register("_rows", frame)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
    finally:
        con.unregister("_rows")


def invoice(iid, sid, cid, plan, period, total, discount=0):
    nxt = D(period.year + (period.month == 12), period.month % 12 + 1, 1)
    return dict(invoice_id=iid, subscription_id=sid, customer_id=cid, plan_id=plan, period_start=period,
                period_end=nxt - dt.timedelta(days=1), issued_on=nxt, due_on=nxt + dt.timedelta(days=14),
                currency="EUR", subtotal_cents=total, discount_cents=discount, tax_cents=0, credit_cents=0,
                total_cents=total, tax_rate_bp=0, status="finalized")


def contact(cid, kid, at, reason, resolution="resolved", intent=False):
    return dict(contact_id=kid, customer_id=cid, contacted_at=at, channel="phone", reason=reason,
                wait_seconds=60, handle_seconds=60, resolution=resolution, is_intent_to_cancel=intent)


@pytest.fixture(scope="module")
def con():
    con = connect(":memory:")
    insert(con, "plans", [dict(plan_id=1, code="basic", name="Basic", rank=1),
                          dict(plan_id=2, code="plus", name="Plus", rank=2)])
    insert(con, "plan_prices", [
        dict(plan_id=1, effective_from=D(2023, 1, 1), monthly_price_cents=1000, usage_allowance_units=10,
             overage_price_cents=10),
        dict(plan_id=1, effective_from=D(2024, 4, 1), monthly_price_cents=1200, usage_allowance_units=10,
             overage_price_cents=10),
        dict(plan_id=2, effective_from=D(2023, 1, 1), monthly_price_cents=2000, usage_allowance_units=50,
             overage_price_cents=5)])
    base = dict(email=None, phone=None, postcode="X", birth_date=D(1980, 1, 1))
    insert(con, "customers", [
        dict(customer_id=1, account_number="A1", name="C1", segment="consumer", region="north", channel="web",
             signup_date=D(2024, 1, 10), is_autopay=True, is_paperless=False, **base),
        dict(customer_id=2, account_number="A2", name="C2", segment="small_business", region="north",
             channel="partner", signup_date=D(2023, 6, 1), is_autopay=False, is_paperless=True, **base),
        dict(customer_id=3, account_number="A3", name="C3", segment="student", region="south", channel="retail",
             signup_date=D(2024, 5, 1), is_autopay=False, is_paperless=False, **base)])
    insert(con, "subscriptions", [
        dict(subscription_id=101, customer_id=1, plan_id=1, start_date=D(2024, 1, 10)),
        dict(subscription_id=201, customer_id=2, plan_id=2, start_date=D(2023, 6, 1), end_date=D(2024, 3, 9),
             end_reason="plan_change"),
        dict(subscription_id=202, customer_id=2, plan_id=1, start_date=D(2024, 3, 10), previous_subscription_id=201),
        dict(subscription_id=301, customer_id=3, plan_id=1, start_date=D(2024, 5, 1))])
    insert(con, "invoices", [
        invoice(1, 101, 1, 1, D(2024, 1, 1), 800), invoice(2, 101, 1, 1, D(2024, 2, 1), 1200),
        invoice(3, 101, 1, 1, D(2024, 3, 1), 900, discount=300), invoice(4, 101, 1, 1, D(2024, 4, 1), 1440)])
    insert(con, "payments", [
        dict(payment_id=1, customer_id=1, received_at=T(2024, 2, 2), amount_cents=800, method="card", status="settled"),
        dict(payment_id=2, customer_id=1, received_at=T(2024, 3, 2), amount_cents=1200, method="card",
             status="settled"),
        dict(payment_id=3, customer_id=1, received_at=T(2024, 4, 2), amount_cents=900, method="card", status="failed"),
        dict(payment_id=4, customer_id=1, received_at=T(2024, 4, 20), amount_cents=900, method="card",
             status="settled")])
    insert(con, "contacts", [
        contact(1, 2001, T(2024, 3, 5, 10), "bill_higher_than_expected", resolution="unresolved"),
        contact(1, 2002, T(2024, 4, 3, 12), "billing_error", intent=True),
        contact(2, 2003, T(2024, 3, 10, 11), "wants_cheaper_plan")])
    insert(con, "offers", [dict(offer_id=1, code="pct25", name="25% off", kind="percent_off", percent_off=25,
                                cycles=1),
                           dict(offer_id=2, code="credit5", name="5 EUR", kind="fixed_credit", credit_cents=500)])
    insert(con, "offer_grants", [
        dict(grant_id=1, customer_id=1, offer_id=1, contact_id=2001, granted_at=T(2024, 3, 5, 10, 10),
             kind="percent_off", percent_off=25, cycles=1, first_period=D(2024, 3, 1), assignment="agent"),
        dict(grant_id=2, customer_id=1, offer_id=2, contact_id=2002, granted_at=T(2024, 4, 3, 12, 10),
             kind="fixed_credit", credit_cents=500, cycles=1, first_period=D(2024, 4, 1), assignment="agent")])
    insert(con, "credit_notes", [
        dict(credit_note_id=1, invoice_id=3, customer_id=1, issued_at=T(2024, 4, 10), reason="billing_error",
             net_cents=100, tax_cents=0, total_cents=100),
        dict(credit_note_id=2, invoice_id=3, customer_id=1, issued_at=T(2024, 4, 12), reason="goodwill",
             net_cents=50, tax_cents=0, total_cents=50)])
    yield con
    con.close()


LIVE = pd.DataFrame([dict(customer_id=1, contacted_at=T(2024, 5, 20, 10), reason="cancel_request",
                          is_intent_to_cancel=True, wait_seconds=600)])


def test_features_of_a_live_contact_match_the_hand_computed_history(con):
    f = contact_features(con, LIVE).iloc[0]
    assert f["tenure_months"] == pytest.approx(131 / 30.4375)
    assert f["tenure_whole_months"] == 4 and f["tenure_band"] == "under 6 months"
    assert f["plan_rank"] == 1 and f["monthly_price_cents"] == 1200      # May price after the rise
    assert f["last_bill_cents"] == 1440                                   # April, issued 1 May
    assert f["bill_change_cents"] == 540 and f["bill_change_pct"] == pytest.approx(0.6)
    assert f["is_discount_ended"] and f["is_price_rise"]                  # March 300 off; April 1200 vs 1000
    assert (f["prior_contacts_90d"], f["prior_unresolved_90d"], f["prior_intent_90d"]) == (2, 1, 1)
    assert (f["prior_grants_12m"], f["prior_grants"]) == (2, 2)
    assert f["billing_error_credits"] == 1                                # the goodwill note does not count
    # due by 20 May: 800 + 1200 + 900 + 1440 (April due 15 May); credits 150; settled 2900
    assert f["overdue_cents"] == 4340 - 150 - 2900
    assert f["failed_payments_90d"] == 1
    assert f["wait_minutes"] == 10
    assert (f["segment"], f["region"], f["channel"], f["reason"]) == ("consumer", "north", "web", "cancel_request")
    assert f["is_autopay"] and not f["is_paperless"] and f["is_intent_to_cancel"]


def test_features_count_only_what_happened_before_the_contact(con):
    hist = con.execute("SELECT contact_id, customer_id, contacted_at, reason, is_intent_to_cancel, wait_seconds "
                       "FROM contacts WHERE contact_id = 2002").df()
    f = contact_features(con, hist).iloc[0]
    assert f["contact_id"] == 2002
    assert f["last_bill_cents"] == 900 and f["bill_change_cents"] == -300      # March bill, issued 1 April
    assert f["bill_change_pct"] == pytest.approx(-0.25)
    assert not f["is_discount_ended"] and not f["is_price_rise"]
    assert f["prior_contacts_90d"] == 1                                         # not itself
    assert f["prior_grants"] == 1                                               # its own grant comes after
    assert f["billing_error_credits"] == 0                                      # issued 10 April
    assert f["overdue_cents"] == 0                                              # Jan and Feb paid, March not due
    assert f["failed_payments_90d"] == 1


def test_a_plan_move_made_at_the_contact_is_not_a_feature_of_it(con):
    frame = pd.DataFrame([dict(customer_id=2, contacted_at=T(2024, 3, 10, 11), reason="wants_cheaper_plan"),
                          dict(customer_id=2, contacted_at=T(2024, 4, 15, 9), reason="service_issue")])
    f = contact_features(con, frame)
    assert list(f["plan_rank"]) == [2, 1]
    assert list(f["monthly_price_cents"]) == [2000, 1200]
    assert f["tenure_band"].iloc[0] == "6-11 months"
    assert np.isnan(f["wait_minutes"]).all()


def test_a_customer_without_bills_has_unknown_bill_features(con):
    f = contact_features(con, pd.DataFrame([dict(customer_id=3, contacted_at=T(2024, 5, 20, 9),
                                                 reason="bill_not_understood", is_intent_to_cancel=False)])).iloc[0]
    assert np.isnan(f["last_bill_cents"]) and np.isnan(f["bill_change_cents"]) and np.isnan(f["bill_change_pct"])
    assert f["overdue_cents"] == 0 and f["prior_contacts_90d"] == 0 and not f["is_discount_ended"]


def test_features_keep_the_input_order_and_index(con):
    frame = pd.concat([LIVE, LIVE.assign(customer_id=3), LIVE.assign(customer_id=2)])
    frame.index = [30, 10, 20]
    f = contact_features(con, frame)
    assert list(f.index) == [30, 10, 20]
    assert list(f["plan_rank"]) == [1, 1, 1] and list(f["segment"]) == ["consumer", "student", "small_business"]
    assert list(f.columns) == ["tenure_whole_months", *FEATURES]


def test_timezone_aware_instants_are_read_as_utc(con):
    aware = LIVE.assign(contacted_at=pd.Timestamp("2024-05-20 12:00", tz="Europe/Paris"))
    assert contact_features(con, aware).equals(contact_features(con, LIVE))


def test_an_empty_frame_gives_an_empty_result_and_missing_columns_are_refused(con):
    out = contact_features(con, LIVE.iloc[:0])
    assert out.empty and list(out.columns) == ["tenure_whole_months", *FEATURES]
    with pytest.raises(ValueError, match="contacted_at"):
        contact_features(con, LIVE.drop(columns="contacted_at"))


def test_feature_lists_and_tenure_bands():
    assert FEATURES == NUMERIC + CATEGORICAL and len(set(FEATURES)) == len(FEATURES)
    assert [tenure_band(m) for m in (0, 5, 6, 11, 12, 23, 24, 59, 60, 200)] == [
        b[0] for b in TENURE_BANDS for _ in range(2)]


# ---------------------------------------------------------------------------------------------
# The contact dataset on a small simulated world
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world():
    con = open_world(SMALL)
    yield con
    con.close()


@pytest.fixture(scope="module")
def as_of(world):
    return world.execute("SELECT max(issued_on) FROM invoices").fetchall()[0][0]


@pytest.fixture(scope="module")
def ds(world, as_of):
    return contact_dataset(world, as_of=as_of)


def test_dataset_counts_left_out_contacts_and_keeps_only_followed_up_ones(world, ds, as_of):
    n_before = world.execute("SELECT count(*) FROM contacts WHERE CAST(contacted_at AS DATE) < ?",
                             [as_of]).fetchall()[0][0]
    assert ds.n_total == n_before and ds.n + ds.n_without_follow_up == ds.n_total
    days = pd.to_datetime(ds.frame["contact_date"])
    assert (days + pd.Timedelta(days=180) < pd.Timestamp(as_of)).all()
    assert ds.window == (days.min().date(), days.max().date())
    assert ds.frame["contact_id"].is_unique and list(ds.frame.index) == list(range(ds.n))


def test_dataset_outcome_is_service_180_days_after_the_contact(world, ds):
    churn = world.execute("SELECT customer_id, churned_on FROM customers").df().set_index("customer_id")["churned_on"]
    churned_on = pd.to_datetime(ds.frame["customer_id"].map(churn))
    day180 = pd.to_datetime(ds.frame["contact_date"]) + pd.Timedelta(days=180)
    expected = (churned_on.isna() | (churned_on >= day180)).astype(int)
    assert (ds.frame["retained_180"] == expected).all()


def test_dataset_treatment_is_the_grant_of_the_contact(world, ds):
    g = world.execute("SELECT g.contact_id, o.code, g.assignment FROM offer_grants g JOIN offers o USING (offer_id)"
                      ).df().set_index("contact_id")
    f = ds.frame.set_index("contact_id")
    granted = f.index.isin(g.index)
    assert (f.loc[~granted, "treatment"] == "none").all()
    assert (f.loc[granted, "treatment"] == g.loc[f.index[granted], "code"]).all()
    holdout_log = world.execute("SELECT contact_id, offer_id FROM holdout_assignments").df().set_index("contact_id")
    assert set(f.index[f["is_holdout"]]) == set(holdout_log.index) & set(f.index)
    hold = f[f["is_holdout"]]
    assert hold["holdout_candidates"].map(len).min() >= 1
    assert all(t == "none" or t in c for t, c in zip(hold["treatment"], hold["holdout_candidates"]))
    assert (f.loc[granted & ~f["is_holdout"].to_numpy(), "assignment"] == "agent").all()
    assert f.loc[~granted & ~f["is_holdout"].to_numpy(), "assignment"].isna().all()


def test_dataset_eligibility_hides_the_contacts_own_grant(ds):
    f = ds.frame
    for code in ds.offers:
        given = f["treatment"] == code
        assert f.loc[given, f"elig_{code}"].all(), code


def test_dataset_costs_follow_the_offer_terms(world, ds):
    f = ds.frame
    offers = world.execute("SELECT * FROM offers").df().set_index("code")
    price = f["monthly_price_cents"]
    for code, o in offers.iterrows():
        e = f[f"elig_{code}"]
        assert f.loc[~e, f"cost_{code}"].isna().all()
        c = f.loc[e, f"cost_{code}"]
        p = price[e]
        if o["kind"] == "percent_off":
            assert (c == o["cycles"] * np.floor(p * o["percent_off"] / 100 + 0.5)).all()
        elif o["kind"] == "free_months":
            assert (c == o["cycles"] * p).all()
        elif o["kind"] == "fixed_credit":
            assert (c == o["credit_cents"]).all()
        else:
            assert (c > 0).all() and (c <= 6 * p).all() and (c % 6 == 0).all()
    assert (f["value_cents"] == 6 * f["monthly_price_cents"]).all()
    assert (f.loc[f["treatment"] == "none", "discount_cost_cents"] == 0).all()


def test_dataset_cost_of_a_fully_billed_grant_is_what_was_billed(world, ds):
    f = ds.frame[ds.frame["grant_id"].notna() & ds.frame["is_cost_final"]]
    billed = world.execute("SELECT grant_id, -sum(amount_cents) AS c FROM invoice_lines WHERE grant_id IS NOT NULL "
                           "GROUP BY grant_id").df().set_index("grant_id")["c"]
    assert len(f) > 0
    got = f.set_index("grant_id")["discount_cost_cents"]
    assert (got == billed.reindex(got.index).fillna(0)).all()


def test_dataset_sample_and_an_as_of_before_any_contact(world, ds, as_of):
    small = contact_dataset(world, as_of=as_of, sample=200, seed=1)
    assert small.n == 200 and small.n_sampled_out == ds.n - 200
    assert set(small.frame["contact_id"]) <= set(ds.frame["contact_id"])
    first = world.execute("SELECT CAST(min(contacted_at) AS DATE) FROM contacts").fetchall()[0][0]
    empty = contact_dataset(world, as_of=first)
    assert empty.n == 0 and empty.n_total == 0 and empty.window == (None, None)
    with pytest.raises(TypeError):
        contact_dataset(world, as_of=dt.datetime(2024, 1, 1))
