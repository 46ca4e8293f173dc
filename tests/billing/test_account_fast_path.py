"""billing/account.py: the book-wide readers' fast path gives the ``invoice_balances`` view's answers.

:func:`billing.account.open_balances_cte` runs the FIFO window only over invoices that can still be
open. Here random books (overpayments, partial and failed payments, credit notes, plan-change
months with two invoices, void and draft invoices, long unpaid histories, and irregular rows the
engine never writes: credit beyond the total, due before issue) are read both ways on several days.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.account import (AGEING_BUCKETS, open_balances_cte, overdue_ageing, overdue_customers,
                             overdue_customers_sql)
from data.db import connect

FIRST = dt.date(2023, 1, 1)
AS_OF_DAYS = (0, 15, 16, 130, 420, 600)


@pytest.fixture(scope="module")
def con():
    return connect(":memory:")


def _book(con, seed: int, *, irregular: bool) -> None:
    """A random book of invoices, credit notes and payments (written directly: a read-only test)."""
    r = np.random.default_rng(seed)
    for table in ("payments", "credit_notes", "invoices", "subscriptions"):
        con.execute(f"DELETE FROM {table}")
    n_cust = int(r.integers(1, 12))
    rows = []
    for c in range(1, n_cust + 1):
        months = int(r.integers(0, 20))
        start = int(r.integers(0, 6))
        for m in range(start, start + months):
            issued = FIRST + dt.timedelta(days=31 * m + 1)
            for sub in range(1 + int(r.random() < 0.15)):   # a plan change: two invoices, one period
                total = int(r.choice([0, 999, 1499, 2399, 3999])) if r.random() < 0.9 else int(r.integers(1, 9000))
                due_days = int(r.integers(-5, 20)) if irregular and r.random() < 0.1 else 14
                status = r.choice(["finalized", "void", "draft"], p=[0.9, 0.05, 0.05])
                rows.append((len(rows) + 1, c * 10 + sub, c, 1, issued.replace(day=1), issued.replace(day=28),
                             issued, issued + dt.timedelta(days=due_days), "EUR", total, 0, 0, 0, total, 0,
                             str(status)))
    invoices = pd.DataFrame(rows, columns=["invoice_id", "subscription_id", "customer_id", "plan_id",
                                           "period_start", "period_end", "issued_on", "due_on", "currency",
                                           "subtotal_cents", "discount_cents", "tax_cents", "credit_cents",
                                           "total_cents", "tax_rate_bp", "status"])
    if len(invoices):
        con.execute("INSERT INTO invoices BY NAME SELECT * FROM invoices")
    notes = []
    for inv in invoices.itertuples():
        if r.random() < 0.15 and inv.total_cents > 0:
            cap = inv.total_cents * (3 if irregular else 1)
            amount = int(r.integers(1, cap + 1))
            notes.append((len(notes) + 1, inv.invoice_id, inv.customer_id, dt.datetime(2023, 6, 1),
                          "goodwill", amount, 0, amount))
    if notes:
        cn = pd.DataFrame(notes, columns=["credit_note_id", "invoice_id", "customer_id", "issued_at", "reason",
                                          "net_cents", "tax_cents", "total_cents"])
        con.execute("INSERT INTO credit_notes BY NAME SELECT * FROM cn")
    pays = []
    for c in range(1, n_cust + 1):
        owed = int(invoices.loc[invoices["customer_id"] == c, "total_cents"].sum())
        style = r.choice(["all", "most", "over", "none", "random"])
        share = {"all": 1.0, "most": r.uniform(0.5, 1.0), "over": r.uniform(1.0, 1.5), "none": 0.0,
                 "random": r.uniform(0, 1.2)}[str(style)]
        left = int(owed * share)
        while left > 0:
            amount = min(left, int(r.integers(1, 6000)))
            status = "failed" if r.random() < 0.1 else "settled"
            pays.append((len(pays) + 1, c, dt.datetime(2023, 1, 1) + dt.timedelta(days=int(r.integers(0, 700))),
                         amount, "card", status))
            left -= amount if status == "settled" else 0
    if pays:
        pay = pd.DataFrame(pays, columns=["payment_id", "customer_id", "received_at", "amount_cents", "method",
                                          "status"])
        con.execute("INSERT INTO payments BY NAME SELECT * FROM pay")


_VIEW_OVERDUE = """
WITH per_customer AS (
    SELECT customer_id, count(DISTINCT period_start) AS overdue_periods, count(*) AS overdue_invoices,
           CAST(sum(balance_cents) AS BIGINT) AS overdue_cents, min(due_on) AS oldest_due_on
    FROM invoice_balances WHERE balance_cents > 0 AND due_on < $as_of GROUP BY customer_id
)
SELECT customer_id, overdue_periods, overdue_invoices, overdue_cents, oldest_due_on
FROM per_customer WHERE overdue_periods >= $min_periods ORDER BY overdue_periods DESC, customer_id
"""

_VIEW_AGEING = """
SELECT count(*), count(DISTINCT customer_id), coalesce(sum(balance_cents), 0)
FROM invoice_balances
WHERE balance_cents > 0 AND issued_on <= $as_of
  AND date_diff('day', due_on, CAST($as_of AS DATE)) BETWEEN $lo AND $hi
"""

_COLUMNS = "invoice_id, customer_id, period_start, issued_on, due_on, credited_cents, due_cents, paid_cents, " \
           "balance_cents"


def _same_answers(con, as_of: dt.date) -> None:
    for bound in ("CAST($as_of AS DATE)", "(CAST($as_of AS DATE) + 1)"):
        fast = con.execute(f"WITH {open_balances_cte(bound)} SELECT {_COLUMNS} FROM open_balances "
                           f"WHERE balance_cents > 0 AND issued_on < {bound} ORDER BY invoice_id",
                           {"as_of": as_of}).fetchall()
        view = con.execute(f"SELECT {_COLUMNS} FROM invoice_balances "
                           f"WHERE balance_cents > 0 AND issued_on < {bound} ORDER BY invoice_id",
                           {"as_of": as_of}).fetchall()
        assert fast == view
    for min_periods in (1, 2):
        got = overdue_customers(con, as_of=as_of, min_periods=min_periods)
        want = con.execute(_VIEW_OVERDUE, {"as_of": as_of, "min_periods": min_periods}).df()
        cols = list(want.columns)
        assert got[cols].values.tolist() == want.values.tolist()
        # the same for some customers only (as the non-payment run asks for those it can end)
        even = con.execute(f"SELECT * FROM ({overdue_customers_sql('SELECT 2 UNION SELECT 4')}) "
                           "ORDER BY overdue_periods DESC, customer_id",
                           {"as_of": as_of, "min_periods": min_periods}).df()
        assert even[cols].values.tolist() == want[want["customer_id"].isin([2, 4])].values.tolist()
    ageing = overdue_ageing(con, as_of=as_of)
    for i, (_, lo, hi) in enumerate(AGEING_BUCKETS):
        want = con.execute(_VIEW_AGEING, {"as_of": as_of, "lo": -10**6 if lo is None else lo,
                                          "hi": 10**6 if hi is None else hi}).fetchall()[0]
        row = ageing.iloc[i]
        assert (row["invoice_count"], row["customer_count"], row["amount_cents"]) == tuple(int(v) for v in want)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), irregular=st.booleans())
def test_fast_path_equals_the_view_on_random_books(con, seed, irregular):
    _book(con, seed, irregular=irregular)
    for days in AS_OF_DAYS:
        _same_answers(con, FIRST + dt.timedelta(days=days))


def test_customer_unpaid_for_longer_than_the_recent_window_gets_the_whole_history(con):
    # Customer 1 paid nothing for 8 months (longer than the recent window); customer 2 paid all but
    # half of the last invoice: both paths of the fast path in one book.
    for table in ("payments", "credit_notes", "invoices"):
        con.execute(f"DELETE FROM {table}")
    rows = []
    for c in (1, 2):
        for m in range(8):
            issued = dt.date(2024, m + 1, 1)
            rows.append((len(rows) + 1, c, c, 1, issued, issued + dt.timedelta(days=27), issued,
                         issued + dt.timedelta(days=14), "EUR", 1000, 0, 0, 0, 1000, 0, "finalized"))
    inv = pd.DataFrame(rows, columns=["invoice_id", "subscription_id", "customer_id", "plan_id", "period_start",
                                      "period_end", "issued_on", "due_on", "currency", "subtotal_cents",
                                      "discount_cents", "tax_cents", "credit_cents", "total_cents", "tax_rate_bp",
                                      "status"])
    con.execute("INSERT INTO invoices BY NAME SELECT * FROM inv")
    con.execute("INSERT INTO payments VALUES (1, 2, TIMESTAMP '2024-08-20 10:00:00', 7500, 'card', 'settled', NULL)")
    got = overdue_customers(con, as_of=dt.date(2024, 9, 1), min_periods=1).set_index("customer_id")
    assert got.loc[1, "overdue_periods"] == 8 and got.loc[1, "overdue_cents"] == 8000
    assert got.loc[2, "overdue_periods"] == 1 and got.loc[2, "overdue_cents"] == 500
    _same_answers(con, dt.date(2024, 9, 1))


def test_receivables_equal_the_ageing_and_the_overdue_customers_computed_apart():
    import pandas as pd

    from billing.account import overdue_ageing, overdue_customers, receivables
    from tests.billing.helpers import add_customer, new_db
    from billing.record_payment import record_payment
    from billing.run_billing import run_billing

    con = new_db()
    cids = [add_customer(con, start=dt.date(2024, 1, 1)) for _ in range(4)]
    for month in (1, 2, 3, 4):
        assert run_billing(con, dt.date(2024, month, 1), as_of=dt.date(2024, month + 1, 1)).ok
    # one pays everything, one pays part, one pays only the first bill, one never pays
    at = dt.datetime(2024, 5, 20, 9)
    assert record_payment(con, customer_id=cids[0], amount_cents=4 * 2399, received_at=at, method="card").ok
    assert record_payment(con, customer_id=cids[1], amount_cents=2399 + 1000, received_at=at, method="card").ok
    assert record_payment(con, customer_id=cids[2], amount_cents=2399, received_at=at, method="card").ok
    for day in (dt.date(2024, 3, 20), dt.date(2024, 5, 1), dt.date(2024, 6, 30)):
        got = receivables(con, as_of=day, min_periods=1)
        pd.testing.assert_frame_equal(got.ageing, overdue_ageing(con, as_of=day))
        pd.testing.assert_frame_equal(got.overdue_customers, overdue_customers(con, as_of=day, min_periods=1))
    late = receivables(con, as_of=dt.date(2024, 6, 30), min_periods=2).overdue_customers
    assert set(late["customer_id"]) == {cids[1], cids[2], cids[3]}
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_open_receivables'").fetchall()[0][0] == 0
