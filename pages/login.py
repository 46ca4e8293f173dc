"""Sign in: login and password (bcrypt, billing.manage_users.authenticate), or single sign-on."""
from __future__ import annotations

import streamlit as st

from billing.manage_users import authenticate
from data.db import has_table
from pages import _ui

st.title("Retention Desk")
st.caption("Billing, the care desk and the analytics of what keeps customers.")

left, _ = st.columns([1, 1])
with left:
    try:
        sso = "auth" in st.secrets
    except Exception:
        sso = False
    if sso:
        st.button("Sign in with single sign-on", on_click=st.login, icon=":material/key:", key="sso")
        st.caption("or with a Retention Desk password:")
    with st.form("login_form"):
        login = st.text_input("Login", key="login_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password",
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        res = authenticate(_ui.con(), login, password)
        if res.ok:
            _ui.sign_in(res.data)
            st.rerun()
        else:
            st.error(res.message, icon=":material/lock:")

    if has_table(_ui.con(), "sim_world"):
        users = _ui.function("data.simulate", "DEMO_USERS")
        if users:
            with st.expander("Demo sign-ins (simulated world)"):
                st.table({"login": [u.login for u in users], "password": [u.password for u in users],
                          "role": [u.role + (f", tier {u.agent_tier}" if u.agent_tier else "") for u in users]})
