"""The offer recommender: its TRUE value on held-out contacts of a simulated world (from the world's
potential outcomes) against current practice and blanket offers; never an ineligible offer, never one
beyond the agent's tier; "no offer" says why; bad requests are refused with a code."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.discounts import REASONS
from billing.eligibility import check_offer
from models import features as F
from models.recommender import (OPTION_COLUMNS, RecommendError, RecommenderModels, choose_offers, recommend,
                                score_contacts)


@pytest.fixture(scope="module")
def held_out(world, uplift_split):
    """Contacts not used to fit the uplift model (their outcome was unknown at the cut), with each
    option's true potential outcome ``y_<option>`` (NaN where the option was not eligible)."""
    model, full, cut = uplift_split
    frame = full.frame
    days = pd.to_datetime(frame["contact_date"])
    test = frame[days + pd.Timedelta(days=full.horizon_days) >= pd.Timestamp(cut)].reset_index(drop=True)
    truth = world.execute("SELECT contact_id, option, CAST(retained_180d AS DOUBLE) AS y "
                          "FROM sim_truth_potential_outcomes").df()
    wide = truth.pivot(index="contact_id", columns="option", values="y")
    y = wide.reindex(test["contact_id"].to_numpy())
    for col in y.columns:
        test[f"y_{col}"] = y[col].to_numpy()
    assert len(test) > 500
    return test


def _true_value(test: pd.DataFrame, choice) -> tuple[float, int]:
    """Mean true net value per contact (euros) of a policy; options without a potential outcome
    (not eligible at the contact by the simulator's rules) fall back to no offer, and are counted."""
    choice = np.asarray(choice, dtype=object)
    y = np.array([test.at[i, f"y_{c}"] for i, c in enumerate(choice)], dtype=float)
    missing = np.isnan(y)
    choice = np.where(missing, "none", choice)
    y = np.where(missing, test["y_none"].to_numpy(), y)
    cost = np.array([0.0 if c == "none" else test.at[i, f"cost_{c}"] for i, c in enumerate(choice)], dtype=float)
    value = test["value_cents"].to_numpy(dtype=float)
    return float(np.mean(y * value - np.nan_to_num(cost)) / 100), int(missing.sum())


def test_true_value_beats_current_practice_and_every_blanket_offer(world, uplift_split, held_out):
    model, full, _ = uplift_split
    catalogue = world.execute("SELECT code, min_tier FROM offers ORDER BY offer_id").df()
    choice = choose_offers(model, held_out, offers=catalogue)
    ours, ours_missing = _true_value(held_out, choice)
    practice, _ = _true_value(held_out, held_out["treatment"])
    nothing, _ = _true_value(held_out, ["none"] * len(held_out))
    blanket = {}
    for code in full.offers:
        blanket[code] = _true_value(held_out, np.where(held_out[f"elig_{code}"], code, "none"))[0]
    variants = {name: _true_value(held_out, choose_offers(model, held_out, offers=catalogue, rule=rule,
                                                          require_evidence=ev))[0]
                for name, rule, ev in (("lower rule", "lower", True), ("point rule without evidence", "point", False),
                                       ("lower rule without evidence", "lower", False))}
    # the best any policy could do, knowing every potential outcome
    opts = ["none", *full.offers]
    vals = np.column_stack([held_out[f"y_{o}"].to_numpy() * held_out["value_cents"].to_numpy()
                            - (0 if o == "none" else held_out[f"cost_{o}"].fillna(0).to_numpy()) for o in opts])
    oracle = float(np.nanmax(vals, axis=1).mean() / 100)
    offered = choice[choice != "none"]
    print(f"\ntrue net value per held-out contact (EUR, n={len(held_out)}): recommender {ours:.2f} "
          f"(offers at {len(offered) / len(choice):.1%} of contacts: {offered.value_counts().to_dict()}); "
          + ", ".join(f"{k} {v:.2f}" for k, v in variants.items())
          + f"; current practice {practice:.2f}, no offer {nothing:.2f}, oracle {oracle:.2f}; blanket "
          + ", ".join(f"{k} {v:.2f}" for k, v in blanket.items()))
    print("evidence on the training contacts (EUR per contact):\n"
          + (model.evidence_[["n_targeted", "gain_cents", "lo_cents", "proven"]] / [1, 100, 100, 1]).round(2).to_string())
    assert ours_missing <= 0.01 * len(held_out)
    assert ours > practice
    for code, v in blanket.items():
        assert ours > v, code
    # offers rarely pay in this world (value = 6 months of the plan's price): the recommender must not
    # lose more than a little against never offering anything
    assert ours >= nothing - 0.5


def test_scores_follow_the_definition(uplift_split, held_out):
    model, full, _ = uplift_split
    rows = held_out.head(40)
    s = score_contacts(model, rows, rule="lower", require_evidence=False)
    est = s[s["has_estimate"]]
    assert len(est) and (est["eligible"]).all()
    np.testing.assert_allclose(est["net_value_cents"], est["uplift"] * est["value_cents"] - est["expected_cost_cents"])
    np.testing.assert_allclose(est["net_lo_cents"], est["uplift_lo"] * est["value_cents"] - est["expected_cost_cents"])
    assert (s.loc[s["pays"], "net_lo_cents"] > 0).all()
    assert not s.loc[~s["eligible"], "pays"].any() and s.loc[~s["eligible"], "uplift"].isna().all()
    point = score_contacts(model, rows, rule="point", require_evidence=False)
    assert point["pays"].sum() >= s["pays"].sum()
    gated = score_contacts(model, rows)                       # the default: point rule, evidence required
    proven = set(model.proven("point"))
    assert not gated.loc[~gated["code"].isin(proven), "pays"].any()
    assert (gated["pays"] <= point["pays"]).all()
    assert (gated["proven"] == gated["code"].isin(proven)).all()


# -- the live path: one contact at a time -----------------------------------------------------------------


@pytest.fixture(scope="module")
def models(uplift_split, churn_fit):
    return RecommenderModels(uplift=uplift_split[0], churn_risk=churn_fit.model)


@pytest.fixture(scope="module")
def agents(world):
    rows = world.execute("SELECT agent_tier, min(login) FROM users WHERE role = 'agent' AND is_active "
                         "GROUP BY agent_tier ORDER BY agent_tier").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3]
    return {int(t): login for t, login in rows}


@pytest.fixture(scope="module")
def live_contacts(world):
    """Customers at real contact times in the last months, with a random reason and intent."""
    rows = world.execute("""
        SELECT customer_id, contacted_at FROM contacts
        WHERE contacted_at >= (SELECT max(contacted_at) FROM contacts) - INTERVAL 150 DAY
        ORDER BY contact_id""").df()
    pick = rows.iloc[np.linspace(0, len(rows) - 1, 24).astype(int)].reset_index(drop=True)
    rng = np.random.default_rng(7)
    pick["reason"] = rng.choice(REASONS, len(pick))
    pick["intent"] = rng.random(len(pick)) < 0.5
    return pick


def test_never_recommends_an_ineligible_offer_nor_one_beyond_the_agents_tier(world, models, agents, live_contacts):
    actions = {"offer": 0, "ask_supervisor": 0, "no_offer": 0}
    for c in live_contacts.itertuples():
        at = pd.Timestamp(c.contacted_at).to_pydatetime()
        for tier, login in agents.items():
            # the point rule recommends more often, which exercises the authority rules more
            rec = recommend(world, customer_id=int(c.customer_id), reason=c.reason, is_intent_to_cancel=bool(c.intent),
                            at=at, agent_login=login, models=models, rule="point", require_evidence=False,
                            with_risk=False)
            actions[rec.action] += 1
            opts = rec.options.set_index("code")
            assert list(rec.options.columns) == list(OPTION_COLUMNS)
            assert rec.agent_tier == tier
            assert (opts["may_grant"] <= opts["eligible"]).all()
            assert (opts.loc[opts["may_grant"], "needs_tier"] <= tier).all()
            assert (opts.loc[opts["eligible"] & (opts["needs_tier"] <= tier), "may_grant"]).all()
            assert (opts.loc[~opts["eligible"], "status"] == "not_eligible").all()
            assert not opts.loc[~opts["eligible"], "pays"].any()
            assert (opts["status"] == "recommended").sum() == (rec.action == "offer")
            if rec.action == "offer":
                o = opts.loc[rec.offer_code]
                assert o["eligible"] and o["may_grant"] and o["pays"] and o["status"] == "recommended"
                # billing's own check (the one grant_offer makes) agrees: eligible and within authority
                offer_id = world.execute("SELECT offer_id FROM offers WHERE code = ?", [rec.offer_code]).fetchall()[0][0]
                assert check_offer(world, int(c.customer_id), offer_id, at=at, reason=c.reason, agent_tier=tier).ok
            else:
                assert rec.offer_code is None
            if rec.action == "ask_supervisor":
                best = opts.loc[rec.best_code]
                assert best["eligible"] and best["pays"] and best["needs_tier"] > tier
                assert not (opts["pays"] & opts["may_grant"]).any()
            if rec.best_code is not None:
                assert opts.loc[rec.best_code, "eligible"]
            ranks = rec.options["rank"].tolist()
            assert ranks == list(range(1, len(ranks) + 1))
    print(f"\nactions over {len(live_contacts)} contacts x 3 tiers: {actions}")
    assert actions["offer"] > 0 and actions["ask_supervisor"] + actions["no_offer"] > 0


def test_live_recommendation_matches_the_batch_rule(world, models, agents, live_contacts):
    c = live_contacts.iloc[0]
    at = pd.Timestamp(c["contacted_at"]).to_pydatetime()
    rec = recommend(world, customer_id=int(c["customer_id"]), reason="cancel_request", is_intent_to_cancel=True,
                    at=at, agent_login=agents[3], models=models, rule="point", require_evidence=False,
                    with_risk=False)
    paying = rec.options[rec.options["pays"]].sort_values("net_value_cents", ascending=False)
    expected = paying["code"].iloc[0] if len(paying) else None
    assert rec.offer_code == expected
    assert rec.options["net_value_cents"].dropna().is_monotonic_decreasing


def test_no_offer_says_why(world, models, agents):
    # a customer who has left: nothing is eligible
    cid, last = world.execute("SELECT customer_id, churned_on FROM customers WHERE churned_on IS NOT NULL "
                              "ORDER BY customer_id LIMIT 1").fetchall()[0]
    at = dt.datetime.combine(last + dt.timedelta(days=20), dt.time(10))
    rec = recommend(world, customer_id=cid, reason="billing_error", at=at, agent_login=agents[3], models=models)
    assert rec.action == "no_offer" and rec.offer_code is None and rec.best_code is None
    assert "none is eligible" in rec.message and "customer_not_active" in rec.message
    assert (rec.options["status"] == "not_eligible").all()


def test_no_offer_when_none_pays_names_the_best_and_its_numbers(world, models, agents, live_contacts):
    for c in live_contacts.itertuples():
        rec = recommend(world, customer_id=int(c.customer_id), reason="service_issue",
                        at=pd.Timestamp(c.contacted_at).to_pydatetime(), agent_login=agents[1], models=models,
                        with_risk=False)
        if rec.action == "no_offer" and rec.options["has_estimate"].any():
            unproven = rec.options[rec.options["status"] == "unproven"]
            if len(unproven):
                assert "has not paid on past contacts" in rec.message and unproven["code"].iloc[0] in rec.message
            else:
                assert "expected to pay for itself" in rec.message and "best:" in rec.message
                top = rec.options[rec.options["has_estimate"]].iloc[0]
                assert top["code"] in rec.message
            return
    pytest.fail("no contact without a paying offer among the sample")


def test_churn_risk_and_reasons_come_with_the_recommendation(world, models, agents, live_contacts):
    c = live_contacts.iloc[-1]
    rec = recommend(world, customer_id=int(c["customer_id"]), reason=c["reason"],
                    at=pd.Timestamp(c["contacted_at"]).to_pydatetime(), agent_login=agents[2], models=models,
                    with_risk=True)
    assert rec.churn_risk is not None and 0 < rec.churn_risk < 1
    assert list(rec.risk_reasons.columns) == ["rank", "feature", "value", "reference", "delta"]
    d = rec.as_dict()
    assert d["customer_id"] == int(c["customer_id"]) and len(d["options"]) == len(rec.options)
    # the risk read from the customer's copied history equals the model on the full tables, and the
    # offers are the same as without the risk
    at = pd.Timestamp(c["contacted_at"]).to_pydatetime()
    snap = F.snapshot_features(world, as_of=at.date(), customer_ids=[int(c["customer_id"])])
    assert rec.churn_risk == pytest.approx(float(models.churn_risk.explain(snap, top=3)[0].iloc[0]), abs=1e-12)
    plain = recommend(world, customer_id=int(c["customer_id"]), reason=c["reason"], at=at,
                      agent_login=agents[2], models=models, with_risk=False)
    pd.testing.assert_frame_equal(rec.options, plain.options)


def test_churn_risk_of_one_customer_is_the_model_on_the_full_snapshot(world, models):
    from models.features import data_end
    from models.recommender import REASON_COLUMNS, churn_risk
    as_of = data_end(world) - dt.timedelta(days=20)
    full = F.snapshot_features(world, as_of=as_of)
    risk, why = models.churn_risk.explain(full, top=3)
    for pos in np.random.default_rng(4).choice(len(full), 5, replace=False):
        cid = int(full["customer_id"].iloc[pos])
        got = churn_risk(world, customer_id=cid, as_of=as_of, models=models)
        assert got.risk == pytest.approx(float(risk.iloc[pos]), abs=1e-12) and got.note is None
        expected = why[why["row"] == pos].drop(columns=["row", "risk"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got.reasons, expected, check_dtype=False)   # "value" mixes kinds
        assert tuple(got.reasons.columns) == REASON_COLUMNS and got.as_of == as_of


def test_churn_risk_says_why_there_is_none(world, models):
    from models.features import data_end
    from models.recommender import churn_risk
    as_of = data_end(world) - dt.timedelta(days=20)
    gone = world.execute("SELECT customer_id FROM subscriptions GROUP BY customer_id "
                         "HAVING bool_and(end_date IS NOT NULL) AND max(end_date) < ? - 40 LIMIT 1",
                         [as_of]).fetchall()[0][0]
    left = churn_risk(world, customer_id=int(gone), as_of=as_of, models=models)
    assert left.risk is None and "no subscription serving" in left.note and left.reasons.empty
    served = int(F.snapshot_features(world, as_of=as_of)["customer_id"].iloc[0])
    no_model = churn_risk(world, customer_id=served, as_of=as_of,
                          models=RecommenderModels(uplift=models.uplift, churn_risk=None))
    assert no_model.risk is None and "no churn-risk model" in no_model.note
    with pytest.raises(RecommendError) as e:
        churn_risk(world, customer_id=10**9, as_of=as_of, models=models)
    assert e.value.code == "unknown_customer"
    with pytest.raises(TypeError):
        churn_risk(world, customer_id=served, as_of=dt.datetime(2024, 1, 1), models=models)


@pytest.mark.parametrize("for_the_day", [False, True])
def test_one_customer_history_gives_that_customers_snapshot(world, for_the_day):
    from models.features import data_end
    as_of = data_end(world) - dt.timedelta(days=40)
    full = F.snapshot_features(world, as_of=as_of)
    over = full[full["usage_share"] > 0]["customer_id"].sample(4, random_state=1)    # usage is read
    for cid in pd.concat([over, full["customer_id"].sample(8, random_state=2)]):
        with F.one_customer_history(world, int(cid), as_of=as_of if for_the_day else None) as history:
            one = F.snapshot_features(history, as_of=as_of, customer_ids=[int(cid)])
            usage_periods = history.execute("SELECT count(DISTINCT period_start) FROM temp.usage_records").fetchall()[0][0]
        pd.testing.assert_frame_equal(one.reset_index(drop=True),
                                      full[full["customer_id"] == cid].reset_index(drop=True))
        if for_the_day:
            assert usage_periods <= 1              # only the month the snapshot reads


def test_bad_requests_are_refused_with_a_code(world, models, agents):
    at = dt.datetime(2024, 6, 1, 10)
    with pytest.raises(RecommendError) as e:
        recommend(world, customer_id=10**9, reason="billing_error", at=at, models=models)
    assert e.value.code == "unknown_customer"
    with pytest.raises(RecommendError) as e:
        recommend(world, customer_id=1, reason="angry", at=at, models=models)
    assert e.value.code == "unknown_reason"
    with pytest.raises(RecommendError) as e:
        recommend(world, customer_id=1, reason="billing_error", at=at, agent_login="nobody", models=models)
    assert e.value.code == "unknown_agent"


def test_without_an_agent_nothing_is_grantable(world, models, live_contacts):
    c = live_contacts.iloc[1]
    rec = recommend(world, customer_id=int(c["customer_id"]), reason="cancel_request", is_intent_to_cancel=True,
                    at=pd.Timestamp(c["contacted_at"]).to_pydatetime(), models=models, rule="point",
                    require_evidence=False, with_risk=False)
    assert not rec.options["may_grant"].any() and rec.action in ("ask_supervisor", "no_offer")


def test_finds_the_contacts_where_an_offer_pays_on_a_randomized_toy():
    from models.uplift import OfferUpliftModel
    rng = np.random.default_rng(5)
    n = 6000
    frame = pd.DataFrame({"a": rng.normal(size=n), "g": rng.choice(["p", "q"], n)})
    frame["treatment"] = np.where(rng.random(n) < 0.5, "offer", "none")
    lift = np.where(frame["g"] == "q", 0.3, 0.0)                  # +30 pts for q, nothing for p
    frame["retained_180"] = (rng.random(n) < 0.5 + np.where(frame["treatment"] == "offer", lift, 0)).astype(int)
    frame["value_cents"] = 10_000.0                                # worth 100 kept ...
    frame["cost_offer"] = 1_000.0                                  # ... the offer costs 10: pays for q only
    frame["elig_offer"] = True
    model = OfferUpliftModel(covariates=["a", "g"], modifiers=["g"], n_bootstrap=5).fit(frame)
    assert model.proven("lower") == ["offer"]
    test = pd.DataFrame({"a": [0.0, 0.0], "g": ["p", "q"], "value_cents": 10_000.0, "cost_offer": 1_000.0,
                         "elig_offer": True})
    assert choose_offers(model, test).tolist() == ["none", "offer"]
    # not eligible: never chosen, however much it would pay
    assert choose_offers(model, test.assign(elig_offer=False)).tolist() == ["none", "none"]
    # beyond the agent's tier: not chosen for that agent
    catalogue = pd.DataFrame({"code": ["offer"], "min_tier": [3]})
    assert choose_offers(model, test, offers=catalogue, agent_tier=2).tolist() == ["none", "none"]
    assert choose_offers(model, test, offers=catalogue, agent_tier=3).tolist() == ["none", "offer"]
    # an offer that never pays is not proven
    costly = frame.assign(cost_offer=5_000.0)
    assert OfferUpliftModel(covariates=["a", "g"], modifiers=["g"], n_bootstrap=5).fit(costly).proven("lower") == []
