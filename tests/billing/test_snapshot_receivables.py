"""billing/snapshot_receivables.py: the stored snapshot equals the live receivables and goes stale
after every write that can change a balance."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

import billing.snapshot_receivables as snap
from billing.account import receivables
from billing.cancel_subscription import cancel_subscription
from billing.issue_credit_note import issue_credit_note
from billing.record_payment import record_payment
from billing.run_billing import run_billing
from billing.snapshot_receivables import (KEEP, current_receivables, snapshot_receivables, stored_receivables,
                                         watermark)
from data.db import connect, has_table
from tests.billing.helpers import add_customer, new_db

AT = dt.datetime(2024, 6, 1, 9, 0)
DAY = dt.date(2024, 6, 1)
GOOD_IMPORT = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "import" / "good"


def books():
    """Four customers billed January to April: one pays everything, one part, one only the first bill
    (then a credit note on its last invoice), one never pays (and has cancelled)."""
    con = new_db()
    cids = [add_customer(con, start=dt.date(2024, 1, 1)) for _ in range(4)]
    for month in (1, 2, 3, 4):
        assert run_billing(con, dt.date(2024, month, 1), as_of=dt.date(2024, month + 1, 1)).ok
    paid = dt.datetime(2024, 5, 20, 9)
    for cid, cents in zip(cids, (4 * 2399, 2399 + 1000, 2399)):
        assert record_payment(con, customer_id=cid, amount_cents=cents, received_at=paid, method="card").ok
    last = con.execute("SELECT max(invoice_id) FROM invoices WHERE customer_id = ?", [cids[2]]).fetchall()[0][0]
    assert issue_credit_note(con, invoice_id=last, reason="goodwill", amount_cents=500, at=paid).ok
    assert cancel_subscription(con, customer_id=cids[3], end_date=dt.date(2024, 5, 31), at=paid).ok
    return con, cids


def assert_same(stored, live):
    assert stored is not None
    assert (stored.as_of, stored.min_periods) == (live.as_of, live.min_periods)
    pd.testing.assert_frame_equal(stored.ageing, live.ageing)
    pd.testing.assert_frame_equal(stored.overdue_customers, live.overdue_customers)


def snapshots(con) -> list[tuple]:
    return con.execute("SELECT snapshot_id, as_of, min_periods FROM receivables_snapshots "
                       "ORDER BY snapshot_id").fetchall()


@pytest.mark.parametrize("day", [dt.date(2024, 3, 20), DAY, dt.date(2024, 9, 30)])
@pytest.mark.parametrize("min_periods", [1, 2])
def test_the_stored_snapshot_equals_the_live_receivables(day, min_periods):
    con, _ = books()
    res = snapshot_receivables(con, as_of=day, at=AT, min_periods=min_periods)
    assert res.ok, res.message
    live = receivables(con, as_of=day, min_periods=min_periods)
    assert not live.overdue_customers.empty or day < dt.date(2024, 4, 1)
    assert_same(res["receivables"], live)
    stored = stored_receivables(con, as_of=day, min_periods=min_periods)
    assert_same(stored, live)
    assert stored.computed_at == AT and live.computed_at is None


def test_an_empty_book_stores_five_zero_buckets_and_no_overdue_customer_with_the_same_dtypes():
    con = new_db()
    assert snapshot_receivables(con, as_of=DAY, at=AT).ok
    stored = stored_receivables(con, as_of=DAY)
    assert_same(stored, receivables(con, as_of=DAY, min_periods=1))
    assert list(stored.ageing["amount_cents"]) == [0] * 5 and stored.overdue_customers.empty


def test_the_stored_snapshot_equals_the_live_receivables_on_a_simulated_world(tmp_path):
    from tests.analytics.test_strategies import SMALL
    from tests.worlds import copy_world

    con = connect(copy_world(SMALL, tmp_path / "w.duckdb"))
    try:
        day = con.execute("SELECT max(issued_on) FROM invoices").fetchall()[0][0]
        assert snapshot_receivables(con, as_of=day, at=AT).ok
        live = receivables(con, as_of=day, min_periods=1)
        assert len(live.overdue_customers) > 10
        assert_same(stored_receivables(con, as_of=day), live)
    finally:
        con.close()


def test_current_receivables_computes_and_stores_once_then_reads_until_a_write():
    con, cids = books()
    live = receivables(con, as_of=DAY, min_periods=1)
    first = current_receivables(con, as_of=DAY, at=AT)
    assert first.ok and first["stored"] is False
    assert_same(first["receivables"], live)
    again = current_receivables(con, as_of=DAY, at=AT)
    assert again.ok and again["stored"] is True and again["receivables"].computed_at == AT
    assert_same(again["receivables"], live)
    assert again["receivables"].n_to_end == int((live.overdue_customers["overdue_periods"] >= 2).sum()) > 0
    _pay(con, cids, "settled")
    after = current_receivables(con, as_of=DAY, at=AT)
    assert after.ok and after["stored"] is False and len(snapshots(con)) == 1
    refused = current_receivables(con, as_of="2024-06-01", at=AT)
    assert not refused.ok and refused.code == "invalid_input" and len(snapshots(con)) == 1


def _pay(con, cids, status):
    assert record_payment(con, customer_id=cids[1], amount_cents=700, received_at=dt.datetime(2024, 5, 25),
                          method="card", status=status).ok


def _credit(con, cids):
    invoice = con.execute("SELECT max(invoice_id) FROM invoices WHERE customer_id = ?", [cids[1]]).fetchall()[0][0]
    assert issue_credit_note(con, invoice_id=invoice, reason="billing_error", amount_cents=300, at=AT).ok


def _bill(con, cids):
    res = run_billing(con, dt.date(2024, 5, 1), as_of=DAY)
    assert res.ok and res["invoices_created"] > 0


WRITES = {
    "settled payment": lambda con, cids: _pay(con, cids, "settled"),
    "failed payment": lambda con, cids: _pay(con, cids, "failed"),
    "credit note": _credit,
    "billing run": _bill,
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_each_write_that_can_change_a_balance_makes_the_snapshot_stale(write):
    con, cids = books()
    assert snapshot_receivables(con, as_of=DAY, at=AT).ok
    assert stored_receivables(con, as_of=DAY) is not None
    before = watermark(con)
    WRITES[write](con, cids)
    assert watermark(con) != before
    assert stored_receivables(con, as_of=DAY) is None
    # storing again gives the new figures (and replaces the stale one)
    assert snapshot_receivables(con, as_of=DAY, at=AT).ok
    assert_same(stored_receivables(con, as_of=DAY), receivables(con, as_of=DAY, min_periods=1))
    assert len(snapshots(con)) == 1


def test_an_import_makes_the_snapshot_stale():
    from data.importers import import_folder

    con = connect(":memory:")
    assert snapshot_receivables(con, as_of=DAY, at=AT).ok
    assert stored_receivables(con, as_of=DAY) is not None
    assert import_folder(con, GOOD_IMPORT, at=AT).ok
    assert stored_receivables(con, as_of=DAY) is None


def test_a_billing_run_that_creates_nothing_keeps_it_current():
    con, _ = books()
    assert snapshot_receivables(con, as_of=DAY, at=AT).ok
    again = run_billing(con, dt.date(2024, 4, 1), as_of=DAY)
    assert again.ok and again["invoices_created"] == 0
    assert stored_receivables(con, as_of=DAY) is not None


def test_an_ended_subscription_shows_at_once_in_a_current_snapshot():
    # subscriptions are ended in place (no watermark sees it): has_open_subscription is read live
    con, cids = books()
    assert snapshot_receivables(con, as_of=DAY, at=AT).ok
    assert cancel_subscription(con, customer_id=cids[1], end_date=DAY, at=AT).ok
    stored = stored_receivables(con, as_of=DAY)
    assert_same(stored, receivables(con, as_of=DAY, min_periods=1))
    late = stored.overdue_customers.set_index("customer_id")
    assert not late.loc[cids[1], "has_open_subscription"] and late.loc[cids[2], "has_open_subscription"]


def test_the_same_as_of_and_min_periods_is_replaced_not_duplicated():
    con, _ = books()
    first = snapshot_receivables(con, as_of=DAY, at=AT)
    second = snapshot_receivables(con, as_of=DAY, at=AT + dt.timedelta(hours=1))
    other = snapshot_receivables(con, as_of=DAY, at=AT, min_periods=2)
    assert first.ok and second.ok and other.ok and second["removed"] == 1
    assert [(d, m) for _, d, m in snapshots(con)] == [(DAY, 1), (DAY, 2)]
    assert stored_receivables(con, as_of=DAY).computed_at == AT + dt.timedelta(hours=1)
    n_late = len(receivables(con, as_of=DAY, min_periods=1).overdue_customers)
    assert con.execute("SELECT count(*) FROM receivables_ageing").fetchall()[0][0] == 2 * 5
    assert con.execute("SELECT count(*) FROM receivables_overdue_customers WHERE snapshot_id = ?",
                       [second["snapshot_id"]]).fetchall()[0][0] == n_late


def test_stale_snapshots_are_removed_and_at_most_keep_are_kept():
    con, cids = books()
    for i in range(KEEP + 2):
        assert snapshot_receivables(con, as_of=DAY + dt.timedelta(days=i), at=AT).ok
    assert len(snapshots(con)) == KEEP
    assert stored_receivables(con, as_of=DAY + dt.timedelta(days=KEEP + 1)) is not None
    assert stored_receivables(con, as_of=DAY) is None           # the oldest went
    _pay(con, cids, "settled")
    assert snapshot_receivables(con, as_of=DAY, at=AT).ok
    assert [d for _, d, _ in snapshots(con)] == [DAY]            # the stale ones went too
    ids = {r[0] for r in snapshots(con)}
    for table in ("receivables_ageing", "receivables_overdue_customers"):
        assert {r[0] for r in con.execute(f"SELECT DISTINCT snapshot_id FROM {table}").fetchall()} <= ids


@pytest.mark.parametrize("kwargs", [
    {"as_of": "2024-06-01"}, {"as_of": dt.datetime(2024, 6, 1)}, {"as_of": None},
    {"min_periods": 0}, {"min_periods": -1}, {"min_periods": 1.5}, {"min_periods": True},
    {"at": DAY}, {"at": "now"},
], ids=repr)
def test_bad_input_is_refused_clearly_and_writes_nothing(kwargs):
    con, _ = books()
    args = {"as_of": DAY, "at": AT, "min_periods": 1, **kwargs}
    res = snapshot_receivables(con, **args)
    assert not res.ok and res.code == "invalid_input"
    name = next(iter(kwargs))
    assert res.message.startswith("receivables snapshot refused: ") and name in res.message
    assert not has_table(con, "receivables_snapshots")
    if name != "at":
        with pytest.raises(ValueError, match=name):
            stored_receivables(con, as_of=args["as_of"], min_periods=args["min_periods"])


def test_no_table_yet_means_nothing_stored():
    con, _ = books()
    assert stored_receivables(con, as_of=DAY) is None


def test_a_snapshot_stored_meanwhile_by_another_session_is_a_conflict_with_the_figures(monkeypatch):
    con, _ = books()
    assert snapshot_receivables(con, as_of=DAY, at=AT).ok
    other = con.cursor()
    compute = snap.receivables

    def racing(c, **kwargs):
        # another session replaces the same snapshot while this one computes
        monkeypatch.setattr(snap, "receivables", compute)
        assert snapshot_receivables(other, as_of=DAY, at=AT + dt.timedelta(minutes=5)).ok
        return compute(c, **kwargs)

    monkeypatch.setattr(snap, "receivables", racing)
    res = snapshot_receivables(con, as_of=DAY, at=AT + dt.timedelta(minutes=1))
    assert not res.ok and res.code == "conflict"
    assert_same(res["receivables"], receivables(con, as_of=DAY, min_periods=1))
    assert stored_receivables(con, as_of=DAY).computed_at == AT + dt.timedelta(minutes=5)
    assert len(snapshots(con)) == 1
