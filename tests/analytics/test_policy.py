"""Tests for analytics/policy.py: DR policy values against known potential outcomes."""

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from analytics.cate import DRLearner
from analytics.effects import EffectEstimator
from analytics.policy import (
    PolicyValue,
    always,
    always_control,
    budget_policy,
    compare_policies,
    current_practice_value,
    expected_net_gain,
    observed_policy,
    policy_value,
    targeted_policy,
)

ARMS = ["none", "discount", "call"]
COST = {"discount": 0.08, "call": 0.02}
COVARIATES = ["x1", "x2", "plan"]


@pytest.fixture(scope="module", autouse=True)
def _single_threaded():
    """Many small model fits: OpenMP threads only add overhead (and stall on a busy machine)."""
    with threadpool_limits(limits=1):
        yield


def _world(seed=5, n=10_000):
    """Retention with known potential-outcome probabilities per arm.

    The discount helps price-sensitive customers (x1 > 0) a lot and the others not at all; the
    call helps "plus" customers a little. Discounts go mostly to the high-x1 customers, who are
    also the likeliest to leave, so assignment is confounded.
    """
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                      "plan": rng.choice(["basic", "plus"], size=n)})
    x1, x2, plus = X["x1"].to_numpy(), X["x2"].to_numpy(), (X["plan"] == "plus").to_numpy()
    p0 = 1 / (1 + np.exp(-(0.8 - 0.8 * x1 + 0.3 * x2)))
    p = np.column_stack([p0, p0 + np.where(x1 > 0, 0.2, -0.02), p0 + 0.06 * plus]).clip(0.01, 0.99)
    logits = np.column_stack([np.zeros(n), 0.9 * x1 - 0.4, 0.5 * x2 - 0.6])
    e = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    arm = (rng.random(n)[:, None] > e.cumsum(axis=1)).sum(axis=1)
    y = (rng.random(n) < p[np.arange(n), arm]).astype(int)
    value = 1.0 + 0.5 * plus
    df = X.assign(arm=np.array(ARMS, dtype=object)[arm], retained=y, value=value)
    return df, pd.DataFrame(p, columns=ARMS, index=df.index)


def _true_value(df, truth, policy):
    """Mean of value * P(retained | arm) - cost(arm) over the units, under the policy."""
    p = truth.to_numpy()[np.arange(len(df)), pd.Categorical(policy, categories=ARMS).codes]
    cost = pd.Series(policy).map({"none": 0.0, **COST}).to_numpy()
    return float(np.mean(df["value"].to_numpy() * p - cost))


@pytest.fixture(scope="module")
def world():
    return _world()


@pytest.fixture(scope="module")
def learner(world):
    df, _ = world
    return DRLearner(effect_estimator=EffectEstimator(cv=3, random_state=2), cv=3, random_state=2).fit(
        df, treatment="arm", outcome="retained", control="none", covariates=COVARIATES)


@pytest.fixture(scope="module")
def policies(world, learner):
    df, _ = world
    fx = learner.effects_
    return {
        "none": always_control(fx),
        "all discount": always(fx, "discount"),
        "all call": always(fx, "call"),
        "current": observed_policy(fx),
        "targeted": targeted_policy(learner.cate_, control="none", value=df["value"], cost=COST),
    }


def test_dr_value_interval_covers_true_value_of_each_policy(world, learner, policies):
    df, truth = world
    for name, pol in policies.items():
        est = policy_value(learner.effects_, pol, value=df["value"], cost=COST)
        true = _true_value(df, truth, pol)
        assert est.lo <= true <= est.hi, (name, true, est)
        assert est.hi - est.lo < 0.1


def test_targeted_policy_beats_every_blanket_policy(world, learner, policies):
    df, truth = world
    true = {name: _true_value(df, truth, pol) for name, pol in policies.items()}
    assert true["targeted"] > max(true["none"], true["all discount"], true["all call"]) + 0.02
    chosen = {k: policies[k] for k in ["targeted", "none", "all discount", "all call"]}
    table = compare_policies(learner.effects_, chosen, value=df["value"], cost=COST)
    assert (table.loc[["none", "all discount", "all call"], "diff_hi"] < 0).all(), table
    target = policies["targeted"]
    assert (target[df["x1"] > 0.3] == "discount").mean() > 0.8
    assert (target[df["x1"] < -0.3] == "discount").mean() < 0.2


def test_current_practice_value_is_the_observed_mean(world, learner):
    df, truth = world
    cost = df["arm"].map({"none": 0.0, **COST})
    est = current_practice_value(learner.effects_, value=df["value"], cost=COST)
    net = df["value"] * df["retained"] - cost
    assert est.method == "observed"
    assert est.value == pytest.approx(net.mean())
    assert est.se == pytest.approx(net.std(ddof=1) / np.sqrt(len(df)))
    assert est.outcome == pytest.approx(df["retained"].mean())
    assert est.lo <= _true_value(df, truth, df["arm"]) <= est.hi
    dr = policy_value(learner.effects_, observed_policy(learner.effects_), value=df["value"], cost=COST)
    assert abs(dr.value - est.value) < 2 * dr.se


def test_policy_value_matches_hand_formula(world, learner, policies):
    df, _ = world
    fx = learner.effects_
    pol = policies["targeted"].to_numpy()
    e = fx.propensity_.clip(lower=fx.clip).to_numpy()
    mu = fx.mu_.to_numpy()
    j = pd.Categorical(pol, categories=fx.arms_).codes
    rows = np.arange(len(df))
    y = df["retained"].to_numpy()
    hit = (df["arm"].to_numpy() == pol).astype(float)
    g = mu[rows, j] + hit / e[rows, j] * (y - mu[rows, j])
    est = policy_value(fx, pol)
    assert est.value == pytest.approx(g.mean())
    assert est.outcome == pytest.approx(g.mean()) and est.cost == 0.0
    v = df["value"].to_numpy()
    c = pd.Series(pol).map({"none": 0.0, **COST}).to_numpy()
    net = policy_value(fx, pol, value=df["value"], cost=COST)
    assert net.value == pytest.approx(np.mean(v * g - c))
    assert net.benefit == pytest.approx(np.mean(v * g)) and net.cost == pytest.approx(c.mean())
    assert net.se == pytest.approx(np.std(v * g - c, ddof=1) / np.sqrt(len(df)))
    assert sum(net.shares.values()) == pytest.approx(1.0)


def test_cost_as_per_unit_frame_equals_mapping(world, learner, policies):
    df, _ = world
    frame = pd.DataFrame({"discount": 0.08, "call": 0.02}, index=df.index)
    a = policy_value(learner.effects_, policies["all call"], value=df["value"], cost=COST)
    b = policy_value(learner.effects_, policies["all call"], value=df["value"].to_numpy(), cost=frame)
    assert a == b
    assert isinstance(a, PolicyValue)


def test_budget_policy_spends_within_budget_and_orders_by_value_per_cost(world, learner, policies):
    df, truth = world
    cate, value = learner.cate_, df["value"]
    spent = lambda pol: pol.map({"none": 0.0, **COST}).sum()  # noqa: E731
    unlimited = budget_policy(cate, control="none", budget=np.inf, value=value, cost=COST)
    pd.testing.assert_series_equal(unlimited, policies["targeted"])
    zero = budget_policy(cate, control="none", budget=0.0, value=value, cost=COST)
    assert (zero == "none").all()
    budget = 0.25 * spent(policies["targeted"])
    tight = budget_policy(cate, control="none", budget=budget, value=value, cost=COST)
    assert 0.9 * budget <= spent(tight) <= budget
    true = {k: _true_value(df, truth, p) for k, p in
            {"tight": tight, "none": policies["none"], "targeted": policies["targeted"]}.items()}
    assert true["none"] < true["tight"] < true["targeted"]
    gain = expected_net_gain(cate, control="none", value=value, cost=COST)
    chosen = tight != "none"
    chosen_gain = gain.to_numpy()[np.arange(len(df)), pd.Categorical(tight, categories=gain.columns).codes]
    ratio = chosen_gain / tight.map({"none": 1.0, **COST}).to_numpy()
    assert (chosen_gain[chosen] > 0).all()
    # what the budget bought is worth more per unit of cost than what it left out
    left_out = (tight == "none") & (unlimited != "none")
    best_left = (gain.max(axis=1) / unlimited.map({"none": 1.0, **COST}))[left_out]
    assert np.median(ratio[chosen]) > best_left.median()


def test_eligibility_is_respected(world, learner):
    df, _ = world
    eligible = pd.DataFrame({"discount": df["plan"] == "plus", "call": True}, index=df.index)
    fx = learner.effects_
    blanket = always(fx, "discount", eligible=eligible)
    assert (blanket[df["plan"] == "basic"] == "none").all()
    assert (blanket[df["plan"] == "plus"] == "discount").all()
    for pol in [targeted_policy(learner.cate_, control="none", value=df["value"], cost=COST, eligible=eligible),
                budget_policy(learner.cate_, control="none", budget=100.0, value=df["value"], cost=COST,
                              eligible=eligible)]:
        assert not (pol[df["plan"] == "basic"] == "discount").any()
    gain = expected_net_gain(learner.cate_, control="none", eligible=eligible)
    assert gain.loc[df["plan"] == "basic", "discount"].isna().all()
    assert (gain["none"] == 0).all()


def test_trimmed_units_are_left_out_of_policy_values(world):
    df, _ = world
    fx = EffectEstimator(cv=3, trim=0.1).fit(df, treatment="arm", outcome="retained", control="none",
                                             covariates=COVARIATES)
    assert fx.share_trimmed_ > 0
    est = policy_value(fx, always_control(fx))
    assert est.n == fx.n_
    assert est.value == pytest.approx(fx.arm_means_.loc["none", "aipw"])


def test_bad_policies_and_costs_raise_clear_errors(world, learner, policies):
    df, _ = world
    fx = learner.effects_
    with pytest.raises(ValueError, match=r"unknown arms \['voucher'\]"):
        policy_value(fx, np.array(["voucher"] * len(df), dtype=object))
    with pytest.raises(ValueError, match="one entry per unit"):
        policy_value(fx, ["none"] * 10)
    with pytest.raises(ValueError, match=r"gives no entry for arms \['call'\]"):
        policy_value(fx, policies["none"], cost={"discount": 0.1})
    with pytest.raises(ValueError, match=r"unknown arm 'voucher'"):
        always(fx, "voucher")
    with pytest.raises(ValueError, match="budget must be a non-negative number"):
        budget_policy(learner.cate_, control="none", budget=-1.0)
    with pytest.raises(ValueError, match="baseline 'x' is not one of the policies"):
        compare_policies(fx, {"none": policies["none"]}, baseline="x")


def test_compare_policies_table_includes_current_practice(world, learner, policies):
    df, _ = world
    table = compare_policies(learner.effects_, {"current": "observed", "none": policies["none"],
                                                "targeted": policies["targeted"]},
                             value=df["value"], cost=COST)
    assert list(table.index) == ["current", "none", "targeted"]
    assert table.loc["current", "method"] == "observed" and table.loc["none", "method"] == "dr"
    assert table.loc["current", "diff"] == 0.0
    assert table.loc["none", "share_treated"] == 0.0 and table.loc["none", "cost"] == 0.0
    gap = table.loc["targeted", "value"] - table.loc["current", "value"]
    assert table.loc["targeted", "diff"] == pytest.approx(gap)


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (0.0, ["none", "none", "none"]),
        (1.0, ["cheap", "none", "none"]),  # a's first step has the best ratio (2)
        (4.0, ["cheap", "dear", "none"]),  # then b goes straight to dear (ratio 1.5); c (1.2) no longer fits
        (5.0, ["cheap", "dear", "cheap"]),  # a's upgrade to dear (ratio 0.75, +2) does not fit
        (np.inf, ["dear", "dear", "cheap"]),  # everyone on their best arm
    ],
)
def test_budget_policy_hand_case_with_upgrade_chains(budget, expected):
    # net gain = cate - cost (value 1): a: cheap 2, dear 3.5; b: cheap 0.5, dear 4.5; c: cheap 1.2, dear -1
    cate = pd.DataFrame({"cheap": [3.0, 1.5, 2.2], "dear": [6.5, 7.5, 2.0]}, index=["a", "b", "c"])
    pol = budget_policy(cate, control="none", budget=budget, cost={"cheap": 1.0, "dear": 3.0})
    assert list(pol) == expected
    if budget == np.inf:
        assert list(targeted_policy(cate, control="none", cost={"cheap": 1.0, "dear": 3.0})) == expected
