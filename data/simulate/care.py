"""The care desk: who contacts care and why, the queue, the agents' offers and the randomized holdout.

Pure numpy functions of the customers' :class:`~data.simulate.state.State`, the month's exogenous
inputs (:class:`~data.simulate.exogenous.World`) and counter-based uniforms (:mod:`.rng`), so the
replays of :mod:`data.simulate.truth` take exactly the same decisions as the simulation did.

Contacts
    At most one a month per customer, from the month after sign-up. Monthly rates by reason add up
    (``1 - exp(-total)`` is the probability of a contact) and the reason is drawn in proportion to
    them: bill shocks (price rises, discounts ending, usage) drive ``bill_higher_than_expected``,
    ``wants_cheaper_plan`` and ``cancel_request``; a new billing error drives ``billing_error``
    (impatient customers complain more); an overdue notice or a first bill ``bill_not_understood``;
    ``service_issue`` is a constant background.
Queue
    Wait = the month's mean wait (``base * (load / staffing)^2``: longer when understaffed and in the
    month after a price rise) x the channel's factor x an exponential draw, capped.
Agents
    Each contact goes to a uniformly drawn agent. The agent offers something with probability
    ``sigmoid(base + generosity + intent + reason + plan value + new customer + prior grants)``, and
    then the offer they like best among those the customer is eligible for and their tier allows
    (their habits + how well the offer fits the reason and a stated intent + Gumbel noise).
Holdout
    A ``holdout_share`` of contacts with at least one eligible offer gets instead a uniform choice
    among no offer and each eligible offer (whatever the agent's tier), recorded as ``holdout``.
Eligibility
    Mirrors :func:`billing.eligibility.offer_eligibility` exactly for the simulator's customers:
    tenure, contact reason, the offer's cooldown, an active discount, a cheaper plan to move to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from data.simulate import rng
from data.simulate.config import REASONS
from data.simulate.exogenous import FREE, MOVE, PCT, World
from data.simulate.population import Population
from data.simulate.state import NONE, State

R_HIGHER, R_ERROR, R_NOT_UNDERSTOOD, R_CHEAPER, R_SERVICE, R_CANCEL = range(6)
DAY_SECONDS = 86_400

# How well each offer fits a contact reason in the agents' eyes (offers by code, reasons by index),
# and how much more they reach for it when the customer says they will cancel.
AFFINITY = {
    "pct10_3m": {R_HIGHER: 0.5, R_NOT_UNDERSTOOD: 0.3},
    "credit_20": {R_ERROR: 2.0, R_NOT_UNDERSTOOD: 0.5, R_SERVICE: 1.0},
    "plan_move": {R_CHEAPER: 2.0, R_HIGHER: 0.5},
    "pct25_6m": {R_CANCEL: 1.0, R_HIGHER: 0.5},
    "free_1m": {R_SERVICE: 0.5},
    "pct50_12m": {R_CANCEL: 1.5},
}
INTENT_AFFINITY = {"pct25_6m": 0.8, "pct50_12m": 1.2, "free_1m": 0.4}


def ts_key(month, day, second):
    """Timestamp key used for cooldown comparisons: ``(month * 32 + day) * 86400 + second``."""
    return (np.asarray(month) * 32 + day) * DAY_SECONDS + second


@dataclass
class Contacts:
    """This month's contacts, one entry per state row (``has`` marks rows with a contact)."""

    has: np.ndarray
    reason: np.ndarray
    channel: np.ndarray
    day: np.ndarray
    second: np.ndarray          # second of the day the contact starts (joins the queue)
    wait_seconds: np.ndarray
    handle_seconds: np.ndarray
    agent: np.ndarray           # index into the world's agents
    unresolved: np.ndarray
    escalated: np.ndarray
    intent: np.ndarray

    def take(self, rows: np.ndarray) -> "Contacts":
        return Contacts(**{k: v[rows] for k, v in self.__dict__.items()})

    @property
    def grant_second(self) -> np.ndarray:
        """Second of the day the call ends (when a grant is made)."""
        return self.second + self.wait_seconds + self.handle_seconds


@dataclass
class Decision:
    """What happened at each contact: the option (offer index or NONE) and how it was chosen."""

    option: np.ndarray          # offer index, or NONE
    holdout: np.ndarray         # randomized (the option may be NONE: the holdout's no-offer arm)
    eligible: np.ndarray        # (rows, offers) eligibility at the contact
    agent_tier: np.ndarray


def _categorical_rows(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise categorical draws: ``weights`` (rows, k) need not be normalised."""
    cum = np.cumsum(weights, axis=1)
    target = u * cum[:, -1]
    return np.minimum((cum <= target[:, None]).sum(axis=1), weights.shape[1] - 1)


def draw_contacts(st: State, w: World, pop: Population, t: int) -> Contacts:
    """Draw this month's contacts (reason, channel, time, wait, agent, resolution, intent).

    Notes
    -----
    Rates (per month): service ``rate_service``; not understood ``rate_not_understood +
    rate_not_understood_overdue * overdue + rate_not_understood_first_bill * first bill``; higher
    than expected ``rate_higher_per_shock * shock * (0.5 + 0.5 s)``; cheaper plan ``rate_cheaper +
    rate_cheaper_per_shock * shock * s + rate_cheaper_overage * over allowance``; billing error
    ``rate_error_new * new error * (0.6 + 0.8 (1 - patience)) + rate_error_open * older open error``;
    cancel ``rate_cancel + rate_cancel_per_shock * shock * s * (1.5 - patience)``, with ``s`` the
    hidden price sensitivity. Intent to cancel: always for a cancel request, otherwise
    ``sigmoid(-3 + 3 shock s + 1.5 (0.5 - patience) + 0.8 [tenure < 6] + 0.5 frailty / sd)``;
    it does not depend on the care practices (wait, resolution), so their hazard ratios stay direct.
    """
    cfg, seed = w.config, w.config.seed
    idx = st.idx
    n = len(st)
    s = pop.price_sensitivity[idx]
    pat = pop.patience[idx]
    tenure = t - pop.signup_month[idx]
    can = st.alive & (tenure >= 1)
    shock = st.shock
    rates = np.zeros((n, len(REASONS)))
    rates[:, R_HIGHER] = cfg.rate_higher_per_shock * shock * (0.5 + 0.5 * s)
    rates[:, R_ERROR] = (cfg.rate_error_new * st.new_err * (0.6 + 0.8 * (1 - pat))
                         + cfg.rate_error_open * ((st.open_err - st.new_err) > 0))
    rates[:, R_NOT_UNDERSTOOD] = (cfg.rate_not_understood + cfg.rate_not_understood_overdue * st.overdue
                                  + cfg.rate_not_understood_first_bill * (st.bill_first & st.bill_seen))
    rates[:, R_CHEAPER] = (cfg.rate_cheaper + cfg.rate_cheaper_per_shock * shock * s
                           + cfg.rate_cheaper_overage * st.bill_over)
    rates[:, R_SERVICE] = cfg.rate_service
    rates[:, R_CANCEL] = cfg.rate_cancel + cfg.rate_cancel_per_shock * shock * s * (1.5 - pat)
    total = rates.sum(axis=1)
    has = can & (rng.uniform(seed, rng.CONTACT, t, idx) < -np.expm1(-total))
    # the contacts' details, drawn for the rows with a contact only (rows without one keep defaults
    # that nothing reads); every draw is keyed by the customer, so a subset draws the same numbers
    r = np.flatnonzero(has)
    ir = idx[r]
    reason_r = _categorical_rows(rng.uniform(seed, rng.REASON, t, ir), rates[r])
    channel_r = _categorical_rows(rng.uniform(seed, rng.CHANNEL, t, ir),
                                  np.broadcast_to(np.asarray(cfg.p_channel), (len(r), 3)))
    factor = np.asarray(cfg.wait_channel_factor)[channel_r]
    wait_min = np.minimum(cfg.wait_cap_minutes,
                          w.mean_wait[t] * factor * -np.log(rng.uniform(seed, rng.WAIT, t, ir)))
    handle = np.minimum(3000, np.round(60 + 300 * np.exp(0.5 * rng.normal(seed, rng.HANDLE, t, ir))))
    agent_r = np.floor(rng.uniform(seed, rng.AGENT, t, ir) * len(w.agent_tier)).astype(np.int64)
    tier = w.agent_tier[agent_r]
    logit = (np.log(cfg.p_unresolved / (1 - cfg.p_unresolved)) + 0.5 * (tier == 1) - 0.4 * (tier == 3)
             + w.agent_sloppiness[agent_r] + 0.3 * np.isin(reason_r, (R_ERROR, R_NOT_UNDERSTOOD)))
    u_res = rng.uniform(seed, rng.RESOLUTION, t, ir)
    unresolved_r = u_res < expit(logit)
    escalated_r = ~unresolved_r & (u_res > 1 - cfg.p_escalated) & (tier < 3)
    p_intent = expit(-3.0 + 3.0 * shock[r] * s[r] + 1.5 * (0.5 - pat[r]) + 0.8 * (tenure[r] < 6)
                     + 0.5 * pop.log_frailty[ir] / max(cfg.frailty_sd, 1e-9))
    intent_r = (reason_r == R_CANCEL) | (rng.uniform(seed, rng.INTENT, t, ir) < p_intent)

    def full(values, dtype, default=0):
        out = np.full(n, default, dtype=dtype)
        out[r] = values
        return out

    return Contacts(
        has=has, reason=full(reason_r, np.int64), channel=full(channel_r, np.int64),
        day=full(2 + np.floor(rng.uniform(seed, rng.DAY, t, ir) * 27), np.int64, 2),
        second=full(8 * 3600 + np.floor(rng.uniform(seed, rng.TIME, t, ir) * 12 * 3600), np.int64),
        wait_seconds=full(np.round(wait_min * 60), np.int64), handle_seconds=full(handle, np.int64),
        agent=full(agent_r, np.int64), unresolved=full(unresolved_r, bool, False),
        escalated=full(escalated_r, bool, False), intent=full(intent_r, bool, False))


def eligibility(st: State, w: World, pop: Population, c: Contacts, t: int,
                rows: np.ndarray | None = None) -> np.ndarray:
    """(rows, offers) bool: may the customer get each offer at this contact (any agent tier).

    ``rows`` restricts the answer to some rows of the state (default: all).

    Notes
    -----
    The rules of :func:`billing.eligibility.offer_eligibility`, evaluated at the grant's time
    (the end of the call): signed up at least ``min_tenure_months`` calendar months before;
    the contact reason among the offer's reasons; no grant of the same offer less than
    ``cooldown_months`` months before; for percent and free-month offers no discount covering
    this month (the first period not yet invoiced); for a plan move a plan of lower rank.
    """
    rows = np.arange(len(st)) if rows is None else rows
    idx = st.idx[rows]
    day, reason, gsec = c.day[rows], c.reason[rows], c.grant_second[rows]
    sm, sd = pop.signup_month[idx], pop.signup_day[idx]
    elig = np.zeros((len(rows), w.n_offers), dtype=bool)
    disc_active = (st.disc_first[rows] <= t) & (t < st.disc_end[rows])
    base = c.has[rows] & st.alive[rows]
    for o in range(w.n_offers):
        k = w.offer_tenure[o]
        tenure_ok = (t > sm + k) | ((t == sm + k) & (day >= sd))
        cool = w.offer_cooldown[o]
        cooling = (cool > 0) & (st.last_grant[rows, o] > ts_key(t - cool, day, gsec))
        ok = base & tenure_ok & w.offer_reason_ok[o][reason] & ~cooling
        if w.offer_kind[o] in (PCT, FREE):
            ok &= ~disc_active
        if w.offer_kind[o] == MOVE:
            ok &= st.plan[rows] > 0
        elig[:, o] = ok
    return elig


def decide(st: State, w: World, pop: Population, c: Contacts, t: int) -> Decision:
    """The option taken at each contact: the holdout's random arm, or the agent's choice."""
    cfg, seed = w.config, w.config.seed
    n = len(st)
    r = np.flatnonzero(c.has)                      # decisions happen at contacts only
    idx = st.idx[r]
    elig = eligibility(st, w, pop, c, t, r)
    n_elig = elig.sum(axis=1)
    option = np.full(len(r), NONE, dtype=np.int64)
    holdout = (n_elig > 0) & (rng.uniform(seed, rng.HOLDOUT, t, idx) < cfg.holdout_share)
    # holdout: arm k in 0..n_elig, 0 = no offer, k = the k-th eligible offer in catalogue order
    arm = np.floor(rng.uniform(seed, rng.HOLDOUT_ARM, t, idx) * (n_elig + 1)).astype(np.int64)
    pick = elig & (np.cumsum(elig, axis=1) == arm[:, None])
    chosen = np.where(pick.any(axis=1), pick.argmax(axis=1), NONE)
    option[holdout] = chosen[holdout]
    # agents
    agent, reason, intent = c.agent[r], c.reason[r], c.intent[r]
    tier = w.agent_tier[agent]
    allowed = elig & (tier[:, None] >= w.offer_tier[None, :])
    tenure = t - pop.signup_month[idx]
    logit = (cfg.offer_base + w.agent_generosity[agent] + cfg.offer_intent * intent
             + cfg.offer_cancel_request * (reason == R_CANCEL)
             + cfg.offer_bill_reason * np.isin(reason, (R_HIGHER, R_CHEAPER))
             + cfg.offer_error_reason * (reason == R_ERROR)
             + cfg.offer_high_plan * (st.plan[r] >= 2) + cfg.offer_new_customer * (tenure < 6)
             + cfg.offer_per_prior_grant * np.minimum(st.n_grants[r], 3))
    gives = ~holdout & allowed.any(axis=1) & (rng.uniform(seed, rng.OFFER, t, idx) < expit(logit))
    score = w.agent_habit[agent].copy()
    for o, code in enumerate(w.offer_codes):
        for reason_code, v in AFFINITY.get(code, {}).items():
            score[:, o] += v * (reason == reason_code)
        score[:, o] += INTENT_AFFINITY.get(code, 0.0) * intent
        score[:, o] -= np.log(-np.log(rng.uniform(seed, rng.OFFER_CHOICE, t, idx, slot=o)))
    score[~allowed] = -np.inf
    best = score.argmax(axis=1) if len(r) else np.zeros(0, dtype=np.int64)
    option[gives] = best[gives]
    full_option = np.full(n, NONE, dtype=np.int64)
    full_option[r] = option
    full_holdout = np.zeros(n, dtype=bool)
    full_holdout[r] = holdout
    full_elig = np.zeros((n, w.n_offers), dtype=bool)
    full_elig[r] = elig
    return Decision(option=full_option, holdout=full_holdout, eligible=full_elig,
                    agent_tier=w.agent_tier[c.agent])


def offer_effect(w: World, pop: Population, idx: np.ndarray, option: np.ndarray,
                 reason: np.ndarray) -> np.ndarray:
    """The log-hazard reduction an offer brings (see :class:`~data.simulate.config.OfferSpec`)."""
    o = np.maximum(option, 0)
    s = pop.price_sensitivity[idx]
    eff = w.offer_effect[o] + w.offer_effect_sens[o] * (s - 1.0) + w.offer_effect_reason[o, reason]
    return np.where(option >= 0, np.maximum(eff, 0.0), 0.0)
