"""Importing canonical files: 1,000,000 invoice rows (with their lines, customers, plans and
subscriptions) from Parquet into a new database (target <= 10 s).

The files are exported from the benchmark world (built by the simulate benchmark, or here). The
figure notes the CPU seconds of the import next to its wall time.
"""
from __future__ import annotations

import datetime as dt
import shutil
import time

from benchmarks.bench_simulate import ensure_world
from benchmarks.common import Context, Figure, Timer
from data.db import connect
from data.importers import import_folder
from data.importers.spec import TABLES

NAME = "import"
INVOICES = 1_000_000


def _export(ctx: Context, folder) -> dict[str, int]:
    """Write the first ``INVOICES`` invoices of the benchmark world, their lines and every row they
    refer to (customers, subscriptions, plans and prices, tax rates, charges, grants, offers, contacts,
    users) to Parquet in ``folder``."""
    world = connect(ensure_world(ctx), read_only=True)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    try:
        world.execute(f"CREATE TEMP TABLE pick AS SELECT * FROM invoices ORDER BY invoice_id LIMIT {INVOICES}")
        world.execute("CREATE TEMP TABLE pick_subs AS SELECT * FROM subscriptions WHERE subscription_id IN "
                      "(SELECT subscription_id FROM pick)")
        queries = {
            "plans": "SELECT * FROM plans",
            "plan_prices": "SELECT * FROM plan_prices",
            "tax_rates": "SELECT * FROM tax_rates",
            "customers": "SELECT * FROM customers WHERE customer_id IN (SELECT customer_id FROM pick_subs)",
            "subscriptions": "SELECT * FROM pick_subs",
            "invoices": "SELECT * FROM pick",
            "invoice_lines": "SELECT * FROM invoice_lines WHERE invoice_id <= (SELECT max(invoice_id) FROM pick)",
            "one_off_charges": "SELECT * FROM one_off_charges WHERE subscription_id IN "
                               "(SELECT subscription_id FROM pick_subs)",
            "users": "SELECT * FROM users",
            "offers": "SELECT * FROM offers",
            # contacts about bills outside the picked invoices keep no reference to them
            "contacts": "SELECT * REPLACE (CASE WHEN invoice_id <= (SELECT max(invoice_id) FROM pick) "
                        "THEN invoice_id END AS invoice_id) FROM contacts WHERE customer_id IN "
                        "(SELECT customer_id FROM pick_subs)",
            "offer_grants": "SELECT * FROM offer_grants WHERE customer_id IN (SELECT customer_id FROM pick_subs)",
        }
        for table, query in queries.items():
            cols = ", ".join(f'"{c}"' for c in TABLES[table].column_names)
            world.execute(f"COPY (SELECT {cols} FROM ({query})) TO '{folder / (table + '.parquet')}' (FORMAT parquet)")
            counts[table] = world.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
    finally:
        world.close()
    return counts


def run(ctx: Context) -> list[Figure]:
    folder = ctx.workdir / "import-parquet"
    counts = _export(ctx, folder)
    target = ctx.workdir / "bench-import.duckdb"
    target.unlink(missing_ok=True)
    con = connect(target)
    cpu = time.process_time()
    with Timer() as t:
        report = import_folder(con, folder, at=dt.datetime(2026, 1, 1))
    cpu = time.process_time() - cpu
    con.close()
    target.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    if not report.ok:
        raise RuntimeError(f"benchmark import rejected: {report.message}")
    n = counts["invoices"]
    return [Figure(f"import {n:,} invoices from Parquet", t.seconds, "s", "<= 10 s for 1,000,000 invoice rows",
                   (t.seconds <= 10) if n >= 1_000_000 else None,
                   f"with {counts['invoice_lines']:,} lines, {counts['customers']:,} customers, "
                   f"{counts['subscriptions']:,} subscriptions; {cpu:.1f} CPU-s")]
