"""Plotly figures of discount effectiveness and strategy comparison.

Pure functions from the result tables of :mod:`analytics.strategies` (live results or a stored
run) to figures: the forest plot of naive / adjusted / holdout effects per offer, strategy bars,
and the effect-by-segment heatmap. Effects are drawn in percentage points of 180-day retention,
money in currency units (it arrives in cents).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analytics import figures_pages as fp
from data.money import CURRENCY_SYMBOLS

ESTIMATES = (("naive", "naive"), ("adjusted", "adjusted (AIPW)"), ("holdout", "randomized holdout"))
METRICS = {
    "net_value_per_1000_cents": ("Net value per 1,000 contacts against no offers", True),
    "revenue_kept_per_1000_cents": ("Revenue kept per 1,000 contacts against no offers", True),
    "discount_cost_per_1000_cents": ("Discount cost per 1,000 contacts", True),
    "kept_per_1000": ("Customers kept per 1,000 contacts against no offers", False),
}


def _names(offers: pd.DataFrame) -> pd.Series:
    """Display name per row: the ``name`` (or ``offer``) column, else the code (index or ``code``)."""
    codes = offers["code"] if "code" in offers.columns else pd.Series(offers.index, index=offers.index)
    for col in ("name", "offer"):
        if col in offers.columns:
            return offers[col].where(offers[col].notna(), codes).astype(str)
    return codes.astype(str)


def forest_plot(offers: pd.DataFrame, *, truth: Mapping | pd.Series | None = None,
                title: str = "Effect of each offer on 180-day retention") -> go.Figure:
    """Forest plot: per offer, the naive, adjusted and holdout estimates with 95 % intervals.

    Parameters
    ----------
    offers : pandas.DataFrame
        One row per offer (index or column ``code``) with ``naive``, ``naive_lo``, ``naive_hi``,
        ``adjusted``..., ``holdout``... (shares), and optionally ``name``: the ``offers`` table of
        :class:`~analytics.strategies.EffectivenessResult` or of a stored run.
    truth : mapping or Series, optional
        Offer code -> true average effect (simulated worlds only), drawn as black diamonds.
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
    """
    if offers is None or offers.empty:
        return fp.empty_figure(title, "No estimates")
    codes = list(offers["code"] if "code" in offers.columns else offers.index)
    names = list(_names(offers))
    parts = []
    for col, label in ESTIMATES:
        if col not in offers.columns:
            continue
        parts.append(pd.DataFrame({"offer": names, "estimate": label, "effect": offers[col].to_numpy(dtype=float),
                                   "lo": offers[f"{col}_lo"].to_numpy(dtype=float),
                                   "hi": offers[f"{col}_hi"].to_numpy(dtype=float)}))
    long = pd.concat(parts, ignore_index=True).dropna(subset=["effect"])
    colors = {label: fp.ESTIMATE_COLORS.get(col) for col, label in ESTIMATES}
    fig = go.Figure()
    for label, grp in long.groupby("estimate", sort=False):
        color = colors.get(label) or fp.COLORS[len(fig.data) % len(fp.COLORS)]
        eff = grp["effect"] * 100
        fig.add_trace(go.Scatter(
            x=eff, y=grp["offer"], mode="markers", name=label, marker=dict(size=10, color=color),
            error_x=dict(type="data", symmetric=False, array=grp["hi"] * 100 - eff,
                         arrayminus=eff - grp["lo"] * 100, color=color),
            hovertemplate="%{y}: %{x:.1f} pp<extra>" + label + "</extra>"))
    if truth is not None:
        t = pd.Series(dict(truth)) if not isinstance(truth, pd.Series) else truth
        xs = [float(t.get(c, np.nan)) * 100 for c in codes]
        fig.add_trace(go.Scatter(x=xs, y=names, mode="markers", name="truth (simulation)",
                                 marker=dict(symbol="diamond", size=11, color="black"),
                                 hovertemplate="%{y}: true %{x:.1f} pp<extra></extra>"))
    fig.add_vline(x=0, line_dash="dash", line_color="#6e7781")
    fig.update_xaxes(title="change in 180-day retention (percentage points)")
    fig.update_yaxes(categoryorder="array", categoryarray=names[::-1])
    return fp._layout(fig, title, height=140 + 60 * len(names), scattermode="group")


def strategy_bars(strategies: pd.DataFrame, *, metric: str = "net_value_per_1000_cents", currency: str = "EUR",
                  title: str | None = None) -> go.Figure:
    """Horizontal bars of one strategy metric with its 95 % interval.

    Parameters
    ----------
    strategies : pandas.DataFrame
        :func:`~analytics.strategies.compare_strategies` output (or a stored run's strategies):
        one row per strategy with ``label`` and the metric columns (``<metric>``, ``<metric>_lo``,
        ``<metric>_hi`` where the metric has an interval; money metrics end ``_cents``).
    metric : str
        One of :data:`METRICS`.
    currency : str
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    default_title, money = METRICS[metric]
    title = title or default_title
    if strategies is None or strategies.empty:
        return fp.empty_figure(title, "No strategies compared")
    df = strategies.copy()
    labels = df["label"] if "label" in df.columns else pd.Series(df.index.astype(str), index=df.index)
    scale = 0.01 if money else 1.0
    x = df[metric].astype("float64") * scale
    base = metric[:-len("_cents")] if metric.endswith("_cents") else metric
    lo_col = f"{base}_lo_cents" if money else f"{base}_lo"
    hi_col = f"{base}_hi_cents" if money else f"{base}_hi"
    err = None
    if lo_col in df.columns and hi_col in df.columns:
        err = dict(type="data", symmetric=False, array=df[hi_col].astype("float64") * scale - x,
                   arrayminus=x - df[lo_col].astype("float64") * scale, color="#57606a")
    key = df.index.astype(str) if df.index.name == "strategy" else df.get("strategy", labels).astype(str)
    colors = [fp.COLORS[1] if k == "current_practice" else "#6e7781" if k == "no_offers"
              else fp.COLORS[2] if str(k).startswith("targeted") else fp.COLORS[0] for k in key]
    fig = go.Figure(go.Bar(y=labels, x=x, orientation="h", marker_color=colors, error_x=err,
                           hovertemplate="%{y}: %{x:,.1f}<extra></extra>"))
    fig.add_vline(x=0, line_color="#6e7781")
    symbol = CURRENCY_SYMBOLS.get(currency, currency + " ")
    fig.update_xaxes(tickprefix=symbol if money else "", title=title)
    fig.update_yaxes(categoryorder="array", categoryarray=list(labels)[::-1])
    return fp._layout(fig, title, height=120 + 36 * len(df))


def segment_heatmap(segments: pd.DataFrame, *, offers: pd.DataFrame | None = None, dimension: str | None = None,
                    value: str = "dr", title: str | None = None) -> go.Figure:
    """Heatmap of the adjusted effect by group (rows) and offer (columns), in percentage points.

    Parameters
    ----------
    segments : pandas.DataFrame
        Long form (``dimension``, ``grp``, ``code``, ``dr``, ``cate_mean`` ...), as in
        :attr:`EffectivenessResult.segments` or a stored run.
    offers : pandas.DataFrame, optional
        The offers table, to order columns and name them.
    dimension : str, optional
        Only this dimension (``segment``, ``plan``, ``reason``, ``tenure_band``); default all,
        rows labelled ``"dimension: group"``.
    value : str, default "dr"
        ``dr`` (group AIPW mean, with an interval in the hover) or ``cate_mean``.
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
    """
    title = title or "Effect on 180-day retention by group and offer (percentage points)"
    if segments is None or segments.empty:
        return fp.empty_figure(title, "No effects by group")
    seg = segments if dimension is None else segments[segments["dimension"] == dimension]
    if seg.empty:
        return fp.empty_figure(title, f"No effects by {dimension}")
    names = {}
    order = list(dict.fromkeys(seg["code"]))
    if offers is not None and not offers.empty:
        codes = list(offers["code"] if "code" in offers.columns else offers.index)
        names = dict(zip(codes, _names(offers)))
        order = [c for c in codes if c in set(seg["code"])]
    rows = seg["grp"].astype(str) if dimension is not None else \
        seg["dimension"].str.replace("_", " ") + ": " + seg["grp"].astype(str)
    frame = seg.assign(row=rows.to_numpy())
    matrix = frame.pivot_table(index="row", columns="code", values=value, aggfunc="first", sort=False)
    matrix = matrix[[c for c in order if c in matrix.columns]]
    matrix.columns = [names.get(c, c) for c in matrix.columns]
    fig = fp.heatmap_figure(matrix, title, percent=True, diverging=True, x_title="offer", y_title="")
    return fig
