"""Offer uplift: per-contact effects with intervals, rare offers left out, the fast interval against the
exact bootstrap, and the estimator contract."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from analytics.discounts import FEATURES
from models.uplift import CONTROL, MODIFIERS, OfferUpliftModel


@pytest.fixture(scope="module")
def later(uplift_split):
    """Contacts after the training data (the held-out ones), with their covariates."""
    model, full, cut = uplift_split
    frame = full.frame
    days = pd.to_datetime(frame["contact_date"])
    return frame[days + pd.Timedelta(days=full.horizon_days) >= pd.Timestamp(cut)].reset_index(drop=True)


def test_predicts_every_estimated_offer_with_an_interval(uplift_split, later):
    model, _, _ = uplift_split
    pred = model.predict(later)
    assert list(pred.columns) == ["row", "offer", "uplift", "uplift_lo", "uplift_hi", "uplift_sd"]
    assert len(pred) == len(later) * len(model.offers_)
    assert pred[["uplift", "uplift_sd"]].notna().all().all()
    assert (pred["uplift_lo"] <= pred["uplift"]).all() and (pred["uplift"] <= pred["uplift_hi"]).all()
    assert (pred["uplift_sd"] >= 0).all()
    wide = model.predict_wide(later)
    assert list(wide.columns) == model.offers_ and wide.index.equals(later.index)
    np.testing.assert_allclose(wide.to_numpy(), pred.pivot(index="row", columns="offer", values="uplift")
                               [model.offers_].to_numpy())
    only = model.predict(later.head(3), offers=[model.offers_[0]])
    assert set(only["offer"]) == {model.offers_[0]} and len(only) == 3


def test_point_estimate_is_the_dr_learners(uplift_split, later):
    model, _, _ = uplift_split
    theirs = model.learner_.predict(later.head(50))
    ours = model.predict_wide(later.head(50))
    np.testing.assert_allclose(ours.to_numpy(), np.clip(theirs[model.offers_].to_numpy(), -1, 1), atol=1e-12)


def test_fast_interval_tracks_the_exact_bootstrap(uplift_split, later):
    model, _, _ = uplift_split
    exact = model.bootstrap_sd(later)
    fast = model.predict_wide(later, "uplift_sd")
    for offer in model.offers_:
        r = np.corrcoef(exact[offer], fast[offer])[0, 1]
        ratio = float((fast[offer] / exact[offer]).median())
        print(f"\n{offer}: corr {r:.3f}, median ratio {ratio:.3f}, mean sd {exact[offer].mean():.3f}")
        assert r > 0.8 and 0.8 < ratio < 1.25


def test_rarely_granted_offers_get_no_estimate(uplift_split):
    model, full, cut = uplift_split
    counts = model.learner_.effects_.treatment_.value_counts()
    assert all(counts[o] >= model.min_arm_size for o in model.offers_)
    for offer, n in model.left_out_.items():
        assert n < model.min_arm_size and offer not in model.offers_
    assert CONTROL not in model.offers_
    assert set(model.summary_.index) == set(model.offers_)
    print("\n" + model.summary_.round(3).to_string())


def test_fit_summary_and_contract(uplift_split):
    model, _, _ = uplift_split
    assert model.covariates_ == list(FEATURES)
    assert model.learner_.modifiers_ == list(MODIFIERS)
    assert model.window_[0] <= model.window_[1]
    assert not hasattr(clone(model), "learner_")
    with pytest.raises(NotFittedError):
        OfferUpliftModel().predict(pd.DataFrame({"x": [1]}))


def test_fit_refuses_data_without_a_control_or_any_offer():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({c: rng.normal(size=n) for c in ("a", "b")})
    frame["retained_180"] = (rng.random(n) < 0.8).astype(int)
    frame["treatment"] = "x"
    with pytest.raises(ValueError, match="control"):
        OfferUpliftModel(covariates=["a", "b"], modifiers=["a"]).fit(frame)
    frame["treatment"] = np.where(rng.random(n) < 0.05, "x", CONTROL)
    with pytest.raises(ValueError, match="nothing to learn"):
        OfferUpliftModel(covariates=["a", "b"], modifiers=["a"], min_arm_size=40).fit(frame)


def test_recovers_a_known_effect_on_a_randomized_toy():
    rng = np.random.default_rng(3)
    n = 4000
    frame = pd.DataFrame({"a": rng.normal(size=n), "g": rng.choice(["p", "q"], n)})
    frame["treatment"] = np.where(rng.random(n) < 0.5, "offer", CONTROL)
    effect = np.where(frame["g"] == "q", 0.25, 0.0)            # helps group q only
    p = 0.5 + np.where(frame["treatment"] == "offer", effect, 0.0)
    frame["retained_180"] = (rng.random(n) < p).astype(int)
    model = OfferUpliftModel(covariates=["a", "g"], modifiers=["g"], n_bootstrap=5).fit(frame)
    test = pd.DataFrame({"a": [0.0, 0.0], "g": ["p", "q"]})
    pred = model.predict(test)
    assert pred.loc[0, "uplift"] == pytest.approx(0.0, abs=0.07)
    assert pred.loc[1, "uplift"] == pytest.approx(0.25, abs=0.07)
    assert model.summary_.loc["offer", "ate"] == pytest.approx(0.125, abs=0.05)
