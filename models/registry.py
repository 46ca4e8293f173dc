"""The model registry: fitted models saved with what they were trained on, and checked before use.

Each saved model is two files in the registry folder (default ``data/models/``, git-ignored):
``<model_id>.joblib`` (the estimator) and ``<model_id>.json`` (its record: kind, training window,
the database's last day and fingerprint, metrics, parameters, library versions and the SHA-256 of
the estimator file). :func:`load_latest` loads the newest model of a kind only after
:func:`check_model` says it may be used; a stale or incompatible model is reported with its status
and never silently used.

Trust: the estimator files are pickles (joblib). Unpickling runs code, so a file is only loaded when
its SHA-256 matches its record; keep the registry folder writable by the application only.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import duckdb
import joblib
import pandas as pd

from data import db as data_db
from models import features as F

__all__ = ["ModelRecord", "ModelStatus", "LoadedModel", "ModelUnavailable", "save_model", "load_latest",
           "load_model", "list_models", "check_model", "db_fingerprint", "library_versions", "default_root",
           "KINDS", "MAX_AGE_MONTHS", "CHECKED_LIBRARIES", "TrainReport", "train_models", "TRAIN_STEPS"]

KINDS = ("churn_risk", "uplift")
MAX_AGE_MONTHS = 3
# Libraries whose major.minor must match between training and use (pickled estimators).
CHECKED_LIBRARIES = ("python", "scikit-learn", "numpy", "pandas", "scipy", "joblib")
STATUSES = ("ok", "stale", "incompatible")


class ModelUnavailable(Exception):
    """No usable model of a kind: none trained, or the newest is stale or incompatible."""


def default_root() -> Path:
    """The registry folder: ``$RETENTION_MODELS`` or ``data/models`` next to the default database."""
    env = os.environ.get("RETENTION_MODELS")
    return Path(env) if env else data_db.DEFAULT_DB.parent / "models"


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a pickled estimator depends on."""
    out = {"python": platform.python_version()}
    for name in CHECKED_LIBRARIES[1:] + ("duckdb", "lifelines"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def db_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """A fingerprint of which database this is, stable while the database grows.

    Notes
    -----
    SHA-256 (first 16 hex digits) of: the offer catalogue (ids, codes, kinds and terms), the plans
    (ids, codes, ranks) and the first 20 customers by id (id, account number, name, signup date).
    New months, customers and contacts leave it unchanged; another database (another seed of the
    simulator, an import) or a changed offer catalogue changes it.
    """
    h = hashlib.sha256()
    parts = (
        "SELECT offer_id, code, kind, percent_off, credit_cents, cycles, target_plan_id, min_tier "
        "FROM offers ORDER BY offer_id",
        "SELECT plan_id, code, rank FROM plans ORDER BY plan_id",
        "SELECT customer_id, account_number, name, signup_date FROM customers ORDER BY customer_id LIMIT 20",
    )
    for sql in parts:
        for row in con.execute(sql).fetchall():
            h.update(repr(tuple(row)).encode("utf-8"))
        h.update(b"|")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ModelRecord:
    """What a saved model was trained on (the ``.json`` next to the estimator).

    Attributes
    ----------
    model_id : str
        ``<kind>-<UTC timestamp>``; the file stem.
    kind : str
        ``churn_risk`` or ``uplift``.
    created_at : str
        ISO timestamp (UTC) of the save.
    window_start, window_end : str
        ISO days: the first and last day of data the training used (churn: first snapshot and the
        end of the last label window; uplift: the first contact and the last day of follow-up).
    data_end : str
        ISO day: the last day the database had records for at training time.
    db_fingerprint : str
        :func:`db_fingerprint` of the training database.
    metrics : dict
    params : dict
        Estimator hyperparameters and training settings (JSON-able).
    versions : dict
        :func:`library_versions` at training time.
    sha256 : str
        SHA-256 of the estimator file.
    notes : list of str
    """

    model_id: str
    kind: str
    created_at: str
    window_start: str | None
    window_end: str | None
    data_end: str | None
    db_fingerprint: str | None
    metrics: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    sha256: str = ""
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelStatus:
    """Whether a saved model may be used. ``status``: ``ok``, ``stale`` or ``incompatible``."""

    status: str
    message: str
    problems: tuple = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class LoadedModel:
    """A model from the registry: its record, its status and the estimator (None unless usable)."""

    record: ModelRecord
    status: ModelStatus
    model: object | None = None


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (dt.date, dt.datetime, pd.Timestamp)):
        return x.isoformat()
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            return x.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(x, float) and x != x:
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return repr(x)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _iso(day) -> str | None:
    if day is None or (not isinstance(day, str) and pd.isna(day)):
        return None
    return pd.Timestamp(day).date().isoformat()


def save_model(model, *, kind: str, at: dt.datetime, con: duckdb.DuckDBPyConnection | None = None,
               window: tuple | None = None, metrics: dict | None = None, params: dict | None = None,
               notes: list | tuple = (), root: str | os.PathLike | None = None) -> ModelRecord:
    """Save a fitted model and its record in the registry.

    Parameters
    ----------
    model : object
        The fitted estimator.
    kind : str
        One of :data:`KINDS`.
    at : datetime.datetime
        When it is saved (UTC); makes the model id.
    con : duckdb.DuckDBPyConnection, optional
        The training database: its last day and fingerprint go in the record (without it the
        model can never be checked against a database and is reported stale).
    window : (date, date), optional
        First and last day of data the training used.
    metrics, params : dict, optional
    notes : sequence of str
    root : path, optional
        Registry folder (default :func:`default_root`).

    Returns
    -------
    ModelRecord
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder = Path(root) if root is not None else default_root()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = at.strftime("%Y%m%dT%H%M%S%f")
    model_id = f"{kind}-{stamp}"
    n = 1
    while (folder / f"{model_id}.json").exists() or (folder / f"{model_id}.joblib").exists():
        n += 1
        model_id = f"{kind}-{stamp}-{n}"
    target = folder / f"{model_id}.joblib"
    tmp = folder / f".{model_id}.joblib.tmp"
    joblib.dump(model, tmp, compress=3)
    digest = _sha256(tmp)
    os.replace(tmp, target)
    window = window or (None, None)
    record = ModelRecord(
        model_id=model_id, kind=kind, created_at=at.replace(tzinfo=None).isoformat(timespec="seconds"),
        window_start=_iso(window[0]), window_end=_iso(window[1]),
        data_end=_iso(F.data_end(con)) if con is not None else None,
        db_fingerprint=db_fingerprint(con) if con is not None else None,
        metrics=_jsonable(metrics or {}), params=_jsonable(params or {}), versions=library_versions(),
        sha256=digest, notes=[str(x) for x in notes])
    meta_tmp = folder / f".{model_id}.json.tmp"
    meta_tmp.write_text(json.dumps(record.as_dict(), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(meta_tmp, folder / f"{model_id}.json")
    return record


def _read_record(path: Path) -> ModelRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = {f for f in ModelRecord.__dataclass_fields__}
        return ModelRecord(**{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError):
        return None


def _records(folder: Path, kind: str | None = None) -> list[ModelRecord]:
    if not folder.is_dir():
        return []
    out = []
    for path in folder.glob("*.json"):
        rec = _read_record(path)
        if rec is not None and (kind is None or rec.kind == kind):
            out.append(rec)
    return sorted(out, key=lambda r: (r.created_at, r.model_id))


def _major_minor(v: str | None) -> tuple:
    if not v:
        return ()
    nums = re.findall(r"\d+", v)
    return tuple(int(x) for x in nums[:2])


def _months_between(earlier: dt.date, later: dt.date) -> int:
    return (later.year - earlier.year) * 12 + (later.month - earlier.month)


def check_model(record: ModelRecord, con: duckdb.DuckDBPyConnection | None = None, *,
                root: str | os.PathLike | None = None, max_age_months: int = MAX_AGE_MONTHS,
                versions: dict | None = None) -> ModelStatus:
    """Whether a saved model may be used now, on this database.

    Parameters
    ----------
    record : ModelRecord
    con : duckdb.DuckDBPyConnection, optional
        The database it would be used on (without it only the file and versions are checked).
    root : path, optional
        Registry folder holding the estimator file.
    max_age_months : int, default 3
    versions : dict, optional
        Library versions of the running process (default :func:`library_versions`).

    Returns
    -------
    ModelStatus

    Notes
    -----
    ``incompatible`` (the model cannot be loaded safely): the estimator file is missing, its
    SHA-256 differs from the record's, or the major.minor version of Python or a library of
    :data:`CHECKED_LIBRARIES` differs from the running one.
    ``stale`` (it would load, but describes another time or database): the database's latest
    billed period is more than ``max_age_months`` months after the month of the record's
    ``data_end``, or the database's fingerprint differs from the record's.
    Otherwise ``ok``. Incompatibility wins over staleness.
    """
    folder = Path(root) if root is not None else default_root()
    incompatible, stale = [], []
    path = folder / f"{record.model_id}.joblib"
    if not path.is_file():
        incompatible.append(f"the model file {path.name} is missing")
    elif _sha256(path) != record.sha256:
        incompatible.append("the model file does not match its recorded hash (changed or corrupted)")
    now = versions or library_versions()
    for lib in CHECKED_LIBRARIES:
        a, b = record.versions.get(lib), now.get(lib)
        if _major_minor(a) != _major_minor(b):
            incompatible.append(f"trained with {lib} {a or '(unknown)'}, running {b or '(none)'}")
    if con is not None:
        fp = db_fingerprint(con)
        if record.db_fingerprint != fp:
            stale.append("trained on another database" if record.db_fingerprint
                         else "trained without a database fingerprint")
        latest = F.latest_period(con)
        if record.data_end is None:
            stale.append("trained on data of unknown date")
        elif latest is not None:
            age = _months_between(dt.date.fromisoformat(record.data_end), latest)
            if age > int(max_age_months):
                stale.append(f"trained on data up to {record.data_end}, {age} months before the latest "
                             f"billed period {latest.isoformat()[:7]} (limit {int(max_age_months)})")
    if incompatible:
        return ModelStatus("incompatible", f"model {record.model_id} cannot be used: " + "; ".join(incompatible)
                           + "; run python cli.py train to refit", tuple(incompatible + stale))
    if stale:
        return ModelStatus("stale", f"model {record.model_id} is stale: " + "; ".join(stale)
                           + "; run python cli.py train to refit", tuple(stale))
    return ModelStatus("ok", f"model {record.model_id} (trained {record.created_at}) is up to date")


def load_model(record: ModelRecord, *, root: str | os.PathLike | None = None):
    """Unpickle a model's estimator after checking its hash (raises ModelUnavailable otherwise)."""
    folder = Path(root) if root is not None else default_root()
    path = folder / f"{record.model_id}.joblib"
    if not path.is_file():
        raise ModelUnavailable(f"the model file {path.name} is missing")
    if _sha256(path) != record.sha256:
        raise ModelUnavailable(f"model {record.model_id} does not match its recorded hash; not loaded")
    return joblib.load(path)


def load_latest(kind: str, *, con: duckdb.DuckDBPyConnection | None = None,
                root: str | os.PathLike | None = None, max_age_months: int = MAX_AGE_MONTHS,
                allow_stale: bool = False) -> LoadedModel:
    """The newest model of a kind, checked (:func:`check_model`).

    Parameters
    ----------
    kind : str
    con : duckdb.DuckDBPyConnection, optional
        The database it is for (staleness and fingerprint).
    root : path, optional
    max_age_months : int, default 3
    allow_stale : bool, default False
        Load a stale model anyway (its status still says stale). Incompatible models are never
        loaded.

    Returns
    -------
    LoadedModel
        ``model`` is the estimator when the status is ok (or stale with ``allow_stale``), else None.

    Raises
    ------
    ModelUnavailable
        When no model of this kind was ever saved in the registry.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder = Path(root) if root is not None else default_root()
    recs = _records(folder, kind)
    if not recs:
        raise ModelUnavailable(f"no trained {kind} model in {folder}; run python cli.py train")
    rec = recs[-1]
    status = check_model(rec, con, root=folder, max_age_months=max_age_months)
    model = None
    if status.ok or (status.status == "stale" and allow_stale):
        model = load_model(rec, root=folder)
    return LoadedModel(record=rec, status=status, model=model)


def list_models(*, con: duckdb.DuckDBPyConnection | None = None, root: str | os.PathLike | None = None,
                kind: str | None = None, max_age_months: int = MAX_AGE_MONTHS) -> pd.DataFrame:
    """Every saved model, newest first, with its status.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model_id``, ``kind``, ``created_at``, ``window_start``, ``window_end``,
        ``data_end``, ``status``, ``message``, ``is_latest`` (newest of its kind), ``metrics`` (dict),
        ``sklearn`` (the scikit-learn version it was trained with).
    """
    folder = Path(root) if root is not None else default_root()
    recs = _records(folder, kind)
    cols = ["model_id", "kind", "created_at", "window_start", "window_end", "data_end", "status", "message",
            "is_latest", "metrics", "sklearn"]
    if not recs:
        return pd.DataFrame(columns=cols)
    latest = {}
    for r in recs:
        latest[r.kind] = r.model_id
    rows = []
    for r in reversed(recs):
        st = check_model(r, con, root=folder, max_age_months=max_age_months)
        rows.append({"model_id": r.model_id, "kind": r.kind, "created_at": r.created_at,
                     "window_start": r.window_start, "window_end": r.window_end, "data_end": r.data_end,
                     "status": st.status, "message": st.message, "is_latest": latest[r.kind] == r.model_id,
                     "metrics": r.metrics, "sklearn": r.versions.get("scikit-learn")})
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------------------------------------
# Fit every model and save it (``python cli.py train``, the Data & models page)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainReport:
    """What :func:`train_models` fitted and saved.

    Attributes
    ----------
    records : dict
        Kind -> :class:`ModelRecord` saved.
    churn_metrics : dict
        ``{"hgb": {...}, "logistic": {...}}`` on the time-split test snapshots.
    uplift_summary : pandas.DataFrame
        :attr:`models.uplift.OfferUpliftModel.summary_`.
    seconds : dict
        Kind -> seconds spent fitting.
    notes : tuple of str
        Samples taken, offers left out, ...
    churn_fit : models.churn_risk.ChurnRiskFit
        The churn-risk fit with its validation (calibration table, snapshots, baseline).
    uplift : models.uplift.OfferUpliftModel
        The uplift model saved.
    """

    records: dict
    churn_metrics: dict
    uplift_summary: pd.DataFrame
    seconds: dict
    notes: tuple = ()
    churn_fit: object = None
    uplift: object = None


TRAIN_STEPS = 10   # progress labels train_models emits (for a progress bar's total)


def train_models(con: duckdb.DuckDBPyConnection, *, at: dt.datetime, root: str | os.PathLike | None = None,
                 progress=None, churn: dict | None = None, uplift: dict | None = None,
                 max_contacts: int | None = 200_000, n_threads: int | None = None) -> TrainReport:
    """Fit the churn-risk and uplift models on a database and save both in the registry.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    at : datetime.datetime
        When (UTC): the models' ids.
    root : path, optional
        Registry folder.
    progress : callable, optional
        ``progress(label)`` at each step (:data:`TRAIN_STEPS` in all).
    churn : dict, optional
        Keyword arguments of :func:`models.churn_risk.fit_churn_risk` (``max_rows``, ``sample``,
        ``test_months``, ``hgb_params`` ...).
    uplift : dict, optional
        :class:`models.uplift.OfferUpliftModel` parameters.
    max_contacts : int or None, default 200,000
        Fit the uplift model on at most this many followed-up contacts (a uniform sample).
    n_threads : int, optional
        Limit the native threads of the model fits (None: the libraries' default).

    Returns
    -------
    TrainReport
    """
    import time

    from threadpoolctl import threadpool_limits

    from analytics import discounts
    from models.churn_risk import fit_churn_risk
    from models.uplift import OfferUpliftModel

    say = progress or (lambda label: None)
    end = F.data_end(con)
    if end is None:
        raise ValueError("the database has no history to train on")
    notes, records, seconds = [], {}, {}
    limits = threadpool_limits(int(n_threads)) if n_threads else None
    try:
        t0 = time.perf_counter()
        fit = fit_churn_risk(con, progress=lambda label: say(f"churn risk: {label}"), **(churn or {}))
        if fit.sample < 1.0:
            notes.append(f"churn risk trained on a {100 * fit.sample:.1f}% sample of customers "
                         f"({fit.n_rows['all']:,} customer-snapshots)")
        say("churn risk: save")
        records["churn_risk"] = save_model(
            fit.model, kind="churn_risk", at=at, con=con, window=fit.window, root=root,
            metrics={**fit.metrics, "n_rows": fit.n_rows, "sample": fit.sample,
                     "train_snapshots": [fit.train_snapshots[0], fit.train_snapshots[-1]],
                     "test_snapshots": [fit.test_snapshots[0], fit.test_snapshots[-1]],
                     "horizon_days": fit.horizon_days},
            params=fit.model.get_params(), notes=notes[-1:] if fit.sample < 1.0 else [])
        seconds["churn_risk"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        say("uplift: contact dataset")
        as_of = end + dt.timedelta(days=1)
        ds = discounts.contact_dataset(con, as_of=as_of, sample=max_contacts)
        if ds.n_sampled_out:
            notes.append(f"uplift trained on {ds.n:,} of {ds.n + ds.n_sampled_out:,} followed-up contacts (sample)")
        model = OfferUpliftModel(**(uplift or {})).fit(ds.frame, progress=lambda label: say(f"uplift: {label}"))
        if model.left_out_:
            notes.append("no uplift estimate (too few grants): " +
                         ", ".join(f"{k} ({v})" for k, v in model.left_out_.items()))
        say("uplift: save")
        window_end = (pd.Timestamp(model.window_[1]) + pd.Timedelta(days=ds.horizon_days)).date() \
            if model.window_[1] else None
        records["uplift"] = save_model(
            model, kind="uplift", at=at, con=con, window=(model.window_[0], window_end), root=root,
            metrics={"n_contacts": model.n_, "n_total_contacts": ds.n_total,
                     "left_out": model.left_out_, "offers": model.summary_.reset_index().to_dict("records")},
            params={k: v for k, v in model.get_params().items() if k != "final_model"},
            notes=[n for n in notes if n.startswith(("uplift", "no uplift"))])
        seconds["uplift"] = time.perf_counter() - t0
    finally:
        if limits is not None:
            limits.restore_original_limits()
    return TrainReport(records=records, churn_metrics=fit.metrics, uplift_summary=model.summary_,
                       seconds=seconds, notes=tuple(notes), churn_fit=fit, uplift=model)
