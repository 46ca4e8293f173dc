"""Building simulated worlds: the app's default first-start demo (target <= 60 s) and the benchmark
world of N customers over 36 months (target <= 10 minutes and <= 8 GB peak memory at 1,000,000).

The demo is the world ``python cli.py demo`` and the app's first start build:
:func:`data.simulate.demo_config` of today (the :data:`data.simulate.DEFAULT_DEMO` size, ending with
last month). Each figure notes the CPU seconds of the process next to the wall time.

The benchmark world is kept at ``ctx.workdir / 'bench-world.duckdb'`` for the benchmarks that read a
large world (analytics, effects, models, pages); run with ``--workdir`` to keep it between runs.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

from benchmarks.common import Context, Figure, PeakMemory, Timer
from data.db import connect
from data.simulate import DEFAULT_DEMO, SimConfig, build_world, demo_config

NAME = "simulate"
BENCH_WORLD = "bench-world.duckdb"


def world_path(ctx: Context) -> Path:
    return ctx.workdir / BENCH_WORLD


def _fresh(path: Path) -> None:
    for p in (path, Path(str(path) + ".wal")):
        p.unlink(missing_ok=True)


def ensure_world(ctx: Context) -> Path:
    """The benchmark world of ``ctx.customers`` customers, built once per workdir."""
    path = world_path(ctx)
    if not path.exists():
        con = connect(path)
        build_world(con, _bench_config(ctx.customers))
        con.close()
    return path


def _bench_config(customers: int) -> SimConfig:
    return dataclasses.replace(DEFAULT_DEMO, customers=customers, months=36)


def run(ctx: Context) -> list[Figure]:
    demo_path = ctx.workdir / "bench-demo.duckdb"
    _fresh(demo_path)
    con = connect(demo_path)
    demo = demo_config(dt.date.today())  # what the app's first start and `cli.py demo` build today
    cpu = time.process_time()
    with Timer() as t_demo:
        summary = build_world(con, demo)
    demo_cpu = time.process_time() - cpu
    con.close()
    _fresh(demo_path)
    figures = [Figure("default demo world (first start)", t_demo.seconds, "s", "<= 60 s", t_demo.seconds <= 60,
                      f"{summary.customers:,} customers x {summary.months} months from {demo.start}, "
                      f"{summary.invoices:,} invoices, {summary.contacts:,} contacts; {demo_cpu:.0f} CPU-s")]
    path = world_path(ctx)
    _fresh(path)
    con = connect(path)
    cpu = time.process_time()
    with PeakMemory() as mem, Timer() as t_world:
        summary = build_world(con, _bench_config(ctx.customers))
    world_cpu = time.process_time() - cpu
    con.close()
    full = ctx.customers >= 1_000_000
    gb = mem.peak / 1e9
    figures += [
        Figure(f"world of {ctx.customers:,} customers x 36 months", t_world.seconds, "s",
               "<= 600 s at 1,000,000", (t_world.seconds <= 600) if full else None,
               f"{summary.invoices:,} invoices, {summary.contacts:,} contacts, {summary.grants:,} grants; "
               f"{world_cpu:.0f} CPU-s"),
        Figure("peak memory building that world", gb, "GB", "<= 8 GB at 1,000,000", (gb <= 8) if full else None,
               "resident set size of the process, sampled every 50 ms"),
    ]
    return figures
