"""Every page, under every role that may see it, on an imported database with no simulated tables:
the IBM Telco file (customers and subscriptions only: no invoices, no contacts, no plan prices)."""
from __future__ import annotations

import pytest

from data.db import connect
from pages._ui import PAGES, ROLE_PAGES
from tests.pages.worlds import charts, open_page, submit, texts

CASES = [(role, key) for role, keys in sorted(ROLE_PAGES.items()) for key in keys]


@pytest.mark.parametrize("role,key", CASES)
def test_every_page_works_without_bills_or_contacts(imported, app, role, key):
    at = app(imported, role)
    open_page(at, PAGES[key].path)
    assert [t.value for t in at.title] == [PAGES[key].title]
    assert not at.exception


def test_the_agent_desk_explains_why_an_imported_customer_cannot_be_verified(imported, app):
    con = connect(imported)
    try:
        account = con.execute("SELECT account_number FROM customers ORDER BY customer_id LIMIT 1").fetchall()[0][0]
    finally:
        con.close()
    at = app(imported, "agent")
    open_page(at, PAGES["agent_desk"].path)
    at.text_input(key="desk_query").input(account)
    submit(at, "desk_search", "Search")
    at.button(key="desk_take").click().run()
    at.text_input(key="verify_postcode").input("12345")
    at.text_input(key="verify_birth").input("1980-01-01")
    submit(at, "desk_verify", "Verify")
    assert any("cannot be checked here" in e.value for e in at.error)
    assert "Open balance" not in texts(at)


def test_billing_an_imported_file_without_prices_is_refused_in_one_line(imported, app):
    # The Telco import brings plans without prices; the fallback world (no shared Telco file, e.g. a
    # clone without ../shared) has a price but no tax rate for its region: either way, one line.
    at = app(imported, "admin")
    open_page(at, PAGES["invoicing"].path)
    submit(at, "billing_run", "Run billing")
    refusals = [e.value for e in at.error if "refused" in e.value]
    assert len(refusals) == 1 and "\n" not in refusals[0]
    assert "no price" in refusals[0] or "no tax rate" in refusals[0]


def test_survival_by_an_imported_attribute(imported, app):
    at = app(imported, "analyst")
    open_page(at, PAGES["churn_explorer"].path)
    options = at.selectbox(key="ce_by").options
    if "contract" not in options:
        pytest.skip("the Telco file is not in ../shared/data/real; the fallback import has no attributes")
    at.selectbox(key="ce_by").set_value("contract").run()
    km = next(c for c in charts(at) if "by contract" in c["layout"]["title"]["text"])
    groups = {d["name"] for d in km["data"] if d.get("showlegend", True) is not False}
    assert {"Month-to-month", "One year", "Two year"} <= groups
    assert "Log-rank test across contract groups" in texts(at)
