"""Billing invariants over random small worlds (hypothesis).

A world: random plans (with price changes), tax rates (with a change), customers starting and ending
on random days (first and last days of months included), plan changes, usage, one-off charges,
percent / free-month / one-time-credit grants; then several monthly billing runs, payments (some
failed) and credit notes. After it, for every invoice and every customer:

- total == sum of its lines == subtotal - discount + tax - credit;
- each (subscription, period) is billed exactly once, and every subscription active in a period is;
- discounts never take the plan charge below zero;
- re-running any billed period adds no invoice or line;
- the SQL run agrees with :func:`billing.pricing.compute_invoice` (the pure rules);
- money paid never disappears: settled payments == paid_cents in invoice_balances + credit balances.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import pricing
from billing.account import customer_balance
from billing.add_charge import add_charges
from billing.create_customers import create_customers
from billing.issue_credit_note import issue_credit_note
from billing.manage_catalogue import define_offer, define_plan, set_plan_price, set_tax_rate
from billing.pricing import active_days, add_months, days_in_month, month_end
from billing.record_payment import record_payments
from billing.run_billing import run_billing
from data.db import connect

PERIODS = [dt.date(2024, m, 1) for m in range(1, 6)]          # January (31) .. May, February has 29 days
LAST = month_end(PERIODS[-1])
AT = dt.datetime(2024, 6, 5, 9, 0)
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def days(draw, lo: dt.date = dt.date(2023, 12, 1), hi: dt.date = LAST) -> dt.date:
    """A day in lo..hi, often the first or last day of its month."""
    span = (hi - lo).days
    day = lo + dt.timedelta(days=draw(st.integers(0, span)))
    edge = draw(st.sampled_from(["first", "last", "any", "any"]))
    if edge == "first":
        day = day.replace(day=1)
    elif edge == "last":
        day = month_end(day)
    return min(max(day, lo), hi)


@st.composite
def worlds(draw) -> dict:
    plans = [{"price": draw(st.integers(0, 5000)), "allowance": draw(st.integers(0, 20)),
              "overage": draw(st.integers(0, 300)),
              "change": draw(st.none() | st.tuples(st.sampled_from(PERIODS[1:]), st.integers(0, 6000)))}
             for _ in range(draw(st.integers(1, 3)))]
    tax = {"rate": draw(st.integers(0, 2500)),
           "change": draw(st.none() | st.tuples(st.sampled_from(PERIODS[1:]), st.integers(0, 2500)))}
    customers = []
    for _ in range(draw(st.integers(1, 4))):
        start = draw(days())
        end = draw(st.none() | days(lo=start))
        change_on = None
        last = end or LAST
        if draw(st.booleans()) and last > start:
            change_on = draw(days(lo=start + dt.timedelta(days=1), hi=last))
        customers.append({"start": start, "end": end, "plan": draw(st.integers(0, len(plans) - 1)),
                          "change_on": change_on, "new_plan": draw(st.integers(0, len(plans) - 1))})
    n = len(customers)
    usage = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(PERIODS), st.integers(0, 40)),
                          max_size=6))
    charges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(PERIODS), st.integers(1, 3000)),
                            max_size=4))
    grants = draw(st.lists(st.fixed_dictionaries({
        "customer": st.integers(0, n - 1),
        "kind": st.sampled_from(["percent_off", "free_months", "fixed_credit"]),
        "percent": st.integers(1, 100), "cycles": st.integers(1, 3), "credit": st.integers(1, 8000),
        "first_period": st.sampled_from(PERIODS), "granted_day": st.integers(0, 3)}), max_size=5))
    payments = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 9000),
                                       st.sampled_from(["settled", "settled", "failed"])), max_size=6))
    credit_notes = draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.floats(0, 1)), max_size=3))
    rerun = draw(st.sampled_from(PERIODS))
    return {"plans": plans, "tax": tax, "customers": customers, "usage": usage, "charges": charges,
            "grants": grants, "payments": payments, "credit_notes": credit_notes, "rerun": rerun}


def build(world: dict):
    """The world through the public use cases (grants, usage and plan changes as direct rows)."""
    con = connect(":memory:")
    for i, p in enumerate(world["plans"]):
        assert define_plan(con, code=f"p{i}", name=f"Plan {i}", rank=i, monthly_price_cents=p["price"],
                           usage_allowance_units=p["allowance"], overage_price_cents=p["overage"],
                           effective_from=dt.date(2020, 1, 1)).ok
        if p["change"]:
            assert set_plan_price(con, plan_id=i + 1, effective_from=p["change"][0],
                                  monthly_price_cents=p["change"][1]).ok
    assert set_tax_rate(con, region="r", rate_bp=world["tax"]["rate"], effective_from=dt.date(2000, 1, 1)).ok
    if world["tax"]["change"]:
        assert set_tax_rate(con, region="r", rate_bp=world["tax"]["change"][1],
                            effective_from=world["tax"]["change"][0]).ok
    offers = {}
    for kind, extra in (("percent_off", {"percent_off": 10, "cycles": 1}), ("free_months", {"cycles": 1}),
                        ("fixed_credit", {"credit_cents": 100})):
        offers[kind] = define_offer(con, code=kind, name=kind.replace("_", " "), kind=kind, **extra)["offer_id"]
    cs = world["customers"]
    res = create_customers(con, pd.DataFrame([{
        "name": f"C{i}", "segment": "s", "region": "r", "channel": "web", "signup_date": c["start"],
        "plan_id": c["plan"] + 1} for i, c in enumerate(cs)]), at=AT)
    assert res.ok, res.message
    subs_of = {i: [i + 1] for i in range(len(cs))}                 # customer i -> subscription ids
    next_sub = len(cs) + 1
    for i, c in enumerate(cs):
        if c["change_on"]:
            con.execute("UPDATE subscriptions SET end_date = ?, end_reason = 'plan_change' WHERE subscription_id = ?",
                        [c["change_on"] - dt.timedelta(days=1), i + 1])
            con.execute("INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [next_sub, i + 1, c["new_plan"] + 1, c["change_on"], c["end"],
                         "cancelled" if c["end"] else None, i + 1])
            subs_of[i].append(next_sub)
            next_sub += 1
        elif c["end"]:
            con.execute("UPDATE subscriptions SET end_date = ?, end_reason = 'cancelled' WHERE subscription_id = ?",
                        [c["end"], i + 1])
    for i, period, units in world["usage"]:
        con.execute("INSERT INTO usage_records VALUES (?, ?, ?, NULL)", [subs_of[i][-1], period, units])
    sub_rows = con.execute("SELECT subscription_id, start_date, end_date FROM subscriptions").fetchall()
    active = {(s, p) for s, start, end in sub_rows for p in PERIODS if active_days(start, end, p) > 0}
    wanted = [(subs_of[i][-1], p, a) for i, p, a in world["charges"] if (subs_of[i][-1], p) in active]
    if wanted:
        res = add_charges(con, pd.DataFrame(wanted, columns=["subscription_id", "period_start", "amount_cents"])
                          .assign(description="Fee"), at=AT)
        assert res.ok, res.message
    for gid, g in enumerate(world["grants"], start=1):
        kind = g["kind"]
        con.execute("INSERT INTO offer_grants VALUES (?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, 'agent')",
                    [gid, g["customer"] + 1, offers[kind],
                     dt.datetime(2023, 12, 1) + dt.timedelta(days=g["granted_day"]), kind,
                     {"percent_off": g["percent"], "free_months": 100}.get(kind),
                     g["credit"] if kind == "fixed_credit" else None,
                     g["cycles"] if kind != "fixed_credit" else 1, g["first_period"]])
    for period in PERIODS:
        res = run_billing(con, period, as_of=add_months(period, 1))
        assert res.ok, res.message
    return con, active


def expected(con) -> dict[int, pricing.InvoiceCalc]:
    """Every invoice recomputed by billing.pricing from the input tables, credits carried in order."""
    subs = {r[0]: r[1:] for r in con.execute(
        "SELECT subscription_id, customer_id, plan_id, start_date, end_date FROM subscriptions").fetchall()}
    prices = con.execute("SELECT plan_id, effective_from, monthly_price_cents, usage_allowance_units, "
                         "overage_price_cents FROM plan_prices ORDER BY effective_from").fetchall()
    taxes = con.execute("SELECT effective_from, rate_bp FROM tax_rates ORDER BY effective_from").fetchall()
    usage, charges = defaultdict(int), defaultdict(int)
    for s, p, u in con.execute("SELECT subscription_id, period_start, units FROM usage_records").fetchall():
        usage[s, p] += u
    for s, p, a in con.execute("SELECT subscription_id, period_start, amount_cents FROM one_off_charges").fetchall():
        charges[s, p] += a
    grants = con.execute("SELECT customer_id, kind, percent_off, credit_cents, cycles, first_period FROM offer_grants "
                         "ORDER BY granted_at, grant_id").fetchall()
    used = defaultdict(int)
    out = {}
    for inv_id, sub, period in con.execute(
            "SELECT invoice_id, subscription_id, period_start FROM invoices ORDER BY period_start, subscription_id"
    ).fetchall():
        cust, plan, start, end = subs[sub]
        _, _, price, allowance, overage = [r for r in prices if r[0] == plan and r[1] <= period][-1]
        rate = [r for r in taxes if r[0] <= period][-1][1]
        percents = [g[2] for g in grants if g[0] == cust and g[1] in ("percent_off", "free_months")
                    and 0 <= (period.year - g[5].year) * 12 + period.month - g[5].month < g[4]]
        pool = sum(g[3] for g in grants if g[0] == cust and g[1] == "fixed_credit" and g[5] <= period)
        calc = pricing.compute_invoice(
            monthly_price_cents=price, days=active_days(start, end, period), period_days=days_in_month(period),
            units=usage[sub, period], allowance_units=allowance, overage_price_cents=overage,
            charges_cents=charges[sub, period], discount_percents=percents, tax_rate_bp=rate,
            credit_available_cents=pool - used[cust])
        used[cust] += calc.credit_cents
        out[inv_id] = calc
    return out


def check_invoices(con, world: dict, active: set) -> None:
    """Totals, billed once, discount floor, agreement with billing.pricing, re-run adds nothing."""
    # Every invoice total is the sum of its lines and of its header parts.
    bad = con.execute("""
        SELECT i.invoice_id FROM invoices i LEFT JOIN invoice_lines l USING (invoice_id)
        GROUP BY i.invoice_id, i.total_cents, i.subtotal_cents, i.discount_cents, i.tax_cents, i.credit_cents
        HAVING coalesce(sum(l.amount_cents), 0) <> i.total_cents
            OR i.subtotal_cents - i.discount_cents + i.tax_cents - i.credit_cents <> i.total_cents""").fetchall()
    assert bad == []

    # Each active (subscription, period) billed exactly once; nothing else billed.
    billed = con.execute("SELECT subscription_id, period_start, count(*) FROM invoices GROUP BY ALL").fetchall()
    assert all(n == 1 for _, _, n in billed)
    assert {(s, p) for s, p, _ in billed} == active

    # Discounts never take the plan charge below zero.
    below = con.execute("""
        SELECT invoice_id FROM invoice_lines GROUP BY invoice_id
        HAVING sum(amount_cents) FILTER (WHERE kind IN ('plan', 'proration', 'discount')) < 0""").fetchall()
    assert below == []

    # The SQL run agrees with the pure rules, invoice by invoice.
    calc = expected(con)
    rows = con.execute("SELECT invoice_id, subtotal_cents, discount_cents, tax_cents, credit_cents, total_cents "
                       "FROM invoices").fetchall()
    for inv_id, *got in rows:
        c = calc[inv_id]
        assert tuple(got) == (c.subtotal_cents, c.discount_cents, c.tax_cents, c.credit_cents, c.total_cents), inv_id
        disc = [-a for (a,) in con.execute("SELECT amount_cents FROM invoice_lines WHERE invoice_id = ? AND "
                                           "kind = 'discount' ORDER BY line_no", [inv_id]).fetchall()]
        assert disc == [d for d in c.discounts_cents if d > 0]

    # Re-running a billed period adds no invoice and no line.
    counts = con.execute("SELECT (SELECT count(*) FROM invoices), (SELECT count(*) FROM invoice_lines)").fetchall()
    again = run_billing(con, world["rerun"], as_of=add_months(world["rerun"], 1))
    assert again.ok and again["invoices_created"] == 0
    assert con.execute("SELECT (SELECT count(*) FROM invoices), (SELECT count(*) FROM invoice_lines)").fetchall() \
        == counts


def check_money(con, world: dict) -> None:
    """Payments and credit notes: settled payments == allocated + credit balances; balances consistent."""
    n = len(world["customers"])
    if world["payments"]:
        res = record_payments(con, pd.DataFrame([
            {"customer_id": c + 1, "amount_cents": a, "received_at": AT, "method": "card", "status": s}
            for c, a, s in world["payments"]]))
        assert res.ok, res.message
    invoices = con.execute("SELECT invoice_id, total_cents FROM invoices ORDER BY invoice_id").fetchall()
    for pick, share in world["credit_notes"]:
        if not invoices:
            break
        inv_id, _ = invoices[int(pick * len(invoices))]
        left = con.execute("SELECT due_cents FROM invoice_balances WHERE invoice_id = ?", [inv_id]).fetchall()[0][0]
        amount = int(share * left)
        res = issue_credit_note(con, invoice_id=inv_id, amount_cents=amount, reason="billing_error", at=AT)
        assert res.ok == (amount > 0), res.message
        assert issue_credit_note(con, invoice_id=inv_id, amount_cents=left - max(amount, 0) + 1,
                                 reason="billing_error", at=AT).code == "over_limit"

    settled = con.execute("SELECT coalesce(sum(amount_cents), 0) FROM payments WHERE status = 'settled'"
                          ).fetchall()[0][0]
    allocated = con.execute("SELECT coalesce(sum(paid_cents), 0) FROM invoice_balances").fetchall()[0][0]
    balances = [customer_balance(con, c) for c in range(1, n + 1)]
    assert settled == allocated + sum(b.credit_balance_cents for b in balances)
    # Every invoice: 0 <= paid <= due, balance = due - paid; a customer with credit owes nothing.
    assert con.execute("SELECT count(*) FROM invoice_balances WHERE paid_cents < 0 OR paid_cents > due_cents "
                       "OR due_cents < 0 OR balance_cents <> due_cents - paid_cents").fetchall()[0][0] == 0
    assert all(b.open_balance_cents == 0 for b in balances if b.credit_balance_cents > 0)
    for b in balances:
        assert b.invoiced_cents - b.credited_cents - b.paid_cents == b.open_balance_cents - b.credit_balance_cents


# One world per example serves both checks: building it (five billing runs) is the slow part.
@SETTINGS
@given(worlds())
def test_billing_and_money_invariants_hold_for_random_worlds(world):
    con, active = build(world)
    check_invoices(con, world, active)
    check_money(con, world)
