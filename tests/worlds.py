"""Simulated worlds for tests, built once and cached on disk.

A world of a given :class:`data.simulate.SimConfig` is built into
``$RETENTION_TEST_WORLDS`` (default: ``<tmp>/retention-desk-test-worlds``) under a name keyed by the
config and by the source of the code that builds it (``data/``, ``billing/``): a change to the
simulator or the billing engine builds a fresh world, an unchanged checkout reuses the file across
test sessions and modules. Builds take a file lock, so parallel sessions build a world once.

Tests open a cached world read-only (:func:`open_world`); a test that writes copies it first
(:func:`copy_world`). Set ``RETENTION_TEST_WORLDS_REBUILD=1`` to ignore the cache.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from data.db import connect

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("data", "billing")


def cache_dir() -> Path:
    """Where cached worlds live."""
    d = Path(os.environ.get("RETENTION_TEST_WORLDS") or Path(tempfile.gettempdir()) / "retention-desk-test-worlds")
    d.mkdir(parents=True, exist_ok=True)
    return d


def world_key(config) -> str:
    """A short hash of the config and of every source file the world is built with."""
    h = hashlib.sha256(repr(config).encode())
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ROOT)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


_SESSION: dict[str, Path] = {}


def world_path(config) -> Path:
    """The file of a built world of ``config``, building it first when it is not cached.

    Within one process the first answer is kept, so a session keeps using the same world even when
    the sources change under it (the next session rebuilds).
    """
    if repr(config) in _SESSION and _SESSION[repr(config)].exists():
        return _SESSION[repr(config)]
    _SESSION[repr(config)] = path = _world_path(config)
    return path


def _world_path(config) -> Path:
    from data.simulate import build_world

    target = cache_dir() / f"world-{config.customers}c-{config.months}m-{world_key(config)}.duckdb"
    rebuild = os.environ.get("RETENTION_TEST_WORLDS_REBUILD") == "1"
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if target.exists() and not rebuild:
                return target
            partial = target.with_suffix(".building")
            for p in (partial, Path(str(partial) + ".wal"), target, Path(str(target) + ".wal")):
                p.unlink(missing_ok=True)
            con = connect(partial)
            try:
                build_world(con, config)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(partial, target)
            return target
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_world(config):
    """A read-only connection to the cached world of ``config``."""
    return connect(world_path(config), read_only=True)


def copy_world(config, dest: Path) -> Path:
    """Copy the cached world of ``config`` to ``dest`` (a file path) for a test that writes."""
    shutil.copyfile(world_path(config), dest)
    return dest
