"""Retention Desk: the Streamlit entry point. It only routes.

Opens the database (one connection per process, a cursor per script run), builds the demo world on
the first start of an empty database (then computes its stored analyses in the background), signs the user in (password, or single sign-on when
``st.secrets`` has an ``[auth]`` section), and shows the pages the user's role may see.

    streamlit run app.py          # database: $RETENTION_DB or data/retention.duckdb
"""
from __future__ import annotations

import os
import threading

import streamlit as st

from analytics.overview import has_customers
from billing.manage_users import ROLES, require_role
from data.db import DatabaseError, connect, resolve_path
from data.db import cursor as db_cursor
from pages import _ui

st.set_page_config(page_title="Retention Desk", page_icon=":material/support_agent:", layout="wide")


@st.cache_resource(show_spinner=False)
def _database(path: str):
    """One DuckDB connection per process and database file (DuckDB: one writer per file)."""
    return connect(path)


@st.cache_resource(show_spinner=False)
def _build_lock(path: str) -> threading.Lock:
    return threading.Lock()


def _open_cursor() -> None:
    """This run's cursor (a connection object must not be used by two threads at once)."""
    path = resolve_path()
    try:
        parent = _database(path)
    except DatabaseError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    cursor = db_cursor(parent)  # a cursor per run, with the connection's macros (round_div)
    st.session_state[_ui.DB_KEY] = cursor
    st.session_state[_ui.DB_PATH_KEY] = path


def _demo_config():
    """The first-start demo world: data.simulate's default demo ending with last month (so the demo's
    business date is about today), resizable for small machines."""
    from data.simulate import demo_config
    changes = {}
    for env, field in (("RETENTION_DEMO_CUSTOMERS", "customers"), ("RETENTION_DEMO_MONTHS", "months")):
        if os.environ.get(env):
            changes[field] = int(os.environ[env])
    return demo_config(_ui.calendar_today(), **changes)


def _ensure_data() -> None:
    """An empty database gets the demo world on first start, with a progress bar."""
    con = _ui.con()
    if has_customers(con):
        return
    build = _ui.function("data.simulate", "build_world")
    if build is None:
        st.title("Retention Desk")
        _ui.not_available("The demo world", "the simulator (data.simulate.build_world) is not installed; "
                          "import data with `python cli.py import FOLDER` and restart")
        st.stop()
    with _build_lock(_ui.db_key()):
        if has_customers(con):
            return
        st.title("Retention Desk")
        st.write("First start: building the demo world (simulated customers, bills, care contacts and "
                 "offers). This takes a minute or two.")
        progress = _ui.Progress("Building the demo world")
        try:
            build(con, _demo_config(), progress=progress)
        except ValueError as exc:
            st.error(f"Cannot build the demo world: {exc}", icon=":material/error:")
            st.stop()
        progress.done()
        # The stored analyses the pages read (discount effects, care practices, models) are made in
        # the background: the app is usable at once and those pages fill in a minute or two later.
        _ui.start_first_start_analyses(db_cursor(_database(_ui.db_key())), at=_ui.now())
    _ui.data_changed()
    st.rerun()


def _sso_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _check_signed_in_user() -> None:
    """Re-read the signed-in user's role every run: a disabled user is signed out at once."""
    u = _ui.user()
    if u is None and _sso_configured() and getattr(st.user, "is_logged_in", False):
        lookup = _ui.function("billing.manage_users", "user_for_login")
        if lookup is None:
            st.error("Single sign-on needs billing.manage_users.user_for_login; sign in with a password.")
            return
        res = lookup(_ui.con(), st.user.get("email") or "")
        if res.ok:
            _ui.sign_in(res.data)
            u = _ui.user()
        else:
            st.error(f"{st.user.get('email')} has no Retention Desk account: {res.message}")
            return
    if u is None:
        return
    res = require_role(_ui.con(), u["user_id"], ROLES)
    if not res.ok:
        _ui.sign_out()
        st.warning(f"Signed out: {res.message}")
        return
    u.update(role=res["role"], agent_tier=res["agent_tier"], display_name=res["display_name"])


def _sign_out() -> None:
    _ui.sign_out()
    if _sso_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def _sidebar(u: dict) -> None:
    with st.sidebar:
        tier = f", tier {u['agent_tier']}" if u.get("agent_tier") else ""
        st.markdown(f"**{u['display_name']}**  \n{_ui.ROLE_LABELS.get(u['role'], u['role'])}{tier}")
        st.caption(f"Business date {_ui.today():%Y-%m-%d}")
        st.button("Sign out", on_click=_sign_out, icon=":material/logout:", key="sign_out")


_open_cursor()
_ensure_data()
_ui.refresh_after_background()
_check_signed_in_user()
user = _ui.user()
if user is None:
    login = _ui.LOGIN_PAGE
    navigation = st.navigation([st.Page(login.path, title=login.title, icon=login.icon, url_path=login.url_path,
                                        default=True)], position="hidden")
else:
    navigation = st.navigation([st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path,
                                        default=(i == 0))
                                for i, p in enumerate(_ui.pages_for(user["role"]))])
    _sidebar(user)
navigation.run()
