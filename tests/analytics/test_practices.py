"""The practice panel against the tiny world by hand, and the Cox fitter against known hazard ratios."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.practices import (COVARIATES, PracticeCoxFitter, practice_hazard_ratios, practice_panel,
                                 wait_time_curve)
from tests.analytics.fixtures import AS_OF, build_tiny_world

TRUE_HR = {"contacts_last_month": 1.2, "wait_minutes_last_month": 1.05, "unresolved_last_month": 1.5,
           "billing_error_last_bill": 2.0, "discount_active": 0.7, "price_rise_last_bill": 1.8,
           "tenure_months": 0.97}


@pytest.fixture(scope="module")
def con():
    c = build_tiny_world()
    yield c
    c.close()


def synthetic_panel(n: int = 8000, months: int = 24, seed: int = 7, hr: dict | None = None,
                    late_discount_hr: float | None = None) -> pd.DataFrame:
    """Long-format churn data with known hazard multipliers: within each month the hazard is
    ``base(month) * prod(hr ** x)`` (constant over the month), customers enter in the first year
    and leave at their first event. ``late_discount_hr`` makes the discount effect change after
    month 12 (a non-proportional effect)."""
    hr = TRUE_HR if hr is None else hr
    rng = np.random.default_rng(seed)
    entry = rng.integers(0, 12, n)
    cid, k = np.repeat(np.arange(n), months), np.tile(np.arange(months), n)
    df = pd.DataFrame({"customer_id": cid, "start": k, "stop": k + 1})
    df = df[df["start"] >= entry[df["customer_id"]]].reset_index(drop=True)
    m = len(df)
    contacts = rng.poisson(0.3, m)
    df["contacts_last_month"] = contacts
    df["wait_minutes_last_month"] = np.where(contacts > 0, rng.exponential(8.0, m), 0.0)
    df["unresolved_last_month"] = ((contacts > 0) & (rng.random(m) < 0.35)).astype(int)
    df["billing_error_last_bill"] = (rng.random(m) < 0.06).astype(int)
    df["discount_active"] = (rng.random(m) < 0.10).astype(int)
    df["price_rise_last_bill"] = (rng.random(m) < 0.08).astype(int)
    df["tenure_months"] = df["start"] - entry[df["customer_id"]]
    log_hr = {c: np.log(v) for c, v in hr.items()}
    lin = sum(log_hr[c] * df[c] for c in hr)
    if late_discount_hr is not None:
        lin = lin + np.where(df["start"] >= 12, np.log(late_discount_hr) - log_hr["discount_active"], 0.0) \
            * df["discount_active"]
    base = 0.03 * (1 + 0.5 * np.sin(df["start"]))          # month-wide shocks sit in the baseline
    df["event"] = (rng.random(m) < 1 - np.exp(-base * np.exp(lin))).astype(int)
    first = df[df["event"] == 1].groupby("customer_id")["start"].min()
    return df[df["start"] <= df["customer_id"].map(first).fillna(np.inf)].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# The panel on the tiny world (see fixtures.py for the story)
# ---------------------------------------------------------------------------------------------

def row(panel: pd.DataFrame, customer: int, month: int) -> pd.Series:
    mi = 2024 * 12 + month - 1
    return panel[(panel["customer_id"] == customer) & (panel["mi"] == mi)].iloc[0]


def test_panel_is_one_row_per_customer_month_at_risk(con):
    panel = practice_panel(con, AS_OF, timing="last_month")
    assert not panel.duplicated(["customer_id", "mi"]).any()
    # C1 Jan-Jun, C2 Jan-Mar, C3 Feb-Jun, C4 Jan-Feb (first churn), C5 Jan-Jun, C6 Jun, C7 Mar
    assert panel.groupby("customer_id").size().to_dict() == {1: 6, 2: 3, 3: 5, 4: 2, 5: 6, 6: 1, 7: 1}
    assert (panel["stop"] == panel["start"] + 1).all() and panel["start"].min() == 0
    assert {c for c in COVARIATES if not c.endswith("_this_month")} <= set(panel.columns)


def test_panel_events_follow_the_churn_kind(con):
    voluntary = practice_panel(con, AS_OF)
    assert sorted(voluntary.loc[voluntary["event"] == 1, "customer_id"]) == [2, 7]   # C4 left for non-payment
    anyone = practice_panel(con, AS_OF, churn_kind="any")
    assert sorted(anyone.loc[anyone["event"] == 1, "customer_id"]) == [2, 4, 7]
    assert row(anyone, 4, 2)["event"] == 1


def test_panel_covariates_by_hand(con):
    panel = practice_panel(con, AS_OF, timing="last_month", error_evidence="any_time")
    c2_mar = row(panel, 2, 3)       # Feb: one contact, 600 s, unresolved; Feb bill corrected for an error
    assert c2_mar["event"] == 1 and c2_mar["contacts_last_month"] == 1
    assert c2_mar["wait_minutes_last_month"] == 10.0 and c2_mar["unresolved_last_month"] == 1
    assert c2_mar["billing_error_last_bill"] == 1 and c2_mar["tenure_months"] == 2
    c1_apr, c1_may = row(panel, 1, 4), row(panel, 1, 5)
    assert (c1_apr["contacts_last_month"], c1_apr["wait_minutes_last_month"], c1_apr["unresolved_last_month"]) == (1, 15.0, 0)
    assert (c1_may["wait_minutes_last_month"], c1_may["unresolved_last_month"]) == (20.0, 1)   # escalated
    assert c1_may["price_rise_last_bill"] == 1 and c1_apr["price_rise_last_bill"] == 0        # April bill: 1200
    assert [row(panel, 5, m)["discount_active"] for m in range(1, 7)] == [0, 0, 1, 1, 0, 0]
    assert row(panel, 3, 5)["price_rise_last_bill"] == 0        # moved to basic in April: no rise on a plan


def test_strict_error_rule_uses_only_what_was_known_when_the_month_began(con):
    panel = practice_panel(con, AS_OF, error_evidence="before_interval")
    assert panel["billing_error_last_bill"].sum() == 0          # C2's error was recorded 3 Mar, she left 10 Mar


def test_on_bill_error_rule_reads_the_bill_itself():
    from tests.analytics.fixtures import insert
    c = build_tiny_world()
    try:
        assert practice_panel(c, AS_OF)["billing_error_last_bill"].sum() == 0   # no bill shows an error
        # C2's February bill (invoice 6) charges the plan line twice; C1's April bill (invoice 15)
        # charges the plan again as a one-off charge named like the plan
        insert(c, "invoice_lines", [
            dict(invoice_id=6, line_no=9, kind="plan", description="Plan charge", quantity=29, amount_cents=1000),
            dict(invoice_id=15, line_no=9, kind="charge", description="Basic", amount_cents=1200)])
        panel = practice_panel(c, AS_OF, timing="last_month")
        flagged = panel.loc[panel["billing_error_last_bill"] == 1, ["customer_id", "mi"]]
        assert [tuple(r) for r in flagged.itertuples(index=False)] == [(1, 2024 * 12 + 4), (2, 2024 * 12 + 2)]
    finally:
        c.close()


def test_within_month_timing_splits_months_at_contact_days(con):
    panel = practice_panel(con, AS_OF, timing="within_month")
    c2 = panel[panel["customer_id"] == 2][["start", "stop", "event", "contacts_this_month",
                                             "wait_minutes_this_month", "unresolved_this_month"]]
    # days since 1 Jan: signup 15 Jan (14); contact 20 Feb (50); contact 3 Mar (62); last day 10 Mar (70)
    assert [tuple(r) for r in c2.itertuples(index=False)] == [
        (14, 31, 0, 0, 0.0, 0), (31, 50, 0, 0, 0.0, 0), (50, 60, 0, 1, 10.0, 1),
        (60, 62, 0, 0, 0.0, 0), (62, 70, 1, 1, 2.0, 0)]
    # segments tile each customer's time at risk with no gaps or overlaps
    for _, grp in panel.groupby("customer_id"):
        assert (grp["start"].to_numpy()[1:] == grp["stop"].to_numpy()[:-1]).all()
    assert panel.groupby("customer_id")["event"].sum().to_dict() == {1: 0, 2: 1, 3: 0, 4: 0, 5: 0, 6: 0, 7: 1}
    assert "contacts_last_month" not in panel.columns


def test_panel_sample_is_deterministic_and_of_the_asked_size(con):
    a = practice_panel(con, AS_OF, sample_customers=3, random_state=1)
    b = practice_panel(con, AS_OF, sample_customers=3, random_state=1)
    assert a["customer_id"].nunique() == 3
    pd.testing.assert_frame_equal(a, b)
    assert set(practice_panel(con, AS_OF, sample_customers=3, random_state=2)["customer_id"]) != set(a["customer_id"])


def test_panel_rejects_unknown_options(con):
    with pytest.raises(ValueError, match="churn_kind"):
        practice_panel(con, AS_OF, churn_kind="all")
    with pytest.raises(ValueError, match="error_evidence"):
        practice_panel(con, AS_OF, error_evidence="later")
    with pytest.raises(ValueError, match="timing"):
        practice_panel(con, AS_OF, timing="next_month")


# ---------------------------------------------------------------------------------------------
# The fitter against known hazard ratios
# ---------------------------------------------------------------------------------------------

def test_cox_recovers_known_hazard_ratios():
    panel = synthetic_panel(seed=7)
    # simultaneous 95 % intervals over the seven ratios (Bonferroni): all should contain the truth
    fitter = PracticeCoxFitter(alpha=0.05 / len(TRUE_HR), check_ph=False).fit_panel(panel)
    s = fitter.summary_.set_index("term")
    for term, true in TRUE_HR.items():
        assert s.loc[term, "lo"] <= true <= s.loc[term, "hi"], (term, s.loc[term].to_dict())
        assert s.loc[term, "hazard_ratio"] == pytest.approx(true, rel=0.15)
    assert s.loc["wait_minutes_last_month", "hazard_ratio"] == pytest.approx(1.05, abs=0.01)
    assert fitter.n_events_ == int(panel["event"].sum()) and fitter.n_rows_ == len(panel)
    assert fitter.n_customers_ == panel["customer_id"].nunique()


def test_fitter_follows_the_estimator_contract():
    fitter = PracticeCoxFitter(penalizer=0.01, sample_customers=None, random_state=3)
    assert (fitter.penalizer, fitter.sample_customers, fitter.random_state) == (0.01, None, 3)
    assert not hasattr(fitter, "summary_")
    panel = synthetic_panel(n=1500, seed=11)
    assert fitter.fit_panel(panel) is fitter
    assert list(fitter.summary_.columns[:5]) == ["term", "label", "hazard_ratio", "lo", "hi"]
    assert np.allclose(fitter.summary_["hazard_ratio"], np.exp(fitter.summary_["coef"]))


def test_proportional_hazards_check_flags_an_effect_that_changes_over_time():
    panel = synthetic_panel(n=12000, seed=5, late_discount_hr=2.0)     # 0.7 first, 2.0 after month 12
    ph = PracticeCoxFitter().fit_panel(panel).ph_test_.set_index("term")
    assert not ph.loc["discount_active", "proportional"]
    assert ph.loc["discount_active", "time_coef"] > 0
    assert ph.loc["billing_error_last_bill", "proportional"]


def test_wait_curve_is_the_fitted_dose_response():
    fitter = PracticeCoxFitter(check_ph=False).fit_panel(synthetic_panel(n=3000, seed=3))
    curve = fitter.wait_curve([0, 5, 10, 20])
    b = fitter.summary_.set_index("term").loc["wait_minutes_last_month"]
    assert curve["hazard_ratio"].tolist() == pytest.approx(np.exp(b["coef"] * np.array([0, 5, 10, 20])).tolist())
    assert (curve["lo"] <= curve["hazard_ratio"]).all() and (curve["hazard_ratio"] <= curve["hi"]).all()
    assert curve["hazard_ratio"].iloc[0] == 1.0
    # at the mean wait the monthly churn is the observed churn after a month with contacts
    at_mean = fitter.wait_curve([fitter.mean_wait_minutes_])
    assert at_mean["monthly_churn"].item() == pytest.approx(fitter.contact_month_churn_)
    assert curve["monthly_churn"].is_monotonic_increasing


def test_constant_covariates_are_dropped_and_empty_panels_refused():
    panel = synthetic_panel(n=1500, seed=4).assign(price_rise_last_bill=0)
    fitter = PracticeCoxFitter(check_ph=False).fit_panel(panel)
    assert fitter.dropped_ == ["price_rise_last_bill"]
    assert "price_rise_last_bill" not in set(fitter.summary_["term"])
    with pytest.raises(ValueError, match="nothing to fit"):
        PracticeCoxFitter().fit_panel(panel.assign(event=0))


def test_a_separating_covariate_falls_back_to_a_small_penalty():
    panel = synthetic_panel(n=1500, seed=4)
    panel["price_rise_last_bill"] = panel["event"]              # churns exactly when it is 1
    fitter = PracticeCoxFitter(check_ph=False).fit_panel(panel)
    assert fitter.penalizer_used_ > 0
    assert fitter.summary_.set_index("term").loc["price_rise_last_bill", "hazard_ratio"] > 10


def test_fit_from_the_database_reports_what_it_used(con):
    fitter = PracticeCoxFitter(penalizer=0.5, timing="last_month", check_ph=False).fit(con, AS_OF)
    assert (fitter.n_customers_, fitter.n_rows_, fitter.n_events_, fitter.sampled_) == (7, 24, 2, False)
    assert fitter.penalizer_used_ == 0.5
    sampled = PracticeCoxFitter(penalizer=0.5, sample_customers=6, random_state=0, check_ph=False).fit(con, AS_OF)
    assert sampled.sampled_ and sampled.n_customers_ == 6


def test_within_month_fit_from_the_database(con):
    fitter = PracticeCoxFitter(penalizer=0.5, check_ph=False).fit(con, AS_OF)          # the default timing
    assert "wait_minutes_this_month" in set(fitter.summary_["term"])
    assert fitter.n_rows_ == 29 and fitter.n_events_ == 2
    assert not fitter.wait_curve([0, 10]).empty


def test_page_helpers_are_empty_without_enough_churn(con):
    assert practice_hazard_ratios(con, AS_OF).empty               # two churn events in the tiny world
    assert wait_time_curve(con, AS_OF).empty


def test_work_limit_fits_a_subset_of_customers_and_says_so():
    panel = synthetic_panel(n=3000, seed=6)
    times = panel.loc[panel["event"] == 1, "stop"].nunique()
    fitter = PracticeCoxFitter(check_ph=False, max_work=len(panel) * times / 3).fit_panel(panel)
    assert fitter.work_limited_ and fitter.sampled_
    assert fitter.n_customers_ == pytest.approx(panel["customer_id"].nunique() / 3, abs=2)
    assert fitter.n_rows_ * times <= len(panel) * times / 3 * 1.1
    unlimited = PracticeCoxFitter(check_ph=False, max_work=None).fit_panel(panel)
    assert not unlimited.work_limited_ and unlimited.n_customers_ == panel["customer_id"].nunique()
