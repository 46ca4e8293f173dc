"""The model registry: round trip, newest wins, stale (old data, another database) and incompatible
(library versions, changed file) models are reported, never silently used."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from data.db import connect
from models import registry as R
from models.churn_risk import ChurnRiskModel

AT = dt.datetime(2025, 1, 2, 9, 30)


@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "c": rng.choice(["x", "y"], 300)})
    y = rng.random(300) < 1 / (1 + np.exp(-2 * X["a"]))
    return ChurnRiskModel(min_samples_leaf=20, max_iter=30).fit(X, y), X


def test_round_trip_keeps_the_model_and_its_record(tmp_path, world, small_model):
    model, X = small_model
    rec = R.save_model(model, kind="churn_risk", at=AT, con=world, root=tmp_path,
                       window=(dt.date(2023, 4, 2), dt.date(2024, 9, 30)), metrics={"roc_auc": np.float64(0.71)},
                       params=model.get_params(), notes=["a note"])
    assert (tmp_path / f"{rec.model_id}.joblib").is_file() and (tmp_path / f"{rec.model_id}.json").is_file()
    meta = json.loads((tmp_path / f"{rec.model_id}.json").read_text())
    assert meta["window_start"] == "2023-04-02" and meta["window_end"] == "2024-09-30"
    assert meta["metrics"] == {"roc_auc": 0.71} and meta["notes"] == ["a note"]
    assert meta["versions"]["scikit-learn"] and meta["versions"]["python"]
    assert len(meta["sha256"]) == 64 and meta["db_fingerprint"] == R.db_fingerprint(world)
    loaded = R.load_latest("churn_risk", con=world, root=tmp_path)
    assert loaded.status.ok, loaded.status.message
    assert loaded.record == rec
    np.testing.assert_array_equal(loaded.model.predict_proba(X), model.predict_proba(X))


def test_the_newest_of_a_kind_is_loaded(tmp_path, world, small_model):
    model, _ = small_model
    first = R.save_model(model, kind="churn_risk", at=AT, con=world, root=tmp_path)
    second = R.save_model(model, kind="churn_risk", at=AT + dt.timedelta(hours=1), con=world, root=tmp_path)
    same_time = R.save_model(model, kind="churn_risk", at=AT + dt.timedelta(hours=1), con=world, root=tmp_path)
    assert len({first.model_id, second.model_id, same_time.model_id}) == 3
    assert R.load_latest("churn_risk", con=world, root=tmp_path).record.model_id == same_time.model_id
    table = R.list_models(con=world, root=tmp_path)
    assert table["model_id"].tolist()[0] == same_time.model_id and table["is_latest"].sum() == 1
    assert (table["status"] == "ok").all()
    with pytest.raises(R.ModelUnavailable, match="run python cli.py train"):
        R.load_latest("uplift", con=world, root=tmp_path)


def test_no_model_at_all_says_train(tmp_path):
    with pytest.raises(R.ModelUnavailable, match="no trained churn_risk model.*run python cli.py train"):
        R.load_latest("churn_risk", root=tmp_path / "empty")
    assert R.list_models(root=tmp_path / "empty").empty


def test_a_model_trained_on_old_data_is_stale(tmp_path, world, small_model):
    model, _ = small_model
    rec = R.save_model(model, kind="churn_risk", at=AT, con=world, root=tmp_path)
    latest = world.execute("SELECT max(period_start) FROM invoices").fetchall()[0][0]
    four_months = (pd.Timestamp(latest) - pd.DateOffset(months=4)).date()
    three_months = (pd.Timestamp(latest) - pd.DateOffset(months=3)).date()
    old = dataclasses.replace(rec, data_end=four_months.isoformat())
    st = R.check_model(old, world, root=tmp_path)
    assert st.status == "stale" and "months before the latest billed period" in st.message
    assert R.check_model(dataclasses.replace(rec, data_end=three_months.isoformat()), world, root=tmp_path).ok
    assert R.check_model(old, world, root=tmp_path, max_age_months=6).ok
    # the newest model is stale: reported, and not loaded unless asked for
    (tmp_path / f"{rec.model_id}.json").write_text(json.dumps(old.as_dict()))
    loaded = R.load_latest("churn_risk", con=world, root=tmp_path)
    assert loaded.status.status == "stale" and loaded.model is None
    assert R.load_latest("churn_risk", con=world, root=tmp_path, allow_stale=True).model is not None


def test_a_model_of_another_database_is_stale(tmp_path, world, small_model):
    model, _ = small_model
    rec = R.save_model(model, kind="churn_risk", at=AT, con=world, root=tmp_path)
    other = connect(":memory:")
    other.execute("INSERT INTO plans (plan_id, code, name, rank) VALUES (1, 'solo', 'Solo', 1)")
    st = R.check_model(rec, other, root=tmp_path)
    assert st.status == "stale" and "another database" in st.message
    assert R.db_fingerprint(other) != R.db_fingerprint(world)


def test_library_versions_that_differ_in_major_or_minor_are_incompatible(tmp_path, world, small_model):
    model, _ = small_model
    rec = R.save_model(model, kind="churn_risk", at=AT, con=world, root=tmp_path)
    now = R.library_versions()
    major, minor = (int(x) for x in now["scikit-learn"].split(".")[:2])
    patch_only = {**now, "scikit-learn": f"{major}.{minor}.99"}
    assert R.check_model(rec, world, root=tmp_path, versions=patch_only).ok
    other_minor = {**now, "scikit-learn": f"{major}.{minor + 1}.0"}
    st = R.check_model(rec, world, root=tmp_path, versions=other_minor)
    assert st.status == "incompatible" and "scikit-learn" in st.message
    other_numpy = {**now, "numpy": "1.0.0"}
    assert R.check_model(rec, world, root=tmp_path, versions=other_numpy).status == "incompatible"


def test_a_changed_model_file_is_incompatible_and_never_loaded(tmp_path, world, small_model):
    model, _ = small_model
    rec = R.save_model(model, kind="churn_risk", at=AT, con=world, root=tmp_path)
    path = tmp_path / f"{rec.model_id}.joblib"
    path.write_bytes(path.read_bytes() + b"tampered")
    st = R.check_model(rec, world, root=tmp_path)
    assert st.status == "incompatible" and "hash" in st.message
    loaded = R.load_latest("churn_risk", con=world, root=tmp_path, allow_stale=True)
    assert loaded.model is None and loaded.status.status == "incompatible"
    with pytest.raises(R.ModelUnavailable, match="hash"):
        R.load_model(rec, root=tmp_path)
    path.unlink()
    assert "missing" in R.check_model(rec, world, root=tmp_path).message


def test_fingerprint_is_stable_while_the_database_grows(tmp_path, world_path):
    import shutil
    copy = tmp_path / "copy.duckdb"
    shutil.copy(world_path, copy)
    con = connect(copy)
    before = R.db_fingerprint(con)
    con.execute("INSERT INTO customers (customer_id, account_number, name, segment, region, channel, signup_date) "
                "VALUES (99999999, 'NEW', 'New Customer', 'consumer', 'north', 'web', DATE '2025-01-01')")
    assert R.db_fingerprint(con) == before
    con.execute("UPDATE offers SET percent_off = 15 WHERE code = 'pct10_3m'")
    assert R.db_fingerprint(con) != before
    con.close()
