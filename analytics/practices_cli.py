"""The ``cli.py practices`` command: the care-practices Cox model, fitted and stored as a run.

    python cli.py [--db PATH] practices [--as-of YYYY-MM-DD] [--sample N | --all] [--seed N]
                                        [--no-ph-check] [--json]

Fits :class:`analytics.practices.PracticeCoxFitter` (hazard ratios of care practices with time-varying
covariates, a proportional-hazards check, the wait-time curve), stores it
(:func:`analytics.practice_runs.run_practices`) for the Churn explorer's Care practices view and
prints the ratios, or one JSON object with ``--json``. Exit status: 0 done; 1 nothing to fit (no churn
or no contacts, or too few churn events); 2 the command could not run (bad option, database missing
or in use). Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time

from analytics.effects_cli import _error
from data.db import DatabaseError, connect

DEFAULT_SAMPLE = 50_000


def add_practices_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``practices`` to ``cli.py``'s subparsers; its ``func`` is :func:`run_practices_command`."""
    p = subparsers.add_parser(
        "practices", help="fit the churn model of care practices (wait, unresolved contacts, billing errors) "
                          "and store it for the Churn explorer",
        description="Cox model of the churn hazard with time-varying covariates: hazard ratios of care "
                    "practices adjusted for intent, offers, bills and customer terms, a proportional-hazards "
                    "check and the wait-time curve. Definitions: analytics/practices.py.")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="analysis date (default: the last day the data records)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--sample", type=int, metavar="N", default=DEFAULT_SAMPLE,
                       help=f"fit on a random sample of N customers (default {DEFAULT_SAMPLE:,}: about a minute "
                            "on a million customers)")
    group.add_argument("--all", action="store_true", help="fit on every customer (slow on large worlds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--no-ph-check", action="store_true", help="skip the proportional-hazards check (a second fit)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_practices_command)
    return p


def run_practices_command(args: argparse.Namespace) -> int:
    """Run ``cli.py practices``; print the ratios or JSON; return the exit status."""
    from analytics.overview import data_as_of
    from analytics.practice_runs import load_latest, run_practices

    try:
        as_of = dt.date.fromisoformat(args.as_of) if getattr(args, "as_of", None) else None
    except ValueError:
        return _error(f"--as-of {args.as_of!r} is not a date (YYYY-MM-DD)")
    sample = None if getattr(args, "all", False) else getattr(args, "sample", DEFAULT_SAMPLE)
    if sample is not None and sample < 100:
        return _error("--sample must be at least 100 customers")
    try:
        con = connect(getattr(args, "db", None), create=False)
    except DatabaseError as exc:
        return _error(str(exc))
    try:
        as_of = as_of or data_as_of(con)
        if as_of is None:
            return _error("the database is empty: nothing to analyse", 1)
        at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        if not args.json:
            print(f"fitting the care-practices model as of {as_of} "
                  f"({'all customers' if sample is None else f'a sample of up to {sample:,} customers'}) ...",
                  file=sys.stderr)
        started = time.perf_counter()
        try:
            run_id = run_practices(con, as_of=as_of, at=at, sample_customers=sample,
                                   random_state=getattr(args, "seed", 0),
                                   check_ph=not getattr(args, "no_ph_check", False))
        except ValueError as exc:
            return _error(str(exc).splitlines()[0], 1)
        stored = load_latest(con, run_id)
    finally:
        con.close()
    if args.json:
        print(json.dumps(_as_json(stored), default=str))
    else:
        print(_as_text(stored, time.perf_counter() - started))
    return 0


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _clean(v.item())
    return v


def _as_json(stored) -> dict:
    run = stored.run
    return {"run_id": stored.run_id, "as_of": stored.as_of.isoformat(), "created_at": stored.created_at.isoformat(),
            "n_customers": stored.n_customers, "n_rows": int(run["n_rows"]), "n_events": stored.n_events,
            "sampled": stored.sampled, "params": run.get("params"),
            "hazard_ratios": [{k: _clean(v) for k, v in r.items()}
                              for r in stored.hazard_ratios.drop(columns=["n_customers", "n_events", "sampled"])
                              .to_dict("records")],
            "ph_test": [{k: _clean(v) for k, v in r.items()} for r in stored.ph_test.to_dict("records")]}


def _as_text(stored, seconds: float) -> str:
    lines = [f"practices run {stored.run_id} as of {stored.as_of}: {stored.n_customers:,} customers"
             f"{' (a sample)' if stored.sampled else ''}, {int(stored.run['n_rows']):,} rows, "
             f"{stored.n_events:,} churn events ({seconds:.0f} s)", "",
             f"  {'term':<62} {'hazard ratio [95%]':<26} {'p':>8}"]
    for _, r in stored.hazard_ratios.iterrows():
        mark = "*" if r["practice"] else " "
        lines.append(f"{mark} {r['label'][:62]:<62} {r['hazard_ratio']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"
                     f"{'':<4} {r['p']:>8.2g}")
    lines += ["", "* a care practice; the other terms adjust for what else moves churn.",
              "The Churn explorer's Care practices view shows this run."]
    return "\n".join(lines)
