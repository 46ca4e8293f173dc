"""Shared fixtures of the model tests: one small simulated world per session, and the models fitted on it.

The world (:data:`WORLD`): 5,000 customers over 24 months, with contacts three times as frequent
as the demo's and a 25 % randomized holdout, so that a few thousand contacts exist to learn offer
effects from (about 80 s to build on two busy cores). It is opened read-only and shared by every
test module; tests that write use their own copy.

The fitted models are session fixtures too (fitting is the slow part): :func:`trained` runs
:func:`models.registry.train_models` once (churn risk with its time-split validation, uplift on every
followed-up contact, both saved in a session registry), and :func:`uplift_split` fits an uplift model
only on the contacts whose 180-day outcome was known at :func:`holdout_cut` (the later contacts are
the recommender's test set).

Native threads are limited to one while the model tests run: on a machine shared with other work,
OpenMP thread contention makes gradient boosting many times slower (no effect on results).

Developer shortcut: ``MODELS_TEST_WORLD=/path/world.duckdb`` reuses a world file built from the same
:data:`WORLD` config (checked against the config recorded in ``sim_world``) instead of building one.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from data.db import connect

try:
    from data.simulate import SimConfig, build_world
except ModuleNotFoundError:  # pragma: no cover - the simulator is part of this checkout
    SimConfig = build_world = None

ROOT = Path(__file__).resolve().parents[2]
TELCO = ROOT.parent / "shared" / "data" / "real" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"


def _world_config():
    base = SimConfig(customers=5000, months=24, start="2023-01", seed=5)
    k = 3.0
    return base.replace(
        rate_service=base.rate_service * k, rate_not_understood=base.rate_not_understood * k,
        rate_cheaper=base.rate_cheaper * k, rate_cancel=base.rate_cancel * k,
        rate_higher_per_shock=base.rate_higher_per_shock * k / 1.5,
        rate_cheaper_per_shock=base.rate_cheaper_per_shock * k / 1.5,
        rate_cancel_per_shock=base.rate_cancel_per_shock * k / 1.5,
        holdout_share=0.25)


WORLD = _world_config() if SimConfig is not None else None


def _recorded_config(path: Path) -> dict | None:
    import duckdb
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        rows = con.execute("SELECT value FROM sim_world WHERE key = 'config'").fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return json.loads(rows[0][0]) if rows else None


@pytest.fixture(scope="session", autouse=True)
def _one_native_thread():
    limits = threadpool_limits(1)
    yield
    limits.restore_original_limits()


@pytest.fixture(scope="session")
def world_path(tmp_path_factory) -> Path:
    if WORLD is None:
        pytest.skip("the simulator (data.simulate) is not there")
    want = json.loads(json.dumps(dataclasses.asdict(WORLD), default=str, sort_keys=True))
    cached = os.environ.get("MODELS_TEST_WORLD")
    path = tmp_path_factory.mktemp("models-world") / "world.duckdb"
    if cached and Path(cached).is_file() and _recorded_config(Path(cached)) == want:
        shutil.copy(cached, path)
        return path
    con = connect(path)
    try:
        build_world(con, WORLD)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    if cached and not Path(cached).exists():
        shutil.copy(path, cached)
    return path


@pytest.fixture(scope="session")
def world(world_path):
    """A read-only connection to the session's world."""
    con = connect(world_path, read_only=True)
    yield con
    con.close()


def holdout_cut(con) -> dt.date:
    """The day the recommender's training data stops: contacts whose 180-day outcome is known by
    then train the uplift model; the others (later) are held out."""
    from models.features import data_end
    end = data_end(con)
    return end - dt.timedelta(days=120)


TRAINED_AT = dt.datetime(2025, 1, 5, 8)


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def trained(world, registry_root):
    """:func:`models.registry.train_models` on the world, saved in the session registry."""
    from models.registry import train_models
    return train_models(world, at=TRAINED_AT, root=registry_root, uplift={"n_bootstrap": 5, "cv": 3})


@pytest.fixture(scope="session")
def churn_fit(trained):
    return trained.churn_fit


@pytest.fixture(scope="session")
def uplift_split(world):
    """(model fitted on the contacts known by the cut, the full contact dataset, the cut)."""
    from analytics.discounts import contact_dataset
    from models.features import data_end
    from models.uplift import OfferUpliftModel
    cut = holdout_cut(world)
    train = contact_dataset(world, as_of=cut)
    full = contact_dataset(world, as_of=data_end(world) + dt.timedelta(days=1))
    model = OfferUpliftModel(n_bootstrap=10, cv=3).fit(train.frame)
    return model, full, cut
