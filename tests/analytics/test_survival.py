"""Lifetimes, Kaplan-Meier, log-rank and lifetime value against hand-computed values and lifelines.

Lifetimes of the tiny world (as_of 2024-06-30), worked out by hand:

===  ==========  ==========  =====  ====  ======
id   signup      end         event  days  months
===  ==========  ==========  =====  ====  ======
C1   2024-01-01  2024-06-30  no     181   5
C2   2024-01-15  2024-03-10  yes    55    1
C3   2024-02-01  2024-06-30  no     150   4
C4   2024-01-01  2024-02-29  yes    59    1      (first churn; the May return does not undo it)
C5   2024-01-10  2024-06-30  no     172   5
C6   2024-06-20  2024-06-30  no     10    0
C7   2024-03-05  2024-03-25  yes    20    0
===  ==========  ==========  =====  ====  ======
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test

from analytics import survival
from analytics.overview import data_as_of
from data.db import connect
from data.simulate import DEFAULT_DEMO
from tests.analytics.fixtures import AS_OF, build_tiny_world, customer, insert, sub
from tests.worlds import open_world

D = dt.date
# (customer, segment, duration months, duration days, churned) by hand, see the table above
HAND = [(1, "consumer", 5, 181, False), (2, "consumer", 1, 55, True), (3, "business", 4, 150, False),
        (4, "consumer", 1, 59, True), (5, "business", 5, 172, False), (6, "consumer", 0, 10, False),
        (7, "consumer", 0, 20, True)]


@pytest.fixture(scope="module")
def con():
    c = build_tiny_world()
    yield c
    c.close()


def hand(segment: str | None = None):
    rows = [r for r in HAND if segment is None or r[1] == segment]
    return (np.array([r[2] for r in rows]), np.array([r[3] for r in rows]), np.array([r[4] for r in rows]))


def test_lifetimes_by_hand(con):
    lives = survival.lifetimes(con, AS_OF, by="segment")
    got = list(lives[["customer_id", "group", "duration_months", "duration_days", "event"]].itertuples(index=False))
    assert [tuple(r) for r in got] == HAND
    assert lives.loc[lives.customer_id == 4, "end_date"].item() == pd.Timestamp(2024, 2, 29)


def test_lifetimes_at_an_earlier_as_of_censor_later_churn(con):
    lives = survival.lifetimes(con, D(2024, 3, 5)).set_index("customer_id")
    assert not lives.loc[2, "event"] and lives.loc[2, "end_date"] == pd.Timestamp(2024, 3, 5)  # churns 10 Mar
    assert lives.loc[4, "event"]                                                      # churned 29 Feb
    assert 6 not in lives.index                                                       # signs up in June


def test_kaplan_meier_equals_lifelines_on_the_hand_data(con):
    res = survival.survival_by(con, "segment", as_of=AS_OF)
    for segment in ("consumer", "business"):
        months, _, events = hand(segment)
        km = KaplanMeierFitter(alpha=0.05).fit(months, events)
        curve = res.curves[res.curves["group"] == segment]
        assert curve["time"].tolist() == km.survival_function_.index.tolist()
        assert curve["survival"].to_numpy() == pytest.approx(km.survival_function_.iloc[:, 0].to_numpy())
        assert curve["lo"].to_numpy() == pytest.approx(km.confidence_interval_.iloc[:, 0].to_numpy(), nan_ok=True)
        assert curve["hi"].to_numpy() == pytest.approx(km.confidence_interval_.iloc[:, 1].to_numpy(), nan_ok=True)
        assert curve["at_risk"].tolist() == km.event_table["at_risk"].tolist()
    consumer = res.curves[res.curves["group"] == "consumer"]
    # by hand: month 0 -> 1 of 5 churns (C7), C6 censored: 0.8; month 1 -> 2 of 3: 0.8 / 3
    assert consumer["survival"].tolist()[:2] == pytest.approx([0.8, 0.8 / 3])
    assert consumer["at_risk"].tolist()[:2] == [5, 3]


def test_medians(con):
    med = survival.survival_by(con, "segment", as_of=AS_OF).medians.set_index("group")
    assert med.loc["consumer", "median"] == 1.0          # S falls below one half at month 1
    assert med.loc["business", "median"] == np.inf       # nobody churned
    assert med.loc["consumer", "customers"] == 5 and med.loc["consumer", "churned"] == 3


def test_logrank_equals_lifelines_on_the_hand_data(con):
    months, _, events = hand()
    groups = [r[1] for r in HAND]
    expected = multivariate_logrank_test(months, groups, events)
    res = survival.survival_by(con, "segment", as_of=AS_OF)
    assert res.logrank["statistic"] == pytest.approx(expected.test_statistic)
    assert res.logrank["p_value"] == pytest.approx(expected.p_value)
    assert res.logrank["degrees_of_freedom"] == 1
    pw = pairwise_logrank_test(months, groups, events).summary
    assert res.pairwise["p_value"].tolist() == pytest.approx(pw["p"].tolist())


def test_three_groups_by_customer_attribute_with_a_missing_group(con):
    res = survival.survival_by(con, "contract", as_of=AS_OF, unit="days")
    assert sorted(res.medians["group"]) == ["(missing)", "month", "one_year", "two_year"]
    contract = {1: "two_year", 2: "month", 3: "one_year", 4: "month", 5: "two_year", 6: "(missing)", 7: "month"}
    days = [r[3] for r in HAND]
    expected = multivariate_logrank_test(days, [contract[r[0]] for r in HAND], [r[4] for r in HAND])
    assert res.logrank["statistic"] == pytest.approx(expected.test_statistic)
    assert res.logrank["degrees_of_freedom"] == 3
    assert len(res.pairwise) == 6
    month = res.curves[res.curves["group"] == "month"]        # C2 55 d, C4 59 d, C7 20 d: all churned
    assert month["survival"].iloc[-1] == 0.0


def test_group_by_signup_plan_and_aliases(con):
    lives = survival.lifetimes(con, AS_OF, by="plan").set_index("customer_id")["group"]
    assert lives.to_dict() == {1: "basic", 2: "basic", 3: "plus", 4: "basic", 5: "plus", 6: "plus", 7: "basic"}
    assert set(survival.lifetimes(con, AS_OF, by="autopay")["group"]) == {"false"}


def test_single_group_has_no_logrank(con):
    res = survival.survival_by(con, None, as_of=AS_OF)
    assert res.logrank is None and res.pairwise.empty
    assert set(res.curves["group"]) == {"all"}
    assert {"group", "time", "survival", "lo", "hi", "at_risk", "observed", "censored"} <= set(res.curves.columns)


def test_filters_apply(con):
    lives = survival.lifetimes(con, AS_OF, region="south", plan="plus")          # C5, C6 (C2 was basic)
    assert lives["customer_id"].tolist() == [5, 6]


def test_unknown_grouping_is_refused(con):
    with pytest.raises(ValueError, match="cannot group by"):
        survival.lifetimes(con, AS_OF, by="email")
    with pytest.raises(ValueError, match="unit must be"):
        survival.survival_by(con, "segment", as_of=AS_OF, unit="weeks")


def telco_like(con, snapshot: dt.date, with_subscriptions: bool = True) -> pd.DataFrame:
    """Customers as the Telco import makes them: signup = snapshot - tenure months (clamped),
    churned ones end at the snapshot. Returns the tenures by customer."""
    tenures = pd.DataFrame({"customer_id": np.arange(1, 147), "tenure": np.tile(np.arange(73), 2),
                            "churned": np.repeat([False, True], 73)})
    con.register("_t", tenures)
    signups = con.execute("select customer_id, cast(cast(? as date) - to_months(tenure) as date) from _t "
                          "order by customer_id", [snapshot]).fetchall()
    con.unregister("_t")
    custs, subs = [], []
    for (cid, signup), churned in zip(signups, tenures["churned"]):
        end = snapshot if churned else None
        custs.append(customer(int(cid), "consumer", "unknown", "unknown", signup, end,
                              "voluntary" if churned else None))
        subs.append(sub(int(cid), int(cid), 1, signup, end, "cancelled" if churned else None))
    insert(con, "plans", [dict(plan_id=1, code="month_to_month", name="Month-to-month", rank=1)])
    insert(con, "customers", custs)
    if with_subscriptions:
        insert(con, "subscriptions", subs)
    return tenures


@pytest.mark.parametrize("snapshot", [D(2024, 3, 31), D(2024, 2, 29), D(2023, 8, 30), D(2024, 1, 15)])
@pytest.mark.parametrize("with_subscriptions", [True, False])
def test_telco_like_import_durations_equal_tenure(snapshot, with_subscriptions):
    c = connect(":memory:")
    try:
        tenures = telco_like(c, snapshot, with_subscriptions)
        lives = survival.lifetimes(c, snapshot).merge(tenures, on="customer_id")
        assert (lives["duration_months"] == lives["tenure"]).all()
        assert (lives["event"] == lives["churned"]).all()
    finally:
        c.close()


def test_lifetime_value_by_hand(con):
    clv = survival.lifetime_value(con, AS_OF, "segment", horizon_months=12).set_index("group")
    # business: nobody churned -> 12 paying months at ARPU (1200 C3 + 2000 C5) / 2
    assert clv.loc["business", "arpu_cents"] == 1600
    assert clv.loc["business", "expected_months"] == pytest.approx(12.0)
    assert clv.loc["business", "clv_cents"] == pytest.approx(1600 * 12)
    # consumer: S(0) = 0.8, S(1..5) = 0.8 / 3; past month 5 the hazard of months 0..5 continues
    s5, h = 0.8 / 3, 1 - ((0.8 / 3) / 0.8) ** (1 / 5)
    paying = [1.0, 0.8] + [s5] * 5 + [s5 * (1 - h) ** k for k in range(1, 6)]
    assert clv.loc["consumer", "expected_months"] == pytest.approx(sum(paying))
    assert clv.loc["consumer", "arpu_cents"] == pytest.approx((1200 + 1200 + 2000) / 3)   # C1, C4, C6
    assert bool(clv.loc["consumer", "extrapolated"])


def test_lifetime_value_margin_discounting_and_given_arpu(con):
    clv = survival.lifetime_value(con, AS_OF, "segment", horizon_months=24, margin=0.5,
                                  annual_discount_rate=0.1, arpu_cents={"business": 1000}).set_index("group")
    months = sum(1.1 ** (-t / 12) for t in range(24))
    assert clv.loc["business", "expected_months"] == pytest.approx(months)
    assert clv.loc["business", "clv_cents"] == pytest.approx(0.5 * 1000 * months)
    assert np.isnan(clv.loc["consumer", "clv_cents"])          # no ARPU given for it


def test_lifetime_value_from_an_attribute_when_there_are_no_prices():
    c = connect(":memory:")
    try:
        telco_like(c, D(2024, 3, 31))
        insert(c, "customer_attributes", [dict(customer_id=i, name="monthly_charges_cents", value=str(5000 + i))
                                          for i in range(1, 147)])
        clv = survival.lifetime_value(c, D(2024, 3, 31), arpu_attribute="monthly_charges_cents")
        assert clv["arpu_cents"].item() == pytest.approx(np.mean([5000 + i for i in range(1, 74)]))
        assert clv["clv_cents"].item() > 0
    finally:
        c.close()


SMALL = DEFAULT_DEMO.replace(customers=2500, months=20, seed=3, start="2023-01")


@pytest.fixture(scope="module")
def small_world():
    c = open_world(SMALL)
    yield c
    c.close()


@pytest.mark.parametrize("by, unit", [("plan", "months"), (None, "months"), ("segment", "days"),
                                      ("autopay", "months")])
def test_survival_by_from_counts_equals_the_per_customer_fit_on_a_small_world(small_world, by, unit):
    as_of = data_as_of(small_world)
    got = survival.survival_by(small_world, by, as_of=as_of, unit=unit)
    lives = survival.lifetimes(small_world, as_of, by=by)
    curves, medians = survival.kaplan_meier(lives, unit=unit)
    overall, pairwise = survival.logrank(lives, unit=unit)
    assert len(lives) > 1000 and lives["event"].sum() > 100
    pd.testing.assert_frame_equal(got.curves, curves, check_exact=True)
    pd.testing.assert_frame_equal(got.medians, medians, check_exact=True)
    assert got.logrank == overall
    pd.testing.assert_frame_equal(got.pairwise.reset_index(drop=True), pairwise.reset_index(drop=True),
                                  check_exact=True)
