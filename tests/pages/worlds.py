"""Small worlds for the page tests, and helpers to drive the app with AppTest.

- :func:`build_small_world`: a small simulated world (``data.simulate``), or, when the simulator is
  not there, a world made with the billing use cases (plans, offers, customers, three billed months,
  payments, contacts, the demo users).
- :func:`build_imported_world`: the IBM Telco file imported (customers and subscriptions only), or a
  few customers without bills when the file is not there.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from analytics.overview import data_as_of
from billing.create_customers import create_customers
from billing.manage_catalogue import define_offer, define_plan, set_plan_price, set_tax_rate
from billing.manage_users import create_users
from billing.record_contact import record_contacts
from billing.record_payment import record_payments
from billing.run_billing import run_billing
from data.db import connect, has_table

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
TELCO = ROOT.parent / "shared" / "data" / "real" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
TIMEOUT = 60

try:
    from data.simulate import DEFAULT_DEMO, DEMO_USERS, build_world
except ModuleNotFoundError:  # the simulator is not there yet: the same logins, made here
    build_world = None
    DEFAULT_DEMO = None
    DEMO_USERS = None

if DEMO_USERS is not None:
    USERS = [dict(login=u.login, password=u.password, role=u.role, agent_tier=u.agent_tier,
                  display_name=u.display_name) for u in DEMO_USERS]
else:
    USERS = [dict(login="admin", password="admin-demo", role="admin", agent_tier=None, display_name="Demo Admin"),
             dict(login="leader", password="leader-demo", role="leader", agent_tier=None,
                  display_name="Demo Leader"),
             dict(login="analyst", password="analyst-demo", role="analyst", agent_tier=None,
                  display_name="Demo Analyst"),
             dict(login="agent", password="agent-demo", role="agent", agent_tier=1,
                  display_name="Demo Agent (tier 1)"),
             dict(login="supervisor", password="supervisor-demo", role="agent", agent_tier=3,
                  display_name="Demo Supervisor (tier 3)")]
DEMO_PASSWORDS = {u["login"]: u["password"] for u in USERS}
ROLE_LOGIN = {"admin": "admin", "leader": "leader", "analyst": "analyst", "agent": "agent"}


def build_small_world(path: Path) -> None:
    """A small world in ``path``: simulated (1,500 customers over 2023: enough contacts with 180 days of
    follow-up for an effects run; the business date is 2024-01-01) or made by the billing engine."""
    con = connect(path)
    try:
        if build_world is not None:
            build_world(con, DEFAULT_DEMO.replace(customers=1500, months=12, start="2023-01", seed=11))
        else:
            _engine_world(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _engine_world(con) -> None:
    """The fallback world: the billing use cases only (no simulated tables)."""
    start = dt.date(2023, 1, 1)
    at = dt.datetime(2023, 1, 1, 9)
    for code, name, rank, price, allowance, overage in (("basic", "Basic", 1, 1499, 10, 150),
                                                         ("standard", "Standard", 2, 2999, 40, 100),
                                                         ("plus", "Plus", 3, 4499, 120, 60)):
        assert define_plan(con, code=code, name=name, rank=rank, monthly_price_cents=price,
                           usage_allowance_units=allowance, overage_price_cents=overage, effective_from=start).ok
    assert set_plan_price(con, plan_id=2, effective_from=dt.date(2023, 3, 1), monthly_price_cents=3199).ok
    for region, rate in (("north", 2100), ("south", 1900)):
        assert set_tax_rate(con, region=region, rate_bp=rate, effective_from=start).ok
    assert define_offer(con, code="pct10_3m", name="10% off for 3 months", kind="percent_off", percent_off=10,
                        cycles=3, cooldown_months=6).ok
    assert define_offer(con, code="credit_20", name="EUR 20 goodwill credit", kind="fixed_credit",
                        credit_cents=2000).ok
    assert define_offer(con, code="pct50_12m", name="50% off for 12 months", kind="percent_off", percent_off=50,
                        cycles=12, min_tier=3).ok
    n = 60
    customers = pd.DataFrame({
        "name": [f"Customer {i:03d}" for i in range(n)],
        "email": [f"customer{i}@example.com" for i in range(n)],
        "phone": [f"+31 20 555 {i:04d}" for i in range(n)],
        "postcode": [f"{1000 + i} AB" for i in range(n)],
        "birth_date": [dt.date(1960 + i % 40, 1 + i % 12, 1 + i % 28) for i in range(n)],
        "segment": ["consumer" if i % 3 else "small_business" for i in range(n)],
        "region": ["north" if i % 2 else "south" for i in range(n)],
        "channel": ["web" if i % 4 else "retail" for i in range(n)],
        "signup_date": [start + dt.timedelta(days=i % 50) for i in range(n)],
        "plan_id": [1 + i % 3 for i in range(n)],
    })
    assert create_customers(con, customers, at=at).ok
    users = pd.DataFrame(USERS)
    assert (create_users(con, users, at=at)["code"] == "ok").all()
    for month in (1, 2, 3):
        period = dt.date(2023, month, 1)
        assert run_billing(con, period, as_of=dt.date(2023, month + 1, 1)).ok
    ids = con.execute("SELECT customer_id, sum(total_cents) FROM invoices GROUP BY 1 ORDER BY 1").fetchall()
    pay = pd.DataFrame({"customer_id": [c for c, _ in ids[::2]], "amount_cents": [int(t) for _, t in ids[::2]],
                        "received_at": dt.datetime(2023, 4, 1, 8), "method": "card", "status": "settled"})
    assert record_payments(con, pay, at=dt.datetime(2023, 4, 1, 8)).ok
    contacts = pd.DataFrame({"customer_id": [c for c, _ in ids[:20]],
                             "contacted_at": [dt.datetime(2023, 2 + i % 2, 5 + i, 10) for i in range(20)],
                             "channel": "phone", "reason": "bill_higher_than_expected", "resolution": "resolved",
                             "wait_seconds": [60 * (1 + i) for i in range(20)]})
    record_contacts(con, contacts, at=dt.datetime(2023, 4, 1, 9))


def build_imported_world(path: Path) -> None:
    """The Telco churn file imported into ``path`` (no invoices, no contacts), plus the demo users."""
    con = connect(path)
    try:
        at = dt.datetime(2024, 7, 1, 9)
        done = False
        if TELCO.exists():
            from data.importers import import_telco
            report = import_telco(con, TELCO, snapshot=dt.date(2024, 6, 30), at=at)
            done = report.ok
        if not done:
            assert define_plan(con, code="m2m", name="Month-to-month", rank=1, monthly_price_cents=2000,
                               usage_allowance_units=0, overage_price_cents=0, effective_from=dt.date(2020, 1, 1)).ok
            rows = pd.DataFrame({"name": [f"Imported {i}" for i in range(30)], "segment": "consumer",
                                 "region": "unknown", "channel": "unknown",
                                 "signup_date": [dt.date(2022, 1 + i % 12, 1) for i in range(30)], "plan_id": 1})
            assert create_customers(con, rows, at=at).ok
        assert (create_users(con, pd.DataFrame(USERS), at=at)["code"] == "ok").all()
        con.execute("CHECKPOINT")
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------
# Driving the app
# ------------------------------------------------------------------------------------------------


def start_app() -> AppTest:
    """Start the app on ``$RETENTION_DB``. A database without a simulated world works on its own last
    recorded day (``RETENTION_TODAY``), so the tests do not depend on the calendar."""
    con = connect(os.environ["RETENTION_DB"])
    try:
        if not has_table(con, "sim_world"):
            day = data_as_of(con)
            if day is not None:
                os.environ["RETENTION_TODAY"] = day.isoformat()
        else:
            os.environ.pop("RETENTION_TODAY", None)
    finally:
        con.close()
    import streamlit as st
    st.cache_data.clear()  # cached results are keyed by file path; a test may have changed the data
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def sign_in(at: AppTest, login: str, password: str) -> AppTest:
    at.text_input(key="login_name").input(login)
    at.text_input(key="login_password").input(password)
    at.button(key="FormSubmitter:login_form-Sign in").click().run()
    assert not at.exception, at.exception
    return at


def open_page(at: AppTest, page_file: str) -> AppTest:
    at.switch_page(page_file).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def submit(at: AppTest, form: str, label: str) -> AppTest:
    at.button(key=f"FormSubmitter:{form}-{label}").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, read from each element's proto spec."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def chart_titles(at: AppTest) -> list[str]:
    return [c["layout"].get("title", {}).get("text", "") for c in charts(at)]


def texts(at: AppTest) -> str:
    """All the text of the page's markdown, captions, alerts and metrics, joined."""
    parts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "title", "subheader"):
        parts += [str(e.value) for e in at.get(kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def downloads(at: AppTest) -> list:
    return list(at.get("download_button"))


def values(data) -> list:
    """A plotly data array as a list: plotly 6 writes numeric arrays as base64 typed arrays."""
    if isinstance(data, dict) and "bdata" in data:
        import base64

        import numpy as np
        arr = np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
        if "shape" in data:
            arr = arr.reshape([int(s) for s in str(data["shape"]).split(",")])
        return arr.tolist()
    return list(data)


def choose(at: AppTest, key: str, value: str) -> AppTest:
    """Pick one option of a segmented control (a page's view or task) and rerun."""
    at.segmented_control(key=key).set_value(value).run()
    assert not at.exception, [e.message for e in at.exception]
    return at
