"""Stored runs of the care-practices Cox model, for the Churn explorer.

Fitting :class:`analytics.practices.PracticeCoxFitter` takes up to a minute on a million
customers, too long for a page. :func:`run_practices` fits it once (``python cli.py practices``,
:mod:`analytics.practices_cli`) and stores the hazard ratios, the proportional-hazards check and
the wait-time curve in the ``practices_*`` tables (:data:`PRACTICES_DDL`, created on the first
run, like the ``effects_*`` tables of :mod:`analytics.strategies`); :func:`load_latest` reads the
newest run back, in the shapes of :func:`analytics.practices.practice_hazard_ratios` and
:meth:`~analytics.practices.PracticeCoxFitter.wait_curve`.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from analytics.practices import RATIO_COLUMNS, WAIT_COLUMNS, PracticeCoxFitter, ratio_table
from data.db import has_table, transaction

__all__ = ["PRACTICES_DDL", "StoredPractices", "run_practices", "load_latest", "MIN_EVENTS", "MAX_MINUTES"]

MIN_EVENTS = 20      # fewer churn events than this: no run is stored (the ratios would be noise)
MAX_MINUTES = 30     # the wait-time curve runs from 0 to this many minutes
PH_COLUMNS = ("term", "time_coef", "se", "p", "proportional")

# One row per run; per run one row per model term, per practice checked for proportional hazards
# and per minute of the wait-time curve. Intervals are 1 - alpha (alpha in params); an unstable
# term may have an infinite bound.
PRACTICES_DDL = """
CREATE TABLE IF NOT EXISTS practices_runs (
    run_id         BIGINT    PRIMARY KEY,
    created_at     TIMESTAMP NOT NULL,
    as_of          DATE      NOT NULL,
    n_customers    BIGINT    NOT NULL,   -- customers in the reported fit
    n_rows         BIGINT    NOT NULL,   -- customer-month rows at risk in it
    n_events       BIGINT    NOT NULL,   -- churn events in it
    sampled        BOOLEAN   NOT NULL,   -- a sample of the customers was fitted
    penalizer_used DOUBLE    NOT NULL,
    params         VARCHAR   NOT NULL    -- JSON: the fitter's parameters, dropped terms, seconds
);
CREATE TABLE IF NOT EXISTS practices_hazard_ratios (
    run_id       BIGINT  NOT NULL,
    position     INTEGER NOT NULL,
    term         VARCHAR NOT NULL,
    label        VARCHAR NOT NULL,
    hazard_ratio DOUBLE, lo DOUBLE, hi DOUBLE,
    coef         DOUBLE, se DOUBLE, z DOUBLE, p DOUBLE,
    practice     BOOLEAN NOT NULL,       -- a care practice (else an adjustment)
    PRIMARY KEY (run_id, term)
);
CREATE TABLE IF NOT EXISTS practices_ph_tests (
    run_id       BIGINT  NOT NULL,
    position     INTEGER NOT NULL,
    term         VARCHAR NOT NULL,
    time_coef    DOUBLE, se DOUBLE, p DOUBLE,
    proportional BOOLEAN,
    PRIMARY KEY (run_id, term)
);
CREATE TABLE IF NOT EXISTS practices_wait_curves (
    run_id        BIGINT NOT NULL,
    wait_minutes  DOUBLE NOT NULL,
    hazard_ratio  DOUBLE, lo DOUBLE, hi DOUBLE,
    monthly_churn DOUBLE, churn_lo DOUBLE, churn_hi DOUBLE,
    PRIMARY KEY (run_id, wait_minutes)
);
"""


@dataclass(frozen=True)
class StoredPractices:
    """One stored run of the care-practices model.

    Attributes
    ----------
    run_id : int
    run : dict
        Its ``practices_runs`` row, ``params`` decoded from JSON.
    as_of : datetime.date
    created_at : datetime.datetime
    hazard_ratios : pandas.DataFrame
        One row per term in model order, columns of
        :func:`analytics.practices.practice_hazard_ratios`.
    wait_curve : pandas.DataFrame
        One row per minute of wait from 0, columns of
        :meth:`analytics.practices.PracticeCoxFitter.wait_curve` (empty when wait was not modelled).
    ph_test : pandas.DataFrame
        ``PracticeCoxFitter.ph_test_`` (empty when the check was not run or did not converge).
    """

    run_id: int
    run: dict
    as_of: dt.date
    created_at: dt.datetime
    hazard_ratios: pd.DataFrame
    wait_curve: pd.DataFrame
    ph_test: pd.DataFrame

    @property
    def n_customers(self) -> int:
        return int(self.run["n_customers"])

    @property
    def n_events(self) -> int:
        return int(self.run["n_events"])

    @property
    def sampled(self) -> bool:
        return bool(self.run["sampled"])


def run_practices(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, at: dt.datetime,
                  fitter: PracticeCoxFitter | None = None, min_events: int = MIN_EVENTS,
                  max_minutes: int = MAX_MINUTES, **fitter_kwargs) -> int:
    """Fit the care-practices Cox model and store it as a new run.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A writable connection.
    as_of : datetime.date
        Analysis date (what is known; see :func:`analytics.practices.practice_panel`).
    at : datetime.datetime
        When the run is made (``practices_runs.created_at``).
    fitter : PracticeCoxFitter, optional
        A fitter already fitted on this database's data as of ``as_of``; default: a
        ``PracticeCoxFitter(**fitter_kwargs)`` fitted here on all customers.
    min_events : int
        Fewer churn events in the fit than this: nothing is stored.
    max_minutes : int
        The wait-time curve is stored for 0, 1, ... ``max_minutes`` minutes.

    Returns
    -------
    int
        The new ``run_id``.

    Raises
    ------
    ValueError
        When there is nothing to fit (no churn, no contacts) or fewer than ``min_events`` events.

    Notes
    -----
    Creates the tables of :data:`PRACTICES_DDL` if needed, then writes the run's rows in one
    transaction; ``run_id`` = max + 1. Earlier runs are kept.
    """
    started = time.perf_counter()
    if fitter is None:
        fitter = PracticeCoxFitter(**fitter_kwargs).fit(con, as_of)
    if fitter.n_events_ < min_events:
        raise ValueError(f"only {fitter.n_events_} churn events to fit (at least {min_events} needed): "
                         "nothing stored")
    ratios = ratio_table(fitter)
    curve = fitter.wait_curve(np.arange(0, max_minutes + 1))
    ph = fitter.ph_test_ if fitter.ph_test_ is not None else pd.DataFrame(columns=list(PH_COLUMNS))
    params = {k: v for k, v in vars(fitter).items() if not k.endswith("_")}
    params.update({"dropped": list(fitter.dropped_), "work_limited": bool(fitter.work_limited_),
                   "contact_month_churn": _finite(fitter.contact_month_churn_),
                   "mean_wait_minutes": _finite(fitter.mean_wait_minutes_), "max_minutes": max_minutes,
                   "seconds_total": round(time.perf_counter() - started, 2)})
    con.execute(PRACTICES_DDL)
    with transaction(con):
        run_id = int(con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM practices_runs").fetchall()[0][0])
        con.execute("INSERT INTO practices_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, at, as_of, int(fitter.n_customers_), int(fitter.n_rows_), int(fitter.n_events_),
                     bool(fitter.sampled_), float(fitter.penalizer_used_), json.dumps(params, default=str)])
        rows = ratios[[c for c in RATIO_COLUMNS if c not in ("n_customers", "n_events", "sampled")]]
        ph_rows = ph[list(PH_COLUMNS)]
        for table, frame in (("practices_hazard_ratios", rows.assign(position=np.arange(len(rows)))),
                             ("practices_ph_tests", ph_rows.assign(position=np.arange(len(ph_rows)))),
                             ("practices_wait_curves", curve[list(WAIT_COLUMNS)])):
            if frame.empty:
                continue
            frame = frame.assign(run_id=run_id)
            con.register("_practices_rows", frame)
            try:
                cols = ", ".join(f'"{c}"' for c in frame.columns)
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _practices_rows")
            finally:
                con.unregister("_practices_rows")
    return run_id


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def load_latest(con: duckdb.DuckDBPyConnection, run_id: int | None = None) -> StoredPractices | None:
    """The newest stored practices run (or run ``run_id``), or None when there is none.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Read-only is enough.
    run_id : int, optional

    Returns
    -------
    StoredPractices or None
    """
    if not has_table(con, "practices_runs"):
        return None
    run = con.execute("SELECT * FROM practices_runs "
                      "WHERE run_id = coalesce(?, (SELECT max(run_id) FROM practices_runs))", [run_id]).df()
    if run.empty:
        return None
    info = run.iloc[0].to_dict()
    run_id = int(info["run_id"])
    info["params"] = json.loads(info["params"]) if info.get("params") else {}
    ratio_cols = ", ".join(RATIO_COLUMNS[:10])
    ratios = con.execute(f"SELECT {ratio_cols} FROM practices_hazard_ratios WHERE run_id = ? ORDER BY position",
                         [run_id]).df()
    ratios = ratios.assign(n_customers=int(info["n_customers"]), n_events=int(info["n_events"]),
                           sampled=bool(info["sampled"]))
    curve = con.execute(f"SELECT {', '.join(WAIT_COLUMNS)} FROM practices_wait_curves WHERE run_id = ? "
                        "ORDER BY wait_minutes", [run_id]).df()
    ph = con.execute(f"SELECT {', '.join(PH_COLUMNS)} FROM practices_ph_tests WHERE run_id = ? ORDER BY position",
                     [run_id]).df()
    return StoredPractices(run_id=run_id, run=info, as_of=pd.Timestamp(info["as_of"]).date(),
                           created_at=pd.Timestamp(info["created_at"]).to_pydatetime(),
                           hazard_ratios=ratios, wait_curve=curve, ph_test=ph)
