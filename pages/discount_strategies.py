"""Discount strategies (leaders): which offers really keep customers, at what cost, and which strategy
to run under a budget. Reads the stored discount-effectiveness run (``python cli.py effects``)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import figures_pages as fp
from data.money import format_cents
from pages import _ui

_ui.require("discount_strategies")
as_of = _ui.today()
_ui.header("Discount strategies", "Naive comparison, adjusted estimate and randomized holdout side by side")

load = _ui.function("analytics.strategies", "load_latest")
if load is None:
    _ui.not_available("The discount analysis", "waiting for analytics.strategies.load_latest; then run "
                                              "`python cli.py effects` to estimate and store it")
    st.stop()
run = _ui.cached("analytics.strategies", "load_latest")
if run is None and _ui.background_notice("The discount analysis"):
    st.stop()
if run is None:
    _ui.empty("No discount analysis stored yet: run `python cli.py effects` (it estimates every offer's effect "
              "and compares strategies, then this page shows the results).")
    st.stop()

currency = getattr(run, "currency", "EUR")
st.caption(f"Analysis of {run.n_contacts:,} contacts up to {run.as_of:%Y-%m-%d}; outcome: still a customer "
           f"{run.outcome_days} days after the contact.")
if getattr(run, "summary", None):
    st.info(run.summary, icon=":material/lightbulb:")

st.subheader("Effect of each offer")
effects = run.effects
forest = _ui.function("analytics.figures_effects", "forest_plot")
if forest is not None:
    _ui.chart(forest(effects, title=f"Effect of each offer on {run.outcome_days}-day retention"), "ds_forest")
else:
    long = pd.concat([effects[["offer", f"{est}", f"{est}_lo", f"{est}_hi"]]
                      .set_axis(["offer", "effect", "lo", "hi"], axis=1).assign(estimate=est)
                      for est in ("naive", "adjusted", "holdout") if est in effects.columns], ignore_index=True)
    _ui.chart(fp.forest_figure(long.dropna(subset=["effect"])), "ds_forest")
st.caption("Naive: retained with the offer minus without it (biased: agents give offers to customers about to "
           "leave). Adjusted: doubly robust estimate from the recorded contact, customer and bill. Holdout: the "
           "randomized share of contacts — the cleanest comparison, with wider intervals.")
key = [c for c in ("offer", "adjusted", "adjusted_lo", "adjusted_hi", "holdout", "cost_per_customer_kept_cents",
                   "roi") if c in effects.columns]
if key:
    st.dataframe(effects[key], hide_index=True, width="stretch", column_config={
        "adjusted": st.column_config.NumberColumn("adjusted effect", format="percent"),
        "adjusted_lo": st.column_config.NumberColumn("from", format="percent"),
        "adjusted_hi": st.column_config.NumberColumn("to", format="percent"),
        "holdout": st.column_config.NumberColumn("holdout effect", format="percent"),
        "cost_per_customer_kept_cents": st.column_config.NumberColumn(
            f"cost per customer kept ({currency} cents)", format="localized"),
        "roi": st.column_config.NumberColumn("ROI", format="%.2f")})
_ui.download(effects, "offer-effects", "ds_dl_effects", label="Download all estimates (CSV)")

st.subheader("Strategies under a budget")
strategies = run.strategies
if strategies.empty:
    _ui.empty("No strategies compared in this run.")
else:
    top = float(strategies["cost_cents"].max()) / 100 if "cost_cents" in strategies else 0.0
    budget = st.slider(f"Discount budget for the period ({currency})", 0.0, max(top, 1.0), max(top, 1.0),
                       key="ds_budget")
    _ui.chart(fp.strategy_figure(strategies, currency=currency, budget_cents=budget * 100), "ds_strategies")
    within = strategies[strategies["cost_cents"] <= budget * 100] if "cost_cents" in strategies else strategies
    if within.empty:
        _ui.empty("No strategy fits this budget: raise it, or run no offers.")
    else:
        best = within.sort_values("net_value_cents", ascending=False).iloc[0]
        st.success(f"Within {format_cents(int(budget * 100), currency)}: **{best['strategy']}** has the highest "
                   f"net value ({format_cents(int(best['net_value_cents']), currency)}).")
    _ui.table(strategies, "strategies", "ds_dl_strategies")

st.subheader("Effect by segment")
by_segment = getattr(run, "by_segment", None)
if by_segment is None or by_segment.empty:
    _ui.empty("No effects by segment in this run.")
else:
    _ui.chart(fp.heatmap_figure(by_segment, "Effect on retention by segment and offer (percentage points)",
                                diverging=True), "ds_segments")
    _ui.table(by_segment.reset_index().rename(columns=str), "effects-by-segment", "ds_dl_segments")
