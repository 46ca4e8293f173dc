"""Shared pieces of the benchmark suite: figures, timing, memory, machine description."""
from __future__ import annotations

import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Figure:
    """One measured figure and its target: ``ok`` is None when there is no target to meet."""

    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Context:
    """What every benchmark gets: the size asked for and a scratch folder for its databases."""

    customers: int
    workdir: Path
    notes: list[str] = field(default_factory=list)


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start
        return False


class PeakMemory:
    """Peak resident memory (bytes) of this process while the block runs, sampled every 50 ms."""

    def __enter__(self):
        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        return False


def machine() -> dict[str, str]:
    """Cores, memory and versions of the machine the figures were measured on."""
    from importlib.metadata import PackageNotFoundError, version
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }
    for package in ("duckdb", "pandas", "numpy", "scikit-learn", "lifelines", "streamlit"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            pass
    return info


def bench_world(ctx: Context, name: str) -> tuple[Path, str]:
    """The world a benchmark reads: the simulate benchmark's ``bench-world.duckdb`` in the workdir when
    it is there, otherwise a default-config world of ``ctx.customers`` built into
    ``bench-<name>-world.duckdb`` (noted). Returns the path and where the world came from."""
    shared = ctx.workdir / "bench-world.duckdb"
    if shared.exists():
        return shared, "the simulate benchmark's world"
    from data.db import connect
    from data.simulate import DEFAULT_DEMO, build_world
    path = ctx.workdir / f"bench-{name}-world.duckdb"
    for p in (path, path.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    con = connect(path)
    try:
        with Timer() as t:
            build_world(con, DEFAULT_DEMO.replace(customers=ctx.customers))
        con.execute("CHECKPOINT")
    finally:
        con.close()
    ctx.notes.append(f"{name}: built a world of {ctx.customers:,} customers in {t.seconds:.0f} s")
    return path, f"a world of {ctx.customers:,} customers built here"
