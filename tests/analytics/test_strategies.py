"""Tests for analytics.strategies, analytics.effects_cli and analytics.figures_effects on a small
simulated world (2,500 customers over 20 months, cached by tests.worlds): every reported number
against its definition recomputed from the dataset and the fitted models, offers with too few
grants, strategy bookkeeping (eligible arms only, budget respected), stored runs, the CLI.
The estimates against the truth are in test_effects_on_world.py."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cli
from analytics import figures_effects as fe
from analytics.overview import data_as_of
from analytics.strategies import (CONTROL, OFFER_COLUMNS, SEGMENT_DIMENSIONS, STRATEGY_COLUMNS, compare_strategies,
                                  discount_effectiveness, fit_effects, latest_effects, load_latest, run_effects,
                                  strategy_policies)
from data.db import connect
from data.simulate import DEFAULT_DEMO
from tests.worlds import copy_world, open_world

ROOT = Path(__file__).resolve().parents[2]
SMALL = DEFAULT_DEMO.replace(customers=2500, months=20, seed=3, start="2023-01")
Z = 1.959963984540054


@pytest.fixture(scope="module")
def world():
    con = open_world(SMALL)
    yield con
    con.close()


@pytest.fixture(scope="module")
def as_of(world):
    return data_as_of(world)


@pytest.fixture(scope="module")
def fit(world, as_of):
    return fit_effects(world, as_of=as_of, cv=3)


@pytest.fixture(scope="module")
def eff(world, as_of, fit):
    return discount_effectiveness(world, as_of=as_of, fit=fit)


@pytest.fixture(scope="module")
def strat(world, as_of, fit):
    return compare_strategies(world, as_of=as_of, fit=fit)


def test_every_catalogue_offer_has_a_row_and_rare_offers_are_not_estimated(world, fit, eff):
    codes = [r[0] for r in world.execute("SELECT code FROM offers ORDER BY offer_id").fetchall()]
    assert list(eff.offers.index) == codes and list(eff.offers.columns) == OFFER_COLUMNS
    assert fit.skipped, "the small world should have an offer granted fewer than 10 times"
    for code, n in fit.skipped.items():
        row = eff.offers.loc[code]
        assert row["n_granted"] == n and np.isnan(row["adjusted"]) and "too few" in row["note"]
        assert code not in fit.arms
        assert any(code in note for note in eff.notes)
    assert set(fit.frame["treatment"]) <= set(fit.arms)
    assert eff.n_contacts == len(fit.frame) and eff.n_left_out == fit.dataset.n_without_follow_up


def test_naive_and_holdout_are_plain_differences_of_the_dataset(fit, eff):
    f = fit.dataset.frame
    for code, r in eff.offers.iterrows():
        e = f[f[f"elig_{code}"]]
        a, b = e.loc[e["treatment"] == code, "retained_180"], e.loc[e["treatment"] == CONTROL, "retained_180"]
        assert r["n_eligible"] == len(e) and r["n_granted"] == len(a)
        if len(a) >= 2:
            se = np.sqrt(a.var() / len(a) + b.var() / len(b))
            assert r["naive"] == pytest.approx(a.mean() - b.mean())
            assert r["naive_hi"] - r["naive"] == pytest.approx(Z * se)
        h = f[f["is_holdout"] & f["holdout_candidates"].map(lambda c: c is not None and code in c)]
        ha, hb = h.loc[h["treatment"] == code, "retained_180"], h.loc[h["treatment"] == CONTROL, "retained_180"]
        assert (r["n_holdout_offer"], r["n_holdout_none"]) == (len(ha), len(hb))
        if len(ha) >= 2 and len(hb) >= 2:
            assert r["holdout"] == pytest.approx(ha.mean() - hb.mean())


def test_adjusted_effect_and_returns_follow_their_definitions(fit, eff):
    for code in fit.treatments:
        r = eff.offers.loc[code]
        m = fit.eligible[code].to_numpy()
        d = fit.effects.pseudo_effects_[code].to_numpy()[m]
        assert r["adjusted"] == pytest.approx(d.mean())
        assert r["adjusted_hi"] - r["adjusted"] == pytest.approx(Z * d.std(ddof=1) / np.sqrt(m.sum()))
        rev = (fit.value.to_numpy()[m] * d).mean()
        cost = fit.frame.loc[m, f"cost_{code}"].mean()
        assert r["revenue_kept_cents"] == pytest.approx(rev)
        assert r["expected_cost_cents"] == pytest.approx(cost)
        assert r["roi"] == pytest.approx((rev - cost) / cost)
        if r["adjusted"] > 0:
            assert r["cost_per_customer_kept_cents"] == pytest.approx(cost / r["adjusted"])
        else:
            assert np.isnan(r["cost_per_customer_kept_cents"])
        paid = fit.dataset.frame.loc[fit.dataset.frame["treatment"] == code, "discount_cost_cents"]
        assert r["discount_cost_cents"] == pytest.approx(paid.mean())
        assert 0 < r["p_min"] <= r["p_q05"] < 1


def test_segment_effects_cover_the_eligible_contacts_of_each_dimension(fit, eff):
    seg = eff.segments
    assert set(seg["dimension"]) == set(SEGMENT_DIMENSIONS)
    for (dim, code), grp in seg.groupby(["dimension", "code"]):
        assert grp["n"].sum() <= fit.eligible[code].sum()
        assert (grp["dr_lo"] <= grp["dr"]).all() and (grp["dr"] <= grp["dr_hi"]).all()
    reasons = seg[(seg["dimension"] == "reason") & (seg["code"] == "plan_move")]["grp"]
    assert set(reasons) <= {"bill_higher_than_expected", "wants_cheaper_plan", "cancel_request"}


def test_strategy_table_bookkeeping(fit, strat):
    assert list(strat.columns) == STRATEGY_COLUMNS
    assert list(strat.index[:2]) == ["current_practice", "no_offers"]
    assert list(strat.index[-2:]) == ["targeted", "targeted_budget"]
    assert {f"all_{c}" for c in fit.treatments} == set(strat.index[2:-2])
    none = strat.loc["no_offers"]
    assert none["share_treated"] == 0 and none["kept_per_1000"] == 0 and none["discount_cost_per_1000_cents"] == 0
    assert strat.loc["current_practice", "method"] == "observed"
    identity = strat["revenue_kept_per_1000_cents"] - strat["discount_cost_per_1000_cents"]
    assert np.allclose(identity, strat["net_value_per_1000_cents"])
    assert ((strat["kept_per_1000_lo"] <= strat["kept_per_1000"]) & (strat["kept_per_1000"] <= strat["kept_per_1000_hi"])).all()
    observed = (fit.frame["treatment"] != CONTROL).mean()
    assert strat.loc["current_practice", "share_treated"] == pytest.approx(observed)


def test_policies_give_only_eligible_offers_and_the_budget_holds(fit):
    specs = strategy_policies(fit)
    for name, spec in specs.items():
        if isinstance(spec[1], str):
            continue
        p = spec[1]
        for code in fit.treatments:
            assert fit.eligible.loc[p == code, code].all(), (name, code)
    budget = specs["targeted_budget"][2]
    spent = sum(fit.cost.loc[specs["targeted_budget"][1] == c, c].sum() for c in fit.treatments)
    assert spent <= budget + 1e-6
    assert budget == pytest.approx(sum(fit.cost.loc[specs["targeted"][1] == c, c].sum() for c in fit.treatments) / 2)
    zero = strategy_policies(fit, budget_cents=0)["targeted_budget"][1]
    assert (zero == CONTROL).all()
    gain = fit.value * fit.learner.cate_[fit.treatments].T - fit.cost[fit.treatments].T
    chosen = specs["targeted"][1]
    for code in fit.treatments:
        assert (gain.loc[code, chosen == code] > 0).all()


def test_nothing_to_analyse_is_a_value_error(world):
    first = world.execute("SELECT CAST(min(contacted_at) AS DATE) FROM contacts").fetchall()[0][0]
    with pytest.raises(ValueError, match="follow-up"):
        fit_effects(world, as_of=first + dt.timedelta(days=100))
    with pytest.raises(ValueError, match="no offer"):
        fit_effects(world, as_of=data_as_of(world), min_granted=10_000)


def test_runs_are_stored_and_read_back(tmp_path, world, as_of, fit, eff, strat):
    path = copy_world(SMALL, tmp_path / "w.duckdb")
    con = connect(path)
    try:
        assert latest_effects(con) is None and load_latest(con) is None
        first = run_effects(con, as_of=as_of, at=dt.datetime(2024, 9, 2, 8), fit=fit)
        second = run_effects(con, as_of=as_of, at=dt.datetime(2024, 9, 3, 8), fit=fit, budget_cents=12345)
        newest, older = latest_effects(con), latest_effects(con, first)
        view = load_latest(con)
    finally:
        con.close()
    assert (first, second) == (1, 2) and newest.run_id == 2 and older.run_id == 1
    assert newest.run["params"]["budget_cents"] == 12345 and newest.run["created_at"] == dt.datetime(2024, 9, 3, 8)
    assert older.run["window_start"] == eff.window[0] and older.run["window_end"] == eff.window[1]
    assert newest.strategies.loc["targeted_budget", "budget_cents"] == 12345
    assert newest.offers["adjusted"].equals(older.offers["adjusted"])
    assert newest.offers["note"].notna().sum() == len(fit.skipped)
    # the page's view: totals over the window, offer names, effects by group as a matrix
    assert view.run_id == 2 and view.currency == "EUR" and view.outcome_days == 180
    assert list(view.effects["offer"])[0] == "10% off for 3 months"
    n = fit.params["n_followed_up"]
    same = view.strategies["key"] != "targeted_budget"
    assert view.strategies.loc[same, "net_value_cents"].tolist() == pytest.approx(
        (strat["net_value_per_1000_cents"] * n / 1000).round()[same.to_numpy()].tolist(), abs=2)
    assert view.by_segment.shape[1] == len(fit.treatments) and view.summary


def test_latest_effects_on_a_database_without_runs(tmp_path):
    con = connect(tmp_path / "empty.duckdb")
    con.close()
    ro = connect(tmp_path / "empty.duckdb", read_only=True)
    try:
        assert latest_effects(ro) is None and load_latest(ro) is None
    finally:
        ro.close()


def _cli(*args, db):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "--db", str(db), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


def test_cli_effects_prints_json_and_stores_a_run(tmp_path):
    path = copy_world(SMALL, tmp_path / "cli.duckdb")
    out = _cli("effects", "--json", "--budget", "50", db=path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["run_id"] == 1 and data["n_contacts"] > 0
    assert [o["code"] for o in data["offers"]][:2] == ["pct10_3m", "credit_20"]
    assert {s["strategy"] for s in data["strategies"]} >= {"current_practice", "no_offers", "targeted"}
    budget = [s for s in data["strategies"] if s["strategy"] == "targeted_budget"][0]
    assert budget["budget_cents"] == 5000
    con = connect(path, read_only=True)
    try:
        assert latest_effects(con).run_id == 1
    finally:
        con.close()


def test_cli_effects_prints_tables(tmp_path, capsys):
    path = copy_world(SMALL, tmp_path / "cli.duckdb")
    assert cli.main(["--db", str(path), "effects", "--as-of", "2024-08-01"]) == 0
    text = capsys.readouterr().out
    assert "adjusted (AIPW)" in text and "Model-targeted" in text and "before 2024-08-01" in text


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory):
    return copy_world(SMALL, tmp_path_factory.mktemp("cli") / "cli.duckdb")


@pytest.mark.parametrize("args, status, message", [
    (["effects", "--as-of", "2024-13-01"], 2, "not a date"),
    (["effects", "--budget", "ten"], 2, "--budget"),
    (["effects", "--budget", "-5"], 2, "negative"),
    (["effects", "--sample", "5"], 2, "--sample"),
    (["effects", "--as-of", "2023-03-01"], 1, "follow-up"),
])
def test_cli_effects_errors_are_one_line(cli_db, capsys, args, status, message):
    assert cli.main(["--db", str(cli_db), *args]) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_cli_effects_on_missing_or_empty_database(tmp_path, capsys):
    assert cli.main(["--db", str(tmp_path / "nope.duckdb"), "effects"]) == 2
    assert "does not exist" in capsys.readouterr().err
    connect(tmp_path / "empty.duckdb").close()
    assert cli.main(["--db", str(tmp_path / "empty.duckdb"), "effects"]) == 1
    assert "empty" in capsys.readouterr().err


def test_figures_draw_each_estimate_strategy_and_group(fit, eff, strat):
    truth = {c: 0.01 for c in eff.offers.index}
    forest = fe.forest_plot(eff.offers, truth=truth)
    assert [t.name for t in forest.data] == ["naive", "adjusted (AIPW)", "randomized holdout", "truth (simulation)"]
    adjusted = forest.data[1]
    assert len(adjusted.x) == len(fit.treatments)      # offers not estimated have no adjusted marker
    assert adjusted.x[0] == pytest.approx(100 * eff.offers["adjusted"].dropna().iloc[0])
    bars = fe.strategy_bars(strat)
    assert list(bars.data[0].y) == list(strat["label"])
    assert bars.data[0].x[1] == 0
    kept = fe.strategy_bars(strat, metric="kept_per_1000")
    assert kept.data[0].x[0] == pytest.approx(strat["kept_per_1000"].iloc[0])
    heat = fe.segment_heatmap(eff.segments, offers=eff.offers, dimension="segment")
    assert list(heat.data[0].x) == [eff.offers.loc[c, "name"] for c in eff.offers.index
                                    if c in set(eff.segments["code"])]
    assert "No" in fe.forest_plot(eff.offers.iloc[:0]).layout.annotations[0].text
    with pytest.raises(ValueError):
        fe.strategy_bars(strat, metric="nope")
