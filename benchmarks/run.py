"""The performance suite: ``python benchmarks/run.py [--customers N] [--only NAME]``.

Prints each figure with its target and writes BENCHMARKS.md (figures, the command, the machine).
Speed is measured here, never asserted by timing inside unit tests.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Context, machine  # noqa: E402

# Every benchmark module exposes NAME and run(ctx) -> list[Figure]. Later parts add theirs here.
MODULES = [
    "benchmarks.bench_billing",
    "benchmarks.bench_simulate",
    "benchmarks.bench_import",
    "benchmarks.bench_analytics",
    "benchmarks.bench_effects",
    "benchmarks.bench_models",
    "benchmarks.bench_pages",
]


def available() -> dict[str, object]:
    found = {}
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        found[mod.NAME] = mod
    return found


def render(figures_by_bench, command: str, info: dict[str, str], notes: list[str], when: str) -> str:
    out = ["# Benchmarks", "",
           "Measured by the suite in `benchmarks/` (never by timing assertions in unit tests).", "",
           f"Command: `{command}`  ", f"Measured: {when}", "", "## Machine", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += ["", "## Figures", "", "| benchmark | figure | value | target | met | note |",
            "| --- | --- | --- | --- | --- | --- |"]
    for bench, figures in figures_by_bench.items():
        for f in figures:
            met = {True: "yes", False: "NO", None: "-"}[f.ok]
            value = f"{f.value:,.3f}" if f.value < 100 else f"{f.value:,.0f}"
            out.append(f"| {bench} | {f.name} | {value} {f.unit} | {f.target} | {met} | {f.note} |")
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="world size (default 1,000,000)")
    parser.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="report file")
    parser.add_argument("--workdir", help="scratch folder for benchmark databases (default: a temp dir)")
    args = parser.parse_args(argv)
    benches = available()
    chosen = args.only or list(benches)
    unknown = [c for c in chosen if c not in benches]
    if unknown:
        print(f"error: unknown benchmark {', '.join(unknown)}; have {', '.join(benches)}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="rd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(customers=args.customers, workdir=workdir)
    results = {}
    failed = False
    try:
        for name in chosen:
            print(f"== {name}", flush=True)
            figures = benches[name].run(ctx)
            results[name] = figures
            for f in figures:
                met = {True: "ok", False: "MISSED", None: ""}[f.ok]
                print(f"  {f.name:<55} {f.value:>12,.3f} {f.unit:<3} target {f.target:<40} {met} {f.note}",
                      flush=True)
                failed |= f.ok is False
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.output).write_text(render(results, command.strip(), machine(), ctx.notes,
                                        dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
