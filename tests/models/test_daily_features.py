"""models/daily_features.py: the day's stored churn-risk features equal the live snapshot, and are
not used once anything they depend on has changed."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import cli
from data.db import connect
from models import daily_features as D
from models import features as F
from models.features import data_end

AT = dt.datetime(2025, 1, 6, 6)


@pytest.fixture()
def copy(world_path, tmp_path):
    """A writable copy of the session's world with the features of a day stored."""
    path = tmp_path / "world.duckdb"
    shutil.copy(world_path, path)
    con = connect(path)
    day = data_end(con) - dt.timedelta(days=20)
    stored = D.store_daily_features(con, as_of=day, at=AT)
    yield con, day, stored
    con.close()


def _served(con, day, n, seed=0):
    ids = F.snapshot_features(con, as_of=day)["customer_id"].to_numpy()
    return [int(c) for c in np.random.default_rng(seed).choice(ids, n, replace=False)]


def test_stored_rows_are_the_live_snapshot_of_every_customer(copy):
    con, day, stored = copy
    live = F.snapshot_features(con, as_of=day)
    assert stored.n_customers == len(live) > 0 and stored.as_of == day
    for cid in _served(con, day, 12):
        got = D.stored_snapshot(con, customer_id=cid, as_of=day)
        pd.testing.assert_frame_equal(got, live[live["customer_id"] == cid].reset_index(drop=True))
    # one who is not served that day has no row: the caller computes live (and finds nobody)
    gone = con.execute("SELECT customer_id FROM subscriptions GROUP BY customer_id "
                       "HAVING max(coalesce(end_date, DATE '9999-12-31')) < ? - 40 LIMIT 1", [day]).fetchall()
    assert D.stored_snapshot(con, customer_id=int(gone[0][0]), as_of=day) is None
    # another day was not stored
    assert D.stored_snapshot(con, customer_id=_served(con, day, 1)[0], as_of=day + dt.timedelta(days=1)) is None


def test_the_days_own_events_leave_it_current(copy):
    # a contact and a payment of the day itself (at or after as_of) do not count in its snapshot
    con, day, _ = copy
    cid = _served(con, day, 1, seed=1)[0]
    con.execute("INSERT INTO contacts (contact_id, customer_id, contacted_at, channel, reason, resolution, "
                "wait_seconds, is_intent_to_cancel) SELECT max(contact_id) + 1, ?, ?, 'phone', 'billing_error', "
                "'unresolved', 60, TRUE FROM contacts", [cid, dt.datetime.combine(day, dt.time(9))])
    con.execute("INSERT INTO payments SELECT max(payment_id) + 1, ?, ?, 500, 'card', 'settled', NULL FROM payments",
                [cid, dt.datetime.combine(day, dt.time(10))])
    assert D.stored_day(con, as_of=day) is not None
    assert D.stored_snapshot(con, customer_id=cid, as_of=day) is not None


@pytest.mark.parametrize("change", ["backdated contact", "backdated payment", "late usage", "price list",
                                    "customer attribute", "subscription ended"])
def test_anything_the_snapshot_reads_changing_makes_the_stored_row_unused(copy, change):
    con, day, _ = copy
    cid = _served(con, day, 1, seed=2)[0]
    before = dt.datetime.combine(day - dt.timedelta(days=3), dt.time(9))
    if change == "backdated contact":
        con.execute("INSERT INTO contacts (contact_id, customer_id, contacted_at, channel, reason, resolution, "
                    "wait_seconds, is_intent_to_cancel) SELECT max(contact_id) + 1, ?, ?, 'phone', "
                    "'billing_error', 'unresolved', 60, TRUE FROM contacts", [cid, before])
    elif change == "backdated payment":
        con.execute("INSERT INTO payments SELECT max(payment_id) + 1, ?, ?, 500, 'card', 'failed', NULL "
                    "FROM payments", [cid, before])
    elif change == "late usage":
        con.execute("INSERT INTO usage_records SELECT subscription_id, period_start, 5, NULL FROM usage_records "
                    "WHERE period_start < ? LIMIT 1", [day])
    elif change == "price list":
        con.execute("INSERT INTO plan_prices SELECT plan_id, ?, monthly_price_cents + 100, usage_allowance_units, "
                    "overage_price_cents FROM plan_prices WHERE plan_id = (SELECT min(plan_id) FROM plans) "
                    "ORDER BY effective_from DESC LIMIT 1", [dt.date(1990, 1, 1)])
    elif change == "customer attribute":
        con.execute("UPDATE customers SET is_autopay = NOT is_autopay WHERE customer_id = ?", [cid])
    else:
        con.execute("UPDATE subscriptions SET end_date = ?, end_reason = 'cancelled' "
                    "WHERE customer_id = ? AND end_date IS NULL", [day - dt.timedelta(days=1), cid])
    assert D.stored_snapshot(con, customer_id=cid, as_of=day) is None
    if change in ("customer attribute", "subscription ended"):
        # only that customer's row: the day stays current for the others
        other = next(c for c in _served(con, day, 5, seed=3) if c != cid)
        assert D.stored_snapshot(con, customer_id=other, as_of=day) is not None
    else:
        assert D.stored_day(con, as_of=day) is None


def test_storing_again_replaces_the_day_and_keeps_the_newest_days(copy):
    con, day, stored = copy
    for k in (1, 2, 3):
        D.store_daily_features(con, as_of=day + dt.timedelta(days=k), at=AT)
    D.store_daily_features(con, as_of=day + dt.timedelta(days=3), at=AT)
    days = [r[0] for r in con.execute("SELECT as_of FROM daily_feature_days ORDER BY as_of").fetchall()]
    assert days == [day + dt.timedelta(days=k) for k in range(4 - D.KEEP_DAYS, 4)]
    assert con.execute("SELECT count(DISTINCT as_of), count(*) FROM daily_features").fetchall()[0][0] == D.KEEP_DAYS
    newest = con.execute("SELECT n_customers, watermark FROM daily_feature_days ORDER BY as_of DESC LIMIT 1").fetchall()[0]
    assert con.execute("SELECT count(*) FROM daily_features WHERE as_of = ?",
                       [day + dt.timedelta(days=3)]).fetchall()[0][0] == newest[0]
    assert set(json.loads(newest[1])["counts"]) == {t for t, _ in D._DATED}


def test_bad_input_is_refused_and_writes_nothing(copy):
    con, day, _ = copy
    before = con.execute("SELECT count(*) FROM daily_features").fetchall()[0][0]
    with pytest.raises(TypeError):
        D.store_daily_features(con, as_of=AT, at=AT)
    with pytest.raises(TypeError):
        D.store_daily_features(con, as_of=day, at=day)
    assert con.execute("SELECT count(*) FROM daily_features").fetchall()[0][0] == before


def test_churn_risk_reads_the_stored_day(copy, trained, monkeypatch):
    from models.recommender import RecommenderModels, churn_risk
    con, day, _ = copy
    models = RecommenderModels(uplift=trained.uplift, churn_risk=trained.churn_fit.model)
    cid = _served(con, day, 1, seed=4)[0]
    live = churn_risk(con, customer_id=cid, as_of=day + dt.timedelta(days=1), models=models)   # not stored

    def no_history(*args, **kwargs):
        raise AssertionError("computed from the history although the day is stored")
    monkeypatch.setattr(F, "one_customer_history", no_history)
    stored = churn_risk(con, customer_id=cid, as_of=day, models=models)
    expected, _ = trained.churn_fit.model.explain(F.snapshot_features(con, as_of=day, customer_ids=[cid]), top=3)
    assert stored.risk == pytest.approx(float(expected.iloc[0]), abs=1e-12)
    assert live.risk is not None


def test_cli_daily_features(capsys, copy):
    con, day, _ = copy
    path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()[0][0]
    con.close()
    assert cli.main(["--db", path, "daily-features", "--as-of", str(day + dt.timedelta(days=1)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["as_of"] == str(day + dt.timedelta(days=1)) and out["customers"] > 0
    assert cli.main(["--db", path, "daily-features", "--as-of", "tomorrow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a date" in err and "Traceback" not in err
