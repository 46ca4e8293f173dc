"""Churn explorer (analysts, leaders) and Discount strategies (leaders)."""
from __future__ import annotations

import importlib

import pandas as pd
import pytest

from pages._ui import PAGES
from tests.pages.worlds import chart_titles, charts, choose, downloads, open_page, texts, values

EXPLORER = PAGES["churn_explorer"].path
STRATEGIES = PAGES["discount_strategies"].path


def _exists(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("role", ["analyst", "leader"])
def test_the_explorer_for_each_role(world, app, role):
    at = app(world, role)
    open_page(at, EXPLORER)
    assert at.segmented_control(key="ce_view").value == "Survival"
    for view, module, name, what, title in (
            ("Survival", "analytics.survival", "survival_by", "Survival curves", "Share still a customer"),
            ("Cohorts", "analytics.cohorts", "cohort_retention", "The cohort heatmap", "signup cohort"),
            ("Care practices", "analytics.practice_runs", "load_latest", "Hazard ratios", "hazard ratios")):
        choose(at, "ce_view", view)
        if not _exists(module, name):
            assert what in texts(at) and "not available yet" in texts(at)
        elif view == "Care practices":       # read from a stored run; the small world has none
            assert "No care-practices analysis stored yet" in texts(at) and "python cli.py practices" in texts(at)
            assert not charts(at)
        else:
            assert any(title in t for t in chart_titles(at)), chart_titles(at)
            assert downloads(at)
    choose(at, "ce_view", "MRR movements")
    titles = chart_titles(at)
    assert "MRR movements" in titles and "Customers won and lost" in titles
    assert len(downloads(at)) >= 1


def test_filters_narrow_the_mrr_movements(world, app):
    at = app(world, "analyst")
    open_page(at, EXPLORER)
    choose(at, "ce_view", "MRR movements")
    before = next(c for c in charts(at) if c["layout"]["title"]["text"] == "MRR movements")
    new_all = sum(values(before["data"][0]["y"]))
    segment = at.selectbox(key="ce_segment").options[1]
    at.selectbox(key="ce_segment").set_value(segment).run()
    assert f"segment {segment}" in texts(at)
    after = next(c for c in charts(at) if c["layout"]["title"]["text"] == "MRR movements")
    assert 0 < sum(values(after["data"][0]["y"])) < new_all
    table = next(d.value for d in at.dataframe if "mrr_new_cents" in d.value.columns)
    assert sum(values(after["data"][0]["y"])) == pytest.approx(table["mrr_new_cents"].sum() / 100)


@pytest.mark.skipif(not _exists("analytics.cohorts", "cohort_retention"), reason="analytics.cohorts not there yet")
def test_the_cohort_heatmap(world, app):
    at = app(world, "leader")
    open_page(at, EXPLORER)
    choose(at, "ce_view", "Cohorts")
    heat = next(c for c in charts(at) if c["data"] and c["data"][0]["type"] == "heatmap")
    assert "signup cohort" in heat["layout"]["title"]["text"]
    at.radio(key="ce_cohort_value").set_value("revenue_retention").run()
    assert any("MRR kept" in t for t in chart_titles(at))


@pytest.mark.skipif(not _exists("analytics.practice_runs", "run_practices"), reason="no stored practices runs yet")
def test_care_practices_draws_the_stored_run(fresh_world, app):
    """A run stored as `cli.py practices` stores it (here of a model fitted on a synthetic panel, which
    the small world is too small for), drawn by the Care practices view whatever the filters."""
    import datetime as dt

    from analytics.practice_runs import run_practices
    from analytics.practices import PracticeCoxFitter
    from data.db import connect
    from tests.analytics.test_practices import synthetic_panel
    fitter = PracticeCoxFitter(check_ph=False).fit_panel(synthetic_panel(n=2000, seed=3))
    con = connect(fresh_world)
    try:
        run_practices(con, as_of=dt.date(2024, 6, 30), at=dt.datetime(2024, 7, 1, 6), fitter=fitter)
    finally:
        con.close()
    at = app(fresh_world, "analyst")
    open_page(at, EXPLORER)
    choose(at, "ce_view", "Care practices")
    forest = next(c for c in charts(at) if "hazard ratios" in c["layout"]["title"]["text"])
    assert len(values(forest["data"][0]["x"])) == len(fitter.summary_)
    assert any("minute of waiting" in t for t in chart_titles(at))
    assert f"{fitter.n_events_:,} churns" in texts(at) and "2024-06-30" in texts(at)
    assert len(downloads(at)) == 2
    at.selectbox(key="ce_segment").set_value(at.selectbox(key="ce_segment").options[1]).run()
    assert "filters above do not apply" in texts(at) and len(downloads(at)) == 2


def test_discount_strategies_says_what_to_run(world, app):
    at = app(world, "leader")
    open_page(at, STRATEGIES)
    if not _exists("analytics.strategies", "load_latest"):
        assert "python cli.py effects" in texts(at)
    else:
        assert charts(at) or "No discount analysis stored yet" in texts(at)


def test_discount_strategies_draws_a_stored_run(world, app, monkeypatch):
    """The page drawing a stored run (a hand-made run in the shape of analytics.strategies.EffectsView)."""
    import datetime as dt
    import types
    run = types.SimpleNamespace(
        as_of=dt.date(2023, 10, 1), n_contacts=1234, outcome_days=180, currency="EUR",
        summary="Move-to-cheaper-plan keeps the most customers per euro.",
        effects=pd.DataFrame({"offer": ["10% off", "Plan move"], "naive": [-0.05, -0.02],
                              "naive_lo": [-0.08, -0.05], "naive_hi": [-0.02, 0.01], "adjusted": [0.03, 0.06],
                              "adjusted_lo": [0.0, 0.02], "adjusted_hi": [0.06, 0.10], "holdout": [0.04, 0.05],
                              "holdout_lo": [-0.02, -0.01], "holdout_hi": [0.10, 0.11],
                              "cost_per_customer_kept_cents": [41000, 12000], "roi": [0.4, 2.1]}),
        strategies=pd.DataFrame({"strategy": ["current practice", "no offers", "targeted"],
                                 "net_value_cents": [100000, 0, 250000], "lo_cents": [50000, 0, 150000],
                                 "hi_cents": [150000, 0, 350000], "cost_cents": [400000, 0, 300000]}),
        by_segment=pd.DataFrame({"10% off": [0.02, 0.05], "Plan move": [0.07, 0.03]},
                                index=pd.Index(["consumer", "small_business"], name="segment")))
    if _exists("analytics.strategies", "load_latest"):
        monkeypatch.setattr(importlib.import_module("analytics.strategies"), "load_latest", lambda con: run)
    else:
        module = types.ModuleType("analytics.strategies")
        module.load_latest = lambda con: run
        monkeypatch.setitem(__import__("sys").modules, "analytics.strategies", module)
    at = app(world, "leader")
    open_page(at, STRATEGIES)
    forest = next(c for c in charts(at) if "Effect of each offer" in c["layout"]["title"]["text"])
    names = {d["name"] for d in forest["data"]}
    assert len(names) == 3 and any("naive" in n for n in names) and any("holdout" in n for n in names)
    assert "keeps the most customers" in texts(at)
    assert "**targeted** has the highest" in texts(at)       # the best within the full budget (4,000)
    at.slider(key="ds_budget").set_value(2000.0).run()       # targeted costs 3,000: over the budget
    assert "**no offers** has the highest" in texts(at)
    assert any(c["data"][0]["type"] == "heatmap" for c in charts(at))
    assert len(downloads(at)) == 3
    key = next(d.value for d in at.dataframe if "roi" in d.value.columns)
    assert key["offer"].tolist() == ["10% off", "Plan move"] and key["roi"].tolist() == [0.4, 2.1]


@pytest.mark.skipif(not _exists("analytics.strategies", "run_effects"), reason="analytics.strategies not there yet")
def test_discount_strategies_on_a_real_stored_run(fresh_world, app):
    """The effects run stored by analytics.strategies (as `cli.py effects` does), drawn by the page."""
    import datetime as dt

    from analytics.overview import business_date
    from analytics.strategies import run_effects
    from data.db import connect
    con = connect(fresh_world)
    try:
        as_of = business_date(con, today=dt.date.today())
        try:
            run_effects(con, as_of=as_of, at=dt.datetime.combine(as_of, dt.time(6)), cv=2)
        except ValueError as exc:  # too few contacts in a tiny world for the estimators
            pytest.skip(f"the small world is too small for an effects run: {exc}")
    finally:
        con.close()
    at = app(fresh_world, "leader")
    open_page(at, STRATEGIES)
    titles = chart_titles(at)
    assert any("Effect of each offer" in t for t in titles) and "Strategies compared" in titles
    assert "has the highest net value" in texts(at) or "No strategy fits" in texts(at)
