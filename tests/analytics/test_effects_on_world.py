"""Discount effectiveness and strategy values checked against the simulated truth.

On the default demo world over 36 months (:data:`data.simulate.DEFAULT_DEMO` size, cached by :mod:`tests.worlds`), analysed
as of its last day: the contact dataset agrees with the truth contact by contact; every offer's
adjusted interval covers its true average effect (``sim_truth_offer_effects.ate``: over eligible
contacts with follow-up) or misses it by under 1.5 percentage points; the naive comparison is
visibly confounded; the randomized holdout covers the truth; and the true value of the
model-targeted strategy (from ``sim_truth_potential_outcomes``) beats current practice and every
offer given to everyone eligible. The share of the oracle's gain it captures is reported
(``-s`` prints it; it is also a ``record_property`` of the test).
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.overview import data_as_of
from analytics.strategies import (compare_strategies, discount_effectiveness, fit_effects, latest_effects,
                                  run_effects, strategy_policies)
from data.db import connect
from data.simulate import DEFAULT_DEMO

# The default demo's size over 36 months: the issue asks for the default size or larger, and the
# rarest offer (50% off for 12 months, tier 3) needs three years of contacts to be estimable.
WORLD = DEFAULT_DEMO.replace(months=36, start="2023-01")
from tests.worlds import copy_world, open_world

TOLERANCE = 0.015  # an adjusted interval may miss the true effect by less than 1.5 points


@pytest.fixture(scope="module")
def world():
    con = open_world(WORLD)
    yield con
    con.close()


@pytest.fixture(scope="module")
def as_of(world):
    return data_as_of(world)


@pytest.fixture(scope="module")
def fit(world, as_of):
    return fit_effects(world, as_of=as_of)


@pytest.fixture(scope="module")
def effectiveness(world, as_of, fit):
    return discount_effectiveness(world, as_of=as_of, fit=fit)


@pytest.fixture(scope="module")
def strategies(world, as_of, fit):
    return compare_strategies(world, as_of=as_of, fit=fit)


@pytest.fixture(scope="module")
def truth(world):
    return world.execute("SELECT code, ate, contacts_eligible FROM sim_truth_offer_effects").df().set_index("code")


@pytest.fixture(scope="module")
def potential(world, fit):
    """Y(option) per analysed contact (rows of fit.frame) and arm (NaN where not eligible)."""
    po = world.execute("SELECT contact_id, option, CAST(retained_180d AS DOUBLE) AS y, is_eligible, is_followed_up "
                       "FROM sim_truth_potential_outcomes").df()
    y = po.pivot(index="contact_id", columns="option", values="y").reindex(fit.frame["contact_id"])
    y.index = fit.frame.index
    return y


def test_dataset_agrees_with_the_truth_contact_by_contact(world, fit):
    ds = fit.dataset
    po = world.execute("SELECT contact_id, option, is_eligible, is_taken, CAST(retained_180d AS INTEGER) AS y, "
                       "is_followed_up FROM sim_truth_potential_outcomes").df()
    followed = set(po.loc[po["is_followed_up"] & (po["option"] == "none"), "contact_id"])
    assert set(ds.frame["contact_id"]) == followed
    f = ds.frame.set_index("contact_id")
    elig = po.pivot(index="contact_id", columns="option", values="is_eligible").loc[f.index]
    for code in ds.offers:
        assert (f[f"elig_{code}"] == elig[code].astype(bool)).all(), code
    taken = po[po["is_taken"]].set_index("contact_id").loc[f.index]
    assert (taken["option"] == f["treatment"]).all()
    assert (taken["y"] == f["retained_180"]).all()


def test_adjusted_interval_covers_the_true_effect_of_every_offer(effectiveness, truth):
    offers = effectiveness.offers
    rows = []
    for code, r in offers.iterrows():
        t = truth.loc[code, "ate"]
        miss = max(r["adjusted_lo"] - t, t - r["adjusted_hi"], 0.0)
        rows.append((code, t, r["adjusted"], r["adjusted_lo"], r["adjusted_hi"], miss))
        assert r["n_eligible"] == truth.loc[code, "contacts_eligible"]
    table = pd.DataFrame(rows, columns=["offer", "truth", "adjusted", "lo", "hi", "miss"])
    print("\n" + table.round(4).to_string(index=False))
    assert table["adjusted"].notna().all(), "an offer was not estimated"
    assert (table["miss"] < TOLERANCE).all(), table[table["miss"] >= TOLERANCE]


def test_naive_comparison_is_far_from_the_truth_for_some_offer(effectiveness, truth):
    o = effectiveness.offers.join(truth["ate"])
    gap = (o["naive"] - o["ate"]).abs()
    outside = (o["ate"] < o["naive_lo"]) | (o["ate"] > o["naive_hi"])
    assert ((gap > 0.05) & outside).any(), o[["naive", "naive_lo", "naive_hi", "ate"]]
    # and the adjustment moves the estimate towards the truth where the naive one is worst
    worst = gap.idxmax()
    assert abs(o.loc[worst, "adjusted"] - o.loc[worst, "ate"]) < gap[worst]


def test_holdout_interval_covers_the_true_effect(effectiveness, truth):
    o = effectiveness.offers.join(truth["ate"])
    assert (o["n_holdout_offer"] > 0).all() and (o["n_holdout_none"] > 0).all()
    covered = (o["holdout_lo"] <= o["ate"]) & (o["ate"] <= o["holdout_hi"])
    assert covered.all(), o.loc[~covered, ["holdout", "holdout_lo", "holdout_hi", "ate"]]


def test_overlap_is_diagnosed_for_every_offer(effectiveness):
    o = effectiveness.offers
    assert (o["p_min"] > 0).all() and (o["ess_treated"] > 0).all()
    assert (o["share_clipped"] < 0.05).all()


def _true_values(fit, potential, policies):
    arms = fit.arms
    Y = potential[arms].to_numpy(dtype=float)
    net = Y * fit.value.to_numpy()[:, None] - fit.cost[arms].to_numpy()
    rows = np.arange(len(Y))
    out = {}
    for name, spec in policies.items():
        p = fit.frame["treatment"] if isinstance(spec[1], str) else spec[1]
        idx = pd.Categorical(p, categories=arms).codes
        assert (idx >= 0).all()
        vals = net[rows, idx]
        assert not np.isnan(vals).any(), f"{name} gives an offer where it is not eligible"
        out[name] = (vals.mean(), Y[rows, idx].mean())
    eligible = fit.eligible[arms].to_numpy()
    oracle = np.where(eligible, np.nan_to_num(net, nan=-np.inf), -np.inf).max(axis=1).mean()
    return out, oracle


def test_model_targeted_strategy_beats_current_practice_and_every_blanket_offer(fit, potential, strategies,
                                                                             record_property):
    policies = strategy_policies(fit)
    values, oracle = _true_values(fit, potential, policies)
    current = values["current_practice"][0]
    targeted = values["targeted"][0]
    share = (targeted - current) / (oracle - current)
    table = pd.DataFrame({"true net value per contact (cents)": {k: v[0] for k, v in values.items()},
                          "true retained": {k: v[1] for k, v in values.items()},
                          "estimated (DR)": strategies["value_per_contact_cents"]})
    print("\n" + table.round(4).to_string())
    print(f"oracle {oracle:.1f} cents per contact; model-targeted captures {share:.1%} of the oracle's gain "
          f"over current practice (no offers: {(values['no_offers'][0] - current) / (oracle - current):.1%})")
    record_property("oracle_share", round(float(share), 4))
    assert targeted > current
    for name, (v, _) in values.items():
        if name.startswith("all_"):
            assert targeted > v, name
    assert 0 < share < 1
    # current practice is valued from what was observed: it equals the truth of the options taken
    assert strategies.loc["current_practice", "value_per_contact_cents"] == pytest.approx(current)


def test_run_effects_stores_the_results_for_the_pages(tmp_path, as_of, fit, effectiveness, strategies):
    path = copy_world(WORLD, tmp_path / "world.duckdb")
    con = connect(path)
    try:
        assert latest_effects(con) is None
        run_id = run_effects(con, as_of=as_of, at=dt.datetime(2026, 1, 2, 9), fit=fit)
        stored = latest_effects(con)
    finally:
        con.close()
    assert stored.run_id == run_id == 1
    assert stored.run["as_of"] == as_of and stored.run["n_contacts"] == len(fit.frame)
    assert stored.run["n_left_out"] == fit.dataset.n_without_follow_up
    assert list(stored.offers.index) == list(effectiveness.offers.index)
    assert np.allclose(stored.offers["adjusted"], effectiveness.offers["adjusted"])
    assert list(stored.strategies.index) == list(strategies.index)
    assert (stored.strategies["net_value_per_1000_cents"]
            - strategies["net_value_per_1000_cents"].round()).abs().max() <= 1
    assert len(stored.segments) == len(effectiveness.segments)
