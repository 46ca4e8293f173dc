"""The practice panel against the tiny world by hand, and the Cox fitter against known hazard ratios.

The check against the simulated truth is in ``test_practices_on_world.py``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.practices import (COVARIATES, MIN_LEVEL_ROWS, PracticeCoxFitter, practice_hazard_ratios,
                                 practice_panel, wait_time_curve)
from tests.analytics.fixtures import AS_OF, build_tiny_world, insert

TRUE_HR = {"contacts_last_month": 1.2, "wait_minutes_last_month": 1.05, "unresolved_last_month": 1.5,
           "billing_error_last_bill": 2.0, "discount_active": 0.7, "price_rise_last_bill": 1.8,
           "tenure_months": 0.97}


@pytest.fixture(scope="module")
def con():
    c = build_tiny_world()
    yield c
    c.close()


def synthetic_panel(n: int = 8000, months: int = 24, seed: int = 7, hr: dict | None = None,
                    late_hr: tuple[str, float] | None = None) -> pd.DataFrame:
    """Long-format churn data with known hazard multipliers: within each month the hazard is
    ``base(month) * prod(hr ** x)`` (constant over the month), customers enter in the first year
    and leave at their first event. ``late_hr`` (term, ratio) makes that term's effect change after
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
    if late_hr is not None:
        term, late = late_hr
        lin = lin + np.where(df["start"] >= 12, np.log(late) - log_hr[term], 0.0) * df[term]
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
    # months of 31, 29, 31, 30, 31, 30 days; C2 to 10 Mar, C6 from 20 Jun, C7 5-25 Mar
    assert panel.loc[panel["customer_id"] == 1, "stop"].tolist() == [31, 60, 91, 121, 152, 182]
    assert row(panel, 2, 3)["stop"] == 70 and row(panel, 6, 6)["start"] == 171
    assert {c for c in COVARIATES if not c.endswith("_this_month") and c != "billing_error_last_bill"} \
        | {"segment", "channel"} == set(panel.columns) - {"customer_id", "mi", "start", "stop", "event"}


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
    assert (c1_apr["contacts_last_month"], c1_apr["wait_minutes_last_month"],
            c1_apr["unresolved_last_month"]) == (1, 15.0, 0)
    assert c1_apr["offer_last_month"] == 1                       # the credit granted at the 12 Mar contact
    # 10 Apr: escalated, which is not left unresolved
    assert (c1_may["wait_minutes_last_month"], c1_may["unresolved_last_month"],
            c1_may["escalated_last_month"]) == (20.0, 0, 1)
    assert c1_may["bill_rise_last_bill"] == pytest.approx(0.2)   # recurring 1000 -> 1200
    assert c1_may["price_rise_last_bill"] == 1 and c1_apr["price_rise_last_bill"] == 0        # April bill: 1200
    assert [row(panel, 5, m)["discount_active"] for m in range(1, 7)] == [0, 0, 1, 1, 0, 0]
    assert row(panel, 3, 5)["price_rise_last_bill"] == 0        # moved to basic in April: no rise on a plan


def test_strict_error_rule_uses_only_what_was_known_when_the_month_began(con):
    panel = practice_panel(con, AS_OF, error_evidence="before_interval")
    assert panel["billing_error_last_bill"].sum() == 0          # C2's error was recorded 3 Mar, she left 10 Mar


@pytest.fixture
def errors_on_bills():
    """The tiny world where C2's February bill (invoice 6, credited for a billing error on 3 Mar)
    charges the plan line twice and C1's April bill (invoice 15, never credited) charges the plan
    again as a one-off charge named like the plan."""
    c = build_tiny_world()
    insert(c, "invoice_lines", [
        dict(invoice_id=6, line_no=9, kind="plan", description="Plan charge", quantity=29, amount_cents=1000),
        dict(invoice_id=15, line_no=9, kind="charge", description="Basic", amount_cents=1200)])
    yield c
    c.close()


def test_on_bill_error_rule_reads_the_bill_itself(con, errors_on_bills):
    assert practice_panel(con, AS_OF, error_evidence="on_bill")["billing_error_last_bill"].sum() == 0
    panel = practice_panel(errors_on_bills, AS_OF, timing="last_month", error_evidence="on_bill")
    flagged = panel.loc[panel["billing_error_last_bill"] == 1, ["customer_id", "mi"]]
    assert [tuple(r) for r in flagged.itertuples(index=False)] == [(1, 2024 * 12 + 4), (2, 2024 * 12 + 2)]


def test_open_error_counts_from_the_bill_until_its_credit_note(con, errors_on_bills):
    assert practice_panel(con, AS_OF)["billing_error_open"].sum() == 0      # no bill shows an error
    panel = practice_panel(errors_on_bills, AS_OF)
    c2 = panel[panel["customer_id"] == 2][["start", "stop", "event", "billing_error_open"]]
    # the February bill arrives 1 Mar (day 60); the credit note of 3 Mar (62) corrects it before she
    # leaves on 10 Mar: her churn is not counted against the error
    assert [tuple(r) for r in c2.itertuples(index=False)] == [
        (14, 31, 0, 0), (31, 50, 0, 0), (50, 60, 0, 0), (60, 62, 0, 1), (62, 70, 1, 0)]
    c1 = panel[panel["customer_id"] == 1].set_index("start")["billing_error_open"]
    # C1's April bill arrives 1 May (day 121) and is never corrected: open in May and June
    assert c1.to_dict() == {0: 0, 31: 0, 60: 0, 71: 0, 91: 0, 100: 0, 121: 1, 152: 1}
    # last_month timing: the state when the month begins (March: the bill just arrived, uncorrected)
    monthly = practice_panel(errors_on_bills, AS_OF, timing="last_month")
    assert row(monthly, 2, 3)["billing_error_open"] == 1 and row(monthly, 1, 6)["billing_error_open"] == 1


def test_credited_error_rule_also_counts_bills_credited_later(con):
    # C2's February bill shows nothing, but its credit note (3 Mar) says it carried an error
    assert practice_panel(con, AS_OF)["billing_error_open"].sum() == 0
    panel = practice_panel(con, AS_OF, error_evidence="open_credited")
    flagged = panel.loc[panel["billing_error_open"] == 1, ["customer_id", "start", "stop", "event"]]
    assert [tuple(r) for r in flagged.itertuples(index=False)] == [(2, 60, 62, 0)]


def test_no_row_holds_a_record_dated_inside_it(con):
    # every day inside a customer-month on which a contact, a grant or a credit note is dated
    # starts a row, so no covariate of a row can read a record from after the row's first day
    panel = practice_panel(con, AS_OF, error_evidence="open_credited")
    days = con.execute("""
        select customer_id, date_diff('day', date '2024-01-01', cast(contacted_at as date)) as day from contacts
        union all
        select customer_id, date_diff('day', date '2024-01-01', cast(granted_at as date)) from offer_grants
        union all
        select customer_id, date_diff('day', date '2024-01-01', cast(issued_at as date)) from credit_notes""").df()
    inside = panel.merge(days, on="customer_id")
    inside = inside[(inside["day"] > inside["start"]) & (inside["day"] < inside["stop"])]
    assert inside.empty
    assert set(days["day"]) & set(panel["start"]) >= {48, 62, 71, 100}


def test_care_and_offer_terms_by_hand(con):
    panel = practice_panel(con, AS_OF).set_index(["customer_id", "start"])
    c2 = panel.loc[2]
    assert c2.loc[62, ["contacts_this_month", "intent_this_month", "cancel_request_this_month"]].tolist() == [1, 1, 0]
    assert c2.loc[60, "intent_this_month"] == 0               # before the 3 Mar contact
    c1 = panel.loc[1]
    assert (c1.loc[100, "escalated_this_month"], c1.loc[100, "unresolved_this_month"]) == (1, 0)
    assert (c1.loc[71, "offer_this_month"], c1.loc[60, "offer_this_month"], c1.loc[91, "offer_this_month"]) == (1, 0, 0)
    c5 = panel.loc[5]                                           # discount granted 18 Feb for March and April
    assert c5["discount_active"].tolist() == [0, 0, 0, 1, 1, 0, 0]
    assert c5.loc[48, "offer_this_month"] == 1 and c5.loc[152, "bill_rise_last_bill"] == pytest.approx(1 / 3)
    # an intent stated in February (a cancel request of C3's on 10 Feb) counts in March and April
    assert panel["intent_before"].sum() == 0
    c = build_tiny_world()
    try:
        insert(c, "contacts", [dict(contact_id=1099, customer_id=3, contacted_at=pd.Timestamp("2024-02-10 10:00"),
                                    channel="chat", reason="cancel_request", wait_seconds=30, handle_seconds=60,
                                    resolution="resolved", is_intent_to_cancel=True)])
        c3 = practice_panel(c, AS_OF).query("customer_id == 3")
        assert c3.groupby("mi")["intent_before"].max().tolist() == [0, 1, 1, 0, 0]      # Feb to Jun
        assert c3[["start", "intent_this_month", "cancel_request_this_month"]].head(2).values.tolist() == [
            [31, 0, 0], [40, 1, 1]]
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
    c1 = panel[panel["customer_id"] == 1]                        # March cut at 12 Mar (contact, grant)
    assert c1["start"].tolist() == [0, 31, 60, 71, 91, 100, 121, 152]
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
    with pytest.raises(ValueError, match="error_evidence"):
        PracticeCoxFitter(error_evidence="open").fit(con, AS_OF)
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


def test_proportional_hazards_check_flags_a_practice_whose_effect_changes_over_time():
    panel = synthetic_panel(n=12000, seed=5, late_hr=("billing_error_last_bill", 0.5))   # 2.0, then 0.5
    ph = PracticeCoxFitter().fit_panel(panel).ph_test_.set_index("term")
    assert not ph.loc["billing_error_last_bill", "proportional"]
    assert ph.loc["billing_error_last_bill", "time_coef"] < 0
    assert ph.loc["unresolved_last_month", "proportional"]
    # the check is for the practices; the adjustments are not tested
    assert set(ph.index) == {"contacts_last_month", "wait_minutes_last_month", "unresolved_last_month",
                             "billing_error_last_bill"}


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


def test_segment_and_channel_become_indicators_against_the_commonest_value():
    panel = synthetic_panel(n=6000, seed=8)
    rng = np.random.default_rng(8)
    ids = panel["customer_id"].unique()
    segment = pd.Series(rng.choice(["consumer", "student"], len(ids), p=[0.7, 0.3]), index=ids)
    segment.iloc[:5] = "rare"                                   # too few rows for a term of its own
    panel["segment"] = panel["customer_id"].map(segment)
    # students churn at 1.6 times the hazard: thin out the others' events to mimic it
    keep = (panel["segment"] == "student") | (panel["event"] == 0) | (rng.random(len(panel)) < 1 / 1.6)
    panel.loc[~keep, "event"] = 0
    fitter = PracticeCoxFitter(check_ph=False).fit_panel(panel)
    s = fitter.summary_.set_index("term")
    assert "segment=student" in s.index and not s.index.str.startswith("segment=rare").any()
    assert (panel["segment"] == "rare").sum() < MIN_LEVEL_ROWS
    assert s.loc["segment=student", "label"] == "segment student (vs consumer)"
    assert s.loc["segment=student", "lo"] <= 1.6 <= s.loc["segment=student", "hi"]
    assert s.loc["segment=student", "lo"] > 1.2
    assert not s.loc["segment=student", "practice"] and s.loc["unresolved_last_month", "practice"]
    assert fitter.labels_["unresolved_last_month"] == COVARIATES["unresolved_last_month"]
