"""Tests for analytics/cate.py: the DR-learner and group summaries against a known truth."""

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from threadpoolctl import threadpool_limits

from analytics.cate import DRLearner, cate_by_group
from analytics.effects import EffectEstimator, prepare_covariates

COVARIATES = ["x1", "x2", "region"]


@pytest.fixture(scope="module", autouse=True)
def _single_threaded():
    """Many small model fits: OpenMP threads only add overhead (and stall on a busy machine)."""
    with threadpool_limits(limits=1):
        yield


def _true_cate(X):
    """A's effect grows with x1; B helps only in the north."""
    return pd.DataFrame({"A": 1.0 + X["x1"].to_numpy(), "B": 0.8 * (X["region"] == "north").to_numpy()},
                        index=X.index)


def _world(seed=21, n=5000):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                      "region": rng.choice(["north", "south", "east"], size=n)})
    x1, x2 = X["x1"].to_numpy(), X["x2"].to_numpy()
    logits = np.column_stack([np.zeros(n), 0.8 * x1 - 0.2, 0.5 * x2 + 0.3 * (X["region"] == "north")])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    arm = (rng.random(n)[:, None] > p.cumsum(axis=1)).sum(axis=1)
    tau = _true_cate(X).to_numpy()
    effect = np.column_stack([np.zeros(n), tau])[np.arange(n), arm]
    y = 1.5 * x1 + 0.5 * x2 + effect + rng.normal(size=n)
    return X.assign(arm=np.array(["ctl", "A", "B"], dtype=object)[arm], y=y)


def _learner(**kw):
    return DRLearner(effect_estimator=EffectEstimator(cv=3, random_state=1), cv=3, random_state=1, **kw)


FIT = dict(treatment="arm", outcome="y", control="ctl", covariates=COVARIATES)


@pytest.fixture(scope="module")
def world():
    return _world()


@pytest.fixture(scope="module")
def learner(world):
    return _learner().fit(world, **FIT)


def test_dr_learner_recovers_heterogeneous_effects(world, learner):
    truth = _true_cate(world)
    assert list(learner.cate_.columns) == ["A", "B"]
    assert learner.cate_.index.equals(world.index)
    assert np.corrcoef(learner.cate_["A"], truth["A"])[0, 1] > 0.8
    by_north = learner.cate_["B"].groupby(world["region"] == "north").mean()
    assert by_north[True] - by_north[False] > 0.4
    s = learner.summary_
    assert s.loc["A", "cate_mean"] == pytest.approx(truth["A"].mean(), abs=0.15)
    assert s.loc["A", "ate_aipw"] == pytest.approx(learner.effects_.summary_.loc["A", "aipw"])


def test_linear_final_model_is_close_to_linear_truth(world):
    fit = _learner(final_model=LinearRegression()).fit(world, **FIT)
    err = fit.cate_["A"] - _true_cate(world)["A"]
    assert np.sqrt((err**2).mean()) < 0.25


def test_no_unit_is_predicted_by_a_model_trained_on_it(world, learner):
    """A 1-nearest-neighbour final model would return a unit's own pseudo-outcome if it saw it.

    Linear outcome models keep the pseudo-outcomes free of ties (tree models can make two units'
    ``mu_B - mu_0`` identical, which a 1-NN model would then return legitimately).
    """
    effects = EffectEstimator(cv=3, outcome_model=LinearRegression()).fit(world, **FIT)
    fit = _learner(final_model=KNeighborsRegressor(n_neighbors=1)).fit(world, **FIT, effects=effects)
    own = effects.pseudo_effects_
    assert (np.abs(fit.cate_.to_numpy() - own.to_numpy()) > 1e-9).all()
    memorised = fit.models_["A"].predict(prepare_covariates(world, COVARIATES))
    np.testing.assert_allclose(memorised, own["A"])  # the full-sample model does memorise: the check has teeth


def test_cate_by_group_intervals_cover_true_group_effects(world, learner):
    table = cate_by_group(learner, world["region"])
    truth = _true_cate(world).groupby(world["region"]).mean()
    assert set(table.index.get_level_values("group")) == {"north", "south", "east"}
    for (group, level), row in table.iterrows():
        assert row["dr_lo"] <= truth.loc[group, level] <= row["dr_hi"], (group, level)
    assert table.xs("A", level="treatment")["n"].sum() == len(world)
    north_b = table.loc[("north", "B")]
    assert north_b["dr"] == pytest.approx(learner.effects_.pseudo_effects_["B"][world["region"] == "north"].mean())


def test_cate_by_group_accepts_arrays_and_rejects_wrong_length(world, learner):
    a = cate_by_group(learner, world["region"].to_numpy())
    b = cate_by_group(learner, world["region"])
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="one label per unit"):
        cate_by_group(learner, world["region"].to_numpy()[:10])


def test_predict_new_units_and_reuse_of_fitted_effects(world, learner):
    new = _world(seed=99, n=200)
    pred = learner.predict(new)
    assert pred.shape == (200, 2) and pred.index.equals(new.index)
    assert np.corrcoef(pred["A"], _true_cate(new)["A"])[0, 1] > 0.8
    reused = _learner().fit(world, **FIT, effects=learner.effects_)
    pd.testing.assert_frame_equal(reused.cate_, learner.cate_)


def test_trimmed_units_get_predictions_from_the_full_model(world):
    fit = DRLearner(effect_estimator=EffectEstimator(cv=3, trim=0.08), cv=3).fit(world, **FIT)
    out = ~fit.effects_.in_sample_
    assert out.any()
    expected = fit.predict(world[out])
    np.testing.assert_allclose(fit.cate_[out].to_numpy(), expected.to_numpy())
    assert fit.summary_["n"].iloc[0] == fit.effects_.n_


def test_errors_are_clear(world, learner):
    with pytest.raises(NotFittedError):
        DRLearner().predict(world)
    with pytest.raises(ValueError, match=r"missing modifier columns: \['tenure'\]"):
        _learner().fit(world, **FIT, modifiers=["tenure"], effects=learner.effects_)
    with pytest.raises(ValueError, match="different index"):
        _learner().fit(world.iloc[:100], **FIT, effects=learner.effects_)
