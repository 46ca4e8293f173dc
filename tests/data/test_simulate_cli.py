"""``python cli.py demo``: builds a world into a file, refuses to overwrite one unless asked."""
from __future__ import annotations

import argparse
import datetime as dt

import duckdb

from data.simulate import DEFAULT_DEMO, demo_config
from data.simulate.cli import add_demo_command, default_start, run_demo


def test_default_start_makes_the_world_end_with_the_last_full_month():
    assert default_start(36, dt.date(2026, 11, 22)) == "2023-11"   # 2023-11 .. 2026-10
    assert default_start(1, dt.date(2026, 1, 1)) == "2025-12"
    assert default_start(12, dt.date(2026, 12, 31)) == "2025-12"
    config = demo_config(dt.date(2026, 11, 22), customers=100, months=36)
    assert (config.start, config.months, config.customers) == ("2023-11", 36, 100)
    assert demo_config(dt.date(2026, 11, 22)).start == default_start(DEFAULT_DEMO.months, dt.date(2026, 11, 22))


def _args(path, **extra):
    parser = argparse.ArgumentParser()
    parser.add_argument("--db")
    add_demo_command(parser.add_subparsers(dest="command"))
    argv = ["--db", str(path), "demo", "--customers", "300", "--months", "3", "--start", "2024-01", "--quiet"]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def test_demo_builds_a_world_and_refuses_to_overwrite_it(tmp_path, capsys):
    path = tmp_path / "demo.duckdb"
    assert run_demo(_args(path)) == 0
    out = capsys.readouterr().out
    assert "300 customers" in out and "admin / admin-demo" in out and "python cli.py effects" in out
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*) FROM customers").fetchall()[0][0] == 300
    assert con.execute("SELECT max(period_start) FROM invoices").fetchall()[0][0] == dt.date(2024, 3, 1)
    con.close()
    assert run_demo(_args(path)) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_demo(_args(path, replace=True, seed=3)) == 0


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert run_demo(_args(tmp_path / "x.duckdb", start="2024-13")) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "x.duckdb").exists()
