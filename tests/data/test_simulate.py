"""The simulated world (data/simulate): one small world, built once, checked against the engine's
rules, its own truth and the mechanisms it promises (DESIGN.md section 5, docs/SIMULATION.md)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from billing.manage_users import authenticate
from data.db import connect
from data.simulate import DEMO_USERS, SimConfig, build_world
from data.simulate.config import OFFERS

# Big enough for the mechanisms to show, small enough to build in well under a minute. Half of the
# eligible contacts go to the holdout so its arms are large enough to compare.
CONFIG = SimConfig(customers=5000, months=24, start="2022-01", seed=11, holdout_share=0.5)


@pytest.fixture(scope="module")
def world():
    con = connect(":memory:")
    summary = build_world(con, CONFIG, check_eligibility=True)
    yield con, summary
    con.close()


def q(con, sql, params=None):
    return con.execute(sql, params or []).df()


def one(con, sql, params=None):
    return con.execute(sql, params or []).fetchall()[0][0]


# --- the world is made by the engine, and agrees with it ---------------------------------------------

def test_simulator_and_engine_agree_on_every_invoice_eligibility_and_non_payment(world):
    con, summary = world
    # invoice totals, offer eligibility (offer_eligibility asked for every contact and offer),
    # customers ended for non-payment, and no use case refused a row
    assert summary.checks == {}
    assert summary.contacts > 1000 and summary.grants > 300 and summary.churned_involuntary > 0


def test_every_invoice_comes_from_a_billing_run_one_run_per_month(world):
    con, _ = world
    assert one(con, "SELECT count(*) FROM invoices WHERE run_id IS NULL") == 0
    runs = q(con, "SELECT period_start, status FROM billing_runs ORDER BY period_start")
    assert len(runs) == CONFIG.months and set(runs["status"]) == {"finished"}
    bad = one(con, """SELECT count(*) FROM invoices i
                      WHERE total_cents <> (SELECT sum(amount_cents) FROM invoice_lines l WHERE l.invoice_id = i.invoice_id)""")
    assert bad == 0


def test_churned_customers_are_not_billed_after_they_leave(world):
    con, _ = world
    assert one(con, """SELECT count(*) FROM invoices i JOIN customers c USING (customer_id)
                       WHERE c.churned_on IS NOT NULL AND i.period_start > c.churned_on""") == 0
    # and every customer who stays is billed every month from sign-up to the end
    gaps = one(con, """
        WITH per AS (SELECT c.customer_id, count(DISTINCT i.period_start) AS n,
                            date_diff('month', date_trunc('month', c.signup_date),
                                      date_trunc('month', coalesce(c.churned_on, DATE '2023-12-31'))) + 1 AS want
                     FROM customers c JOIN invoices i USING (customer_id) GROUP BY ALL)
        SELECT count(*) FROM per WHERE n <> want""")
    assert gaps == 0


def test_a_discount_or_credit_shows_on_the_next_invoice(world):
    con, _ = world
    missing = q(con, """
        SELECT g.grant_id, g.kind FROM offer_grants g
        WHERE g.kind IN ('percent_off', 'free_months', 'fixed_credit')
          AND NOT EXISTS (SELECT 1 FROM invoices i JOIN invoice_lines l USING (invoice_id)
                          WHERE i.customer_id = g.customer_id AND i.period_start = g.first_period
                            AND l.grant_id = g.grant_id AND l.kind IN ('discount', 'credit'))""")
    assert missing.empty, missing.head()
    assert one(con, "SELECT count(*) FROM offer_grants WHERE kind IN ('percent_off', 'free_months')") > 0


def test_a_plan_move_changes_the_plan_on_the_day_of_the_grant(world):
    con, _ = world
    moves = q(con, """
        SELECT g.grant_id, s.subscription_id, pn.rank AS new_rank, po.rank AS old_rank
        FROM offer_grants g
        LEFT JOIN subscriptions s ON s.customer_id = g.customer_id AND s.start_date = CAST(g.granted_at AS DATE)
        LEFT JOIN plans pn ON pn.plan_id = s.plan_id
        LEFT JOIN subscriptions prev ON prev.subscription_id = s.previous_subscription_id
        LEFT JOIN plans po ON po.plan_id = prev.plan_id
        WHERE g.kind = 'plan_move'""")
    assert len(moves) > 0
    assert moves["subscription_id"].notna().all()
    assert (moves["new_rank"] == moves["old_rank"] - 1).all()


def test_billing_errors_are_injected_charges_corrected_by_billing_error_credit_notes(world):
    con, summary = world
    errors = q(con, "SELECT * FROM sim_truth_billing_errors")
    assert len(errors) == summary.billing_errors > 0
    share = len(errors) / one(con, "SELECT count(DISTINCT (customer_id, period_start)) FROM invoices")
    assert 0.005 < share < 0.03
    on_invoice = one(con, """SELECT count(*) FROM sim_truth_billing_errors e JOIN invoice_lines l
                             ON l.charge_id = e.charge_id AND l.invoice_id = e.invoice_id""")
    assert on_invoice == len(errors)
    detected = errors[errors["detected_by"].notna() & (errors["credit_cents"] > 0)]
    assert set(errors["detected_by"].dropna()) == {"complaint", "audit"}
    notes = q(con, "SELECT credit_note_id, invoice_id, reason, contact_id FROM credit_notes")
    joined = detected.merge(notes, on="credit_note_id", suffixes=("", "_cn"))
    assert len(joined) == len(detected)
    assert (joined["invoice_id"] == joined["invoice_id_cn"]).all() and set(joined["reason"]) == {"billing_error"}
    complaints = joined[joined["detected_by"] == "complaint"]
    reasons = q(con, "SELECT contact_id, reason FROM contacts").set_index("contact_id")["reason"]
    assert (complaints["contact_id_cn"].map(reasons) == "billing_error").all()


def test_payments_on_time_late_and_failed_and_involuntary_churn(world):
    con, _ = world
    pays = q(con, """
        SELECT p.status, p.received_at > i.due_on AS late FROM payments p
        JOIN LATERAL (SELECT max(due_on) AS due_on FROM invoices i
                      WHERE i.customer_id = p.customer_id AND i.issued_on <= CAST(p.received_at AS DATE)) i ON TRUE""")
    assert (pays["status"] == "failed").sum() > 0
    settled = pays[pays["status"] == "settled"]
    assert 0.05 < settled["late"].mean() < 0.5
    kinds = q(con, "SELECT churn_kind, churn_reason, count(*) AS n FROM customers WHERE churned_on IS NOT NULL GROUP BY ALL")
    assert set(kinds["churn_kind"]) == {"voluntary", "involuntary"}
    assert set(kinds.loc[kinds["churn_kind"] == "involuntary", "churn_reason"]) == {"non_payment"}


# --- the truth -------------------------------------------------------------------------------------

def test_truth_has_one_row_per_contact_and_option(world):
    con, summary = world
    po = q(con, "SELECT * FROM sim_truth_potential_outcomes")
    n_contacts = one(con, "SELECT count(*) FROM contacts")
    assert n_contacts == summary.contacts
    assert len(po) == n_contacts * (1 + len(OFFERS))
    assert not po.duplicated(["contact_id", "option"]).any()
    assert set(po["option"]) == {"none", *[o.code for o in OFFERS]}
    assert (po.groupby("contact_id")["is_taken"].sum() == 1).all()
    assert po.loc[po["option"] == "none", "is_eligible"].all()
    assert (po["retained_180d"].isna() == ~po["is_eligible"]).all()
    assert po.loc[po["is_taken"], "is_eligible"].all()


def test_the_option_taken_is_the_grant_the_database_holds(world):
    con, _ = world
    taken = q(con, """
        SELECT p.contact_id, p.option, o.code FROM sim_truth_potential_outcomes p
        LEFT JOIN offer_grants g USING (contact_id) LEFT JOIN offers o ON o.offer_id = g.offer_id
        WHERE p.is_taken""")
    assert (taken["option"] == taken["code"].fillna("none")).all()


def test_observed_180_day_retention_equals_the_potential_outcome_of_the_option_taken(world):
    con, _ = world
    # consistency: replaying the contact's months under the option actually taken reproduces the
    # observed history exactly, for every contact whose 180 days lie inside the world
    cmp = q(con, """
        SELECT p.contact_id, p.retained_180d AS truth,
               (c.churned_on IS NULL OR c.churned_on >= CAST(ct.contacted_at AS DATE) + 180) AS observed,
               p.churned_on AS truth_churned_on, c.churned_on
        FROM sim_truth_potential_outcomes p JOIN contacts ct USING (contact_id)
        JOIN customers c ON c.customer_id = ct.customer_id
        WHERE p.is_taken AND p.is_followed_up""")
    assert len(cmp) > 1000
    assert (cmp["truth"] == cmp["observed"]).all(), cmp[cmp["truth"] != cmp["observed"]].head()
    churned = cmp[cmp["truth_churned_on"].notna()]
    assert (churned["truth_churned_on"] == churned["churned_on"]).all()


def test_offer_effects_are_the_mean_potential_outcome_differences(world):
    con, _ = world
    effects = q(con, "SELECT * FROM sim_truth_offer_effects ORDER BY offer_id")
    assert list(effects["code"]) == [o.code for o in OFFERS]
    po = q(con, "SELECT contact_id, option, retained_180d, is_eligible, is_followed_up FROM sim_truth_potential_outcomes")
    y0 = po[po["option"] == "none"].set_index("contact_id")["retained_180d"].astype(float)
    for _, e in effects.iterrows():
        rows = po[(po["option"] == e["code"]) & po["is_eligible"] & po["is_followed_up"]]
        ate = (rows["retained_180d"].astype(float).to_numpy() - y0.loc[rows["contact_id"]].to_numpy()).mean()
        assert e["contacts_eligible"] == len(rows)
        assert e["ate"] == pytest.approx(ate)


def test_practice_hazard_ratios_are_recorded_with_definitions(world):
    con, _ = world
    hr = q(con, "SELECT * FROM sim_truth_hazard_ratios").set_index("name")
    for name in ("wait_minute", "billing_error", "unresolved_contact"):
        assert hr.loc[name, "kind"] == "practice"
        assert hr.loc[name, "hazard_ratio"] > 1.0
        assert hr.loc[name, "hazard_ratio"] == pytest.approx(np.exp(hr.loc[name, "log_hazard_ratio"]))
        assert len(hr.loc[name, "definition"]) > 40


# --- the mechanisms show in the data -----------------------------------------------------------------

def test_contacts_rise_in_the_month_after_a_price_rise(world):
    con, _ = world
    rates = q(con, """
        WITH m AS (SELECT DISTINCT period_start AS p FROM invoices),
        active AS (SELECT p, count(*) AS n FROM m JOIN customers c
                   ON c.signup_date < p AND (c.churned_on IS NULL OR c.churned_on >= p) GROUP BY p),
        ct AS (SELECT CAST(date_trunc('month', contacted_at) AS DATE) AS p, count(*) AS k FROM contacts GROUP BY 1)
        SELECT active.p, k / n AS rate FROM active JOIN ct USING (p) ORDER BY p""")
    rises = {pd.Timestamp(CONFIG.start_date) + pd.DateOffset(months=m + 1) for m, _, _ in CONFIG.price_rises
             if m < CONFIG.months - 1}
    after = rates["p"].isin(rises)
    assert after.sum() >= 1
    assert rates.loc[after, "rate"].mean() > 1.5 * rates.loc[~after & (rates["p"] > rates["p"].min()), "rate"].mean()


def test_waits_are_longer_in_understaffed_months(world):
    con, _ = world
    from data.simulate.exogenous import make_world
    w = make_world(CONFIG)
    waits = q(con, "SELECT CAST(date_trunc('month', contacted_at) AS DATE) AS p, avg(wait_seconds) / 60 AS minutes "
                   "FROM contacts GROUP BY 1 ORDER BY 1")
    month = [(pd.Timestamp(p).year - CONFIG.start_date.year) * 12 + pd.Timestamp(p).month - 1 for p in waits["p"]]
    short = w.staffing[month] < 0.8
    assert short.any() and (~short).any()
    assert waits.loc[short, "minutes"].mean() > 1.5 * waits.loc[~short, "minutes"].mean()


def test_agents_offer_to_riskier_contacts_so_the_naive_comparison_understates_the_effect(world):
    con, _ = world
    t = q(con, """
        SELECT p.contact_id, p.option, CAST(p.retained_180d AS INTEGER) AS y, CAST(n.retained_180d AS INTEGER) AS y0,
               c.is_intent_to_cancel AS intent
        FROM sim_truth_potential_outcomes p
        JOIN sim_truth_potential_outcomes n ON n.contact_id = p.contact_id AND n.option = 'none'
        JOIN contacts c ON c.contact_id = p.contact_id
        WHERE p.is_taken AND p.is_followed_up
          AND p.contact_id NOT IN (SELECT contact_id FROM holdout_assignments)""")
    offered = t["option"] != "none"
    assert offered.sum() > 100
    # agents give offers to contacts that state an intent to cancel
    assert t.loc[offered, "intent"].mean() > 2 * t.loc[~offered, "intent"].mean()
    naive = t.loc[offered, "y"].mean() - t.loc[~offered, "y"].mean()
    att = (t.loc[offered, "y"] - t.loc[offered, "y0"]).mean()     # true effect on those offered
    assert naive < 0 < att
    assert naive < att - 0.05


def test_holdout_is_recorded_and_its_arms_are_balanced_on_what_agents_see(world):
    con, summary = world
    h = q(con, """
        WITH ctx AS (
            SELECT h.contact_id, h.offer_id, h.candidate_offer_ids,
                   CAST(c.is_intent_to_cancel AS INTEGER) AS intent, c.reason,
                   date_diff('month', cu.signup_date, CAST(c.contacted_at AS DATE)) AS tenure,
                   pp.monthly_price_cents AS price
            FROM holdout_assignments h JOIN contacts c USING (contact_id)
            JOIN customers cu ON cu.customer_id = c.customer_id
            JOIN subscriptions s ON s.customer_id = c.customer_id
             AND s.start_date < CAST(c.contacted_at AS DATE)
             AND (s.end_date IS NULL OR s.end_date >= CAST(c.contacted_at AS DATE) - 1)
            JOIN plan_prices pp ON pp.plan_id = s.plan_id AND pp.effective_from <= CAST(c.contacted_at AS DATE)
            QUALIFY row_number() OVER (PARTITION BY h.contact_id ORDER BY s.start_date, pp.effective_from DESC) = 1
        )
        SELECT * FROM ctx""")
    assert len(h) == summary.holdout_contacts
    grants = q(con, "SELECT contact_id, offer_id FROM offer_grants WHERE assignment = 'holdout'")
    assert set(grants["contact_id"]) == set(h.loc[h["offer_id"].notna(), "contact_id"])
    assert h["offer_id"].isna().sum() > 100                      # the no-offer arm is identifiable
    # each offer's arm against the no-offer arm, among the holdout contacts where the offer was a
    # candidate (both arms then had the same probability), stacked over offers
    pairs = []
    for o in range(1, len(OFFERS) + 1):
        cand = h[h["candidate_offer_ids"].apply(lambda ids: o in list(ids))]
        pairs.append(cand[(cand["offer_id"] == o) | cand["offer_id"].isna()].assign(treated=lambda d: d["offer_id"].notna()))
    stacked = pd.concat(pairs)
    for col in ("intent", "tenure", "price"):
        a, b = stacked.loc[stacked["treated"], col], stacked.loc[~stacked["treated"], col]
        smd = (a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)
        assert abs(smd) < 0.15, (col, smd)


def test_demo_users_can_sign_in_and_simulated_agents_cannot(world):
    con, _ = world
    for u in DEMO_USERS:
        res = authenticate(con, u.login, u.password)
        assert res.ok, (u.login, res.message)
    agents = q(con, "SELECT u.password_hash, u.agent_tier FROM users u JOIN sim_agents a USING (user_id)")
    assert agents["password_hash"].isna().all() and set(agents["agent_tier"]) == {1, 2, 3}
