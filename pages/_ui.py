"""The one small Streamlit helper module: who is signed in, which pages a role sees, the per-run
database cursor, the business date, cached calls, downloads, charts and empty states.

Everything a page shows comes from plain functions below ``pages/``; this module only wires them
to Streamlit. No SQL here (a test greps ``pages/``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import streamlit as st

from billing.results import CONFLICT
from data.export import mask_pii, to_csv_bytes

# ------------------------------------------------------------------------------------------------
# Pages and roles
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageSpec:
    """A page: its key, file, menu title, icon and URL path.

    The URL paths deliberately differ from the file names: Streamlit treats a ``pages/`` folder as
    old-style pages until ``st.navigation`` runs, and a URL equal to a file name would run that file
    without app.py (no sign-in, no database).
    """

    key: str
    path: str
    title: str
    icon: str
    url_path: str


PAGES = {
    "overview": PageSpec("overview", "pages/overview.py", "Overview", ":material/monitoring:", "home"),
    "discount_strategies": PageSpec("discount_strategies", "pages/discount_strategies.py",
                                    "Discount strategies", ":material/savings:", "discount-strategies"),
    "churn_explorer": PageSpec("churn_explorer", "pages/churn_explorer.py", "Churn explorer",
                               ":material/query_stats:", "churn-explorer"),
    "agent_desk": PageSpec("agent_desk", "pages/agent_desk.py", "Agent desk", ":material/support_agent:",
                           "agent-desk"),
    "invoicing": PageSpec("invoicing", "pages/invoicing.py", "Invoicing", ":material/receipt_long:", "billing"),
    "data_models": PageSpec("data_models", "pages/data_models.py", "Data & models", ":material/database:",
                            "data-and-models"),
}
LOGIN_PAGE = PageSpec("login", "pages/login.py", "Sign in", ":material/login:", "sign-in")

# Which pages each role may open (the navigation is built from this on every run).
ROLE_PAGES = {
    "admin": ("overview", "invoicing", "data_models"),
    "leader": ("overview", "discount_strategies", "churn_explorer"),
    "analyst": ("overview", "churn_explorer"),
    "agent": ("overview", "agent_desk"),
}

ROLE_LABELS = {"admin": "administrator", "leader": "business leader", "analyst": "analyst",
               "agent": "care agent"}

# Roles that work with customers' personal data; others see it masked.
PII_ROLES = ("agent", "admin")

USER_KEY = "auth.user"
DB_KEY = "_db.cursor"
DB_PATH_KEY = "_db.path"


def pages_for(role: str | None) -> tuple[PageSpec, ...]:
    """The pages a role may see, in menu order (none for an unknown role)."""
    return tuple(PAGES[k] for k in ROLE_PAGES.get(role or "", ()))


def user() -> dict | None:
    """The signed-in user: user_id, login, role, agent_tier, display_name (None when signed out)."""
    return st.session_state.get(USER_KEY)


def sign_in(data: dict) -> None:
    st.session_state[USER_KEY] = {k: data.get(k) for k in
                                  ("user_id", "login", "role", "agent_tier", "display_name")}


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        if key != DB_KEY and key != DB_PATH_KEY:
            del st.session_state[key]


def require(page_key: str) -> dict:
    """Stop the page unless the signed-in user's role may see it; returns the user."""
    u = user()
    if u is None or page_key not in ROLE_PAGES.get(u.get("role") or "", ()):
        st.error("You do not have access to this page.")
        st.stop()
    return u


def sees_pii() -> bool:
    u = user()
    return bool(u) and u.get("role") in PII_ROLES


def shown(df: pd.DataFrame) -> pd.DataFrame:
    """The frame as the signed-in user may see it: personal data masked unless their role needs it."""
    return df if sees_pii() else mask_pii(df)


# ------------------------------------------------------------------------------------------------
# Database, clock and cached calls
# ------------------------------------------------------------------------------------------------


def con():
    """This script run's database cursor (app.py opens it before any page runs)."""
    return st.session_state[DB_KEY]


def db_key() -> str:
    return st.session_state.get(DB_PATH_KEY, "")


def calendar_today() -> dt.date:
    """Today's date, or ``RETENTION_TODAY`` (YYYY-MM-DD) when set (demos, tests)."""
    override = os.environ.get("RETENTION_TODAY")
    if override:
        return dt.date.fromisoformat(override)
    return dt.datetime.now(dt.timezone.utc).date()


def today() -> dt.date:
    """The business date the app works on (a simulated world's own date, else today)."""
    return cached("analytics.overview", "business_date", today=calendar_today())


def now() -> dt.datetime:
    """The instant of a write: the business date at the current UTC time of day (naive UTC)."""
    clock = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return dt.datetime.combine(today(), clock.time().replace(microsecond=0))


def function(module: str, name: str) -> Callable | None:
    """``module.name`` when that part of the system exists yet, else None."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise
    return getattr(mod, name, None)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@st.cache_data(show_spinner=False, max_entries=256, ttl=3600)
def _cached_call(module: str, name: str, db: str, args: tuple, kwargs: tuple, _con) -> Any:
    fn = function(module, name)
    return fn(_con, *args, **dict(kwargs))


def cached(module: str, name: str, *args, **kwargs) -> Any:
    """Call ``module.name(con, *args, **kwargs)`` through st.cache_data, keyed by the database file
    and the arguments (pass ``as_of`` explicitly). :func:`data_changed` clears it after writes."""
    return _cached_call(module, name, db_key(), tuple(args),
                        tuple(sorted(kwargs.items())), con())


def data_changed() -> None:
    """Forget cached results after a write (billing run, grant, import ...)."""
    st.cache_data.clear()


def models_changed() -> None:
    """Forget the loaded models after a retrain (they are also reloaded every 10 minutes)."""
    _loaded_models.clear()
    st.cache_data.clear()


@st.cache_resource(show_spinner=False, ttl=600)
def _loaded_models(db: str, root: str, _con):
    """The newest usable models of the registry, loaded once per process (unpickling and checking
    them takes seconds); the reason as text when there are none."""
    load = function("models.recommender", "load_models")
    unavailable = function("models.registry", "ModelUnavailable") or ()
    if load is None:
        return "the models (models.recommender) are not installed"
    try:
        return load(_con)
    except unavailable as exc:
        return str(exc) or "no trained model"


@st.cache_data(show_spinner=False, max_entries=256, ttl=600)
def _recommend(db: str, models_key: tuple, customer_id: int, reason: str, at: dt.datetime, intent: bool,
               agent_id: int, _con, _models):
    recommend = function("models.recommender", "recommend")
    return recommend(_con, customer_id=customer_id, reason=reason, at=at, is_intent_to_cancel=intent,
                     agent_id=agent_id, models=_models)


def recommendation(customer_id: int, reason: str, at: dt.datetime, intent: bool, agent_id: int):
    """``(Recommendation, None)`` from models.recommender with the cached models, or ``(None, why)``
    when no model is trained yet. The churn risk is :func:`churn_risk`'s."""
    models = _loaded_models(db_key(), os.environ.get("RETENTION_MODELS", ""), con())
    if isinstance(models, str):
        return None, models
    key = tuple(sorted(getattr(models, "ids", {}).items()))
    return _recommend(db_key(), key, customer_id, reason, at, intent, agent_id, con(), models), None


@st.cache_data(show_spinner=False, max_entries=256, ttl=600)
def _churn_risk(db: str, models_key: tuple, customer_id: int, as_of: dt.date, _con, _models):
    return function("models.recommender", "churn_risk")(_con, customer_id=customer_id, as_of=as_of, models=_models)


def churn_risk(customer_id: int, as_of: dt.date):
    """``(RiskAssessment, None)`` from models.recommender with the cached models, or ``(None, why)``
    when no model is trained yet. One per customer and day (the risk counts data before the day)."""
    models = _loaded_models(db_key(), os.environ.get("RETENTION_MODELS", ""), con())
    if isinstance(models, str):
        return None, models
    key = tuple(sorted(getattr(models, "ids", {}).items()))
    return _churn_risk(db_key(), key, customer_id, as_of, con(), models), None


# ------------------------------------------------------------------------------------------------
# First-start analyses in the background
# ------------------------------------------------------------------------------------------------


class BackgroundJob:
    """Progress of work running in a background thread, read by the pages of any session.

    The thread calls it as ``job(done, total, label)`` and ends with :meth:`finish` or :meth:`fail`;
    pages read :meth:`snapshot`. Thread-safe.
    """

    def __init__(self, title: str):
        self.title = title
        self._lock = threading.Lock()
        self._state = {"done": 0, "total": 1, "label": "starting", "running": True, "error": None,
                       "result": None, "acknowledged": False}

    def __call__(self, done: int, total: int, label: str) -> None:
        with self._lock:
            self._state.update(done=done, total=total, label=label)

    def finish(self, result: Any) -> None:
        with self._lock:
            self._state.update(running=False, result=result)

    def fail(self, message: str) -> None:
        with self._lock:
            self._state.update(running=False, error=message)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._state)

    def acknowledge(self) -> bool:
        """True once, for the first caller after the job ended (to forget cached empty results)."""
        with self._lock:
            if self._state["running"] or self._state["acknowledged"]:
                return False
            self._state["acknowledged"] = True
            return True


@st.cache_resource(show_spinner=False)
def _background_jobs() -> dict:
    return {"lock": threading.Lock(), "jobs": {}}


def first_start_analyses_enabled() -> bool:
    """Whether a new demo world gets its analyses computed in the background (default yes;
    ``RETENTION_FIRST_START_ANALYSES=0`` turns it off, e.g. for tests that only need the world)."""
    return os.environ.get("RETENTION_FIRST_START_ANALYSES", "1").strip().lower() not in ("0", "false", "no")


def start_first_start_analyses(cursor, at: dt.datetime) -> BackgroundJob | None:
    """Start the first-start analyses on ``cursor`` in a background thread, once per database file
    and process: a receivables snapshot for the business date
    (:func:`billing.snapshot_receivables.snapshot_receivables`, what the Invoicing page reads), then
    :func:`models.prepare.prepare_analyses`. The cursor belongs to the thread from then on (it
    closes it)."""
    prepare = function("models.prepare", "prepare_analyses")
    if prepare is None or not first_start_analyses_enabled():
        cursor.close()
        return None
    registry = _background_jobs()
    with registry["lock"]:
        if db_key() in registry["jobs"]:
            cursor.close()
            return registry["jobs"][db_key()]
        job = registry["jobs"][db_key()] = BackgroundJob("First-start analyses")

    def work():
        try:
            job(0, 1, "receivables snapshot")
            skipped = _store_receivables(cursor, at)
            result = prepare(cursor, at=at, progress=job)
            if skipped:
                result = dataclasses.replace(result, skipped=(*result.skipped, skipped))
            job.finish(result)
        except Exception as exc:  # noqa: BLE001 - shown on the pages; the app keeps serving
            job.fail(f"{type(exc).__name__}: {exc}")
        finally:
            cursor.close()

    threading.Thread(target=work, name="first-start-analyses", daemon=True).start()
    return job


def _store_receivables(cursor, at: dt.datetime) -> str | None:
    """Store the receivables snapshot of the business date the pages use (computed from the cursor:
    this runs outside any script run); the reason when it was not stored."""
    snapshot = function("billing.snapshot_receivables", "snapshot_receivables")
    business_date = function("analytics.overview", "business_date")
    if snapshot is None or business_date is None:
        return None
    res = snapshot(cursor, as_of=business_date(cursor, today=calendar_today()), at=at, min_periods=1)
    # a conflict means a page stored the same snapshot meanwhile
    return None if res.ok or res.code == CONFLICT else f"receivables snapshot: {res.message}"


def first_start_job() -> BackgroundJob | None:
    """The background analyses of this database file, if this process started them."""
    return _background_jobs()["jobs"].get(db_key())


def refresh_after_background() -> None:
    """Once the background analyses have ended, forget cached results and models (once)."""
    job = first_start_job()
    if job is not None and job.acknowledge():
        models_changed()


def background_notice(what: str) -> bool:
    """Say that ``what`` is still being computed in the background; True when it is."""
    job = first_start_job()
    if job is None:
        return False
    state = job.snapshot()
    if state["running"]:
        st.info(f"{what} is being computed in the background for the new demo world (step "
                f"{min(state['done'] + 1, state['total'])} of {state['total']}: {state['label']}). "
                "Reload this page in a minute.", icon=":material/hourglass_top:")
        return True
    if state["error"]:
        st.warning(f"The background analyses of the new demo world stopped: {state['error']}",
                   icon=":material/warning:")
    elif state["result"] is not None and state["result"].skipped:
        st.caption("Background analyses skipped: " + "; ".join(state["result"].skipped))
    return False


# ------------------------------------------------------------------------------------------------
# Drawing
# ------------------------------------------------------------------------------------------------


def header(title: str, caption: str | None = None) -> None:
    st.title(title)
    if caption:
        st.caption(caption)


def not_available(what: str, how: str) -> None:
    """The empty state of a part of the system that does not exist yet (or has no results)."""
    st.info(f"{what} is not available yet: {how}.", icon=":material/hourglass_empty:")


def empty(message: str) -> None:
    """An empty state that says what to do next."""
    st.info(message, icon=":material/info:")


def chart(fig, key: str) -> None:
    st.plotly_chart(fig, width="stretch", key=key)


def download(df: pd.DataFrame, name: str, key: str, label: str = "Download CSV") -> None:
    """A CSV download of a table (formula-injection safe; personal data masked for roles that do
    not need it)."""
    st.download_button(label, data=to_csv_bytes(shown(df)), file_name=f"{name}.csv", mime="text/csv",
                       key=key, icon=":material/download:")


def table(df: pd.DataFrame, name: str, key: str, *, height: int | None = None, **kwargs) -> None:
    """A table and its download."""
    view = shown(df)
    if height is not None:
        st.dataframe(view, hide_index=True, width="stretch", height=height, **kwargs)
    else:
        st.dataframe(view, hide_index=True, width="stretch", **kwargs)
    download(df, name, key)


def result(res) -> bool:
    """Show a billing Result as success or error; returns whether it succeeded."""
    if res.ok:
        st.success(res.message, icon=":material/check_circle:")
    else:
        st.error(f"{res.message} ({res.code})", icon=":material/error:")
    return bool(res.ok)


class Progress:
    """A progress bar usable as a callback of long work: ``progress(done, total, label)`` (the simulator,
    importers), ``progress(fraction, label)``, or ``progress(label)`` once per step when ``steps`` is
    given (model training)."""

    def __init__(self, text: str, steps: int | None = None):
        self.text = text
        self.steps = steps
        self.step = 0
        self.bar = st.progress(0.0, text=text)

    def __call__(self, *args, **kwargs) -> None:
        label = kwargs.get("label") or kwargs.get("text")
        if args and isinstance(args[0], str):
            self.step += 1
            label = args[0]
            fraction = self.step / self.steps if self.steps else 0.5
        elif len(args) >= 2 and isinstance(args[1], (int, float)) and not isinstance(args[1], bool):
            done, total = args[0], args[1]
            fraction = float(done) / float(total) if total else 1.0
            if len(args) >= 3:
                label = args[2]
        elif args:
            fraction = float(args[0])
            if len(args) >= 2:
                label = args[1]
        else:
            fraction = 1.0
        fraction = min(max(fraction, 0.0), 1.0)
        self.bar.progress(fraction, text=f"{self.text}: {label} ({fraction:.0%})" if label
                          else f"{self.text} ({fraction:.0%})")

    def done(self) -> None:
        self.bar.empty()
