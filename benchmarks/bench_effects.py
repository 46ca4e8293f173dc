"""Discount effectiveness and strategy comparison on a simulated world.

Uses the world the simulate benchmark built (``<workdir>/bench-world.duckdb``) when it exists, else
builds one of ``ctx.customers`` customers. Figures: the whole ``run_effects`` (contact dataset,
cross-fitted models, per-offer effects, strategies, storing the run; target <= 5 min at 1,000,000
customers), its parts, the covariates of every historical contact in one pass, and the covariates of
one live contact (the agent desk; target <= 50 ms). Above :data:`SAMPLE` followed-up contacts the
models are fitted on a uniform random sample of that many contacts (said in the note).
"""
from __future__ import annotations

import datetime as dt
import statistics
import time

from analytics.discounts import contact_features, one_customer
from analytics.overview import data_as_of
from analytics.strategies import latest_effects, run_effects
from benchmarks.common import Context, Figure, PeakMemory, Timer, bench_world
from data.db import connect

NAME = "effects"
SAMPLE = 50_000          # contacts the models are fitted on, at most
LIVE_REPEATS = 20


def _world(ctx: Context):
    return bench_world(ctx, "effects")


def run(ctx: Context) -> list[Figure]:
    path, origin = _world(ctx)
    con = connect(path)
    try:
        as_of = data_as_of(con)
        customers = con.execute("SELECT count(*) FROM customers").fetchall()[0][0]
        contacts = con.execute("SELECT customer_id, contacted_at, reason, is_intent_to_cancel, wait_seconds "
                               "FROM contacts ORDER BY contact_id").df()
        followed = int((contacts["contacted_at"].dt.normalize() + dt.timedelta(days=180)
                        < dt.datetime.combine(as_of, dt.time())).sum())
        sample = SAMPLE if followed > SAMPLE else None
        steps: dict[str, float] = {}
        last = [time.perf_counter()]

        def progress(done, total, label):
            now = time.perf_counter()
            steps[label] = now - last[0]
            last[0] = now

        with PeakMemory() as mem, Timer() as t_run:
            run_id = run_effects(con, as_of=as_of, at=dt.datetime(2000, 1, 1), sample=sample, progress=progress)
        stored = latest_effects(con, run_id)
        params = stored.run["params"]
        with Timer() as t_all:
            contact_features(con, contacts)
        live = contacts.sample(LIVE_REPEATS, random_state=1)

        def one_live(contact):
            # as the recommender does: the customer's invoices and payments copied once, then the covariates
            with one_customer(con, int(contact["customer_id"].iloc[0])) as cur:
                return contact_features(cur, contact)
        one_live(live.iloc[[0]])    # warm the caches once
        times = []
        for i in range(LIVE_REPEATS):
            with Timer() as t_one:
                one_live(live.iloc[[i]])
            times.append(t_one.seconds * 1000)
    finally:
        con.close()
    scale = customers / 1_000_000
    sampled = (f"models fitted on a random sample of {SAMPLE:,} of {followed:,} followed-up contacts"
               if sample else f"all {followed:,} followed-up contacts")
    note = (f"{origin}: {customers:,} customers, {len(contacts):,} contacts; {sampled}; "
            f"peak memory {mem.peak / 2**30:.1f} GiB")
    target_ok = t_run.seconds <= 300 if customers >= 1_000_000 else None
    figures = [
        Figure("effects run (dataset, models, offers, strategies, stored)", t_run.seconds, "s",
               "<= 300 s at 1,000,000 customers", target_ok, note),
        Figure("  contact dataset (features, eligibility, costs)", float(params.get("seconds_dataset", 0)), "s", "",
               None, f"{params.get('n_followed_up', 0):,} followed-up contacts"),
        Figure("  cross-fitted effect models", float(params.get("seconds_fit", 0)) - float(params.get("seconds_dataset", 0)),
               "s", "", None, "AIPW with every offer as an arm, 5 folds, and the DR-learner"),
        Figure("covariates of every contact (one pass)", t_all.seconds, "s", "", None,
               f"{len(contacts):,} contacts ({len(contacts) / max(t_all.seconds, 1e-9):,.0f} per s)"),
        Figure("covariates of one live contact (median)", statistics.median(times), "ms", "<= 50 ms",
               statistics.median(times) <= 50, f"max {max(times):.0f} ms over {LIVE_REPEATS} contacts"),
    ]
    if scale < 1:
        ctx.notes.append(f"effects: measured at {customers:,} customers; the 5-minute target is for 1,000,000")
    return figures
