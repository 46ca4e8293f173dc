"""Catalogue use cases: plans and their price history, tax rates by region, the offer catalogue."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

import duckdb

from billing.results import INVALID_INPUT, NOT_FOUND, Result, failure, success
from data.db import next_id, transaction

OFFER_KINDS = ("percent_off", "fixed_credit", "free_months", "plan_move")


def define_plan(con: duckdb.DuckDBPyConnection, *, code: str, name: str, rank: int,
                monthly_price_cents: int, usage_allowance_units: int, overage_price_cents: int,
                effective_from: dt.date, currency: str = "EUR") -> Result:
    """Create a plan with its first price.

    Returns
    -------
    Result
        ``data['plan_id']`` on success; ``invalid_input`` for a duplicate code or bad amounts.
    """
    if min(monthly_price_cents, usage_allowance_units, overage_price_cents) < 0:
        return failure(INVALID_INPUT, "prices and allowance must not be negative")
    if effective_from.day != 1:
        return failure(INVALID_INPUT, "a price takes effect on the first day of a month")
    if con.execute("SELECT count(*) FROM plans WHERE code = ?", [code]).fetchall()[0][0]:
        return failure(INVALID_INPUT, f"plan code {code!r} already exists")
    with transaction(con):
        plan_id = next_id(con, "plans", "plan_id")
        con.execute("INSERT INTO plans (plan_id, code, name, currency, rank) VALUES (?, ?, ?, ?, ?)",
                    [plan_id, code, name, currency, rank])
        con.execute("INSERT INTO plan_prices VALUES (?, ?, ?, ?, ?)",
                    [plan_id, effective_from, monthly_price_cents, usage_allowance_units,
                     overage_price_cents])
    return success(f"plan {code} created", plan_id=plan_id)


def set_plan_price(con: duckdb.DuckDBPyConnection, *, plan_id: int, effective_from: dt.date,
                   monthly_price_cents: int, usage_allowance_units: int | None = None,
                   overage_price_cents: int | None = None) -> Result:
    """Record a new price of a plan from a period on (a price rise or cut); history is kept.

    Notes
    -----
    The price in effect for a period is the row with the latest ``effective_from <= period_start``.
    Allowance and overage price default to the ones in effect before.
    """
    if effective_from.day != 1:
        return failure(INVALID_INPUT, "a price takes effect on the first day of a month")
    if monthly_price_cents < 0:
        return failure(INVALID_INPUT, "price must not be negative")
    prev = con.execute(
        "SELECT usage_allowance_units, overage_price_cents FROM plan_prices WHERE plan_id = ? "
        "AND effective_from <= ? ORDER BY effective_from DESC LIMIT 1", [plan_id, effective_from]).fetchall()
    if not prev:
        return failure(NOT_FOUND, f"plan {plan_id} has no earlier price")
    allowance = prev[0][0] if usage_allowance_units is None else usage_allowance_units
    overage = prev[0][1] if overage_price_cents is None else overage_price_cents
    with transaction(con):
        con.execute("DELETE FROM plan_prices WHERE plan_id = ? AND effective_from = ?",
                    [plan_id, effective_from])
        con.execute("INSERT INTO plan_prices VALUES (?, ?, ?, ?, ?)",
                    [plan_id, effective_from, monthly_price_cents, allowance, overage])
    return success("price recorded", plan_id=plan_id, effective_from=effective_from)


def set_tax_rate(con: duckdb.DuckDBPyConnection, *, region: str, rate_bp: int,
                 effective_from: dt.date) -> Result:
    """Record the tax rate of a region (basis points, 2000 = 20 %) from a date on."""
    if not 0 <= rate_bp <= 10_000:
        return failure(INVALID_INPUT, "tax rate must be between 0 and 10000 basis points")
    with transaction(con):
        con.execute("DELETE FROM tax_rates WHERE region = ? AND effective_from = ?", [region, effective_from])
        con.execute("INSERT INTO tax_rates VALUES (?, ?, ?)", [region, effective_from, rate_bp])
    return success("tax rate recorded", region=region)


def define_offer(con: duckdb.DuckDBPyConnection, *, code: str, name: str, kind: str,
                 min_tier: int = 1, percent_off: int | None = None, credit_cents: int | None = None,
                 cycles: int | None = None, target_plan_id: int | None = None,
                 min_tenure_months: int = 0, cooldown_months: int = 0,
                 eligible_reasons: Sequence[str] | None = None) -> Result:
    """Add an offer to the catalogue.

    Notes
    -----
    percent_off needs ``percent_off`` and ``cycles``; free_months needs ``cycles`` (100 % each);
    fixed_credit needs ``credit_cents``; plan_move may name ``target_plan_id`` (default: the next
    cheaper plan by rank). ``min_tier`` is the lowest agent tier allowed to grant it.
    """
    if kind not in OFFER_KINDS:
        return failure(INVALID_INPUT, f"offer kind must be one of {', '.join(OFFER_KINDS)}")
    if kind == "percent_off" and not (percent_off and cycles):
        return failure(INVALID_INPUT, "percent_off offers need percent_off and cycles")
    if kind == "free_months":
        if not cycles:
            return failure(INVALID_INPUT, "free_months offers need cycles")
        percent_off = 100
    if kind == "fixed_credit" and not credit_cents:
        return failure(INVALID_INPUT, "fixed_credit offers need credit_cents")
    if kind in ("fixed_credit", "plan_move"):
        cycles = 1
    if con.execute("SELECT count(*) FROM offers WHERE code = ?", [code]).fetchall()[0][0]:
        return failure(INVALID_INPUT, f"offer code {code!r} already exists")
    with transaction(con):
        offer_id = next_id(con, "offers", "offer_id")
        con.execute(
            "INSERT INTO offers (offer_id, code, name, kind, percent_off, credit_cents, cycles, "
            "target_plan_id, min_tier, min_tenure_months, cooldown_months, eligible_reasons) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [offer_id, code, name, kind, percent_off, credit_cents, cycles, target_plan_id, min_tier,
             min_tenure_months, cooldown_months, list(eligible_reasons) if eligible_reasons else None])
    return success(f"offer {code} created", offer_id=offer_id)
