"""The agent desk, end to end: search, identity check (refused, then passed), the account, the bill
explained, fairness, the call recorded, a grant within authority, a refusal beyond it with a
supervisor request, and the next billing run carrying the discount."""
from __future__ import annotations

import json

import pytest

from data.db import connect
from data.money import format_invoice_number
from pages._ui import PAGES
from tests.pages.worlds import chart_titles, charts, choose, open_page, submit, texts, values

DESK = PAGES["agent_desk"].path
INVOICING = PAGES["invoicing"].path


def _query(db, sql, params=()):
    con = connect(db)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _caller(db) -> dict:
    """An active customer with six months of tenure, no offer ever, a postcode and a birth date on file."""
    row = _query(db, """
        SELECT c.customer_id, c.account_number, c.name, c.postcode, c.birth_date,
               (SELECT total_cents FROM invoices i WHERE i.customer_id = c.customer_id
                ORDER BY issued_on DESC, invoice_id DESC LIMIT 1) AS last_total
        FROM customers c
        WHERE c.churned_on IS NULL AND c.postcode IS NOT NULL AND c.birth_date IS NOT NULL
          AND c.signup_date <= DATE '2023-03-01'
          AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.customer_id = c.customer_id AND s.end_date IS NULL)
          AND NOT EXISTS (SELECT 1 FROM offer_grants g WHERE g.customer_id = c.customer_id)
          AND (SELECT count(*) FROM invoices i WHERE i.customer_id = c.customer_id) >= 3
        ORDER BY c.customer_id LIMIT 1""")[0]
    return dict(zip(("customer_id", "account_number", "name", "postcode", "birth_date", "last_total"), row))


def _offer(db, code) -> int:
    return int(_query(db, "SELECT offer_id FROM offers WHERE code = ?", [code])[0][0])


def _audit(db, action) -> list[dict]:
    return [json.loads(r[0]) | {"entity_id": r[1], "user_id": r[2]} for r in _query(
        db, "SELECT detail, entity_id, user_id FROM audit_log WHERE action = ? ORDER BY audit_id", [action])]


def _search_and_take(at, account):
    at.text_input(key="desk_query").input(account)
    submit(at, "desk_search", "Search")
    assert at.selectbox(key="desk_pick").value is not None
    at.button(key="desk_take").click().run()
    assert not at.exception


def _verify(at, **answers):
    for key, value in answers.items():
        at.text_input(key=f"verify_{key}").input(value)
    submit(at, "desk_verify", "Verify")


def _account_shown(at) -> bool:
    page = texts(at)
    return "Open balance" in page or "Latest bill explained" in page or bool(charts(at))


@pytest.fixture()
def desk(fresh_world, app):
    at = app(fresh_world, "agent")
    open_page(at, DESK)
    return at, fresh_world


def test_search_masks_personal_data_until_verified(desk):
    at, db = desk
    caller = _caller(db)
    at.text_input(key="desk_query").input(caller["name"].split()[0])
    submit(at, "desk_search", "Search")
    table = at.dataframe[0].value
    assert caller["account_number"] in set(table["account_number"])
    assert table["email"].dropna().str.contains(r"\*\*\*@").all()
    assert not table["postcode"].dropna().isin([caller["postcode"]]).any()
    assert "birth_date" not in table.columns


def test_a_search_with_no_match_says_what_to_do(desk):
    at, _ = desk
    at.text_input(key="desk_query").input("zz-nobody-zz")
    submit(at, "desk_search", "Search")
    assert "No customer matches" in texts(at)
    at.text_input(key="desk_query").input("a")
    submit(at, "desk_search", "Search")
    assert any("at least 2 characters" in e.value for e in at.error)


def test_the_whole_agent_flow(desk, app):
    at, db = desk
    caller = _caller(db)
    _search_and_take(at, caller["account_number"])
    assert caller["name"] in texts(at)
    assert not _account_shown(at)

    # wrong answers: refused, audited, nothing about the account shown
    _verify(at, postcode="XX 999", birth=caller["birth_date"].isoformat())
    assert any("not verified" in e.value for e in at.error)
    assert not _account_shown(at)
    assert _audit(db, "verify_identity")[-1]["passed"] is False

    # right answers: postcode and last invoice amount
    _verify(at, postcode=caller["postcode"], birth="", amount=f"{caller['last_total'] / 100:.2f}")
    assert not at.error, [e.value for e in at.error]
    audit = _audit(db, "verify_identity")[-1]
    assert audit["passed"] is True and audit["entity_id"] == str(caller["customer_id"])
    page = texts(at)
    assert "Identity verified" in page and "Open balance" in page and "Latest bill explained" in page
    assert caller["postcode"] in page                                   # the agent now sees the details
    titles = chart_titles(at)
    assert "Recent invoices" in titles
    bills = next(c for c in charts(at) if c["layout"]["title"]["text"] == "Recent invoices")
    assert bills["data"][0]["type"] == "bar" and len(values(bills["data"][0]["x"])) >= 3
    assert "INV-" in page and "Fairness check" in page
    assert any("peers" in t.lower() for t in titles)

    # the call: a complaint about the bill, recorded first
    at.selectbox(key="desk_reason").set_value("bill_higher_than_expected").run()
    offers = next(d.value for d in at.dataframe if "authority" in d.value.columns)
    assert {"name", "eligible", "needs_tier", "message"} <= set(offers.columns)
    assert offers["eligible"].any() and (offers["authority"] == "needs a supervisor").any()
    at.selectbox(key="desk_resolution").set_value("resolved")
    at.text_area(key="desk_notes").input("Explained the price rise")
    submit(at, "desk_record", "Record the call")
    contact_id = at.session_state["desk.contact"]
    row = _query(db, "SELECT customer_id, agent_id, reason, is_identity_verified FROM contacts WHERE contact_id = ?",
                 [contact_id])[0]
    assert row[0] == caller["customer_id"] and row[2] == "bill_higher_than_expected" and row[3] is True

    # beyond the agent's authority (tier 2 offer, agent is tier 1): refused by billing, then a supervisor request
    free = _offer(db, "free_1m") if _query(db, "SELECT 1 FROM offers WHERE code = 'free_1m'") else \
        _offer(db, "pct50_12m")
    at.selectbox(key="desk_offer").set_value(free)
    at.checkbox(key="desk_offer_agree").check().run()
    at.button(key="desk_grant").click().run()
    assert any("over_authority" in e.value for e in at.error)
    assert not _query(db, "SELECT 1 FROM offer_grants WHERE customer_id = ?", [caller["customer_id"]])
    at.button(key="desk_supervisor").click().run()
    assert "Supervisor approval requested" in texts(at)
    request = _audit(db, "request_supervisor_offer")[-1]
    assert request["offer_id"] == free and request["contact_id"] == contact_id

    # within authority: granted and audited
    pct = _offer(db, "pct10_3m")
    at.selectbox(key="desk_offer").set_value(pct)
    at.checkbox(key="desk_offer_agree").check().run()
    at.button(key="desk_grant").click().run()
    assert "the next invoice shows it" in texts(at)
    grant = _query(db, "SELECT grant_id, offer_id, granted_by, contact_id, first_period FROM offer_grants "
                       "WHERE customer_id = ?", [caller["customer_id"]])
    assert len(grant) == 1 and grant[0][1] == pct and grant[0][3] == contact_id
    assert _audit(db, "grant_offer")[-1]["customer_id"] == caller["customer_id"]
    first_period = grant[0][4]

    # the next billing run (admin, Invoicing page) puts the discount on the next invoice
    admin = app(db, "admin")
    open_page(admin, INVOICING)
    assert admin.text_input(key="run_period").value == f"{first_period:%Y-%m}"
    submit(admin, "billing_run", "Run billing")
    assert any("billed" in s.value for s in admin.success)
    invoice = _query(db, "SELECT invoice_id FROM invoices WHERE customer_id = ? AND period_start = ?",
                     [caller["customer_id"], first_period])[0][0]
    choose(admin, "inv_task", "Invoices")
    admin.text_input(key="invoice_number").input(format_invoice_number(invoice))
    submit(admin, "invoice_find", "Show")
    lines = admin.dataframe[0].value
    assert "discount" in set(lines["kind"])
    assert "10% off" in " ".join(lines["description"]) or "10%" in texts(admin)
    assert "started" in texts(admin).lower()


def test_the_end_call_button_clears_the_desk(desk):
    at, db = desk
    caller = _caller(db)
    _search_and_take(at, caller["account_number"])
    at.button(key="desk_end").click().run()
    assert "desk.customer" not in at.session_state and "Search for the caller" in texts(at)


def test_a_bad_amount_is_a_one_line_error(desk):
    at, db = desk
    _search_and_take(at, _caller(db)["account_number"])
    _verify(at, postcode="1", amount="twelve")
    assert len(at.error) == 1 and "amount" in at.error[0].value.lower()
    assert not _account_shown(at)


def test_churn_risk_and_recommended_offers_from_the_models(desk, monkeypatch):
    """With trained models the desk shows the recommender's answer: the risk with its reasons, the ranked
    offers with their status, and the grant goes through the offer the agent picks (a recommendation in
    the shape of models.recommender.Recommendation stands in for a trained model here)."""
    import types

    import pandas as pd

    from models import recommender
    at, db = desk
    caller = _caller(db)
    pct = _offer(db, "pct10_3m")
    options = pd.DataFrame({
        "rank": [1, 2], "code": ["pct10_3m", "pct50_12m"], "name": ["10% off for 3 months", "50% off for 12 months"],
        "kind": ["percent_off", "percent_off"], "eligible": [True, False], "why_not": [None, "reason_not_eligible"],
        "eligibility_message": ["eligible for pct10_3m", "only for cancel requests"], "may_grant": [True, False],
        "needs_tier": [1, 3], "uplift": [0.04, None], "net_value_cents": [1200.0, None],
        "status": ["recommended", "not_eligible"]})
    calls, risks = [], []

    def fake(con, *, customer_id, reason, at, is_intent_to_cancel=False, agent_id=None, models=None, **kw):
        assert models.ids == {"uplift": "test"}          # the models loaded once, passed in
        assert not kw.get("with_risk")                    # the desk asks for the churn risk on its own
        calls.append((customer_id, reason, agent_id))
        return types.SimpleNamespace(
            churn_risk=None, message="Offer 10% off for 3 months: it pays for this customer.", options=options,
            risk_reasons=pd.DataFrame(), notes=())

    def fake_risk(con, *, customer_id, as_of, models=None):
        assert models.ids == {"uplift": "test"}
        risks.append((customer_id, as_of))
        return recommender.RiskAssessment(
            customer_id, as_of, 0.31, pd.DataFrame({"rank": [1], "feature": ["bill_change_pct"], "value": [12.0],
                                                    "reference": [0.0], "delta": [0.06]}))
    monkeypatch.setattr(recommender, "load_models", lambda con, **kw: types.SimpleNamespace(ids={"uplift": "test"}))
    monkeypatch.setattr(recommender, "recommend", fake)
    monkeypatch.setattr(recommender, "churn_risk", fake_risk)
    _search_and_take(at, caller["account_number"])
    _verify(at, postcode=caller["postcode"], amount=f"{caller['last_total'] / 100:.2f}")
    assert calls and calls[-1] == (caller["customer_id"], "bill_higher_than_expected",
                                   at.session_state["auth.user"]["user_id"])
    assert risks and risks[-1][0] == caller["customer_id"]
    # the risk is one per customer and day: another reason asks for new offers, not a new risk
    asked = len(risks)
    at.selectbox(key="desk_reason").set_value("wants_cheaper_plan").run()
    assert calls[-1][1] == "wants_cheaper_plan" and len(risks) == asked
    page = texts(at)
    assert "31%" in page and "it pays for this customer" in page
    assert "Why this risk" in chart_titles(at)
    table = next(d.value for d in at.dataframe if "authority" in d.value.columns)
    assert table["status"].tolist() == ["recommended", "not_eligible"]
    submit(at, "desk_record", "Record the call")
    assert at.selectbox(key="desk_offer").options == ["10% off for 3 months (tier 1+)"]
    at.checkbox(key="desk_offer_agree").check().run()
    at.button(key="desk_grant").click().run()
    assert "the next invoice shows it" in texts(at)
    assert _query(db, "SELECT offer_id FROM offer_grants WHERE customer_id = ?", [caller["customer_id"]]) == [(pct,)]
