"""Churn explorer (analysts, leaders): who churns, when and why.

Filters by segment, region, plan and channel; survival curves by a chosen attribute with a log-rank
test; the cohort retention heatmap; MRR movements; hazard ratios of care practices and the wait-time
curve from the stored practices run (``python cli.py practices``). Every table can be downloaded.
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
    # The Cox model takes up to a minute on a large world: the view reads the stored run
    # (`python cli.py practices`), fitted on all customers.
    load = _ui.function("analytics.practice_runs", "load_latest")
    run = _ui.cached("analytics.practice_runs", "load_latest") if load is not None else None
    if load is None:
        _ui.not_available("Hazard ratios of care practices", "waiting for analytics.practice_runs.load_latest; "
                                                            "then run `python cli.py practices`")
    elif run is None and _ui.background_notice("The care-practices analysis"):
        pass
    elif run is None:
        _ui.empty("No care-practices analysis stored yet: run `python cli.py practices` (it fits the churn model "
                  "of care practices, about a minute on a million customers, and stores it; then this view "
                  "shows the hazard ratios and the wait-time curve).")
    else:
        who = f"a sample of {run.n_customers:,} customers" if run.sampled else f"all {run.n_customers:,} customers"
        st.caption(f"Stored analysis {run.run_id} as of {run.as_of:%Y-%m-%d} (made {run.created_at:%Y-%m-%d %H:%M}): "
                   f"{who}, {run.n_events:,} churns. To refresh it, run `python cli.py practices`.")
        if filter_text != "all customers":
            st.info("The care-practices model covers all customers: the filters above do not apply to it.",
                    icon=":material/info:")
        _ui.chart(af.hazard_forest_figure(run.hazard_ratios), "ce_hr")
        _ui.table(run.hazard_ratios, "practice-hazard-ratios", "ce_dl_hr")
        if not run.wait_curve.empty:
            _ui.chart(af.wait_curve_figure(run.wait_curve), "ce_wait")
            _ui.table(run.wait_curve, "wait-time-curve", "ce_dl_wait")
