"""Snapshot features: grain, definitions, and NO LEAKAGE (features at T are the same on a copy of the
database where everything dated on or after T is deleted)."""
from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest

from analytics.discounts import REASONS, contact_features, one_customer
from data.eligibility import offer_eligibility
from data.db import connect
from models import features as F

T = dt.date(2024, 3, 2)          # a snapshot day inside the session world (2023-01 .. 2024-12)

# Every row dated on or after T goes; rows that stay but describe a later fact forget it.
_TRUNCATE = (
    "DELETE FROM invoice_lines WHERE invoice_id IN (SELECT invoice_id FROM invoices WHERE issued_on >= $t)",
    "DELETE FROM credit_note_lines WHERE credit_note_id IN (SELECT credit_note_id FROM credit_notes WHERE issued_at >= $t)",
    "DELETE FROM credit_notes WHERE issued_at >= $t",
    "DELETE FROM invoices WHERE issued_on >= $t",
    "DELETE FROM payments WHERE received_at >= $t",
    "DELETE FROM contacts WHERE contacted_at >= $t",
    "DELETE FROM offer_grants WHERE granted_at >= $t",
    "DELETE FROM holdout_assignments WHERE assigned_at >= $t",
    "DELETE FROM usage_records WHERE recorded_at >= $t OR period_start >= $t",
    "DELETE FROM one_off_charges WHERE created_at >= $t OR period_start >= $t",
    "DELETE FROM billing_runs WHERE started_at >= $t",
    "DELETE FROM audit_log WHERE logged_at >= $t",
    "DELETE FROM plan_prices WHERE effective_from >= $t",
    "DELETE FROM subscriptions WHERE start_date >= $t",
    "UPDATE subscriptions SET end_date = NULL, end_reason = NULL WHERE end_date >= $t",
    "DELETE FROM customer_attributes WHERE customer_id IN (SELECT customer_id FROM customers WHERE signup_date >= $t)",
    "DELETE FROM customers WHERE signup_date >= $t",
    "UPDATE customers SET churned_on = NULL, churn_kind = NULL, churn_reason = NULL WHERE churned_on >= $t",
)


@pytest.fixture(scope="module")
def truncated(world_path, tmp_path_factory):
    """A copy of the world as it was at the start of day T."""
    path = tmp_path_factory.mktemp("truncated") / "before.duckdb"
    shutil.copy(world_path, path)
    con = connect(path)
    t = dt.datetime.combine(T, dt.time())
    for sql in _TRUNCATE:
        con.execute(sql, {"t": t})
    con.execute("CHECKPOINT")
    yield con
    con.close()


def test_snapshot_features_use_only_rows_before_the_snapshot(world, truncated):
    full = F.snapshot_features(world, as_of=T)
    before = F.snapshot_features(truncated, as_of=T)
    assert len(full) > 1000
    # the copy really lost the future: nobody churns after T there, many do in the full world
    assert F.churn_labels(world, as_of=T)["churned"].sum() > 20
    assert not F.churn_labels(truncated, as_of=T)["churned"].any()
    pd.testing.assert_frame_equal(full.reset_index(drop=True), before.reset_index(drop=True))


def test_contact_features_use_only_rows_before_the_contact(world, truncated):
    # live contacts at exactly T (they need not be in the database)
    ids = F.snapshot_features(world, as_of=T)["customer_id"].to_numpy()[::7]
    rng = np.random.default_rng(1)
    contacts = pd.DataFrame({"customer_id": ids, "contacted_at": pd.Timestamp(T),
                             "reason": rng.choice(REASONS, len(ids)),
                             "is_intent_to_cancel": rng.random(len(ids)) < 0.3,
                             "wait_seconds": rng.integers(0, 900, len(ids))})
    full = contact_features(world, contacts)
    before = contact_features(truncated, contacts)
    assert len(full) == len(contacts)
    pd.testing.assert_frame_equal(full, before)


def test_one_row_per_served_customer_and_every_feature(world):
    feats = F.snapshot_features(world, as_of=T)
    labels = F.churn_labels(world, as_of=T)
    assert list(feats.columns) == ["customer_id", "as_of", *F.FEATURES]
    assert feats["customer_id"].is_unique
    assert feats["customer_id"].tolist() == labels["customer_id"].tolist()
    served = world.execute("""
        SELECT count(DISTINCT customer_id) FROM subscriptions
        WHERE start_date <= ? AND (end_date IS NULL OR end_date >= ?)""", [T - dt.timedelta(days=1), T]).fetchall()[0][0]
    assert len(feats) >= served          # plus those changing plan on the eve of T
    assert set(F.FEATURE_DEFINITIONS) == set(F.FEATURES)
    assert feats[list(F.NUMERIC)].notna().all().all()


def test_customer_changing_plan_on_the_eve_stays_in_the_snapshot(world):
    row = world.execute("""
        SELECT s.customer_id, s.end_date + 1 AS day FROM subscriptions s
        JOIN subscriptions n ON n.previous_subscription_id = s.subscription_id
        WHERE s.end_reason = 'plan_change' AND s.end_date >= DATE '2023-06-01' ORDER BY s.end_date LIMIT 1
    """).fetchall()
    if not row:
        pytest.skip("no plan change in this world")
    cid, day = row[0]
    feats = F.snapshot_features(world, as_of=day, customer_ids=[cid])
    assert feats["customer_id"].tolist() == [cid]


def test_label_is_churn_within_the_horizon(world):
    labels = F.churn_labels(world, as_of=T, horizon_days=90)
    churned = labels[labels["churned"]]
    days = (pd.to_datetime(churned["churned_on"]) - pd.Timestamp(T)).dt.days
    assert ((days >= 0) & (days < 90)).all()
    assert len(labels[labels["churned"]]) < len(labels) * 0.2


def test_monthly_snapshots_have_complete_labels(world):
    snaps = F.monthly_snapshots(world, horizon_days=90)
    end = F.data_end(world)
    assert snaps and all(s.day == F.SNAPSHOT_DAY for s in snaps)
    assert all(s + dt.timedelta(days=89) <= end for s in snaps)
    assert snaps[-1] + dt.timedelta(days=89 + 31) > end        # the last one that fits


def test_sample_is_the_same_customers_at_every_snapshot(world):
    a = set(F.snapshot_features(world, as_of=T, sample=0.3)["customer_id"])
    b = set(F.snapshot_features(world, as_of=T + dt.timedelta(days=31), sample=0.3)["customer_id"])
    full = set(F.snapshot_features(world, as_of=T)["customer_id"])
    assert 0.2 * len(full) < len(a) < 0.4 * len(full)
    both = set(F.snapshot_features(world, as_of=T + dt.timedelta(days=31))["customer_id"]) & full
    # a customer served at both snapshots is in both samples or in neither
    assert (a & both) == (b & both)


@pytest.fixture(scope="module")
def past_contacts(world):
    """Recorded contacts spread over the history, with those of customers who had grants, credit
    notes and failed payments (the features that read the most tables)."""
    rows = world.execute("""
        SELECT contact_id, customer_id, contacted_at, reason, is_intent_to_cancel, wait_seconds FROM contacts
        WHERE customer_id IN (SELECT customer_id FROM offer_grants)
           OR customer_id IN (SELECT customer_id FROM credit_notes WHERE reason = 'billing_error')
           OR customer_id IN (SELECT customer_id FROM payments WHERE status = 'failed')
        ORDER BY contact_id""").df()
    return rows.iloc[np.linspace(0, len(rows) - 1, 40).astype(int)].reset_index(drop=True)


def test_one_customer_features_and_eligibility_equal_the_batch_ones(world, past_contacts):
    # the live path (analytics.discounts.one_customer: the customer's history copied once, as the
    # recommender reads it) gives exactly what the batch computes for all contacts at once
    batch = contact_features(world, past_contacts)
    offers = world.execute("SELECT offer_id FROM offers ORDER BY offer_id").df()["offer_id"]
    cand = pd.DataFrame({"customer_id": np.repeat(past_contacts["customer_id"].to_numpy(), len(offers)),
                         "offer_id": np.tile(offers.to_numpy(), len(past_contacts)),
                         "at": np.repeat(past_contacts["contacted_at"].to_numpy(), len(offers)),
                         "reason": np.repeat(past_contacts["reason"].to_numpy(), len(offers)), "agent_tier": 2})
    elig = offer_eligibility(world, cand).drop(columns="row")
    assert batch["prior_grants"].gt(0).any() and batch["billing_error_credits"].gt(0).any()
    assert batch["failed_payments_90d"].gt(0).any() and batch["overdue_cents"].gt(0).any()
    assert elig["eligible"].any() and not elig["eligible"].all()
    for i, c in past_contacts.iterrows():
        with one_customer(world, int(c["customer_id"])) as cur:
            live = contact_features(cur, past_contacts.iloc[[i]])
            live_elig = offer_eligibility(cur, cand.iloc[i * len(offers):(i + 1) * len(offers)])
        pd.testing.assert_frame_equal(live, batch.iloc[[i]])
        pd.testing.assert_frame_equal(live_elig.drop(columns="row"),
                                      elig.iloc[i * len(offers):(i + 1) * len(offers)].reset_index(drop=True))


def test_one_customer_cursor_refuses_another_customer(world, past_contacts):
    a, b = past_contacts["customer_id"].iloc[0], past_contacts["customer_id"].iloc[-1]
    assert a != b
    with one_customer(world, int(a)) as cur:
        assert cur.execute("SELECT count(DISTINCT customer_id) FROM invoices").fetchall()[0][0] == 1
        with pytest.raises(ValueError, match="customer"):
            contact_features(cur, past_contacts.iloc[[-1]])


def test_sampled_snapshot_frame_equals_each_snapshot_queried_alone(world):
    # snapshot_frame copies the sample's customers once and queries the copy (models.features._sampled)
    days = F.monthly_snapshots(world, horizon_days=90)[-3:]
    stacked = F.snapshot_frame(world, days, sample=0.3)
    alone = []
    for day in days:
        feats = F.snapshot_features(world, as_of=day, sample=0.3)
        labels = F.churn_labels(world, as_of=day, sample=0.3)
        alone.append(feats.merge(labels[["customer_id", "churned"]], on="customer_id", how="left"))
    expected = pd.concat(alone, ignore_index=True)
    expected["churned"] = expected["churned"].fillna(False).astype(bool)
    assert len(stacked) > 500
    pd.testing.assert_frame_equal(stacked, expected)
