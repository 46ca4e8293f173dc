"""Retention analytics on the benchmark world (targets at 1,000,000 customers): each monthly metric and
the cohort matrix in <= 1 s warm; Kaplan-Meier by a group in <= 2 s; the practices Cox model in <= 60 s
(it samples customers and says how many).
"""
from __future__ import annotations

from benchmarks.bench_simulate import ensure_world
from benchmarks.common import Context, Figure, Timer
from billing.pricing import add_months
from analytics.cohorts import cohort_retention, last_complete_month
from analytics.metrics import billing_metrics, care_metrics, subscription_metrics
from analytics.overview import data_as_of
from analytics.practices import PracticeCoxFitter
from analytics.survival import survival_by
from data.db import connect

NAME = "analytics"


def _warm(fn, repeat: int = 3) -> float:
    """Best of ``repeat`` timed calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        with Timer() as t:
            fn()
        best = min(best, t.seconds)
    return best


def run(ctx: Context) -> list[Figure]:
    con = connect(ensure_world(ctx), read_only=True)
    try:
        as_of = data_as_of(con)
        last = last_complete_month(as_of)
        first = add_months(last, -35)
        full = ctx.customers >= 1_000_000
        figures = []
        for label, fn in [
            ("subscription metrics (36 months)", lambda: subscription_metrics(con, first, last, as_of=as_of)),
            ("billing metrics (36 months)", lambda: billing_metrics(con, first, last, as_of=as_of)),
            ("care metrics (36 months)", lambda: care_metrics(con, first, last, as_of=as_of)),
            ("subscription metrics, one segment", lambda: subscription_metrics(con, first, last, as_of=as_of,
                                                                                 segment="consumer")),
            ("cohort retention matrix", lambda: cohort_retention(con, as_of)),
        ]:
            s = _warm(fn)
            figures.append(Figure(label, s, "s", "<= 1 s warm", (s <= 1) if full else None))
        s = _warm(lambda: survival_by(con, "plan", as_of=as_of), repeat=2)
        figures.append(Figure("Kaplan-Meier by plan (with log-rank)", s, "s", "<= 2 s", (s <= 2) if full else None))
        fitter = PracticeCoxFitter()
        with Timer() as t:
            fitter.fit(con, as_of)
        figures.append(Figure("practices Cox model (time-varying)", t.seconds, "s", "<= 60 s",
                              (t.seconds <= 60) if full else None,
                              f"fitted on a sample of {fitter.n_customers_:,} customers, {fitter.n_rows_:,} rows, "
                              f"{fitter.n_events_:,} churn events" if fitter.sampled_ else
                              f"all {fitter.n_customers_:,} customers"))
        return figures
    finally:
        con.close()
