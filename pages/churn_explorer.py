"""Churn explorer (analysts, leaders): who churns, when and why.

Filters by segment, region, plan and channel; survival curves by a chosen attribute with a log-rank
test; the cohort retention heatmap; MRR movements; hazard ratios of care practices and the wait-time
curve. Every table can be downloaded.
"""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from analytics import figures as af
from analytics import figures_pages as fp
from pages import _ui

_ui.require("churn_explorer")
as_of = _ui.today()
_ui.header("Churn explorer", f"Business date {as_of:%Y-%m-%d}")

options = _ui.cached("analytics.overview", "filter_options")
if not options["segment"]:
    _ui.empty("No customers yet. An administrator can build a demo world or import data on the "
              "Data & models page.")
    st.stop()

ALL = "all"
with st.container(border=True):
    f1, f2, f3, f4, f5 = st.columns(5)
    segment = f1.selectbox("Segment", [ALL, *options["segment"]], key="ce_segment")
    region = f2.selectbox("Region", [ALL, *options["region"]], key="ce_region")
    plans = dict(options["plan"])
    plan = f3.selectbox("Plan", [ALL, *plans], key="ce_plan", format_func=lambda p: p if p == ALL else plans[p])
    channel = f4.selectbox("Channel", [ALL, *options["channel"]], key="ce_channel")
    months = f5.slider("Months shown", 6, 60, 24, key="ce_months")
filters = {k: (None if v == ALL else v) for k, v in
           (("segment", segment), ("region", region), ("plan", plan), ("channel", channel))}
filter_text = ", ".join(f"{k} {plans.get(v, v) if k == 'plan' else v}" for k, v in filters.items()
                        if v is not None) or "all customers"
st.caption(f"Showing {filter_text}.")


def _month(day: dt.date, shift: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + shift
    return dt.date(index // 12, index % 12 + 1, 1)


# One view at a time: each is a separate analysis, computed only when it is looked at.
VIEWS = ("Survival", "Cohorts", "MRR movements", "Care practices")
view = st.segmented_control("View", VIEWS, default=VIEWS[0], key="ce_view") or VIEWS[0]

if view == "Survival":
    by = st.selectbox("Compare by", ["segment", "region", "plan", "channel", "autopay", "paperless",
                                     *options.get("attributes", [])], key="ce_by")
    survival = _ui.function("analytics.survival", "survival_by")
    if survival is None:
        _ui.not_available("Survival curves", "waiting for analytics.survival.survival_by")
    else:
        res = _ui.cached("analytics.survival", "survival_by", by, as_of=as_of, **filters)
        if res is None or res.curves.empty:
            _ui.empty("No customers in this selection: widen the filters.")
        else:
            _ui.chart(af.km_figure(res.curves, title=f"Share still a customer, by {by}", unit=res.unit), "ce_km")
            if res.logrank is not None:
                st.markdown(f"Log-rank test across {by} groups: chi² = {res.logrank['statistic']:.1f}, "
                            f"p = {res.logrank['p_value']:.3g}"
                            + (" — the groups differ." if res.logrank["p_value"] < 0.05
                               else " — no clear difference."))
            _ui.table(res.curves, f"survival-by-{by}", "ce_dl_km", height=240)

elif view == "Cohorts":
    cohorts = _ui.function("analytics.cohorts", "cohort_retention")
    if cohorts is None:
        _ui.not_available("The cohort heatmap", "waiting for analytics.cohorts.cohort_retention")
    else:
        value = st.radio("Retention of", ["customer_retention", "revenue_retention"], horizontal=True,
                         key="ce_cohort_value", format_func={"customer_retention": "customers",
                                                             "revenue_retention": "revenue (MRR)"}.get)
        matrix = _ui.cached("analytics.cohorts", "cohort_retention", as_of=as_of, value=value, **filters)
        if matrix is None or matrix.empty:
            _ui.empty("No cohorts in this selection: widen the filters.")
        else:
            what = "still a customer" if value == "customer_retention" else "of its first month's MRR kept"
            _ui.chart(af.cohort_heatmap_figure(matrix, value=value, title=f"Share of each signup cohort {what}"),
                      "ce_cohorts")
            _ui.table(matrix.reset_index().rename(columns=str), "cohort-retention", "ce_dl_cohorts", height=240)

elif view == "MRR movements":
    first = _month(as_of, -months)
    mrr = _ui.cached("analytics.metrics", "subscription_metrics", first, _month(as_of, -1), as_of=as_of, **filters)
    if mrr.empty or not mrr["customers_end"].any():
        _ui.empty("No customers in this selection: widen the filters.")
    else:
        mrr = mrr.assign(month=pd.to_datetime(mrr["month"]))
        _ui.chart(af.mrr_movements_figure(mrr), "ce_mrr")
        _ui.chart(af.mrr_waterfall_figure(mrr), "ce_bridge")
        _ui.chart(fp.trend_figure(mrr, ["new_customers", "churned_customers"], "Customers won and lost",
                                  names={"new_customers": "new", "churned_customers": "churned"}, kind="bar"),
                  "ce_flows")
        _ui.table(mrr, "mrr-movements", "ce_dl_mrr", height=240)

else:
    ratios_fn = _ui.function("analytics.practices", "practice_hazard_ratios")
    wait_fn = _ui.function("analytics.practices", "wait_time_curve")
    if ratios_fn is None:
        _ui.not_available("Hazard ratios of care practices", "waiting for analytics.practices.practice_hazard_ratios")
    else:
        ratios = _ui.cached("analytics.practices", "practice_hazard_ratios", as_of=as_of, **filters)
        if ratios is None or ratios.empty:
            _ui.empty("Not enough contacts to fit the practice model: it needs care contacts with waiting "
                      "times (import contacts, or use a simulated world).")
        else:
            _ui.chart(af.hazard_forest_figure(ratios), "ce_hr")
            _ui.table(ratios, "practice-hazard-ratios", "ce_dl_hr")
    if wait_fn is not None:
        curve = _ui.cached("analytics.practices", "wait_time_curve", as_of=as_of, **filters)
        if curve is not None and not curve.empty:
            _ui.chart(af.wait_curve_figure(curve), "ce_wait")
            _ui.table(curve, "wait-time-curve", "ce_dl_wait")
