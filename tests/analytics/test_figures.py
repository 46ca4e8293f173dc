"""Figure builders: the traces carry the analytics' numbers; and the house rules of analytics/."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics import cohorts, figures, metrics, survival
from analytics.practices import PracticeCoxFitter
from tests.analytics.fixtures import AS_OF, FIRST, LAST, build_tiny_world
from tests.analytics.test_practices import synthetic_panel

ANALYTICS = Path(__file__).resolve().parents[2] / "analytics"


@pytest.fixture(scope="module")
def con():
    c = build_tiny_world()
    yield c
    c.close()


@pytest.fixture(scope="module")
def monthly(con):
    return metrics.monthly_metrics(con, FIRST, LAST)


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_mrr_trend_draws_mrr_and_arpu_in_currency_units(monthly):
    fig = figures.mrr_trend_figure(monthly)
    assert list(trace(fig, "MRR").y) == [50.0, 60.0, 45.0, 39.0, 56.0, 76.0]
    assert trace(fig, "ARPU").yaxis == "y2"
    assert list(trace(fig, "ARPU").y) == [12.5, 15.0, 15.0, 13.0, 14.0, 15.2]


def test_churn_trend_draws_rates_in_percent(monthly):
    fig = figures.churn_trend_figure(monthly)
    logo = trace(fig, "logo churn").y
    assert np.isnan(logo[0]) and list(logo[1:3]) == [25.0, 50.0]
    assert list(trace(fig, "churned (involuntary)").y) == [0, 1, 0, 0, 0, 0]


def test_movement_bars_put_losses_below_zero_and_net_is_the_mrr_change(monthly):
    fig = figures.mrr_movements_figure(monthly)
    assert list(trace(fig, "churn").y) == [0, -10, -10, 0, 0, 0]
    assert list(trace(fig, "contraction").y) == [0, 0, -5, -8, 0, 0]
    assert list(trace(fig, "reactivation").y) == [0, 0, 0, 0, 12, 0]
    net = np.array(trace(fig, "net change").y)
    assert net.tolist() == ((monthly["mrr_cents"] - monthly["mrr_start_cents"]) / 100).tolist()
    assert fig.layout.barmode == "relative"


def test_waterfall_runs_from_opening_to_closing_mrr(monthly):
    wf = figures.mrr_waterfall_figure(monthly).data[0]
    assert list(wf.x) == ["opening", "new", "expansion", "reactivation", "contraction", "churn", "closing"]
    assert list(wf.y) == [0.0, 90.0, 7.0, 12.0, -13.0, -20.0, 76.0]
    assert sum(wf.y[:-1]) == wf.y[-1]


def test_cohort_heatmap_from_table_or_matrix_is_the_same(con):
    a = figures.cohort_heatmap_figure(cohorts.cohort_table(con, AS_OF)).data[0]
    b = figures.cohort_heatmap_figure(cohorts.cohort_retention(con, AS_OF)).data[0]
    assert list(a.y) == ["2024-01", "2024-02", "2024-03", "2024-06"] == list(b.y)
    np.testing.assert_array_equal(np.asarray(a.z, dtype=float), np.asarray(b.z, dtype=float))
    assert list(np.asarray(a.z)[0]) == [100.0, 75.0, 50.0, 50.0, 75.0, 75.0]
    assert a.text[0][1] == "75%" and a.text[3][1] == ""


def test_km_figure_has_a_curve_and_a_band_per_group(con):
    res = survival.survival_by(con, "segment", as_of=AS_OF)
    fig = figures.km_figure(res.curves)
    consumer = trace(fig, "consumer")
    assert list(consumer.y[:2]) == pytest.approx([80.0, 80.0 / 3])
    assert consumer.line.shape == "hv"
    band = trace(fig, "consumer band")
    assert band.fill == "toself" and len(band.x) == 2 * len(consumer.x)


def test_forest_plot_marks_protective_and_harmful_practices():
    summary = pd.DataFrame({"term": ["a", "b", "c"], "label": ["protects", "harms", "unclear"],
                            "hazard_ratio": [0.7, 2.0, 1.1], "lo": [0.6, 1.5, 0.9], "hi": [0.8, 2.6, 1.3]})
    fig = figures.hazard_forest_figure(summary)
    pts = fig.data[0]
    assert list(pts.x) == [0.7, 2.0, 1.1] and list(pts.y) == ["protects", "harms", "unclear"]
    assert list(pts.error_x.array) == pytest.approx([0.1, 0.6, 0.2])
    assert list(pts.marker.color) == [figures.UP, figures.DOWN, figures.COLORS[5]]
    assert fig.layout.xaxis.type == "log"


def test_wait_curve_figure_draws_the_fitted_curve():
    fitter = PracticeCoxFitter(check_ph=False).fit_panel(synthetic_panel(n=2000, seed=3))
    curve = fitter.wait_curve([0, 10, 20])
    hr = figures.wait_curve_figure(curve)
    assert list(trace(hr, "hazard ratio vs no wait").y) == pytest.approx(curve["hazard_ratio"].tolist())
    churn = figures.wait_curve_figure(curve, churn=True)
    assert list(trace(churn, "monthly churn").y) == pytest.approx((curve["monthly_churn"] * 100).tolist())


@pytest.mark.parametrize("build", [figures.mrr_trend_figure, figures.churn_trend_figure, figures.mrr_movements_figure,
                                   figures.mrr_waterfall_figure, figures.cohort_heatmap_figure, figures.km_figure,
                                   figures.hazard_forest_figure, figures.wait_curve_figure])
def test_empty_input_gives_a_figure_that_says_so(build):
    fig = build(pd.DataFrame())
    assert len(fig.data) == 0 and fig.layout.annotations[0].text.startswith("No ")


def test_analytics_never_mentions_the_simulated_truth_nor_imports_streamlit():
    forbidden = "sim" + "_truth"
    for path in sorted(ANALYTICS.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert forbidden not in text.lower(), f"{path.name} mentions the simulated truth"
        for node in ast.walk(ast.parse(text)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "streamlit" for n in names), f"{path.name} imports streamlit"
