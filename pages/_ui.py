"""The one small Streamlit helper module: who is signed in, which pages a role sees, the per-run
database cursor, the business date, cached calls, downloads, charts and empty states.

Everything a page shows comes from plain functions below ``pages/``; this module only wires them
to Streamlit. No SQL here (a test greps ``pages/``).
"""
from __future__ import annotations

import datetime as dt
import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import streamlit as st

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
    when no model is trained yet."""
    models = _loaded_models(db_key(), os.environ.get("RETENTION_MODELS", ""), con())
    if isinstance(models, str):
        return None, models
    key = tuple(sorted(getattr(models, "ids", {}).items()))
    return _recommend(db_key(), key, customer_id, reason, at, intent, agent_id, con(), models), None


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
