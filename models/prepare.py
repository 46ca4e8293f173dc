"""The stored analyses a new database needs before every page has something to show.

The Discount strategies page reads the stored effects run, the Churn explorer's care practices view
the stored practices run, and the agent desk's recommendations the trained models and the day's stored
churn-risk features. On a fresh demo world none exists yet: :func:`prepare_analyses` makes all four in
one call (the app runs it in the background after building the first-start world; ``python cli.py
effects``, ``practices``, ``train`` and ``daily-features`` make each of them on their own).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable

import duckdb

STEPS = ("discount effects", "care practices", "churn and uplift models", "churn-risk features of the day")


@dataclass(frozen=True)
class PreparedAnalyses:
    """What :func:`prepare_analyses` stored.

    Attributes
    ----------
    as_of : datetime.date
        The analysis date: the database's latest business day.
    effects_run_id, practices_run_id : int or None
        The stored runs (None: that step was skipped, see ``skipped``).
    model_ids : tuple of str
        The models trained and saved in the registry.
    features_day : datetime.date or None
        The day whose churn-risk features were stored (:mod:`models.daily_features`).
    skipped : tuple of str
        One line per step that could not run on this data, with the reason.
    seconds : dict
        Wall seconds of each step that ran.
    """

    as_of: dt.date
    effects_run_id: int | None
    practices_run_id: int | None
    model_ids: tuple[str, ...]
    features_day: dt.date | None
    skipped: tuple[str, ...]
    seconds: dict


def prepare_analyses(con: duckdb.DuckDBPyConnection, *, at: dt.datetime, as_of: dt.date | None = None,
                     models_root=None,
                     progress: Callable[[int, int, str], None] | None = None) -> PreparedAnalyses:
    """Estimate discount effects, fit the care-practices model, train the models and store the day's
    churn-risk features.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A writable connection (or cursor) used by this call alone.
    at : datetime.datetime
        When the analyses are made (the runs' ``created_at`` and the models' ids).
    as_of : datetime.date, optional
        Analysis date; default: the database's latest business day
        (:func:`analytics.overview.data_as_of`).
    models_root : path, optional
        Model registry folder (default: the registry's own).
    progress : callable, optional
        ``progress(done, total, label)`` before each step and once at the end.

    Returns
    -------
    PreparedAnalyses

    Raises
    ------
    ValueError
        When the database has no history at all.

    Notes
    -----
    The steps are those of ``python cli.py effects``, ``practices``, ``train`` and
    ``daily-features`` with their defaults: :func:`analytics.strategies.run_effects`,
    :func:`analytics.practice_runs.run_practices`, :func:`models.registry.train_models` and
    :func:`models.daily_features.store_daily_features` (at ``as_of``). A step
    that finds too little data (it raises ``ValueError``, e.g. too few contacts with a known
    outcome) is skipped with its reason and the next one still runs; each stored run is written in
    its own transaction, so a failed step leaves nothing half-written.
    """
    from analytics.overview import data_as_of
    from analytics.practice_runs import run_practices
    from analytics.strategies import run_effects
    from models.daily_features import store_daily_features
    from models.registry import train_models

    as_of = as_of or data_as_of(con)
    if as_of is None:
        raise ValueError("the database is empty: nothing to analyse")
    say = progress or (lambda done, total, label: None)
    total = len(STEPS)
    ids: dict = {"effects": None, "practices": None, "models": (), "daily": None}
    skipped, seconds = [], {}
    steps = {
        "effects": lambda: run_effects(con, as_of=as_of, at=at),
        "practices": lambda: run_practices(con, as_of=as_of, at=at),
        "models": lambda: tuple(rec.model_id for rec in train_models(con, at=at, root=models_root).records.values()),
        "daily": lambda: store_daily_features(con, as_of=as_of, at=at).as_of,
    }
    for done, (label, (key, step)) in enumerate(zip(STEPS, steps.items())):
        say(done, total, label)
        started = time.perf_counter()
        try:
            ids[key] = step()
        except ValueError as exc:
            skipped.append(f"{label}: {str(exc).splitlines()[0]}")
        else:
            seconds[label] = round(time.perf_counter() - started, 2)
    say(total, total, "done")
    return PreparedAnalyses(as_of=as_of, effects_run_id=ids["effects"], practices_run_id=ids["practices"],
                            model_ids=ids["models"], features_day=ids["daily"], skipped=tuple(skipped),
                            seconds=seconds)
