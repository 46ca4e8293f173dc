"""Explain an invoice: its lines and, line by line, why it differs from the customer's previous one.

Read-only. The agent desk shows this when a customer calls about a bill; the printable invoice
(:mod:`billing.render_invoice`) carries it too. Every change has a kind, an amount delta in cents and a
one-line reason; the deltas add up exactly to the difference between the two totals.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from data.money import format_cents, format_invoice_number

CHANGE_KINDS = ("first_invoice", "plan_change", "price_change", "proration", "usage", "charge",
                "discount_started", "discount_ended", "discount_changed", "credit", "tax")
PLAN_KINDS = ("plan", "proration")


@dataclass(frozen=True)
class InvoiceHeader:
    """An invoice's header (amounts in cents of ``currency``)."""

    invoice_id: int
    number: str
    customer_id: int
    subscription_id: int
    plan_id: int
    plan_name: str
    period_start: dt.date
    period_end: dt.date
    issued_on: dt.date
    due_on: dt.date
    currency: str
    subtotal_cents: int
    discount_cents: int
    tax_cents: int
    credit_cents: int
    total_cents: int
    tax_rate_bp: int
    status: str
    subscription_start: dt.date
    subscription_end: dt.date | None


@dataclass(frozen=True)
class InvoiceLine:
    """One invoice line; ``amount_cents`` is signed (discount and credit lines are negative)."""

    line_no: int
    kind: str
    description: str
    quantity: int | None
    unit_amount_cents: int | None
    amount_cents: int
    grant_id: int | None
    charge_id: int | None


@dataclass(frozen=True)
class Change:
    """One reason the invoice differs from the previous one.

    Attributes
    ----------
    kind : str
        One of :data:`CHANGE_KINDS`.
    amount_delta_cents : int
        What this change adds to (positive) or takes off (negative) the total.
    reason : str
        One line for people.
    """

    kind: str
    amount_delta_cents: int
    reason: str


@dataclass(frozen=True)
class InvoiceExplanation:
    """An invoice, its lines, the previous invoice compared with it, and the changes between them."""

    invoice: InvoiceHeader
    lines: tuple[InvoiceLine, ...]
    previous: InvoiceHeader | None
    previous_lines: tuple[InvoiceLine, ...]
    changes: tuple[Change, ...]

    @property
    def total_delta_cents(self) -> int:
        """This total minus the previous total (the whole total for a first invoice)."""
        return self.invoice.total_cents - (self.previous.total_cents if self.previous else 0)

    @property
    def summary(self) -> str:
        """One line: how much the bill went up or down, and the biggest reason."""
        cur = self.invoice.currency
        if self.previous is None:
            return f"First invoice: {format_cents(self.invoice.total_cents, cur)}."
        delta = self.total_delta_cents
        if delta == 0:
            head = f"Same total as the previous invoice ({format_cents(self.invoice.total_cents, cur)})"
        else:
            head = (f"{format_cents(abs(delta), cur)} {'more' if delta > 0 else 'less'} than the previous "
                    f"invoice ({format_cents(self.previous.total_cents, cur)} -> "
                    f"{format_cents(self.invoice.total_cents, cur)})")
        if not self.changes:
            return head + "."
        main = max(self.changes, key=lambda c: abs(c.amount_delta_cents))
        return f"{head}; mainly: {main.reason}"


_HEADER_SQL = """
SELECT i.invoice_id, i.customer_id, i.subscription_id, i.plan_id, p.name, i.period_start, i.period_end,
       i.issued_on, i.due_on, i.currency, i.subtotal_cents, i.discount_cents, i.tax_cents,
       i.credit_cents, i.total_cents, i.tax_rate_bp, i.status, s.start_date, s.end_date
FROM invoices i
JOIN plans p USING (plan_id)
LEFT JOIN subscriptions s USING (subscription_id)
WHERE i.invoice_id = ?
"""

# The previous invoice: the same customer's latest earlier period; within it the same subscription,
# else the same plan, else the latest invoice number.
_PREVIOUS_SQL = """
SELECT i.invoice_id
FROM invoices i
WHERE i.customer_id = $customer_id AND i.period_start < $period_start AND i.status <> 'void'
ORDER BY i.period_start DESC, (i.subscription_id = $subscription_id) DESC, (i.plan_id = $plan_id) DESC,
         i.invoice_id DESC
LIMIT 1
"""


def _header(con: duckdb.DuckDBPyConnection, invoice_id: int) -> InvoiceHeader | None:
    rows = con.execute(_HEADER_SQL, [invoice_id]).fetchall()
    if not rows:
        return None
    r = rows[0]
    return InvoiceHeader(
        invoice_id=int(r[0]), number=format_invoice_number(r[0]), customer_id=int(r[1]),
        subscription_id=int(r[2]), plan_id=int(r[3]), plan_name=r[4], period_start=r[5], period_end=r[6],
        issued_on=r[7], due_on=r[8], currency=r[9], subtotal_cents=int(r[10]), discount_cents=int(r[11]),
        tax_cents=int(r[12]), credit_cents=int(r[13]), total_cents=int(r[14]), tax_rate_bp=int(r[15]),
        status=r[16], subscription_start=r[17], subscription_end=r[18])


def _lines(con: duckdb.DuckDBPyConnection, invoice_id: int) -> tuple[InvoiceLine, ...]:
    rows = con.execute("""
        SELECT line_no, kind, description, quantity, unit_amount_cents, amount_cents, grant_id, charge_id
        FROM invoice_lines WHERE invoice_id = ? ORDER BY line_no""", [invoice_id]).fetchall()
    return tuple(InvoiceLine(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7]) for r in rows)


def _sum(lines: tuple[InvoiceLine, ...], *kinds: str) -> int:
    return sum(line.amount_cents for line in lines if line.kind in kinds)


def _monthly_price(lines: tuple[InvoiceLine, ...]) -> int:
    """The monthly price the plan line was computed from (its unit amount), else its amount."""
    for line in lines:
        if line.kind in PLAN_KINDS and line.unit_amount_cents is not None:
            return int(line.unit_amount_cents)
    return _sum(lines, *PLAN_KINDS)


def _days(lines: tuple[InvoiceLine, ...]) -> int | None:
    for line in lines:
        if line.kind in PLAN_KINDS:
            return line.quantity
    return None


def _is_partial(lines: tuple[InvoiceLine, ...]) -> bool:
    return any(line.kind == "proration" for line in lines)


def _coverage(header: InvoiceHeader, lines: tuple[InvoiceLine, ...]) -> str:
    """'the full month' or '12 of 31 days (service started on 2024-03-20)'."""
    if not _is_partial(lines):
        return "the full month"
    period_days = (header.period_end - header.period_start).days + 1
    why = []
    if header.subscription_start and header.subscription_start > header.period_start:
        why.append(f"service started on {header.subscription_start}")
    if header.subscription_end and header.subscription_end < header.period_end:
        why.append(f"service ended on {header.subscription_end}")
    tail = f" ({', '.join(why)})" if why else ""
    return f"{_days(lines)} of {period_days} days{tail}"


def _price_since(con: duckdb.DuckDBPyConnection, plan_id: int, period_start: dt.date) -> dt.date | None:
    rows = con.execute("SELECT max(effective_from) FROM plan_prices WHERE plan_id = ? AND effective_from <= ?",
                       [plan_id, period_start]).fetchall()
    return rows[0][0] if rows else None


def _grouped(lines: tuple[InvoiceLine, ...], kind: str) -> dict[object, tuple[str, int]]:
    """Lines of a kind by grant (or description when no grant): key -> (description, amount)."""
    out: dict[object, tuple[str, int]] = {}
    for line in lines:
        if line.kind != kind:
            continue
        key = line.grant_id if line.grant_id is not None else line.description
        desc, amount = out.get(key, (line.description, 0))
        out[key] = (desc, amount + line.amount_cents)
    return out


def _plan_changes(con, cur: InvoiceHeader, cur_lines, prev: InvoiceHeader, prev_lines) -> list[Change]:
    """Split the plan-charge difference into plan/price change and proration.

    From the previous plan charge P0 to this one P1 through the two monthly prices F0, F1:
    ``(F0 - P0)`` undoes the previous part period, ``(F1 - F0)`` is the plan or price change,
    ``(P1 - F1)`` is this part period; so the pieces sum to ``P1 - P0`` exactly.
    """
    c = cur.currency
    p0, p1 = _sum(prev_lines, *PLAN_KINDS), _sum(cur_lines, *PLAN_KINDS)
    f0, f1 = _monthly_price(prev_lines), _monthly_price(cur_lines)
    changes = []
    if cur.plan_id != prev.plan_id:
        changes.append(Change("plan_change", f1 - f0,
                              f"Plan changed from {prev.plan_name} ({format_cents(f0, c)} a month) to "
                              f"{cur.plan_name} ({format_cents(f1, c)} a month)."))
    elif f1 != f0:
        since = _price_since(con, cur.plan_id, cur.period_start)
        verb = "rose" if f1 > f0 else "fell"
        when = f" from {since:%Y-%m-%d}" if since and since > prev.period_start else ""
        changes.append(Change("price_change", f1 - f0,
                              f"The {cur.plan_name} price {verb} from {format_cents(f0, c)} to "
                              f"{format_cents(f1, c)} a month{when}."))
    proration = (f0 - p0) + (p1 - f1)
    if proration:
        changes.append(Change("proration", proration,
                              f"This invoice charges {_coverage(cur, cur_lines)}: {format_cents(p1, c)}; "
                              f"the previous one charged {_coverage(prev, prev_lines)}: "
                              f"{format_cents(p0, c)}."))
    return changes


def _usage_change(cur: InvoiceHeader, cur_lines, prev_lines) -> list[Change]:
    u0, u1 = _sum(prev_lines, "usage"), _sum(cur_lines, "usage")
    if u0 == u1:
        return []
    q0 = sum(line.quantity or 0 for line in prev_lines if line.kind == "usage")
    q1 = sum(line.quantity or 0 for line in cur_lines if line.kind == "usage")
    c = cur.currency
    return [Change("usage", u1 - u0,
                   f"Usage over the allowance: {q1} units ({format_cents(u1, c)}) against {q0} units "
                   f"({format_cents(u0, c)}) on the previous invoice.")]


def _charge_change(cur: InvoiceHeader, cur_lines, prev_lines) -> list[Change]:
    c0, c1 = _sum(prev_lines, "charge"), _sum(cur_lines, "charge")
    if c0 == c1:
        return []
    c = cur.currency
    names = ", ".join(f"'{line.description}' {format_cents(line.amount_cents, c)}"
                      for line in cur_lines if line.kind == "charge")
    if c1 and not c0:
        reason = f"One-off charges this time: {names}."
    elif c0 and not c1:
        reason = f"No one-off charges this time (the previous invoice had {format_cents(c0, c)})."
    else:
        reason = (f"One-off charges of {format_cents(c1, c)} ({names}) against {format_cents(c0, c)} "
                  f"on the previous invoice.")
    return [Change("charge", c1 - c0, reason)]


def _discount_changes(cur: InvoiceHeader, cur_lines, prev_lines) -> list[Change]:
    c = cur.currency
    before, now = _grouped(prev_lines, "discount"), _grouped(cur_lines, "discount")
    changes = []
    for key, (desc, amount) in now.items():
        if key not in before:
            changes.append(Change("discount_started", amount,
                                  f"Discount '{desc}' started: {format_cents(-amount, c)} off."))
        elif before[key][1] != amount:
            old = before[key][1]
            changes.append(Change("discount_changed", amount - old,
                                  f"Discount '{desc}' is {format_cents(-amount, c)} against "
                                  f"{format_cents(-old, c)} before (it follows the plan charge)."))
    for key, (desc, amount) in before.items():
        if key not in now:
            changes.append(Change("discount_ended", -amount,
                                  f"Discount '{desc}' ended: the previous invoice had "
                                  f"{format_cents(-amount, c)} off."))
    return changes


def _credit_change(cur: InvoiceHeader, cur_lines, prev_lines) -> list[Change]:
    k0, k1 = -_sum(prev_lines, "credit"), -_sum(cur_lines, "credit")
    if k0 == k1:
        return []
    c = cur.currency
    if k1 and not k0:
        reason = f"A one-time credit of {format_cents(k1, c)} was applied."
    elif k0 and not k1:
        reason = f"No one-time credit this time (the previous invoice had {format_cents(k0, c)} applied)."
    else:
        reason = f"One-time credit applied: {format_cents(k1, c)} against {format_cents(k0, c)} before."
    return [Change("credit", k0 - k1, reason)]


def _tax_change(cur: InvoiceHeader, cur_lines, prev: InvoiceHeader, prev_lines) -> list[Change]:
    t0, t1 = _sum(prev_lines, "tax"), _sum(cur_lines, "tax")
    if t0 == t1 and cur.tax_rate_bp == prev.tax_rate_bp:
        return []
    c = cur.currency
    if cur.tax_rate_bp != prev.tax_rate_bp:
        reason = (f"The tax rate changed from {prev.tax_rate_bp / 100:.2f}% to {cur.tax_rate_bp / 100:.2f}%: "
                  f"tax {format_cents(t1, c)} against {format_cents(t0, c)}.")
    else:
        reason = (f"Tax at {cur.tax_rate_bp / 100:.2f}% follows the net amount: "
                  f"{format_cents(t1, c)} against {format_cents(t0, c)}.")
    return [Change("tax", t1 - t0, reason)]


def explain_invoice(con: duckdb.DuckDBPyConnection, invoice_id: int) -> InvoiceExplanation | None:
    """An invoice with its lines and the reasons it differs from the customer's previous invoice.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    invoice_id : int

    Returns
    -------
    InvoiceExplanation or None
        None when there is no such invoice.

    Notes
    -----
    Previous invoice: the same customer's invoice of the latest earlier period (not void); when that
    period has several (a plan change inside it), the one of the same subscription, else the same
    plan, else the latest. Without one, the only change is ``first_invoice`` (the whole total).

    Changes, each skipped when it is zero:

    - plan charge (lines ``plan``/``proration``): ``plan_change`` (another plan) or ``price_change``
      (same plan, another monthly price) = new monthly price - old monthly price; ``proration`` =
      what part periods add or take off on either invoice, so that together they equal the
      difference of the plan lines;
    - ``usage``, ``charge``, ``credit``, ``tax``: the difference of those lines (tax says whether the
      rate changed or the tax followed the net);
    - discounts by grant: ``discount_started`` (only on this invoice), ``discount_ended`` (only on
      the previous one), ``discount_changed`` (on both, another amount).

    By construction the deltas sum to ``total - previous total``: every line kind is covered once.
    """
    cur = _header(con, invoice_id)
    if cur is None:
        return None
    cur_lines = _lines(con, invoice_id)
    prev_id = con.execute(_PREVIOUS_SQL, {"customer_id": cur.customer_id, "period_start": cur.period_start,
                                          "subscription_id": cur.subscription_id,
                                          "plan_id": cur.plan_id}).fetchall()
    if not prev_id:
        first = Change("first_invoice", cur.total_cents,
                       f"First invoice for this customer: {format_cents(cur.total_cents, cur.currency)} "
                       f"for {_coverage(cur, cur_lines)} of {cur.period_start:%B %Y}.")
        return InvoiceExplanation(cur, cur_lines, None, (), (first,))
    prev = _header(con, int(prev_id[0][0]))
    prev_lines = _lines(con, prev.invoice_id)
    changes = [
        *_plan_changes(con, cur, cur_lines, prev, prev_lines),
        *_usage_change(cur, cur_lines, prev_lines),
        *_charge_change(cur, cur_lines, prev_lines),
        *_discount_changes(cur, cur_lines, prev_lines),
        *_credit_change(cur, cur_lines, prev_lines),
        *_tax_change(cur, cur_lines, prev, prev_lines),
    ]
    return InvoiceExplanation(cur, cur_lines, prev, prev_lines, tuple(changes))
