"""Models: training the churn-risk and uplift models, one recommendation, and the Telco benchmark.

Uses the world the simulate benchmark built (``<workdir>/bench-world.duckdb``) when it exists, else
builds one of ``ctx.customers`` customers. Figures:

- training all models (``models.registry.train_models``: churn-risk features for the monthly
  snapshots, time-split validation of both churn models, refit, contact dataset, DR-learner uplift
  with bootstrap intervals, saving): target <= 5 min at 1,000,000 customers. Above
  :data:`MAX_ROWS` customer-snapshots the churn model is fitted on a hash sample of customers, above
  :data:`MAX_CONTACTS` followed-up contacts the uplift model on a uniform sample (said in the note);
- one recommendation (``models.recommender.recommend``: eligibility, covariates, uplift, ranking)
  p95 over :data:`CALLS` calls for different customers: target <= 50 ms; and, as its own figure, the
  churn risk and reasons of one customer (``models.recommender.churn_risk``, the desk's own step);
- the churn model's ROC AUC on the IBM Telco file (held-out 25 %; published results 0.83-0.85).
"""
from __future__ import annotations

import datetime as dt
import os
import statistics
import time

import numpy as np

from analytics.discounts import REASONS
from benchmarks.common import Context, Figure, PeakMemory, Timer, bench_world
from data.db import connect

NAME = "models"
MAX_ROWS = 400_000
MAX_CONTACTS = 40_000
CALLS = 200
RISK_CALLS = 50
# Native (OpenMP) threads of the model fits. One: on a machine shared with other work, OpenMP threads
# spin-waiting for a busy core make gradient boosting many times slower (measured 10x on 2 cores);
# set to None to let the libraries use every core of a dedicated machine.
THREADS = 1


def _world(ctx: Context):
    return bench_world(ctx, "models")


def _telco_auc() -> tuple[float | None, str]:
    from pathlib import Path

    from sklearn.model_selection import train_test_split

    from data.importers import import_telco
    from models.churn_risk import ChurnRiskModel, classification_metrics
    from models.features import TELCO_CATEGORICAL, TELCO_NUMERIC, telco_frame
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
    if not path.exists():
        return None, f"{path} not found"
    con = connect(":memory:")
    try:
        report = import_telco(con, path, snapshot=dt.date(2024, 1, 31), at=dt.datetime(2024, 2, 1))
        if not report.ok:
            return None, "import failed"
        frame = telco_frame(con)
    finally:
        con.close()
    X = frame[list(TELCO_NUMERIC) + list(TELCO_CATEGORICAL)]
    X_tr, X_te, y_tr, y_te = train_test_split(X, frame["churned"], test_size=0.25, stratify=frame["churned"],
                                              random_state=0)
    out = {}
    for kind in ("hgb", "logistic"):
        m = ChurnRiskModel(kind=kind, categorical=TELCO_CATEGORICAL).fit(X_tr, y_tr)
        out[kind] = classification_metrics(y_te, m.predict_proba(X_te)[:, 1])
    return out["hgb"]["roc_auc"], (f"gradient boosting; logistic baseline {out['logistic']['roc_auc']:.3f}; "
                                   f"{len(X_te):,} held-out customers")


def run(ctx: Context) -> list[Figure]:
    from analytics.overview import data_as_of
    from models.recommender import load_models, recommend
    from models.registry import train_models

    path, origin = _world(ctx)
    root = ctx.workdir / "bench-models-registry"
    con = connect(path, read_only=True)
    try:
        customers = con.execute("SELECT count(*) FROM customers").fetchall()[0][0]
        steps: dict[str, float] = {}
        last = [time.perf_counter(), "start"]

        def progress(label: str) -> None:
            now = time.perf_counter()
            steps[last[1]] = now - last[0]
            last[0], last[1] = now, label

        cpu0, load0 = time.process_time(), os.getloadavg()[0]
        with PeakMemory() as mem, Timer() as t_train:
            report = train_models(con, at=dt.datetime(2030, 1, 1), root=root, progress=progress,
                                  churn={"max_rows": MAX_ROWS}, max_contacts=MAX_CONTACTS, n_threads=THREADS)
        steps[last[1]] = time.perf_counter() - last[0]
        train_cpu, train_load = time.process_time() - cpu0, (load0, os.getloadavg()[0])
        for label, secs in steps.items():
            print(f"    {label}: {secs:.1f} s", flush=True)
        slow = sorted(((v, k) for k, v in steps.items() if k != "start"), reverse=True)[:3]
        churn = report.churn_metrics

        # one recommendation, for different customers on the database's business day
        models = load_models(con, root=root)
        day = data_as_of(con)
        ids = con.execute("SELECT DISTINCT customer_id FROM subscriptions WHERE end_date IS NULL "
                          "ORDER BY customer_id").df()["customer_id"].to_numpy()
        agent = con.execute("SELECT login FROM users WHERE role = 'agent' AND agent_tier = 3 AND is_active "
                            "ORDER BY user_id LIMIT 1").fetchall()
        login = agent[0][0] if agent else None
        rng = np.random.default_rng(0)
        pick = rng.choice(ids, size=min(CALLS, len(ids)), replace=False)
        at0 = dt.datetime.combine(day, dt.time(9))
        recommend(con, customer_id=int(pick[0]), reason="billing_error", at=at0, agent_login=login, models=models)
        times, cpu, actions = [], [], {}
        rec_load = os.getloadavg()[0]
        for i, cid in enumerate(pick):
            reason = REASONS[i % len(REASONS)]
            t0, c0 = time.perf_counter(), time.process_time()
            rec = recommend(con, customer_id=int(cid), reason=reason, is_intent_to_cancel=bool(i % 3 == 0),
                            at=at0 + dt.timedelta(seconds=37 * i), agent_login=login, models=models)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            actions[rec.action] = actions.get(rec.action, 0) + 1
        rec_load = (rec_load, os.getloadavg()[0])
        cpu_ms = np.array(cpu) * 1000
        times_ms = np.array(times) * 1000
        p95 = float(np.percentile(times_ms, 95))
        p50 = float(statistics.median(times_ms))
        risk_ms, risk_path = [], ""
        if models.churn_risk is not None:
            from models.daily_features import stored_day
            from models.recommender import churn_risk
            risk_path = ("read from the day's stored features" if stored_day(con, as_of=day) is not None
                         else "computed from each customer's history (no stored day: `cli.py daily-features`)")
            for cid in pick[:RISK_CALLS]:
                t0 = time.perf_counter()
                churn_risk(con, customer_id=int(cid), as_of=day, models=models)
                risk_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        con.close()

    telco, telco_note = _telco_auc()
    full = customers >= 1_000_000
    notes = "; ".join(report.notes) or "no sampling"
    figures = [
        Figure("train all models (churn risk + uplift, saved)", t_train.seconds, "s", "<= 300 s at 1,000,000 customers",
               (t_train.seconds <= 300) if full else None,
               f"{customers:,} customers ({origin}); {notes}; slowest steps: "
               + ", ".join(f"{k} {v:.0f} s" for v, k in slow) + f"; peak memory {mem.peak / 2**30:.1f} GB; "
               + f"native threads {THREADS or 'all'}; CPU {train_cpu:.0f} s; "
               + f"load average {train_load[0]:.1f} -> {train_load[1]:.1f}"),
        Figure("churn risk ROC AUC, later snapshots (gradient boosting)", churn["hgb"]["roc_auc"], "", "", None,
               f"logistic baseline {churn['logistic']['roc_auc']:.3f}; Brier {churn['hgb']['brier']:.4f}; "
               f"ECE {churn['hgb']['ece']:.4f}; {churn['hgb']['n']:,} customer-snapshots"),
        Figure("one recommendation, p95", p95, "ms", "<= 50 ms", p95 <= 50,
               f"median {p50:.1f} ms over {len(times)} customers; CPU median {statistics.median(cpu_ms):.1f} ms, "
               f"p95 {np.percentile(cpu_ms, 95):.1f} ms; load average {rec_load[0]:.1f} -> {rec_load[1]:.1f}; "
               f"actions {actions}"),
    ]
    if risk_ms:
        figures.append(Figure("churn risk and reasons of one customer, p95", float(np.percentile(risk_ms, 95)), "ms",
                              "", None, f"median {statistics.median(risk_ms):.1f} ms over {len(risk_ms)} customers; "
                              f"{risk_path}"))
    if telco is not None:
        figures.append(Figure("Telco churn ROC AUC (held-out 25 %)", telco, "", "0.83-0.85 published",
                              0.80 <= telco, telco_note))
    else:
        ctx.notes.append(f"models: Telco figure skipped ({telco_note})")
    return figures
