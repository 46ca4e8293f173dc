"""Plotly figures of the dashboard pages that :mod:`analytics.figures` does not draw.

The retention charts (MRR, churn, cohorts, survival, hazard ratios, wait curve) come from
:mod:`analytics.figures`; these are the pages' own: simple monthly trends, the agent desk's bills,
peers and risk reasons, the ageing of receivables, the discount-effect forest plot, heatmaps and the
strategy comparison. Pure functions from results to figures; money arrives in integer cents and is
shown in currency units.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from data.money import CURRENCY_SYMBOLS

TEMPLATE = "plotly_white"
COLORS = ("#1f6feb", "#d1242f", "#2da44e", "#bf8700", "#8250df", "#0a7d8c", "#6e7781", "#cf222e")
ESTIMATE_COLORS = {"naive": "#6e7781", "adjusted": "#1f6feb", "holdout": "#2da44e"}


def _symbol(currency: str) -> str:
    return CURRENCY_SYMBOLS.get(currency, currency + " ")


def _layout(fig: go.Figure, title: str, *, height: int = 320, **kwargs) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), template=TEMPLATE, height=height,
                      margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1), **kwargs)
    return fig


def empty_figure(title: str, message: str) -> go.Figure:
    """A blank chart carrying a message (e.g. "no contacts recorded")."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#6e7781"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=240)


# ------------------------------------------------------------------------------------------------
# Overview
# ------------------------------------------------------------------------------------------------

def trend_figure(trends: pd.DataFrame, columns: Iterable[str], title: str, *, unit: str = "count",
                 names: dict[str, str] | None = None, currency: str = "EUR", kind: str = "line") -> go.Figure:
    """Monthly lines (or bars) of one or more metric columns.

    Parameters
    ----------
    trends : pandas.DataFrame
        One row per month with a ``month`` column.
    columns : iterable of str
        Metric columns to draw.
    unit : str
        ``count``, ``cents`` (drawn in currency units), ``rate`` (drawn in %), ``minutes``.
    names : dict, optional
        Legend names by column.
    kind : str
        ``line`` or ``bar``.
    """
    fig = go.Figure()
    names = names or {}
    for i, col in enumerate(columns):
        y = trends[col].astype("float64")
        if unit == "cents":
            y = y / 100
        elif unit == "rate":
            y = y * 100
        trace = go.Bar if kind == "bar" else go.Scatter
        extra = {} if kind == "bar" else {"mode": "lines+markers"}
        fig.add_trace(trace(x=trends["month"], y=y, name=names.get(col, col.replace("_", " ")),
                            marker_color=COLORS[i % len(COLORS)], **extra))
    suffix = {"cents": "", "rate": "%", "minutes": " min"}.get(unit, "")
    prefix = _symbol(currency) if unit == "cents" else ""
    fig.update_yaxes(tickprefix=prefix, ticksuffix=suffix, rangemode="tozero")
    return _layout(fig, title, barmode="group")


# ------------------------------------------------------------------------------------------------
# Agent desk
# ------------------------------------------------------------------------------------------------

def invoice_history_figure(invoices: pd.DataFrame, *, currency: str = "EUR") -> go.Figure:
    """The customer's recent invoices: total per period, with discounts and credits shown."""
    if invoices.empty:
        return empty_figure("Recent invoices", "No invoices yet")
    df = invoices.sort_values("period_start")
    x = pd.to_datetime(df["period_start"]).dt.strftime("%Y-%m")
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=df["total_cents"] / 100, name="total", marker_color=COLORS[0],
                         text=[f"{_symbol(currency)}{v / 100:,.2f}" for v in df["total_cents"]],
                         textposition="outside"))
    for col, name, color in (("discount_cents", "discount", COLORS[2]), ("credit_cents", "credit", COLORS[3])):
        if col in df.columns and df[col].fillna(0).any():
            fig.add_trace(go.Bar(x=x, y=-df[col].fillna(0) / 100, name=name, marker_color=color))
    fig.update_yaxes(tickprefix=_symbol(currency))
    fig.update_xaxes(type="category")
    return _layout(fig, "Recent invoices", barmode="relative", height=300)


def peer_figure(peers, *, currency: str = "EUR") -> go.Figure:
    """What peers paid (quartile box) against what this customer paid (marker)."""
    if peers is None or not peers.enough_peers:
        return empty_figure("What peers pay", "Not enough peers to compare")
    s = _symbol(currency)
    fig = go.Figure()
    fig.add_trace(go.Bar(y=["peers"], x=[(peers.p75_cents - peers.p25_cents) / 100], base=[peers.p25_cents / 100],
                         orientation="h", marker_color="#c8d7f5", name="middle half of peers",
                         hovertemplate=f"{s}%{{base:,.2f}} to {s}%{{x:,.2f}}<extra></extra>"))
    fig.add_trace(go.Scatter(y=["peers"], x=[peers.median_cents / 100], mode="markers", name="peer median",
                             marker=dict(symbol="line-ns", size=28, line=dict(width=3, color=COLORS[0]))))
    fig.add_trace(go.Scatter(y=["peers"], x=[peers.customer_cents / 100], mode="markers", name="this customer",
                             marker=dict(symbol="diamond", size=16, color=COLORS[1])))
    fig.update_xaxes(tickprefix=s)
    return _layout(fig, f"What peers on {peers.plan_name} ({peers.tenure_band}) paid for "
                        f"{peers.period_start:%Y-%m}", height=220)


def risk_reasons_figure(reasons: pd.DataFrame) -> go.Figure:
    """Reasons behind a churn-risk score: one bar per reason.

    ``reasons``: columns ``reason`` and ``contribution``, or the ``feature``, ``value`` and ``delta``
    (risk points added) of :meth:`models.churn_risk.ChurnRiskModel.reasons`.
    """
    if reasons is None or reasons.empty:
        return empty_figure("Why this risk", "No reasons available")
    if "contribution" not in reasons.columns and {"feature", "delta"} <= set(reasons.columns):
        label = reasons["feature"].astype(str).str.replace("_", " ")
        if "value" in reasons.columns:
            label = label + " = " + reasons["value"].astype(str)
        reasons = pd.DataFrame({"reason": label, "contribution": reasons["delta"].astype("float64")})
    df = reasons.sort_values("contribution")
    colors = [COLORS[1] if v > 0 else COLORS[2] for v in df["contribution"]]
    fig = go.Figure(go.Bar(y=df["reason"], x=df["contribution"], orientation="h", marker_color=colors))
    return _layout(fig, "Why this risk", height=60 + 28 * len(df))


# ------------------------------------------------------------------------------------------------
# Invoicing
# ------------------------------------------------------------------------------------------------

def ageing_figure(ageing: pd.DataFrame, *, currency: str = "EUR") -> go.Figure:
    """Open receivables by days past due (the buckets of billing.account.overdue_ageing)."""
    if ageing.empty or not ageing["amount_cents"].any():
        return empty_figure("Overdue ageing", "Nothing is open")
    colors = [COLORS[2]] + [COLORS[3]] * 2 + [COLORS[1]] * (len(ageing) - 3)
    fig = go.Figure(go.Bar(x=ageing["bucket"], y=ageing["amount_cents"] / 100, marker_color=colors[:len(ageing)],
                           customdata=ageing[["invoice_count", "customer_count"]],
                           hovertemplate="%{x}: %{y:,.2f}<br>%{customdata[0]} invoices, "
                                         "%{customdata[1]} customers<extra></extra>"))
    fig.update_yaxes(tickprefix=_symbol(currency))
    fig.update_xaxes(title="days past due", type="category")
    return _layout(fig, "Overdue ageing")


# ------------------------------------------------------------------------------------------------
# Discount strategies
# ------------------------------------------------------------------------------------------------

def forest_figure(effects: pd.DataFrame, *, title: str = "Effect of each offer on 180-day retention",
                  percent: bool = True) -> go.Figure:
    """Forest plot: per offer, each estimate with its interval.

    Parameters
    ----------
    effects : pandas.DataFrame
        Long form, one row per offer and estimate: ``offer``, ``estimate`` (``naive``,
        ``adjusted``, ``holdout`` ...), ``effect``, ``lo``, ``hi`` (differences in probability).
    """
    if effects.empty:
        return empty_figure(title, "No estimates")
    scale = 100 if percent else 1
    offers = list(dict.fromkeys(effects["offer"]))
    fig = go.Figure()
    for est, grp in effects.groupby("estimate", sort=False):
        color = ESTIMATE_COLORS.get(est, COLORS[len(fig.data) % len(COLORS)])
        eff = grp["effect"].astype("float64") * scale
        fig.add_trace(go.Scatter(
            x=eff, y=grp["offer"], mode="markers", name=str(est), marker=dict(size=10, color=color),
            error_x=dict(type="data", symmetric=False, array=grp["hi"].astype("float64") * scale - eff,
                         arrayminus=eff - grp["lo"].astype("float64") * scale, color=color)))
    fig.add_vline(x=0, line_dash="dash", line_color="#6e7781")
    fig.update_xaxes(title="change in retention (percentage points)" if percent else "effect")
    fig.update_yaxes(categoryorder="array", categoryarray=offers[::-1])
    return _layout(fig, title, height=120 + 60 * len(offers), scattermode="group")


def heatmap_figure(matrix: pd.DataFrame, title: str, *, percent: bool = True, diverging: bool = False,
                   x_title: str = "", y_title: str = "") -> go.Figure:
    """A heatmap of a matrix (rows = index, columns = columns), e.g. cohort retention or effect by
    segment; values shown in % when ``percent``."""
    if matrix.empty:
        return empty_figure(title, "No data")
    z = matrix.to_numpy(dtype="float64") * (100 if percent else 1)
    text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.0f}%" if percent else f"{v:.2g}")(
        np.nan_to_num(z)))
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(c) for c in matrix.columns], y=[str(i) for i in matrix.index], text=text,
        texttemplate="%{text}", colorscale="RdBu" if diverging else "Blues", zmid=0 if diverging else None,
        colorbar=dict(ticksuffix="%" if percent else "")))
    fig.update_xaxes(title=x_title, type="category")
    fig.update_yaxes(title=y_title, type="category", autorange="reversed")
    return _layout(fig, title, height=max(300, 40 + 24 * len(matrix)))


def strategy_figure(strategies: pd.DataFrame, *, currency: str = "EUR", budget_cents: float | None = None) -> go.Figure:
    """Net value of each strategy with its interval (columns ``strategy``, ``net_value_cents``,
    optional ``lo_cents``, ``hi_cents``, ``cost_cents``); strategies over the budget greyed out."""
    if strategies.empty:
        return empty_figure("Strategies", "No strategies compared")
    df = strategies.sort_values("net_value_cents")
    over = (df["cost_cents"] > budget_cents) if budget_cents is not None and "cost_cents" in df else \
        pd.Series(False, index=df.index)
    colors = np.where(over, "#d0d7de", COLORS[0])
    err = None
    if {"lo_cents", "hi_cents"} <= set(df.columns):
        err = dict(type="data", symmetric=False, array=(df["hi_cents"] - df["net_value_cents"]) / 100,
                   arrayminus=(df["net_value_cents"] - df["lo_cents"]) / 100, color="#57606a")
    fig = go.Figure(go.Bar(y=df["strategy"], x=df["net_value_cents"] / 100, orientation="h", marker_color=colors,
                           error_x=err))
    fig.update_xaxes(tickprefix=_symbol(currency), title="net value (retained revenue minus discount cost)")
    return _layout(fig, "Strategies compared", height=120 + 40 * len(df))
