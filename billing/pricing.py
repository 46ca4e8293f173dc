"""Pure billing arithmetic: periods, proration, usage, discounts, tax and credits.

No database here. ``billing/run_billing.py`` computes the same rules set-based in SQL for every
subscription at once; the tests check the two agree, and pages use these functions for previews
(a plan change's proration, a discount's effect on the next bill).
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

from data.money import percent_of, prorate, tax_of


def month_start(day: dt.date) -> dt.date:
    """First day of the month containing ``day``."""
    return day.replace(day=1)


def add_months(period_start: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` after ``period_start``'s month."""
    index = period_start.year * 12 + (period_start.month - 1) + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_end(period_start: dt.date) -> dt.date:
    """Last day of the month of ``period_start``."""
    return period_start.replace(day=calendar.monthrange(period_start.year, period_start.month)[1])


def days_in_month(period_start: dt.date) -> int:
    """Number of days of the month of ``period_start``."""
    return calendar.monthrange(period_start.year, period_start.month)[1]


def parse_period(text: str) -> dt.date:
    """Parse ``YYYY-MM`` into the period's first day.

    Raises
    ------
    ValueError
        With a one-line message when the text is not a valid ``YYYY-MM`` month.
    """
    raw = str(text).strip()
    parts = raw.split("-")
    if len(parts) != 2 or len(parts[0]) != 4 or not parts[0].isdigit() or not parts[1].isdigit() \
            or len(parts[1]) not in (1, 2):
        raise ValueError(f"period must look like YYYY-MM, got {text!r}")
    year, month = int(parts[0]), int(parts[1])
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 01 to 12, got {text!r}")
    if not 1900 <= year <= 2999:
        raise ValueError(f"year out of range in {text!r}")
    return dt.date(year, month, 1)


def active_days(start: dt.date, end: dt.date | None, period_start: dt.date) -> int:
    """Days of the period that a subscription serving ``start..end`` (inclusive) covers.

    Notes
    -----
    ``max(0, min(end, period_end) - max(start, period_start) + 1)`` with an open end as period_end.
    """
    period_end = month_end(period_start)
    last = period_end if end is None else min(end, period_end)
    first = max(start, period_start)
    return max(0, (last - first).days + 1)


def plan_charge(monthly_price_cents: int, days: int, period_days: int) -> int:
    """Plan charge for ``days`` of a ``period_days`` period: the full price, or prorated by day.

    Notes
    -----
    ``round_half_away(price * days / period_days)``; exactly the price for a full period.
    """
    return prorate(monthly_price_cents, days, period_days)


def usage_charge(units: int, allowance_units: int, overage_price_cents: int) -> tuple[int, int]:
    """Units over the allowance and their charge: ``(over, over * overage_price)``.

    Notes
    -----
    The allowance is per period and not prorated for part periods.
    """
    over = max(0, int(units) - int(allowance_units))
    return over, over * int(overage_price_cents)


def apply_discounts(plan_charge_cents: int, percents: list[int]) -> list[int]:
    """Amounts (positive) that each percent discount takes off the plan charge, in grant order.

    Notes
    -----
    Each discount is ``percent`` % of the plan charge (half away from zero), applied in the order
    granted and capped so the running total never exceeds the plan charge: the charge never goes
    below zero. A free month is a 100 % discount.
    """
    applied = []
    used = 0
    for pct in percents:
        want = percent_of(plan_charge_cents, pct)
        take = max(0, min(want, plan_charge_cents - used))
        applied.append(take)
        used += take
    return applied


def apply_credits(capacity_cents: list[int], credits_cents: list[int]) -> list[list[int]]:
    """Allocate credits (in grant order) to invoices (in invoice order), each capped at its capacity.

    Returns ``alloc[i][j]``: amount of credit j applied to invoice i. What no invoice can take is
    carried forward to later periods.

    Notes
    -----
    Credits and capacities are laid end to end; credit j covers invoice i by the overlap of their
    intervals. This is the rule the SQL run implements with cumulative sums.
    """
    alloc = [[0] * len(credits_cents) for _ in capacity_cents]
    inv_start = 0
    for i, cap in enumerate(capacity_cents):
        cr_start = 0
        for j, amount in enumerate(credits_cents):
            lo = max(inv_start, cr_start)
            hi = min(inv_start + cap, cr_start + amount)
            alloc[i][j] = max(0, hi - lo)
            cr_start += amount
        inv_start += cap
    return alloc


@dataclass(frozen=True)
class InvoiceCalc:
    """One invoice computed by the rules: amounts in cents."""

    plan_cents: int
    usage_cents: int
    charges_cents: int
    discounts_cents: list[int] = field(default_factory=list)
    tax_cents: int = 0
    credit_cents: int = 0

    @property
    def subtotal_cents(self) -> int:
        return self.plan_cents + self.usage_cents + self.charges_cents

    @property
    def discount_cents(self) -> int:
        return sum(self.discounts_cents)

    @property
    def net_cents(self) -> int:
        return self.subtotal_cents - self.discount_cents

    @property
    def total_cents(self) -> int:
        return self.net_cents + self.tax_cents - self.credit_cents


def compute_invoice(*, monthly_price_cents: int, days: int, period_days: int, units: int = 0,
                    allowance_units: int = 0, overage_price_cents: int = 0, charges_cents: int = 0,
                    discount_percents: list[int] | None = None, tax_rate_bp: int = 0,
                    credit_available_cents: int = 0) -> InvoiceCalc:
    """Compute one invoice by the billing rules (DESIGN.md section 4).

    Notes
    -----
    plan = prorated price; usage = over-allowance units x overage price; discounts apply to the plan
    charge only, in grant order, never below zero; net = plan + usage + charges - discounts;
    tax = round_half_away(net x rate); credit = min(available, net + tax); total = net + tax - credit.
    """
    plan = plan_charge(monthly_price_cents, days, period_days)
    _, usage = usage_charge(units, allowance_units, overage_price_cents)
    discounts = apply_discounts(plan, list(discount_percents or []))
    net = plan + usage + charges_cents - sum(discounts)
    tax = tax_of(net, tax_rate_bp)
    credit = max(0, min(credit_available_cents, net + tax))
    return InvoiceCalc(plan, usage, charges_cents, discounts, tax, credit)
