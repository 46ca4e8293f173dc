"""A tiny hand-made world for the analytics tests, built by direct INSERTs into the schema tables.

Seven customers over January to June 2024 (as_of 2024-06-30). Two plans: basic (1000 cents a
month, 1200 from April 2024: a price rise) and plus (2000 cents). Every expected value in the
tests is computed by hand from this story:

===  ===========================================================================================
C1   consumer/north/web, basic from 2024-01-01, open. Sees the April price rise (MRR 1000 -> 1200).
     A one-off credit of 300 (fixed credit grant) on the March invoice. Contacts 12 Mar, 10 Apr.
C2   consumer/south/store, basic 2024-01-15 .. 2024-03-10 cancelled: mid-month voluntary churn in
     March. A billing error on the February bill (credit note 3 Mar). Contacts 20 Feb, 3 Mar.
C3   business/north/web, plus 2024-02-01 .. 2024-04-15, then a plan change to basic from
     2024-04-16 (not churn): MRR 2000 -> 1200 in April.
C4   consumer/north/partner, basic 2024-01-01 .. 2024-02-29 non_payment (involuntary churn at the
     end of February), back on basic from 2024-05-03 (reactivation in May).
C5   business/south/web, plus from 2024-01-10. A 25 % discount for 2 cycles from March (granted
     18 Feb after a contact): MRR 2000 -> 1500 (March) -> 2000 (May).
C6   consumer/south/web, plus from 2024-06-20: new in June.
C7   consumer/north/store, basic 2024-03-05 .. 2024-03-25 cancelled: new and churned in March.
===  ===========================================================================================

Invoices exist for January to May (June is not billed yet); amounts follow the billing rules
(proration by day, half away from zero; usage over the allowance; tax by region on the net).
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from data.db import connect
from data.money import tax_of

D = dt.date
AS_OF = D(2024, 6, 30)
FIRST, LAST = D(2024, 1, 1), D(2024, 6, 1)


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    """Insert rows (dicts of column -> value) by column name; other columns take their defaults."""
    frame = pd.DataFrame(rows)
    con.register("_rows", frame)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
    finally:
        con.unregister("_rows")


def customer(cid, segment, region, channel, signup, churned_on=None, churn_kind=None):
    return dict(customer_id=cid, account_number=f"A{cid:05d}", name=f"Customer {cid}", segment=segment,
                region=region, channel=channel, signup_date=signup, churned_on=churned_on,
                churn_kind=churn_kind, birth_date=D(1980, 1, 1 + cid % 28), postcode="X1")


def sub(sid, cid, plan, start, end=None, reason=None, prev=None):
    return dict(subscription_id=sid, customer_id=cid, plan_id=plan, start_date=start, end_date=end,
                end_reason=reason, previous_subscription_id=prev)


TAX_BP = {"north": 2000, "south": 1000}
REGION = {1: "north", 2: "south", 3: "north", 4: "north", 5: "south", 6: "south", 7: "north"}

# (invoice_id, subscription, customer, plan, period, plan line kind, plan amount, days,
#  usage amount, discount, credit)
INVOICES = [
    (1, 101, 1, 1, D(2024, 1, 1), "plan", 1000, 31, 300, 0, 0),       # 130 units, 30 over x 10
    (2, 102, 2, 1, D(2024, 1, 1), "proration", 548, 17, 0, 0, 0),     # 1000 * 17 / 31 = 548.4
    (3, 105, 4, 1, D(2024, 1, 1), "plan", 1000, 31, 0, 0, 0),
    (4, 107, 5, 2, D(2024, 1, 1), "proration", 1419, 22, 0, 0, 0),    # 2000 * 22 / 31 = 1419.4
    (5, 101, 1, 1, D(2024, 2, 1), "plan", 1000, 29, 0, 0, 0),
    (6, 102, 2, 1, D(2024, 2, 1), "plan", 1000, 29, 0, 0, 0),
    (7, 103, 3, 2, D(2024, 2, 1), "plan", 2000, 29, 0, 0, 0),
    (8, 105, 4, 1, D(2024, 2, 1), "plan", 1000, 29, 0, 0, 0),
    (9, 107, 5, 2, D(2024, 2, 1), "plan", 2000, 29, 0, 0, 0),
    (10, 101, 1, 1, D(2024, 3, 1), "plan", 1000, 31, 0, 0, 300),      # fixed credit 300
    (11, 102, 2, 1, D(2024, 3, 1), "proration", 323, 10, 0, 0, 0),    # 1000 * 10 / 31 = 322.6
    (12, 103, 3, 2, D(2024, 3, 1), "plan", 2000, 31, 0, 0, 0),
    (13, 107, 5, 2, D(2024, 3, 1), "plan", 2000, 31, 0, 500, 0),      # 25 % off
    (14, 109, 7, 1, D(2024, 3, 1), "proration", 677, 21, 0, 0, 0),    # 1000 * 21 / 31 = 677.4
    (15, 101, 1, 1, D(2024, 4, 1), "plan", 1200, 30, 0, 0, 0),        # price rise
    (16, 103, 3, 2, D(2024, 4, 1), "proration", 1000, 15, 0, 0, 0),   # 2000 * 15 / 30
    (17, 104, 3, 1, D(2024, 4, 1), "proration", 600, 15, 0, 0, 0),    # 1200 * 15 / 30
    (18, 107, 5, 2, D(2024, 4, 1), "plan", 2000, 30, 0, 500, 0),      # 25 % off
    (19, 101, 1, 1, D(2024, 5, 1), "plan", 1200, 31, 0, 0, 0),
    (20, 104, 3, 1, D(2024, 5, 1), "plan", 1200, 31, 0, 0, 0),
    (21, 106, 4, 1, D(2024, 5, 1), "proration", 1123, 29, 0, 0, 0),   # 1200 * 29 / 31 = 1122.6
    (22, 107, 5, 2, D(2024, 5, 1), "plan", 2000, 31, 0, 0, 0),
]


def _invoice_rows():
    invoices, lines = [], []
    for (iid, sid, cid, plan, period, kind, plan_amt, days, usage, discount, credit) in INVOICES:
        nxt = D(period.year + (period.month == 12), period.month % 12 + 1, 1)
        rate = TAX_BP[REGION[cid]]
        subtotal = plan_amt + usage
        net = subtotal - discount
        tax = tax_of(net, rate)
        total = net + tax - credit
        invoices.append(dict(invoice_id=iid, subscription_id=sid, customer_id=cid, plan_id=plan,
                             period_start=period, period_end=nxt - dt.timedelta(days=1), issued_on=nxt,
                             due_on=nxt + dt.timedelta(days=14), currency="EUR", subtotal_cents=subtotal,
                             discount_cents=discount, tax_cents=tax, credit_cents=credit,
                             total_cents=total, tax_rate_bp=rate, status="finalized"))
        parts = [(kind, "Plan charge", days, plan_amt), ("usage", "Usage", None, usage),
                 ("discount", "Discount", None, -discount), ("tax", "Tax", None, tax),
                 ("credit", "Credit", None, -credit)]
        line_no = 0
        for lk, desc, qty, amount in parts:
            if amount == 0 and lk != "tax":
                continue
            line_no += 1
            lines.append(dict(invoice_id=iid, line_no=line_no, kind=lk, description=desc,
                              quantity=qty, amount_cents=amount,
                              grant_id=1 if lk == "discount" else (2 if lk == "credit" else None)))
    return invoices, lines


def build_tiny_world(con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """Create the tiny world in ``con`` (a new in-memory database by default) and return it."""
    con = con if con is not None else connect(":memory:")
    insert(con, "tax_rates", [dict(region="north", effective_from=D(2020, 1, 1), rate_bp=2000),
                              dict(region="south", effective_from=D(2020, 1, 1), rate_bp=1000)])
    insert(con, "plans", [dict(plan_id=1, code="basic", name="Basic", rank=1),
                          dict(plan_id=2, code="plus", name="Plus", rank=2)])
    insert(con, "plan_prices", [
        dict(plan_id=1, effective_from=D(2023, 1, 1), monthly_price_cents=1000,
             usage_allowance_units=100, overage_price_cents=10),
        dict(plan_id=1, effective_from=D(2024, 4, 1), monthly_price_cents=1200,
             usage_allowance_units=100, overage_price_cents=10),
        dict(plan_id=2, effective_from=D(2023, 1, 1), monthly_price_cents=2000,
             usage_allowance_units=500, overage_price_cents=5)])
    insert(con, "customers", [
        customer(1, "consumer", "north", "web", D(2024, 1, 1)),
        customer(2, "consumer", "south", "store", D(2024, 1, 15), D(2024, 3, 10), "voluntary"),
        customer(3, "business", "north", "web", D(2024, 2, 1)),
        customer(4, "consumer", "north", "partner", D(2024, 1, 1)),
        customer(5, "business", "south", "web", D(2024, 1, 10)),
        customer(6, "consumer", "south", "web", D(2024, 6, 20)),
        customer(7, "consumer", "north", "store", D(2024, 3, 5), D(2024, 3, 25), "voluntary")])
    insert(con, "customer_attributes", [
        dict(customer_id=c, name="contract", value=v) for c, v in
        [(1, "two_year"), (2, "month"), (3, "one_year"), (4, "month"), (5, "two_year"), (7, "month")]])
    insert(con, "subscriptions", [
        sub(101, 1, 1, D(2024, 1, 1)),
        sub(102, 2, 1, D(2024, 1, 15), D(2024, 3, 10), "cancelled"),
        sub(103, 3, 2, D(2024, 2, 1), D(2024, 4, 15), "plan_change"),
        sub(104, 3, 1, D(2024, 4, 16), prev=103),
        sub(105, 4, 1, D(2024, 1, 1), D(2024, 2, 29), "non_payment"),
        sub(106, 4, 1, D(2024, 5, 3)),
        sub(107, 5, 2, D(2024, 1, 10)),
        sub(108, 6, 2, D(2024, 6, 20)),
        sub(109, 7, 1, D(2024, 3, 5), D(2024, 3, 25), "cancelled")])
    insert(con, "users", [dict(user_id=1, login="agent1", display_name="Agent One", role="agent",
                               agent_tier=2)])
    ts = dt.datetime
    insert(con, "contacts", [
        dict(contact_id=1001, customer_id=2, contacted_at=ts(2024, 2, 20, 10), channel="phone",
             reason="bill_higher_than_expected", wait_seconds=600, handle_seconds=300, agent_id=1,
             resolution="unresolved", is_intent_to_cancel=False),
        dict(contact_id=1002, customer_id=2, contacted_at=ts(2024, 3, 3, 9), channel="phone",
             reason="billing_error", wait_seconds=120, handle_seconds=400, agent_id=1,
             resolution="resolved", is_intent_to_cancel=True, invoice_id=6),
        dict(contact_id=1003, customer_id=5, contacted_at=ts(2024, 2, 18, 9, 30), channel="chat",
             reason="wants_cheaper_plan", wait_seconds=300, handle_seconds=200, agent_id=1,
             resolution="resolved", is_intent_to_cancel=False),
        dict(contact_id=1004, customer_id=1, contacted_at=ts(2024, 3, 12, 14), channel="phone",
             reason="bill_not_understood", wait_seconds=900, handle_seconds=100, agent_id=1,
             resolution="resolved", is_intent_to_cancel=False),
        dict(contact_id=1005, customer_id=1, contacted_at=ts(2024, 4, 10, 11), channel="email",
             reason="bill_higher_than_expected", wait_seconds=1200, handle_seconds=100, agent_id=1,
             resolution="escalated", is_intent_to_cancel=False),
        dict(contact_id=1006, customer_id=4, contacted_at=ts(2024, 7, 2, 11), channel="phone",
             reason="service_issue", wait_seconds=60, handle_seconds=100, agent_id=1,
             resolution="resolved", is_intent_to_cancel=False)])
    insert(con, "offers", [
        dict(offer_id=1, code="pct25x2", name="25% off for 2 months", kind="percent_off",
             percent_off=25, cycles=2),
        dict(offer_id=2, code="credit300", name="3 EUR credit", kind="fixed_credit", credit_cents=300,
             cycles=1)])
    insert(con, "offer_grants", [
        dict(grant_id=1, customer_id=5, offer_id=1, contact_id=1003, granted_by=1,
             granted_at=ts(2024, 2, 18, 9, 45), kind="percent_off", percent_off=25, cycles=2,
             first_period=D(2024, 3, 1), assignment="agent"),
        dict(grant_id=2, customer_id=1, offer_id=2, contact_id=1004, granted_by=1,
             granted_at=ts(2024, 3, 12, 14, 10), kind="fixed_credit", credit_cents=300, cycles=1,
             first_period=D(2024, 3, 1), assignment="agent")])
    invoices, lines = _invoice_rows()
    insert(con, "invoices", invoices)
    insert(con, "invoice_lines", lines)
    insert(con, "credit_notes", [
        dict(credit_note_id=1, invoice_id=6, customer_id=2, issued_at=ts(2024, 3, 3, 9, 20),
             reason="billing_error", net_cents=100, tax_cents=10, total_cents=110, issued_by=1,
             contact_id=1002)])
    return con
