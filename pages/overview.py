"""Overview: headline KPIs with the change on last month, and the trends behind them."""
from __future__ import annotations

import streamlit as st

from analytics import figures as af
from analytics import figures_pages as fp
from pages import _ui

_ui.require("overview")
as_of = _ui.today()
_ui.header("Overview", f"Business date {as_of:%Y-%m-%d}")

ov = _ui.cached("analytics.overview", "overview", as_of=as_of)
if ov is None:
    _ui.empty("No customers yet. An administrator can build a demo world or import data on the "
              "Data & models page (or run `python cli.py demo` / `python cli.py import`).")
    st.stop()

st.subheader(f"{ov.month:%B %Y} against {ov.previous_month:%B %Y}")
columns = st.columns(4)
for i, kpi in enumerate(ov.kpis):
    with columns[i % 4]:
        st.metric(kpi.label, kpi.format(), kpi.change_text,
                  delta_color="normal" if kpi.good_direction == "up" else "inverse", border=True)

notes = []
if not ov.has_invoices:
    notes.append("no invoices in this period, so discount spend and billed amounts are zero")
if not ov.has_contacts:
    notes.append("no care contacts recorded, so contacts and waiting times are empty")
if notes:
    _ui.empty("This database has " + "; ".join(notes) + " (typical of an imported customer file). "
              "Import invoices and contacts on the Data & models page to fill them.")

t = ov.trends
left, right = st.columns(2)
with left:
    _ui.chart(af.mrr_trend_figure(t), "trend_mrr")
    _ui.chart(fp.trend_figure(t, ["contacts", "complaints"], "Care contacts", kind="bar"), "trend_contacts")
with right:
    _ui.chart(af.churn_trend_figure(t), "trend_churn")
    _ui.chart(fp.trend_figure(t, ["discount_spend_cents"], "Discount spend (discounts and credits)",
                              unit="cents", names={"discount_spend_cents": "discount spend"},
                              currency=ov.currency, kind="bar"), "trend_discounts")

with st.expander("Monthly figures"):
    _ui.table(t, f"overview-{ov.month:%Y-%m}", "download_trends")
