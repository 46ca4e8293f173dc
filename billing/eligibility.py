"""Offer eligibility for the care desk: may this customer get this offer now, and may this agent grant it?

The rules are the read-only query of :mod:`data.eligibility` (shared with analytics and models);
this module answers one candidate as a :class:`billing.results.Result` for the agent desk and
re-exports the bulk function for billing's own use.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from billing.results import NOT_ELIGIBLE, NOT_FOUND, OVER_AUTHORITY, Result, failure, success
from data.eligibility import COLUMNS, WHY_NOT, _evaluate, offer_eligibility  # noqa: F401  (re-exported)

def check_offer(con: duckdb.DuckDBPyConnection, customer_id: int, offer_id: int, *, at: dt.datetime,
                reason: str | None = None, agent_tier: int | None = None) -> Result:
    """Check one offer for one customer (the agent desk); see :func:`offer_eligibility`.

    Returns
    -------
    Result
        ``ok`` when eligible and (if ``agent_tier`` is given) the tier suffices; ``not_found``
        (offer or customer unknown), ``not_eligible`` (``data['why_not']`` says why) or
        ``over_authority`` (eligible, but the offer needs a higher tier). ``data``: eligible,
        why_not, may_grant, needs_tier, kind, first_period (date or None), target_plan_id.
    """
    out = offer_eligibility(con, pd.DataFrame([{"customer_id": customer_id, "offer_id": offer_id,
                                                "at": at, "reason": reason, "agent_tier": agent_tier}]))
    r = out.iloc[0]
    data = {
        "eligible": bool(r["eligible"]),
        "why_not": None if pd.isna(r["why_not"]) else str(r["why_not"]),
        "may_grant": bool(r["may_grant"]),
        "needs_tier": None if pd.isna(r["needs_tier"]) else int(r["needs_tier"]),
        "kind": None if pd.isna(r["kind"]) else str(r["kind"]),
        "first_period": None if pd.isna(r["first_period"]) else pd.Timestamp(r["first_period"]).date(),
        "target_plan_id": None if pd.isna(r["target_plan_id"]) else int(r["target_plan_id"]),
    }
    if data["why_not"] in ("offer_not_found", "customer_not_found"):
        return failure(NOT_FOUND, r["message"], **data)
    if not data["eligible"]:
        return failure(NOT_ELIGIBLE, r["message"], **data)
    if agent_tier is not None and not data["may_grant"]:
        return failure(OVER_AUTHORITY, f"{r['message']}; your tier is {agent_tier}", **data)
    return success(r["message"], **data)
