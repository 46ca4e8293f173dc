"""Fixtures of the page tests: small worlds saved to files, and signed-in AppTest sessions.

A world is built once per session (a small simulated world when ``data.simulate`` exists, else a
world made with the billing use cases) and copied for each test module that writes to it.
The app opens whatever ``RETENTION_DB`` names.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.pages.worlds import (DEMO_PASSWORDS, build_imported_world, build_small_world, sign_in,
                                start_app)


@pytest.fixture(scope="session")
def world_master(tmp_path_factory) -> Path:
    """A small world (simulated when possible), built once and never written to."""
    path = tmp_path_factory.mktemp("worlds") / "small.duckdb"
    build_small_world(path)
    return path


@pytest.fixture(scope="session")
def imported_master(tmp_path_factory) -> Path:
    """A database with only imported customers and subscriptions (the Telco file): no invoices,
    no contacts, no simulated tables."""
    path = tmp_path_factory.mktemp("worlds") / "imported.duckdb"
    build_imported_world(path)
    return path


def _copy(master: Path, folder: Path) -> Path:
    target = folder / master.name
    shutil.copyfile(master, target)
    wal = master.with_suffix(".duckdb.wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_suffix(".duckdb.wal"))
    return target


@pytest.fixture(scope="module")
def world(world_master, tmp_path_factory) -> Path:
    """A private copy of the small world for one test module."""
    return _copy(world_master, tmp_path_factory.mktemp("world"))


@pytest.fixture()
def fresh_world(world_master, tmp_path) -> Path:
    """A private copy of the small world for one test (tests that write)."""
    return _copy(world_master, tmp_path)


@pytest.fixture(scope="module")
def imported(imported_master, tmp_path_factory) -> Path:
    return _copy(imported_master, tmp_path_factory.mktemp("imported"))


@pytest.fixture()
def app(monkeypatch, tmp_path):
    """``app(db, login=None)``: a started AppTest on ``db``, signed in as ``login`` when given.
    The model registry is a private empty folder (no model trained) unless a test trains one."""
    monkeypatch.setenv("RETENTION_MODELS", str(tmp_path / "models"))

    def make(db: Path, login: str | None = None):
        monkeypatch.setenv("RETENTION_DB", str(db))
        at = start_app()
        if login is not None:
            sign_in(at, login, DEMO_PASSWORDS[login])
        return at
    return make
