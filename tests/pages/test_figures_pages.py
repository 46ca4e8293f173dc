"""analytics/figures_pages.py: the pages' own figures, from plain results (no Streamlit, no database)."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from analytics import figures_pages as fp
from analytics.fairness import PeerComparison


def _y(trace):
    return list(trace.y)


def test_trend_figure_units():
    t = pd.DataFrame({"month": pd.to_datetime(["2024-01-01", "2024-02-01"]), "mrr_cents": [100000, 150050],
                      "rate": [0.05, 0.025]})
    money = fp.trend_figure(t, ["mrr_cents"], "MRR", unit="cents")
    assert _y(money.data[0]) == [1000.0, 1500.5] and money.layout.yaxis.tickprefix == "€"
    rate = fp.trend_figure(t, ["rate"], "Churn", unit="rate", names={"rate": "churn"}, kind="bar")
    assert _y(rate.data[0]) == pytest.approx([5.0, 2.5]) and rate.data[0].type == "bar"
    assert rate.data[0].name == "churn" and rate.layout.yaxis.ticksuffix == "%"


def test_invoice_history_shows_totals_and_discounts():
    inv = pd.DataFrame({"period_start": [dt.date(2024, 2, 1), dt.date(2024, 1, 1)], "total_cents": [1800, 2000],
                        "discount_cents": [200, 0], "credit_cents": [0, 0]})
    fig = fp.invoice_history_figure(inv)
    assert list(fig.data[0].x) == ["2024-01", "2024-02"] and _y(fig.data[0]) == [20.0, 18.0]
    assert [d.name for d in fig.data] == ["total", "discount"] and _y(fig.data[1]) == [0.0, -2.0]
    empty = fp.invoice_history_figure(inv.iloc[0:0])
    assert not empty.data and "No invoices" in empty.layout.annotations[0].text


def test_peer_figure():
    peers = PeerComparison(plan_id=1, plan_name="Basic", tenure_band="6-11 months", period_start=dt.date(2024, 5, 1),
                           n_peers=40, p25_cents=1500, median_cents=1700, p75_cents=2000, customer_cents=2600,
                           share_paying_less=0.95, currency="EUR")
    fig = fp.peer_figure(peers)
    assert fig.data[0].base[0] == 15.0 and fig.data[0].x[0] == 5.0
    assert fig.data[1].x[0] == 17.0 and fig.data[2].x[0] == 26.0
    few = PeerComparison(**{**peers.__dict__, "n_peers": 2, "median_cents": None})
    assert not fp.peer_figure(few).data and not fp.peer_figure(None).data


def test_risk_reasons_from_either_shape():
    a = fp.risk_reasons_figure(pd.DataFrame({"reason": ["long wait", "autopay"], "contribution": [0.08, -0.02]}))
    assert list(a.data[0].y) == ["autopay", "long wait"]
    b = fp.risk_reasons_figure(pd.DataFrame({"feature": ["bill_change_pct"], "value": [12.5], "delta": [0.04]}))
    assert list(b.data[0].y) == ["bill change pct = 12.5"] and list(b.data[0].x) == [0.04]


def test_ageing_figure():
    ageing = pd.DataFrame({"bucket": ["current", "1-30", "31-60", "61-90", "90+"],
                           "invoice_count": [3, 2, 1, 0, 0], "customer_count": [3, 2, 1, 0, 0],
                           "amount_cents": [3000, 2000, 1000, 0, 0]})
    fig = fp.ageing_figure(ageing)
    assert _y(fig.data[0]) == [30.0, 20.0, 10.0, 0.0, 0.0]
    assert not fp.ageing_figure(ageing.assign(amount_cents=0)).data


def test_forest_figure_one_trace_per_estimate_with_intervals():
    eff = pd.DataFrame({"offer": ["A", "B", "A", "B"], "estimate": ["naive", "naive", "adjusted", "adjusted"],
                        "effect": [-0.05, 0.01, 0.03, 0.04], "lo": [-0.08, -0.01, 0.0, 0.02],
                        "hi": [-0.02, 0.03, 0.06, 0.06]})
    fig = fp.forest_figure(eff)
    assert [d.name for d in fig.data] == ["naive", "adjusted"]
    naive = fig.data[0]
    assert list(naive.x) == pytest.approx([-5.0, 1.0])
    assert list(naive.error_x.array) == pytest.approx([3.0, 2.0]) and list(naive.error_x.arrayminus) == \
        pytest.approx([3.0, 2.0])


def test_heatmap_and_strategy_figures():
    m = pd.DataFrame({"A": [0.1, None], "B": [0.2, 0.3]}, index=["x", "y"])
    heat = fp.heatmap_figure(m, "Effects", diverging=True)
    assert heat.data[0].zmid == 0 and heat.data[0].text[1][0] == ""
    strategies = pd.DataFrame({"strategy": ["a", "b"], "net_value_cents": [1000, 3000], "cost_cents": [100, 900]})
    fig = fp.strategy_figure(strategies, budget_cents=500)
    assert list(fig.data[0].y) == ["a", "b"] and list(fig.data[0].marker.color) == [fp.COLORS[0], "#d0d7de"]
