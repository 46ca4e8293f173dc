"""The customers' month: bills, bill shocks, billing errors, payments, plan changes and the churn hazard.

The month is split in two pure, vectorised steps around the care desk (:mod:`.care`):

1. :func:`start_month` (the first of the month, after the billing run): customers with two overdue
   periods are ended for non-payment; the invoice of the period just ended arrives (its amount adds to what is owed, its error opens, its
   rise over the previous recurring bill is the *bill shock*).
2. :func:`finish_month` (after the contact, if any): the option decided at the contact is applied
   (discount, credit, plan move, and the offer's effect on the hazard); a complaint about a billing
   error corrects the open errors, and so does the periodic audit in an audit month; the customer pays or not; the churn hazard decides whether the
   customer leaves at the end of the month; survivors may change plan from next month; the
   period's usage and billing error are drawn and its invoice is computed
   (:func:`shadow_invoice`, the same arithmetic as :mod:`billing.run_billing`).

The database is written from these steps by :mod:`data.simulate.build`; the replays of
:mod:`data.simulate.truth` run the same steps with another option at the contact.

Churn hazard (monthly, complementary log-log: ``p = 1 - exp(-exp(log_h))``, so each term is an
exact log hazard ratio of a proportional-hazards model)::

    log_h = log(base_hazard) + early_tenure * exp(-tenure / 4) + segment + acquisition channel
            + beta_autopay * autopay + log_frailty + beta_patience * (patience - 0.5)
            + beta_shock * shock * price_sensitivity
            + beta_error * [an uncorrected billing error at the end of the month]
            + beta_wait_minute * minutes waited at this month's contact
            + beta_unresolved * [this month's contact left unresolved]
            + beta_intent * [intent to cancel stated this month] + beta_intent_after * [in the 2 months before]
            + beta_cancel_request * [a cancel request this month]
            - offer effect while it lasts
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.simulate import rng
from data.simulate.care import R_CANCEL, R_ERROR, Contacts, Decision, offer_effect, ts_key
from data.simulate.exogenous import CREDIT, FREE, MOVE, PCT, World
from data.simulate.population import Population
from data.simulate.state import NONE, State

CHURN_REASONS = ("price", "billing_problem", "poor_service", "competitor_offer", "no_longer_needed")


def round_div(n, d):
    """``n / d`` rounded half away from zero, for int64 arrays (the SQL macro ``round_div``)."""
    n = np.asarray(n, dtype=np.int64)
    return np.sign(n) * ((2 * np.abs(n) + d) // (2 * d))


def prorate(amount, days, period_days):
    """Plan charge for ``days`` of the period (the full amount for a whole period)."""
    return np.where(days >= period_days, amount, round_div(np.asarray(amount) * days, period_days))


@dataclass
class MonthStart:
    """What happened on the first of the month (rows of the state)."""

    involuntary: np.ndarray     # ended for non-payment today


@dataclass
class MonthEvents:
    """What happened in the rest of the month (rows of the state), for the database."""

    billed: np.ndarray          # had a subscription in the period (gets its invoice next month)
    granted: np.ndarray
    corrected: np.ndarray       # open errors corrected at a billing_error contact
    audited: np.ndarray         # open errors corrected by the periodic audit
    corrected_credit: np.ndarray
    due: np.ndarray             # owed something this month
    due_cents: np.ndarray       # what was owed when paying
    paid: np.ndarray            # paid all of it
    paid_cents: np.ndarray
    attempt_failed: np.ndarray  # an automatic debit failed
    late: np.ndarray            # paid after the due date
    churned: np.ndarray         # leaves at the end of the month
    churn_reason: np.ndarray    # index into CHURN_REASONS
    plan_changed: np.ndarray    # self-service change from next month
    new_plan: np.ndarray


def start_month(st: State, w: World, pop: Population, t: int) -> MonthStart:
    """The first of month ``t``: non-payment, the new bill and its shock (in place)."""
    cfg = w.config
    # Two overdue periods (billing.end_for_non_payment): payments settle the oldest invoices first,
    # so what is owed sits on the newest periods; it reaches a second period exactly when it exceeds
    # the due amount of the newest period with something to pay.
    inv = st.alive & (st.owed > 0) & (st.owed > st.last_due)
    st.overdue = st.alive & (st.owed > 0)
    st.alive[inv] = False
    st.churned_on[inv] = w.month_day0[t] - 1
    st.churn_kind[inv] = 2
    seen = st.alive & st.has_bill
    st.bill_seen = seen
    st.owed += np.where(seen, st.bill_total, 0)
    positive = seen & (st.bill_total > 0)
    st.last_due2 = np.where(positive, st.last_due, st.last_due2)
    st.last_due = np.where(positive, st.bill_total, st.last_due)
    st.last_due_err = np.where(positive, np.where(st.bill_err > 0, st.bill_err_credit, 0), st.last_due_err)
    compare = seen & ~st.bill_first & st.has_prev
    denom = np.maximum(st.prev_rec, cfg.shock_floor * st.bill_list).astype(float)
    rise = (st.bill_rec - st.prev_rec) / np.maximum(denom, 1.0)
    st.shock = np.where(compare, np.clip(rise, 0.0, cfg.shock_cap), 0.0)
    # a free month is a gift and a plan move's month is a mix of two plans: neither is the new normal,
    # the customer keeps comparing with the bill before it
    st.prev_rec = np.where(seen & ~st.bill_keep_ref, np.where(st.bill_first, st.bill_rec_equiv, st.bill_rec),
                           st.prev_rec)
    st.has_prev = st.has_prev | seen
    st.new_err = seen & (st.bill_err > 0)
    st.open_err += st.new_err
    st.open_err_credit += np.where(st.new_err, st.bill_err_credit, 0)
    return MonthStart(involuntary=inv)


def hazard_terms(st: State, w: World, pop: Population, c: Contacts, t: int) -> dict[str, np.ndarray]:
    """The terms of this month's log hazard (see the module docstring), by name."""
    cfg = w.config
    idx = st.idx
    tenure = t - pop.signup_month[idx]
    s = pop.price_sensitivity[idx]
    since_intent = t - st.intent_month
    return {
        "base": (np.log(cfg.base_hazard) + cfg.early_tenure * np.exp(-tenure / 4.0)
                 + np.asarray(cfg.segment_effects)[pop.segment[idx]]
                 + np.asarray(cfg.channel_effects)[pop.channel[idx]]
                 + cfg.beta_autopay * pop.is_autopay[idx]
                 + pop.log_frailty[idx] + cfg.beta_patience * (pop.patience[idx] - 0.5)),
        "shock": cfg.beta_shock * st.shock * s,
        "error": cfg.beta_error * (st.open_err > 0),
        "wait": cfg.beta_wait_minute * np.where(c.has, c.wait_seconds / 60.0, 0.0),
        "unresolved": cfg.beta_unresolved * c.unresolved,
        "intent": (cfg.beta_intent * c.intent
                   + cfg.beta_intent_after * ((since_intent >= 1) & (since_intent <= 2))),
        "cancel_request": cfg.beta_cancel_request * (c.has & (c.reason == R_CANCEL)),
        "offer": -np.where(t <= st.eff_until, st.eff_log, 0.0),
    }


def finish_month(st: State, w: World, pop: Population, t: int, c: Contacts, d: Decision) -> MonthEvents:
    """The rest of month ``t`` after the contact (in place); see the module docstring."""
    cfg, seed = w.config, w.config.seed
    idx = st.idx
    n = len(st)
    alive0 = st.alive.copy()
    # 1. the option taken at the contact
    g = alive0 & (d.option >= 0)
    o = np.maximum(d.option, 0)
    kind = w.offer_kind[o]
    eff = offer_effect(w, pop, idx, d.option, c.reason)
    st.eff_log = np.where(g, eff, st.eff_log)
    st.eff_until = np.where(g, t + w.offer_effect_months[o] - 1, st.eff_until)
    disc = g & ((kind == PCT) | (kind == FREE))
    st.disc_pct = np.where(disc, w.offer_pct[o], st.disc_pct)
    st.disc_first = np.where(disc, t, st.disc_first)
    st.disc_end = np.where(disc, t + w.offer_cycles[o], st.disc_end)
    st.credit_left += np.where(g & (kind == CREDIT), w.offer_credit[o], 0)
    move = g & (kind == MOVE)
    st.move_from = np.where(move, st.plan, st.move_from)
    st.plan = np.where(move, st.plan - 1, st.plan)
    st.move_day = np.where(move, c.day, 0)
    rows = np.flatnonzero(g)
    st.last_grant[rows, o[rows]] = ts_key(t, c.day[rows], c.grant_second[rows])
    st.n_grants += g
    # 2. a complaint about a billing error corrects the open errors (unless left unresolved)
    # ... and in an audit month the audit corrects every error still open (credit notes at the end
    # of the month, before the churn decision)
    corrected = alive0 & c.has & (c.reason == R_ERROR) & ~c.unresolved & (st.open_err > 0)
    audited = alive0 & ~corrected & (st.open_err > 0) & bool(w.is_audit[t])
    fixed = corrected | audited
    corrected_credit = np.where(fixed, st.open_err_credit, 0)
    st.owed -= corrected_credit
    st.open_err[fixed] = 0
    st.open_err_credit[fixed] = 0
    st.last_due = np.where(fixed, st.last_due - st.last_due_err, st.last_due)
    st.last_due = np.where(fixed & (st.last_due <= 0), st.last_due2, st.last_due)
    st.last_due_err[fixed] = 0
    # 3. payment of what is owed
    due = alive0 & (st.owed > 0)
    rel = pop.reliability[idx]
    auto = pop.is_autopay[idx]
    u_pay = rng.uniform(seed, rng.PAY, t, idx)
    u_late = rng.uniform(seed, rng.PAY_LATE, t, idx)
    p_again = cfg.p_nopay_again + cfg.nopay_again_unreliable * (1 - rel)
    p_auto = np.where(st.overdue, p_again, cfg.p_autopay_fail + cfg.autopay_fail_unreliable * (1 - rel))
    p_manual = np.where(st.overdue, p_again,
                        cfg.p_manual_nopay + cfg.manual_nopay_unreliable * (1 - rel))
    attempt_failed = auto & (u_pay < p_auto)
    recovered = attempt_failed & (u_late < cfg.p_autopay_recover)
    pays = np.where(auto, ~attempt_failed | recovered, u_pay >= p_manual)
    late = np.where(auto, recovered, pays & (u_late < cfg.p_late + 0.25 * (1 - rel)))
    paid = due & pays
    paid_cents = np.where(paid, st.owed, 0)
    st.owed = np.where(paid, 0, st.owed)
    # 4. the churn hazard
    terms = hazard_terms(st, w, pop, c, t)
    log_h = sum(terms.values())
    churned = alive0 & (rng.uniform(seed, rng.CHURN, t, idx) < -np.expm1(-np.exp(log_h)))
    weights = np.stack([terms["shock"] + 0.2, terms["error"] + 0.3 * (c.has & (c.reason == R_ERROR)),
                        terms["wait"] + terms["unresolved"] + 0.1, 0.3 + 0.3 * c.intent,
                        np.full(n, 0.3)], axis=1)
    cum = np.cumsum(weights, axis=1)
    target = rng.uniform(seed, rng.CHURN_REASON, t, idx) * cum[:, -1]
    churn_reason = np.minimum((cum <= target[:, None]).sum(axis=1), len(CHURN_REASONS) - 1)
    st.intent_month = np.where(c.has & c.intent, t, st.intent_month)
    st.alive[churned] = False
    st.churned_on[churned] = w.month_day0[t + 1] - 1
    st.churn_kind[churned] = 1
    # 5. self-service plan changes from next month
    n_plans = w.price.shape[0]
    u_plan = rng.uniform(seed, rng.PLAN_CHANGE, t, idx)
    may = st.alive & ~move & (t - pop.signup_month[idx] >= 1) & (st.owed <= 0)
    down = may & (st.plan > 0) & (u_plan < cfg.p_self_downgrade + 0.05 * st.shock * pop.price_sensitivity[idx])
    up = may & ~down & (st.plan < n_plans - 1) & st.bill_over & (u_plan > 1 - cfg.p_self_upgrade)
    new_plan = np.where(down, st.plan - 1, np.where(up, st.plan + 1, st.plan))
    # 6. the period's usage, billing error and invoice
    draw_period(st, w, pop, t, alive0)
    shadow_invoice(st, w, pop, t, alive0)
    st.has_bill = alive0.copy()
    st.plan = new_plan
    return MonthEvents(billed=alive0, granted=g, corrected=corrected, audited=audited,
                       corrected_credit=corrected_credit,
                       due=due, due_cents=np.where(due, st.owed + paid_cents, 0), paid=paid,
                       paid_cents=paid_cents, attempt_failed=due & attempt_failed,
                       late=paid & late, churned=churned, churn_reason=churn_reason,
                       plan_changed=down | up, new_plan=new_plan)


def draw_period(st: State, w: World, pop: Population, t: int, billed: np.ndarray) -> None:
    """Usage units and the billing error (if any) of period ``t`` for the billed rows."""
    cfg, seed = w.config, w.config.seed
    idx = st.idx
    need = pop.usage_need[idx] * np.exp(cfg.usage_trend * t)
    units = np.round(need * np.exp(cfg.usage_noise * rng.normal(seed, rng.USAGE, t, idx)))
    st.usage_units = np.where(billed, units, 0).astype(np.int64)
    err = billed & (rng.uniform(seed, rng.ERROR, t, idx) < cfg.p_billing_error)
    dup = rng.uniform(seed, rng.ERROR_KIND, t, idx) < cfg.p_duplicate_error
    wrong_amount = (5 + np.floor(rng.uniform(seed, rng.ERROR_AMOUNT, t, idx) * 35)).astype(np.int64) * 100 - 1
    st.err_kind = np.where(err, np.where(dup, 1, 2), 0)
    st.err_amount = np.where(err, np.where(dup, w.price[st.plan, t], wrong_amount), 0)


def shadow_invoice(st: State, w: World, pop: Population, t: int, billed: np.ndarray) -> None:
    """The invoice(s) of period ``t`` by the billing rules, for the billed rows (in place).

    Notes
    -----
    Exactly :mod:`billing.run_billing`'s arithmetic for the subscriptions the simulator creates: one
    invoice (prorated from the sign-up day in the first month), or two in the month of a plan move
    (the old plan up to the day before the move, the new plan from it, the month's usage shared by
    days). Per invoice: plan charge, percent discount on it (``round_div(plan * pct, 100)``), usage
    over the plan's allowance, the error charge on the last invoice, tax ``round_div(net * rate, 10000)``, then fixed credit up to net +
    tax, old invoice first. The test suite checks these totals against the engine's invoices.
    """
    idx = st.idx
    dim = w.month_days[t]
    sm = pop.signup_month[idx]
    start_day = np.where(sm == t, pop.signup_day[idx], 1)
    moved = st.move_day > 0
    days_a = np.where(moved, st.move_day - start_day, 0)
    days_b = np.where(moved, dim - st.move_day + 1, dim - start_day + 1)
    plan_a = np.where(moved, prorate(w.price[st.move_from, t], days_a, dim), 0)
    list_b = w.price[st.plan, t]
    plan_b = prorate(list_b, days_b, dim)
    pct = np.where((st.disc_first <= t) & (t < st.disc_end), st.disc_pct, 0)
    disc_a = np.minimum(plan_a, round_div(plan_a * pct, 100))
    disc_b = np.minimum(plan_b, round_div(plan_b * pct, 100))
    units_a, units_b = split_usage(st, w, t)
    over_a = np.maximum(0, units_a - w.allowance[st.move_from])
    over_b = np.maximum(0, units_b - w.allowance[st.plan])
    usage_a = np.where(moved, over_a * w.overage[st.move_from], 0)
    usage_b = over_b * w.overage[st.plan]
    rate = w.tax_bp[pop.region[idx]]
    net_a = plan_a - disc_a + usage_a
    net_b = plan_b - disc_b + usage_b + st.err_amount
    cap_a = np.where(moved, net_a + round_div(net_a * rate, 10000), 0)
    cap_b = net_b + round_div(net_b * rate, 10000)
    credit = np.where(billed, st.credit_left, 0)
    cr_a = np.minimum(credit, cap_a)
    cr_b = np.minimum(credit - cr_a, cap_b)
    total_b = cap_b - cr_b
    gross_err = st.err_amount + round_div(st.err_amount * rate, 10000)

    def keep(new, old):
        return np.where(billed, new, old)

    st.credit_left = st.credit_left - cr_a - cr_b
    st.bill_total = keep(cap_a - cr_a + total_b, 0)
    st.bill_rec = keep(net_a + plan_b - disc_b + usage_b, 0)
    st.bill_rec_equiv = keep(round_div(list_b * (100 - pct), 100) + usage_b, 0)
    st.bill_list = keep(list_b, 0)
    st.bill_err = keep(st.err_amount, 0)
    st.bill_err_credit = keep(np.minimum(gross_err, total_b), 0)
    st.bill_over = billed & ((over_a > 0) & moved | (over_b > 0))
    st.bill_first = billed & (sm == t)
    st.bill_keep_ref = billed & ((pct >= 100) | moved)


def split_usage(st: State, w: World, t: int) -> tuple[np.ndarray, np.ndarray]:
    """The period's units on the old and the new subscription: in the month of a plan move the
    usage is shared by days (the old plan's days first), otherwise all on the one subscription."""
    dim = w.month_days[t]
    days_a = np.where(st.move_day > 0, st.move_day - 1, 0)
    units_a = round_div(st.usage_units * days_a, dim)
    return units_a, st.usage_units - units_a


def run_month(st: State, w: World, pop: Population, t: int, *, forced: np.ndarray | None = None):
    """One whole month for the rows of ``st`` (in place): start, contacts, decision, finish.

    ``forced`` replaces the decision's option (a replay of the truth). Returns
    ``(MonthStart, Contacts, Decision, MonthEvents)``.
    """
    from data.simulate.care import decide, draw_contacts
    ms = start_month(st, w, pop, t)
    c = draw_contacts(st, w, pop, t)
    d = decide(st, w, pop, c, t)
    if forced is not None:
        d.option = np.where(c.has, forced, NONE)
    ev = finish_month(st, w, pop, t, c, d)
    return ms, c, d, ev
