"""Plotly figures for the retention analytics: pure functions from result frames to figures.

Each takes the output of one analytics function (no database, no Streamlit) and returns a
``plotly.graph_objects.Figure``; an empty input gives a figure that says so. Money arrives in cents
and is drawn in currency units; rates arrive as shares and are drawn in percent.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["mrr_trend_figure", "churn_trend_figure", "mrr_movements_figure", "mrr_waterfall_figure",
           "cohort_heatmap_figure", "km_figure", "hazard_forest_figure", "wait_curve_figure"]

COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a", "#e16f24", "#1b7c83"]
UP, DOWN, NET = "#1a7f37", "#cf222e", "#24292f"
MOVES = (("mrr_new_cents", "new", 1, "#1a7f37"), ("mrr_expansion_cents", "expansion", 1, "#4ac26b"),
         ("mrr_reactivation_cents", "reactivation", 1, "#0969da"),
         ("mrr_contraction_cents", "contraction", -1, "#fb8f44"), ("mrr_churn_cents", "churn", -1, "#cf222e"))


def _layout(fig: go.Figure, title: str, *, y_title: str | None = None, x_title: str | None = None,
            height: int = 360) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", y=-0.15), hovermode="x unified", template="plotly_white")
    if y_title:
        fig.update_yaxes(title_text=y_title)
    if x_title:
        fig.update_xaxes(title_text=x_title)
    return fig


def _empty(title: str, message: str = "No data for this selection") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def mrr_trend_figure(metrics: pd.DataFrame, *, title: str = "MRR and ARPU") -> go.Figure:
    """MRR at the end of each month (line) with ARPU on a second axis.

    ``metrics``: :func:`analytics.metrics.monthly_metrics` (month, mrr_cents, optionally arpu_cents).
    """
    if metrics.empty:
        return _empty(title)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=metrics["month"], y=metrics["mrr_cents"] / 100, name="MRR", mode="lines+markers",
                             line=dict(color=COLORS[0])))
    if "arpu_cents" in metrics:
        fig.add_trace(go.Scatter(x=metrics["month"], y=metrics["arpu_cents"] / 100, name="ARPU", yaxis="y2",
                                 mode="lines", line=dict(color=COLORS[5], dash="dot")))
        fig.update_layout(yaxis2=dict(title="ARPU", overlaying="y", side="right", rangemode="tozero"))
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, title, y_title="MRR")


def churn_trend_figure(metrics: pd.DataFrame, *, title: str = "Churn rates") -> go.Figure:
    """Logo and revenue churn rates by month in percent, with voluntary/involuntary churned
    customers as bars when present."""
    if metrics.empty:
        return _empty(title)
    fig = go.Figure()
    for col, name, color in (("churned_voluntary", "churned (voluntary)", "#fb8f44"),
                             ("churned_involuntary", "churned (involuntary)", "#bf8700")):
        if col in metrics:
            fig.add_trace(go.Bar(x=metrics["month"], y=metrics[col], name=name, marker_color=color,
                                 opacity=0.35, yaxis="y2"))
    for col, name, color in (("logo_churn_rate", "logo churn", COLORS[1]),
                             ("revenue_churn_rate", "revenue churn", COLORS[3])):
        if col in metrics:
            fig.add_trace(go.Scatter(x=metrics["month"], y=metrics[col] * 100, name=name, mode="lines+markers",
                                     line=dict(color=color)))
    fig.update_layout(barmode="stack", yaxis=dict(ticksuffix="%", rangemode="tozero"),
                      yaxis2=dict(title="customers", overlaying="y", side="right", showgrid=False,
                                  rangemode="tozero"))
    return _layout(fig, title, y_title="share of the month's opening")


def mrr_movements_figure(metrics: pd.DataFrame, *, title: str = "MRR movements") -> go.Figure:
    """Monthly MRR movements as relative bars (gains up, losses down) with the net change."""
    if metrics.empty:
        return _empty(title)
    fig = go.Figure()
    net = np.zeros(len(metrics))
    for col, name, sign, color in MOVES:
        values = sign * metrics[col].to_numpy(dtype="float64") / 100
        net += values
        fig.add_trace(go.Bar(x=metrics["month"], y=values, name=name, marker_color=color))
    fig.add_trace(go.Scatter(x=metrics["month"], y=net, name="net change", mode="lines+markers",
                             line=dict(color=NET)))
    fig.update_layout(barmode="relative")
    return _layout(fig, title, y_title="MRR change")


def mrr_waterfall_figure(metrics: pd.DataFrame, *, title: str = "MRR bridge") -> go.Figure:
    """Opening MRR of the first month to closing MRR of the last, through each movement's total."""
    if metrics.empty:
        return _empty(title)
    first, last = metrics.iloc[0], metrics.iloc[-1]
    labels = ["opening"] + [name for _, name, _, _ in MOVES] + ["closing"]
    values = ([first["mrr_start_cents"] / 100]
              + [sign * metrics[col].sum() / 100 for col, _, sign, _ in MOVES] + [last["mrr_cents"] / 100])
    measure = ["absolute"] + ["relative"] * len(MOVES) + ["total"]
    fig = go.Figure(go.Waterfall(x=labels, y=values, measure=measure, increasing=dict(marker_color=UP),
                                 decreasing=dict(marker_color=DOWN), totals=dict(marker_color=COLORS[0]),
                                 connector=dict(line=dict(color="#d0d7de"))))
    return _layout(fig, f"{title}: {first['month']:%b %Y} to {last['month']:%b %Y}", y_title="MRR")


def cohort_heatmap_figure(cohorts: pd.DataFrame, *, value: str = "customer_retention",
                          title: str = "Cohort retention") -> go.Figure:
    """Heatmap of signup cohorts (rows) by months since signup (columns).

    ``cohorts``: :func:`analytics.cohorts.cohort_table` (long) or :func:`analytics.cohorts.cohort_retention`
    (matrix). Shares are shown in percent.
    """
    if cohorts.empty:
        return _empty(title)
    if "months_since_signup" in cohorts.columns:
        cohorts = cohorts.assign(cohort=[pd.Timestamp(d).strftime("%Y-%m") for d in cohorts["cohort"]])
        matrix = cohorts.pivot(index="cohort", columns="months_since_signup", values=value)
    else:
        matrix = cohorts
    share = value.endswith("retention")
    z = matrix.to_numpy(dtype="float64") * (100 if share else 1)
    text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.0f}%" if share else f"{v:,.0f}")(np.nan_to_num(z)))
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in matrix.columns], y=[str(i) for i in matrix.index],
                               text=text, texttemplate="%{text}", colorscale="Blues", zmin=0,
                               colorbar=dict(ticksuffix="%" if share else "")))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, x_title="months since signup", y_title="signup month",
                   height=max(320, 60 + 24 * len(matrix)))


def km_figure(curves: pd.DataFrame, *, title: str = "Share still a customer", unit: str = "months") -> go.Figure:
    """Kaplan-Meier step curves per group with shaded confidence bands.

    ``curves``: ``SurvivalResult.curves`` of :func:`analytics.survival.survival_by`.
    """
    if curves.empty:
        return _empty(title)
    fig = go.Figure()
    for i, (group, grp) in enumerate(curves.groupby("group", sort=True)):
        color = COLORS[i % len(COLORS)]
        t = grp["time"].to_numpy()
        fig.add_trace(go.Scatter(x=np.concatenate([t, t[::-1]]),
                                 y=np.concatenate([grp["hi"].to_numpy(), grp["lo"].to_numpy()[::-1]]) * 100,
                                 fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0, shape="hv"),
                                 hoverinfo="skip", showlegend=False, name=f"{group} band"))
        fig.add_trace(go.Scatter(x=t, y=grp["survival"] * 100, name=str(group), mode="lines",
                                 line=dict(color=color, shape="hv"),
                                 customdata=grp[["at_risk"]].to_numpy() if "at_risk" in grp else None,
                                 hovertemplate="%{y:.1f}% (at risk %{customdata[0]})" if "at_risk" in grp else None))
    fig.update_yaxes(range=[0, 101], ticksuffix="%")
    return _layout(fig, title, x_title=f"{unit} since signup", y_title="still a customer")


def hazard_forest_figure(summary: pd.DataFrame, *, title: str = "Churn hazard ratios of care practices") -> go.Figure:
    """Forest plot of hazard ratios with intervals on a log axis, a line at 1 (no effect).

    ``summary``: ``PracticeCoxFitter.summary_`` (term or label, hazard_ratio, lo, hi).
    """
    if summary.empty:
        return _empty(title)
    names = summary["label"] if "label" in summary else summary["term"]
    colors = [UP if hi < 1 else DOWN if lo > 1 else COLORS[5] for lo, hi in zip(summary["lo"], summary["hi"])]
    fig = go.Figure(go.Scatter(
        x=summary["hazard_ratio"], y=names, mode="markers", marker=dict(size=10, color=colors),
        error_x=dict(type="data", symmetric=False, array=summary["hi"] - summary["hazard_ratio"],
                     arrayminus=summary["hazard_ratio"] - summary["lo"], color="#57606a"),
        hovertemplate="HR %{x:.3f}<extra>%{y}</extra>", name="hazard ratio"))
    fig.add_vline(x=1.0, line=dict(color="#8c959f", dash="dash"))
    fig.update_xaxes(type="log")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, x_title="hazard ratio (log scale; < 1 keeps customers)",
                   height=max(300, 60 + 40 * len(summary)))


def wait_curve_figure(curve: pd.DataFrame, *, churn: bool = False,
                      title: str = "What a minute of waiting costs") -> go.Figure:
    """The wait-time dose-response: relative churn hazard (or monthly churn with ``churn``) by
    minutes waited, with its band. ``curve``: ``PracticeCoxFitter.wait_curve()``."""
    if curve.empty:
        return _empty(title, "No wait times to model")
    y, lo, hi = (("monthly_churn", "churn_lo", "churn_hi") if churn else ("hazard_ratio", "lo", "hi"))
    scale = 100 if churn else 1
    x = curve["wait_minutes"].to_numpy()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                             y=np.concatenate([curve[hi].to_numpy(), curve[lo].to_numpy()[::-1]]) * scale,
                             fill="toself", fillcolor=COLORS[1], opacity=0.15, line=dict(width=0),
                             hoverinfo="skip", name="95% band", showlegend=False))
    fig.add_trace(go.Scatter(x=x, y=curve[y] * scale, mode="lines", line=dict(color=COLORS[1]),
                             name="monthly churn" if churn else "hazard ratio vs no wait"))
    if churn:
        fig.update_yaxes(ticksuffix="%")
    else:
        fig.add_hline(y=1.0, line=dict(color="#8c959f", dash="dash"))
    return _layout(fig, title, x_title="mean wait of last month's contacts (minutes)",
                   y_title="monthly churn" if churn else "churn hazard ratio")
