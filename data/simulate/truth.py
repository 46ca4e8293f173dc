"""Ground truth: potential outcomes of every contact under every option, offer effects, hazard ratios.

Definitions (the tables are created by :mod:`data.simulate.tables`; docs/SIMULATION.md repeats them)
---------------------------------------------------------------------------------------------------
Potential outcome ``Y_c(o)`` of contact ``c`` under option ``o`` (no offer, or one offer of the
catalogue): the customer is still a customer ``outcome_days`` (180) days after the day of the
contact, i.e. ``churned_on`` (last day served) is NULL or on/after ``contact day + 180``, had the
option at the contact been ``o`` and everything else been as the world's mechanisms make it.

It is computed by *replaying* the customer's months from the contact: the state just before the
decision is copied once per option, the option is forced, and the same step functions as the
simulation (:func:`data.simulate.behaviour.finish_month`, then whole months with
:func:`~data.simulate.behaviour.run_month`) run for the rest of the contact's month and the five
months after, plus the non-payment check on the first day of the sixth, so every churn date that
can fall before the 180th day is known. Every random number is a counter-based uniform keyed by
(seed, purpose, month, customer) (:mod:`data.simulate.rng`) and every exogenous input (prices,
queue, agents, audits) is fixed in advance, so only the option differs between the replays. Later
contacts inside the window are replayed too, with the agents' and the holdout's decisions made by
the same policy on the replayed state: ``Y_c(o)`` is the outcome of "option ``o`` now, the usual
practice afterwards". Other customers are not affected by one customer's option (no interference:
queue waits depend on staffing and the expected load, not on the realised number of contacts).

Consistency: the replay of the option actually taken repeats the simulation step for step, so
``Y_c(taken)`` equals the observed outcome; :mod:`tests.data.test_simulate_truth` checks it for every
contact with 180 days of follow-up inside the world.

Options that are not eligible at the contact (by the offer rules, whatever the agent's tier) have
no potential outcome (NULL): no policy can choose them.

True average effect of offer ``o`` (``sim_truth_offer_effects``):
``ate = mean over contacts where o was eligible of Y_c(o) - Y_c(none)``, over the contacts with
their 180 days inside the world (``ate``) and over all contacts (``ate_all_contacts``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data.simulate import behaviour
from data.simulate.care import Contacts, Decision
from data.simulate.exogenous import World
from data.simulate.population import Population
from data.simulate.state import NONE, State

REPLAY_FULL_MONTHS = 5   # whole months replayed after the contact's month


def replay(sub: State, c: Contacts, d: Decision, w: World, pop: Population, t: int) -> dict[str, np.ndarray]:
    """Potential outcomes of this month's contacts under no offer and each eligible offer.

    Parameters
    ----------
    sub : State
        The customers' state after :func:`~data.simulate.behaviour.start_month` and the contact
        draw, before the decision is applied (not modified).
    c, d : Contacts, Decision
        This month's contacts and the decisions taken (``d.eligible`` says which options exist).
    w, pop, t
        The world, the population and the month.

    Returns
    -------
    dict of numpy arrays, one entry per (contact, option) with an eligible option:
    ``row`` (row of ``sub``), ``option`` (offer index or NONE), ``is_taken``, ``churned_on``
    (day number of the last day served within the replay, 0 = still a customer).
    """
    rows = np.flatnonzero(c.has)
    if len(rows) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return {"row": empty, "option": empty, "is_taken": empty.astype(bool), "churned_on": empty}
    elig = d.eligible[rows]
    n_off = elig.shape[1]
    opts = np.concatenate([np.full((len(rows), 1), True), elig], axis=1)       # none + offers
    rep_pos, rep_col = np.nonzero(opts)
    rep_rows = rows[rep_pos]
    option = rep_col - 1                                                       # -1 = none
    st = sub.take(rep_rows)
    cr = c.take(rep_rows)
    dr = Decision(option=option.astype(np.int64), holdout=d.holdout[rep_rows],
                  eligible=d.eligible[rep_rows], agent_tier=d.agent_tier[rep_rows])
    behaviour.finish_month(st, w, pop, t, cr, dr)
    for m in range(t + 1, t + 1 + REPLAY_FULL_MONTHS):
        behaviour.run_month(st, w, pop, m)
    behaviour.start_month(st, w, pop, t + 1 + REPLAY_FULL_MONTHS)
    assert n_off == w.n_offers
    return {"row": rep_rows, "option": option.astype(np.int64),
            "is_taken": option == d.option[rep_rows],
            "churned_on": np.where(st.alive, 0, st.churned_on)}


def potential_outcomes_frame(parts: list[pd.DataFrame], w: World, last_day: int) -> pd.DataFrame:
    """The ``sim_truth_potential_outcomes`` rows from the monthly parts.

    Each part has contact_id, customer_id, contact_day (day number), option, is_taken, churned_on
    for the eligible options; the ineligible options are added with NULL outcomes so the table
    holds one row per contact and option.
    """
    if not parts:
        return pd.DataFrame(columns=["contact_id", "customer_id", "option", "offer_id", "is_eligible",
                                     "is_taken", "retained_180d", "churned_on", "outcome_date",
                                     "is_followed_up"])
    cfg = w.config
    df = pd.concat(parts, ignore_index=True)
    contacts = df.drop_duplicates("contact_id")[["contact_id", "customer_id", "contact_day"]]
    n_opt = 1 + w.n_offers
    full = pd.DataFrame({
        "contact_id": np.repeat(contacts["contact_id"].to_numpy(), n_opt),
        "customer_id": np.repeat(contacts["customer_id"].to_numpy(), n_opt),
        "contact_day": np.repeat(contacts["contact_day"].to_numpy(), n_opt),
        "option": np.tile(np.arange(-1, w.n_offers), len(contacts)),
    })
    full = full.merge(df[["contact_id", "option", "is_taken", "churned_on"]], how="left",
                      on=["contact_id", "option"])
    eligible = full["churned_on"].notna()
    outcome_day = full["contact_day"].to_numpy() + cfg.outcome_days
    churned = full["churned_on"].fillna(0).to_numpy().astype(np.int64)
    retained = (churned == 0) | (churned >= outcome_day)
    codes = np.array(("none",) + w.offer_codes, dtype=object)
    out = pd.DataFrame({
        "contact_id": full["contact_id"].astype(np.int64),
        "customer_id": full["customer_id"].astype(np.int64),
        "option": codes[full["option"].to_numpy() + 1],
        "offer_id": pd.array(np.where(full["option"] >= 0, full["option"] + 1, 0), dtype="Int64"),
        "is_eligible": eligible.to_numpy(),
        "is_taken": full["is_taken"].astype("boolean").fillna(False).to_numpy(dtype=bool),
        "retained_180d": pd.array(np.where(eligible, retained, False), dtype="boolean"),
        "churned_on": pd.to_datetime(np.where(churned > 0, churned, 0).astype("datetime64[D]")),
        "outcome_date": outcome_day.astype("datetime64[D]"),
        "is_followed_up": outcome_day <= last_day,
    })
    out.loc[full["option"].to_numpy() < 0, "offer_id"] = pd.NA
    out.loc[~eligible.to_numpy(), "retained_180d"] = pd.NA
    out.loc[churned == 0, "churned_on"] = pd.NaT
    return out


OFFER_EFFECTS_SQL = """
INSERT INTO sim_truth_offer_effects
WITH po AS (
    SELECT * FROM sim_truth_potential_outcomes
),
no_offer AS (
    SELECT contact_id, retained_180d AS y0 FROM po WHERE option = 'none'
),
paired AS (
    SELECT p.offer_id, p.option, p.is_followed_up, CAST(p.retained_180d AS INTEGER) AS y1,
           CAST(n.y0 AS INTEGER) AS y0
    FROM po p JOIN no_offer n USING (contact_id)
    WHERE p.offer_id IS NOT NULL AND p.is_eligible
),
final AS (
    SELECT o.offer_id, o.code,
           count(*) FILTER (WHERE is_followed_up) AS contacts_eligible,
           avg(y1) FILTER (WHERE is_followed_up) AS retained_with_offer,
           avg(y0) FILTER (WHERE is_followed_up) AS retained_without_offer,
           avg(y1 - y0) FILTER (WHERE is_followed_up) AS ate,
           count(*) AS contacts_eligible_all,
           avg(y1 - y0) AS ate_all_contacts
    FROM offers o LEFT JOIN paired p ON p.offer_id = o.offer_id
    GROUP BY o.offer_id, o.code
)
SELECT * FROM final ORDER BY offer_id
"""


def hazard_ratio_rows(w: World) -> pd.DataFrame:
    """The true hazard ratios of the care practices and the other observable hazard terms."""
    cfg = w.config
    rows = [
        ("wait_minute", "practice", cfg.beta_wait_minute, "per minute",
         "minutes waited (contacts.wait_seconds / 60) at the customer's contact in the calendar month; "
         "0 in a month without a contact. Acts on the hazard of churning at the end of that month."),
        ("billing_error", "practice", cfg.beta_error, "indicator",
         "the customer has an invoice carrying a billing error (sim_truth_billing_errors) not yet "
         "corrected by a credit note at the end of the month. Acts on that month's hazard."),
        ("unresolved_contact", "practice", cfg.beta_unresolved, "indicator",
         "the customer's contact in the calendar month has resolution 'unresolved'. Acts on that "
         "month's hazard."),
        ("intent_to_cancel", "other", cfg.beta_intent, "indicator",
         "the customer's contact in the month has is_intent_to_cancel."),
        ("intent_to_cancel_after", "other", cfg.beta_intent_after, "indicator",
         "the customer stated an intent to cancel in one of the two previous months."),
        ("cancel_request", "other", cfg.beta_cancel_request, "indicator",
         "the customer's contact in the month has reason cancel_request (on top of its intent)."),
        ("autopay", "other", cfg.beta_autopay, "indicator", "customers.is_autopay."),
    ]
    return pd.DataFrame({
        "name": [r[0] for r in rows], "kind": [r[1] for r in rows],
        "hazard_ratio": [float(np.exp(r[2])) for r in rows],
        "log_hazard_ratio": [float(r[2]) for r in rows],
        "unit": [r[3] for r in rows], "definition": [r[4] for r in rows],
    })


__all__ = ["replay", "potential_outcomes_frame", "hazard_ratio_rows", "OFFER_EFFECTS_SQL", "NONE"]
