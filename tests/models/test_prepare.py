"""models/prepare.py: the stored analyses of a new database in one call."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from analytics.practice_runs import load_latest as latest_practices
from analytics.strategies import latest_effects
from data.db import connect
from models.daily_features import stored_day
from models.prepare import STEPS, prepare_analyses
from models.registry import list_models

AT = dt.datetime(2025, 1, 6, 7)


def test_prepare_stores_effects_practices_models_and_the_days_features(world_path, tmp_path):
    path = tmp_path / "world.duckdb"
    shutil.copy(world_path, path)
    calls = []
    con = connect(path)
    try:
        done = prepare_analyses(con, at=AT, models_root=tmp_path / "models",
                                progress=lambda d, t, label: calls.append((d, t, label)))
        assert done.skipped == ()
        assert latest_effects(con).run_id == done.effects_run_id
        assert latest_practices(con).run_id == done.practices_run_id
        models = list_models(root=tmp_path / "models", con=con)
        assert set(done.model_ids) == set(models["model_id"])
        assert set(models["kind"]) == {"churn_risk", "uplift"}
        assert stored_day(con, as_of=done.as_of) is not None and done.features_day == done.as_of
    finally:
        con.close()
    assert [c[2] for c in calls] == [*STEPS, "done"]
    assert [c[0] for c in calls] == list(range(len(STEPS) + 1))
    assert set(done.seconds) == set(STEPS)


def test_a_step_without_enough_data_is_skipped_with_its_reason_and_the_rest_still_run(tmp_path):
    con = connect(tmp_path / "tiny.duckdb")
    try:
        from data.simulate import SimConfig, build_world
        build_world(con, SimConfig(customers=60, months=3, start="2024-01", seed=3))
        done = prepare_analyses(con, at=AT, models_root=tmp_path / "models")
        assert done.effects_run_id is None
        assert any(line.startswith("discount effects: ") for line in done.skipped)
        # every step was tried: each either stored something or says why not
        assert len(done.skipped) + len(done.seconds) == len(STEPS)
    finally:
        con.close()


def test_an_empty_database_is_refused():
    con = connect(":memory:")
    try:
        with pytest.raises(ValueError, match="empty"):
            prepare_analyses(con, at=AT)
    finally:
        con.close()
