"""The ``cli.py effects`` command: discount effectiveness and strategy comparison, stored as a run.

    python cli.py [--db PATH] effects [--as-of YYYY-MM-DD] [--budget EUR] [--sample N] [--json]

Prints the per-offer table (naive, adjusted and holdout effects on 180-day retention, costs and
returns) and the strategy table (customers kept, revenue kept, discount cost and net value per
1,000 contacts against giving no offers), or one JSON object with ``--json``, and stores the run
(:func:`analytics.strategies.run_effects`) for the pages. Exit status: 0 done; 1 nothing to analyse
(e.g. no contact with 180 days of follow-up); 2 the command could not run (bad option, database
missing or in use). Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys

import numpy as np

from data.db import DatabaseError, connect
from data.money import format_cents, parse_cents


def add_effects_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``effects`` to ``cli.py``'s subparsers; its ``func`` is :func:`run_effects_command`."""
    p = subparsers.add_parser(
        "effects", help="estimate which discounts keep customers and compare offer strategies (stores a run)",
        description="Per offer: naive, adjusted (cross-fitted doubly robust) and randomized-holdout effects on "
                    "180-day retention, with costs and returns; then the value of offer strategies. "
                    "Definitions: docs/EFFECTS.md.")
    p.add_argument("--as-of", metavar="YYYY-MM-DD",
                   help="analysis date (default: the last day the data records); contacts need 180 days of "
                        "follow-up before it")
    p.add_argument("--budget", metavar="EUR",
                   help="discount budget of the budget-constrained strategy, over the analysed contacts "
                        "(default: half of what the model-targeted strategy spends)")
    p.add_argument("--sample", type=int, metavar="N",
                   help="fit on a random sample of at most N followed-up contacts (large histories)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_effects_command)
    return p


def _error(message: str, status: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def run_effects_command(args: argparse.Namespace) -> int:
    """Run ``cli.py effects``; print the tables or JSON; return the exit status."""
    from analytics.overview import data_as_of
    from analytics.strategies import latest_effects, run_effects

    as_of = None
    if getattr(args, "as_of", None):
        try:
            as_of = dt.date.fromisoformat(args.as_of)
        except ValueError:
            return _error(f"--as-of {args.as_of!r} is not a date (YYYY-MM-DD)")
    budget = None
    if getattr(args, "budget", None) is not None:
        try:
            budget = parse_cents(args.budget)
        except ValueError as exc:
            return _error(f"--budget: {exc}")
        if budget < 0:
            return _error("--budget must not be negative")
    sample = getattr(args, "sample", None)
    if sample is not None and sample < 100:
        return _error("--sample must be at least 100 contacts")
    try:
        con = connect(getattr(args, "db", None), create=False)
    except DatabaseError as exc:
        return _error(str(exc))
    try:
        if as_of is None:
            as_of = data_as_of(con)
            if as_of is None:
                return _error("the database is empty: nothing to analyse", 1)
        at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        bar = _progress(quiet=bool(args.json))
        try:
            run_id = run_effects(con, as_of=as_of, at=at, budget_cents=budget, sample=sample,
                                 progress=bar.update if bar else None)
        except ValueError as exc:
            return _error(str(exc).splitlines()[0], 1)
        finally:
            if bar:
                bar.close()
        stored = latest_effects(con, run_id)
    finally:
        con.close()
    if args.json:
        print(json.dumps(_as_json(stored), default=_json_default))
    else:
        print(_as_text(stored))
    return 0


class _Bar:
    def __init__(self):
        from tqdm import tqdm
        self._bar = tqdm(total=7, desc="effects", unit="step", file=sys.stderr)

    def update(self, done, total, label):
        self._bar.total = total
        self._bar.set_postfix_str(label)
        self._bar.update(done - self._bar.n)

    def close(self):
        self._bar.close()


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    return _Bar()


def _json_default(x):
    if isinstance(x, (dt.date, dt.datetime)):
        return x.isoformat()
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return None if math.isnan(x) else float(x)
    if x is None:
        return None
    try:
        import pandas as pd
        if pd.isna(x):
            return None
    except (TypeError, ValueError):
        pass
    return str(x)


def _records(df) -> list[dict]:
    out = []
    for key, row in df.iterrows():
        rec = {df.index.name or "key": key}
        for c, v in row.items():
            if isinstance(v, float) and math.isnan(v):
                v = None
            elif v is not None and not isinstance(v, (str, bool, int, float, list, dict)):
                v = _json_default(v)
            rec[c] = v
        out.append(rec)
    return out


def _as_json(stored) -> dict:
    run = dict(stored.run)
    return {"run_id": stored.run_id, "as_of": run.get("as_of"), "created_at": run.get("created_at"),
            "window": [run.get("window_start"), run.get("window_end")], "n_contacts": run.get("n_contacts"),
            "n_left_out": run.get("n_left_out"), "params": run.get("params"),
            "offers": _records(stored.offers), "strategies": _records(stored.strategies)}


def _pp(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def _ci(est, lo, hi) -> str:
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "n/a"
    return f"{_pp(est)} [{_pp(lo)}, {_pp(hi)}]"


def _eur(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or (hasattr(x, "__class__") and str(x) == "<NA>"):
        return "n/a"
    return format_cents(int(x))


def _as_text(stored) -> str:
    run = stored.run
    lines = [f"effects run {stored.run_id}: {run['n_contacts']:,} contacts from {run.get('window_start')} to "
             f"{run.get('window_end')} with 180 days of follow-up before {run.get('as_of')} "
             f"({run['n_left_out']:,} more without follow-up left out)", "",
             "Effect on 180-day retention, percentage points [95% interval], per offer against no offer:"]
    head = (f"  {'offer':<11} {'eligible':>8} {'granted':>7}  {'naive':<22} {'adjusted (AIPW)':<22} "
            f"{'holdout':<22} {'cost/contact':>12} {'revenue kept':>12} {'ROI':>7}")
    lines += [head]
    for code, r in stored.offers.iterrows():
        roi = "" if r["roi"] is None or (isinstance(r["roi"], float) and math.isnan(r["roi"])) else f"{r['roi']:+.0%}"
        lines.append(f"  {code:<11} {int(r['n_eligible']):>8,} {int(r['n_granted']):>7,}  "
                     f"{_ci(r['naive'], r['naive_lo'], r['naive_hi']):<22} "
                     f"{_ci(r['adjusted'], r['adjusted_lo'], r['adjusted_hi']):<22} "
                     f"{_ci(r['holdout'], r['holdout_lo'], r['holdout_hi']):<22} "
                     f"{_eur(r['expected_cost_cents']):>12} {_eur(r['revenue_kept_cents']):>12} {roi:>7}")
        if r.get("note"):
            lines.append(f"  {'':<11} note: {r['note']}")
    lines += ["", "Strategies, per 1,000 contacts against giving no offers (doubly robust; current practice observed):",
              f"  {'strategy':<44} {'treated':>7} {'kept [95%]':<20} {'revenue kept':>13} {'discount cost':>13} "
              f"{'net value [95%]':<32}"]
    for _, r in stored.strategies.iterrows():
        kept = f"{r['kept_per_1000']:+.1f} [{r['kept_per_1000_lo']:+.1f}, {r['kept_per_1000_hi']:+.1f}]"
        net = (f"{_eur(r['net_value_per_1000_cents'])} [{_eur(r['net_value_per_1000_lo_cents'])}, "
               f"{_eur(r['net_value_per_1000_hi_cents'])}]")
        lines.append(f"  {r['label'][:44]:<44} {r['share_treated']:>7.0%} {kept:<20} "
                     f"{_eur(r['revenue_kept_per_1000_cents']):>13} {_eur(r['discount_cost_per_1000_cents']):>13} "
                     f"{net:<32}")
    for note in run.get("params", {}).get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
