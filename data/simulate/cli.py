"""``python cli.py demo``: build the demo world into a database file, with a progress bar.

:func:`add_demo_command` adds the subcommand to the main CLI's subparsers; :func:`run_demo` does the
work. The default start month is chosen so the world ends with the last full month before today
(this is the only place of the simulator that reads the date).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from data.db import DatabaseError, connect, resolve_path
from data.simulate.build import build_world
from data.simulate.config import DEFAULT_DEMO, DEMO_USERS, default_start


def add_demo_command(subparsers) -> argparse.ArgumentParser:
    """Add ``demo`` to the CLI's subparsers (its ``func`` is :func:`run_demo`)."""
    p = subparsers.add_parser(
        "demo", help="build a simulated demo world (customers, bills, care, truth) into the database",
        description="Build a simulated world month by month through the billing engine. The database "
                    "file must not exist yet or be empty (use --replace to overwrite a file).")
    p.add_argument("--customers", type=int, default=DEFAULT_DEMO.customers,
                   help=f"customers who sign up over the period (default {DEFAULT_DEMO.customers:,})")
    p.add_argument("--months", type=int, default=DEFAULT_DEMO.months,
                   help=f"months simulated (default {DEFAULT_DEMO.months})")
    p.add_argument("--start", help="first month, YYYY-MM (default: the world ends last month)")
    p.add_argument("--seed", type=int, default=DEFAULT_DEMO.seed, help=f"random seed (default {DEFAULT_DEMO.seed})")
    p.add_argument("--holdout-share", type=float, default=DEFAULT_DEMO.holdout_share,
                   help="share of eligible contacts in the randomized holdout (default 0.10)")
    p.add_argument("--replace", action="store_true", help="delete an existing database file first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_demo)
    return p


def run_demo(args: argparse.Namespace) -> int:
    """Build the demo world; prints a summary and the demo sign-ins. Returns the exit status.

    Errors (a non-empty database, bad arguments, a file in use) are one line on stderr, status 2.
    """
    try:
        from billing.pricing import parse_period
        start = args.start or default_start(args.months, dt.date.today())
        parse_period(start)
        config = DEFAULT_DEMO.replace(customers=args.customers, months=args.months, start=start,
                                      seed=args.seed, holdout_share=args.holdout_share)
        config.check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = resolve_path(getattr(args, "db", None))
    if path != ":memory:" and Path(path).exists():
        if not args.replace:
            print(f"error: {path} already exists; use --replace to overwrite it or --db for another file",
                  file=sys.stderr)
            return 2
        Path(path).unlink()
        Path(path + ".wal").unlink(missing_ok=True)
    try:
        con = connect(path)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        bar = None
        if not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=config.months + 2, unit="month", desc="building world")

        def progress(done: int, total: int, label: str) -> None:
            if bar is not None:
                bar.set_postfix_str(label)
                bar.update(done - bar.n)

        try:
            summary = build_world(con, config, progress=progress)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            if bar is not None:
                bar.close()
    finally:
        con.close()
    print(f"built {path}: {summary.customers:,} customers, {summary.months} months "
          f"({summary.first_day} to {summary.last_day}), {summary.invoices:,} invoices, "
          f"{summary.contacts:,} contacts, {summary.grants:,} offers granted in {summary.seconds:.0f} s")
    if summary.checks:
        print(f"warning: simulator and engine disagreed: {summary.checks}", file=sys.stderr)
    print("sign in with: " + ", ".join(f"{u.login} / {u.password} ({u.role}"
                                      + (f", tier {u.agent_tier})" if u.agent_tier else ")")
                                      for u in DEMO_USERS))
    print("next: python cli.py effects, practices, train, then daily-features and receivables store the "
          "analyses the pages read (the app's first start on an empty database does them in the background)")
    return 0
