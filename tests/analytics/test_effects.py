"""Tests for analytics/effects.py: EffectEstimator against known truths and a public experiment."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from analytics.effects import EffectEstimator, make_preprocessor, prepare_covariates

HILLSTROM = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "hillstrom.csv"
COVARIATES = ["x1", "x2", "region"]
ARMS = ["none", "A", "B", "C"]
TAU_LOGIT = {"none": 0.0, "A": 0.6, "B": 0.25, "C": -0.4}
TAU_LINEAR = {"none": 0.0, "A": 1.0, "B": 0.5, "C": -0.5}


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _covariates(rng, n):
    return pd.DataFrame({
        "x1": rng.normal(size=n),
        "x2": rng.normal(size=n),
        "region": rng.choice(["north", "south", "east"], size=n, p=[0.5, 0.3, 0.2]),
    })


def _baseline(X):
    """Outcome logit (or mean) without treatment: high x1 means a worse outcome."""
    return -0.2 - 1.0 * X["x1"].to_numpy() + 0.5 * X["x2"].to_numpy() + 0.4 * (X["region"] == "north").to_numpy()


def _confounded_world(seed=7, n=6000, outcome="binary"):
    """Four arms; arm A goes mostly to units with high x1 (the ones with worse outcomes)."""
    rng = np.random.default_rng(seed)
    X = _covariates(rng, n)
    x1, x2, south = X["x1"].to_numpy(), X["x2"].to_numpy(), (X["region"] == "south").to_numpy()
    logits = np.column_stack([np.zeros(n), 1.2 * x1 + 0.4 * south - 0.3, -0.7 * x1 + 0.5 * x2 - 0.2,
                              0.6 * x2 - 0.5 * south - 0.4])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    arm = np.array([rng.choice(4, p=row) for row in p])
    base = _baseline(X)
    if outcome == "binary":
        y = (rng.random(n) < _sigmoid(base + np.array([TAU_LOGIT[a] for a in ARMS])[arm])).astype(int)
    else:
        y = 2.0 * base + np.array([TAU_LINEAR[a] for a in ARMS])[arm] + rng.normal(scale=1.0, size=n)
    return X.assign(offer=np.array(ARMS, dtype=object)[arm], y=y)


def _true_logit_ate(arm, n=400_000):
    """Population average effect of ``arm`` vs none on the probability scale (Monte Carlo)."""
    X = _covariates(np.random.default_rng(12345), n)
    base = _baseline(X)
    return float(np.mean(_sigmoid(base + TAU_LOGIT[arm]) - _sigmoid(base)))


def _fit(df, **kw):
    return EffectEstimator(**kw).fit(df, treatment="offer", outcome="y", control="none", covariates=COVARIATES)


@pytest.fixture(scope="module", autouse=True)
def _single_threaded():
    """Many small model fits: OpenMP threads only add overhead (and stall on a busy machine)."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def binary_world():
    return _confounded_world()


@pytest.fixture(scope="module")
def binary_fit(binary_world):
    return _fit(binary_world, random_state=3)


@pytest.fixture(scope="module")
def truth():
    return {a: _true_logit_ate(a) for a in ARMS[1:]}


# --- synthetic world with confounding and a known effect --------------------------------------


def test_summary_has_one_row_per_treatment_level_vs_control(binary_fit):
    s = binary_fit.summary_
    assert list(s.index) == ["A", "B", "C"]
    assert (s["control"] == "none").all()
    for col in ["n", "naive", "naive_lo", "naive_hi", "ipw", "ipw_lo", "ipw_hi", "aipw", "aipw_se",
                "aipw_lo", "aipw_hi", "ess_treated", "ess_control", "max_weight", "share_clipped"]:
        assert col in s.columns
    assert (s["n"] == s["n_treated"] + s["n_control"]).all()
    assert binary_fit.arms_ == ["none", "A", "B", "C"]
    assert binary_fit.outcome_type_ == "binary"


def test_naive_difference_is_biased_under_confounding(binary_fit, truth):
    a = binary_fit.summary_.loc["A"]
    assert a["naive_hi"] < truth["A"], "units given A had worse prospects: naive understates A"
    assert truth["A"] - a["naive"] > 4 * a["aipw_se"]


def test_aipw_interval_covers_known_effect_for_every_arm(binary_fit, truth):
    s = binary_fit.summary_
    for arm, tau in truth.items():
        assert s.loc[arm, "aipw_lo"] <= tau <= s.loc[arm, "aipw_hi"], (arm, tau, s.loc[arm, ["aipw_lo", "aipw_hi"]])
        assert s.loc[arm, "aipw_hi"] - s.loc[arm, "aipw_lo"] < 0.12


def test_ipw_is_close_to_known_effect(binary_fit, truth):
    s = binary_fit.summary_
    for arm, tau in truth.items():
        assert abs(s.loc[arm, "ipw"] - tau) < 3 * s.loc[arm, "ipw_se"]
        assert s.loc[arm, "ipw_lo"] <= s.loc[arm, "ipw"] <= s.loc[arm, "ipw_hi"]


def test_continuous_outcome_aipw_covers_known_effect():
    est = _fit(_confounded_world(seed=11, n=4000, outcome="continuous"), random_state=0)
    assert est.outcome_type_ == "continuous"
    s = est.summary_
    for arm in ["A", "B", "C"]:
        assert s.loc[arm, "aipw_lo"] <= TAU_LINEAR[arm] <= s.loc[arm, "aipw_hi"]
    assert not (s.loc["A", "naive_lo"] <= TAU_LINEAR["A"] <= s.loc["A", "naive_hi"])


def test_deterministic_given_random_state(binary_world):
    small = binary_world.iloc[:2500]
    first, again = _fit(small, random_state=3, cv=3), _fit(small, random_state=3, cv=3)
    pd.testing.assert_frame_equal(first.summary_, again.summary_)
    pd.testing.assert_frame_equal(first.pseudo_outcomes_, again.pseudo_outcomes_)
    other = _fit(small, random_state=4, cv=3)
    assert not np.allclose(other.summary_["aipw"], first.summary_["aipw"])


def test_pseudo_outcomes_follow_their_definition(binary_world, binary_fit):
    est = binary_fit
    e = est.propensity_.clip(lower=est.clip)
    observed = pd.get_dummies(binary_world["offer"]).reindex(columns=est.arms_).astype(float)
    y = binary_world["y"].to_numpy(dtype=float)[:, None]
    G = est.mu_ + observed.to_numpy() * (y - est.mu_.to_numpy()) / e.to_numpy()
    np.testing.assert_allclose(est.pseudo_outcomes_.to_numpy(), G.to_numpy())
    d = G["A"] - G["none"]
    assert est.summary_.loc["A", "aipw"] == pytest.approx(d.mean())
    assert est.summary_.loc["A", "aipw_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)))
    np.testing.assert_allclose(est.pseudo_effects_["B"], G["B"] - G["none"])
    np.testing.assert_allclose(est.propensity_.sum(axis=1), 1.0)


def test_naive_and_ipw_match_hand_computed_values():
    df = pd.DataFrame({
        "t": ["c"] * 40 + ["k"] * 40,
        "y": [1.0] * 10 + [0.0] * 30 + [1.0] * 30 + [0.0] * 10,
        "x": np.tile([0.0, 1.0], 40),
    })
    est = EffectEstimator(cv=2, min_arm_size=10, outcome_model=LinearRegression()).fit(
        df, treatment="t", outcome="y", control="c", covariates=["x"])
    row = est.summary_.loc["k"]
    assert row["naive"] == pytest.approx(0.75 - 0.25)
    assert row["naive_se"] == pytest.approx(np.sqrt(2 * (0.75 * 0.25 * 40 / 39) / 40))
    assert est.arm_means_.loc["c", "observed"] == pytest.approx(0.25)
    # x is balanced by design, so the weights are (nearly) equal and IPW equals the naive difference
    assert row["ipw"] == pytest.approx(0.5, abs=0.02)


def test_randomized_assignment_has_near_full_effective_sample_size():
    rng = np.random.default_rng(5)
    n = 3000
    df = _covariates(rng, n).assign(offer=rng.choice(["none", "A", "B"], size=n),
                                    y=rng.integers(0, 2, size=n))
    est = _fit(df)
    ov = est.overlap_
    assert list(ov.index) == ["none", "A", "B"]
    assert (ov["ess_share"] > 0.97).all()
    assert (ov["share_clipped"] == 0).all()
    assert (ov["ess"] <= ov["n"] + 1e-9).all()
    assert set(est.propensity_by_arm_.index.get_level_values("propensity_of")) == {"none", "A", "B"}


def test_poor_overlap_is_reported_by_clipping_and_ess(binary_world):
    est = _fit(binary_world, clip=0.05, cv=3, outcome_model=LogisticRegression())
    ov = est.overlap_
    assert ov.loc["A", "share_clipped"] > 0
    assert ov.loc["A", "ess_share"] < 0.9
    assert ov.loc["A", "max_weight"] == pytest.approx(1 / max(ov.loc["A", "p_min"], 0.05))
    assert est.summary_.loc["A", "share_clipped"] > 0


def test_trim_leaves_out_low_overlap_units_and_reports_share(binary_world):
    est = _fit(binary_world, trim=0.05, cv=3, outcome_model=LogisticRegression())
    assert 0 < est.share_trimmed_ < 0.5
    assert est.n_ == int(est.in_sample_.sum()) == round(len(binary_world) * (1 - est.share_trimmed_))
    assert (est.summary_["share_trimmed"] == est.share_trimmed_).all()
    kept = est.propensity_[est.in_sample_]
    assert kept.min().min() >= 0.05
    assert est.summary_["n"].sum() < 3 * len(binary_world)


def test_pluggable_models_without_default_preprocessing(binary_world):
    small = binary_world.iloc[:2000]
    prep = make_preprocessor(prepare_covariates(small, COVARIATES))
    prop = make_pipeline(prep, LogisticRegression(C=0.5, max_iter=500))
    out = make_pipeline(prep, LogisticRegression(max_iter=500))
    est = _fit(small, propensity_model=prop, outcome_model=out, preprocess=False, cv=3)
    assert np.isfinite(est.summary_["aipw"]).all()


def test_categorical_covariate_with_missing_values_and_bool_column_is_handled(binary_world):
    df = binary_world.iloc[:1500].copy()
    df.loc[df.index[:50], "region"] = None
    df["flag"] = df["x2"] > 0
    df["region"] = df["region"].astype("category")
    est = EffectEstimator(cv=3).fit(df, treatment="offer", outcome="y", control="none",
                                    covariates=["x1", "region", "flag"])
    assert np.isfinite(est.summary_[["aipw", "aipw_se"]].to_numpy()).all()


# --- edge cases: clear errors -------------------------------------------------------------


def test_arm_with_very_few_units_raises_clear_error(binary_world):
    df = binary_world.copy()
    df.loc[df.index[:5], "offer"] = "rare"
    with pytest.raises(ValueError, match=r"fewer than min_arm_size=30 units: \{'rare': 5\}"):
        _fit(df)


def test_missing_columns_raise_value_error_naming_them(binary_world):
    with pytest.raises(ValueError, match=r"missing columns: \['tenure'\]"):
        EffectEstimator().fit(binary_world, treatment="offer", outcome="y", control="none",
                              covariates=["x1", "tenure"])
    with pytest.raises(ValueError, match=r"missing columns: \['retained'\]"):
        EffectEstimator().fit(binary_world, treatment="offer", outcome="retained", control="none",
                              covariates=["x1"])


def test_unknown_control_level_raises(binary_world):
    with pytest.raises(ValueError, match="control level 'no offer' not found"):
        EffectEstimator().fit(binary_world, treatment="offer", outcome="y", control="no offer",
                              covariates=COVARIATES)


def test_only_control_level_raises(binary_world):
    df = binary_world[binary_world["offer"] == "none"]
    with pytest.raises(ValueError, match="holds only the control level"):
        _fit(df)


def test_missing_outcome_values_raise(binary_world):
    df = binary_world.astype({"y": float})
    df.loc[df.index[3], "y"] = np.nan
    with pytest.raises(ValueError, match="outcome column 'y' has 1 missing values"):
        _fit(df)


def test_non_numeric_outcome_and_duplicate_index_raise(binary_world):
    with pytest.raises(ValueError, match="must be numeric or boolean"):
        _fit(binary_world.assign(y=binary_world["y"].map({0: "no", 1: "yes"})))
    with pytest.raises(ValueError, match="index has duplicates"):
        _fit(pd.concat([binary_world.iloc[:3000], binary_world.iloc[:3000]]))


def test_empty_covariates_and_bad_settings_raise(binary_world):
    with pytest.raises(ValueError, match="covariates is empty"):
        EffectEstimator().fit(binary_world, treatment="offer", outcome="y", control="none", covariates=[])
    with pytest.raises(ValueError, match="cv must be at least 2"):
        _fit(binary_world, cv=1)
    with pytest.raises(ValueError, match="outcome_type='binary'"):
        _fit(binary_world.assign(y=binary_world["x2"]), outcome_type="binary")


# --- Hillstrom (randomized e-mail experiment, public data) ---------------------------------


@pytest.fixture(scope="module")
def hillstrom_fit():
    if not HILLSTROM.exists():
        pytest.skip(f"shared data not found at {HILLSTROM}")
    df = pd.read_csv(HILLSTROM)
    assert df.shape == (64_000, 12)
    return EffectEstimator(cv=3, outcome_model=LogisticRegression(max_iter=1000), random_state=0).fit(
        df, treatment="segment", outcome="visit", control="No E-Mail",
        covariates=["recency", "history", "mens", "womens", "zip_code", "newbie", "channel"])


def test_hillstrom_difference_in_means_matches_published_data(hillstrom_fit):
    s = hillstrom_fit.summary_
    assert round(100 * s.loc["Mens E-Mail", "naive"], 2) == 7.66
    assert round(100 * s.loc["Womens E-Mail", "naive"], 2) == 4.52
    assert s.loc["Mens E-Mail", "n_treated"] == 21_307
    assert s.loc["Womens E-Mail", "n_treated"] == 21_387
    assert s.loc["Mens E-Mail", "n_control"] == 21_306


def test_hillstrom_randomized_aipw_agrees_with_difference_in_means(hillstrom_fit):
    s = hillstrom_fit.summary_
    for arm in ["Mens E-Mail", "Womens E-Mail"]:
        assert abs(s.loc[arm, "aipw"] - s.loc[arm, "naive"]) < 0.003
        assert abs(s.loc[arm, "ipw"] - s.loc[arm, "naive"]) < 0.003
        ratio = (s.loc[arm, "aipw_hi"] - s.loc[arm, "aipw_lo"]) / (s.loc[arm, "naive_hi"] - s.loc[arm, "naive_lo"])
        assert 0.8 < ratio < 1.2
    assert (hillstrom_fit.overlap_["ess_share"] > 0.99).all()
