"""Small builders for billing tests: a catalogue and customers through the public use cases."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from billing.create_customers import create_customers
from billing.manage_catalogue import define_offer, define_plan, set_tax_rate
from data.db import connect

AT = dt.datetime(2024, 1, 1, 9, 0)


def new_db(tax_bp: int = 2000):
    """An in-memory database with two plans, a tax rate for region 'north' and an offer catalogue."""
    con = connect(":memory:")
    assert define_plan(con, code="basic", name="Basic", rank=1, monthly_price_cents=1999,
                       usage_allowance_units=10, overage_price_cents=150,
                       effective_from=dt.date(2020, 1, 1)).ok
    assert define_plan(con, code="plus", name="Plus", rank=2, monthly_price_cents=3100,
                       usage_allowance_units=50, overage_price_cents=100,
                       effective_from=dt.date(2020, 1, 1)).ok
    assert set_tax_rate(con, region="north", rate_bp=tax_bp, effective_from=dt.date(2000, 1, 1)).ok
    assert define_offer(con, code="pct20x3", name="20% off for 3 months", kind="percent_off",
                        percent_off=20, cycles=3).ok
    assert define_offer(con, code="free1", name="One month free", kind="free_months", cycles=1,
                        min_tier=2).ok
    assert define_offer(con, code="credit50", name="Goodwill credit", kind="fixed_credit",
                        credit_cents=5000).ok
    return con


def add_customer(con, *, start: dt.date, plan_id: int = 1, region: str = "north", **extra) -> int:
    """Create one customer whose subscription starts on ``start``; returns the customer id."""
    row = {"name": extra.pop("name", "Test Customer"), "segment": "consumer", "region": region,
           "channel": "web", "signup_date": start, "plan_id": plan_id, **extra}
    res = create_customers(con, pd.DataFrame([row]), at=AT)
    assert res.ok, res.message
    return int(res["customer_ids"][0])


def grant(con, *, grant_id: int, customer_id: int, offer_code: str, first_period: dt.date,
          granted_at: dt.datetime | None = None) -> None:
    """Insert a grant row directly (tests of the billing run only; grant_offer has its own tests)."""
    offer = con.execute("SELECT offer_id, kind, percent_off, credit_cents, cycles FROM offers WHERE code = ?",
                        [offer_code]).fetchall()[0]
    con.execute("INSERT INTO offer_grants VALUES (?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, 'agent')",
                [grant_id, customer_id, offer[0], granted_at or dt.datetime.combine(first_period, dt.time()),
                 offer[1], offer[2], offer[3], offer[4], first_period])


def lines(con, customer_id: int, period: dt.date) -> list[tuple[str, int]]:
    """(kind, amount_cents) of the customer's invoice lines for a period, in line order."""
    return [tuple(r) for r in con.execute(
        "SELECT l.kind, l.amount_cents FROM invoice_lines l JOIN invoices i USING (invoice_id) "
        "WHERE i.customer_id = ? AND i.period_start = ? ORDER BY i.invoice_id, l.line_no",
        [customer_id, period]).fetchall()]


def table_counts(con) -> dict[str, int]:
    """Row counts of the tables a billing write may touch."""
    names = ["invoices", "invoice_lines", "billing_runs", "offer_grants", "subscriptions", "customers",
             "payments", "credit_notes", "contacts", "audit_log"]
    return {n: con.execute(f"SELECT count(*) FROM {n}").fetchall()[0][0] for n in names}
