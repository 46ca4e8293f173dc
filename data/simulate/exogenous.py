"""The world's exogenous inputs: calendar, price schedule, queue staffing, audits, agents, catalogue.

Everything here is fixed before the first month and does not depend on what customers do, so a
replay of a customer's months under another offer (:mod:`data.simulate.truth`) sees exactly the
same prices, waits and agents. Months are indexed from 0 (the first simulated month) and the
schedules run :data:`REPLAY_MONTHS` months past the end of the world, so potential outcomes of late
contacts are defined too (prices and staffing then stay as in the last month).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from billing.pricing import add_months, days_in_month
from data.simulate import rng
from data.simulate.config import CHANNELS, REASONS, SimConfig

REPLAY_MONTHS = 7
EPOCH = dt.date(1970, 1, 1)

OFFER_KINDS = ("percent_off", "fixed_credit", "free_months", "plan_move")
PCT, CREDIT, FREE, MOVE = range(4)


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01 (the integer behind ``numpy.datetime64[D]``)."""
    return (day - EPOCH).days


@dataclass
class World:
    """Fixed inputs of every month, as arrays indexed by month (0 .. months + REPLAY_MONTHS)."""

    config: SimConfig
    months: int                      # simulated months M
    horizon: int                     # M + REPLAY_MONTHS: length of the month arrays
    month_start: list                # datetime.date of each month's first day
    month_day0: np.ndarray           # day number of each month's first day
    month_days: np.ndarray           # days in each month
    # plans, indexed by rank - 1
    plan_codes: tuple
    price: np.ndarray                # (plans, horizon) monthly price in cents
    allowance: np.ndarray            # (plans,) units
    overage: np.ndarray              # (plans,) cents per unit
    tax_bp: np.ndarray               # (regions,) basis points
    # queue and audits
    staffing: np.ndarray             # (horizon,) 1 = normal
    load: np.ndarray                 # (horizon,) expected contact load, 1 = normal
    mean_wait: np.ndarray            # (horizon,) mean wait in minutes (phone)
    is_audit: np.ndarray             # (horizon,) bool
    is_rise_seen: np.ndarray         # (horizon,) bool: a price rise shows on this month's bill
    # offers, in catalogue order
    offer_codes: tuple
    offer_kind: np.ndarray           # PCT, CREDIT, FREE or MOVE
    offer_pct: np.ndarray            # percent off (100 for free months)
    offer_credit: np.ndarray         # cents
    offer_cycles: np.ndarray
    offer_tier: np.ndarray
    offer_tenure: np.ndarray
    offer_cooldown: np.ndarray
    offer_reason_ok: np.ndarray      # (offers, reasons) bool
    offer_effect: np.ndarray         # (offers,)
    offer_effect_sens: np.ndarray    # (offers,)
    offer_effect_reason: np.ndarray  # (offers, reasons)
    offer_effect_months: np.ndarray
    # agents (simulated users, ids filled in when created)
    agent_tier: np.ndarray
    agent_generosity: np.ndarray
    agent_sloppiness: np.ndarray
    agent_habit: np.ndarray          # (agents, offers) liking of each offer
    agent_user_id: np.ndarray

    @property
    def n_offers(self) -> int:
        return len(self.offer_codes)


def make_world(config: SimConfig) -> World:
    """Build the exogenous schedule of a world (deterministic in the config and seed)."""
    config.check()
    seed = config.seed
    m_total = config.months + REPLAY_MONTHS
    start = config.start_date
    starts = [add_months(start, m) for m in range(m_total + 1)]
    day0 = np.array([day_number(d) for d in starts], dtype=np.int64)
    mdays = np.array([days_in_month(d) for d in starts], dtype=np.int64)

    plans = sorted(config.plans, key=lambda p: p.rank)
    codes = tuple(p.code for p in plans)
    price = np.zeros((len(plans), m_total + 1), dtype=np.int64)
    for i, p in enumerate(plans):
        price[i, :] = p.price_cents
    rise_seen = np.zeros(m_total + 1, dtype=bool)
    for month, code, rise in sorted(config.price_rises):
        if not 0 < month < config.months:
            continue
        for i, p in enumerate(plans):
            if code in ("*", p.code):
                price[i, month:] = rise_price(int(price[i, month]), rise)
        rise_seen[month + 1] = True

    months_idx = np.arange(m_total + 1)
    u_staff = rng.uniform(seed, rng.WORLD, 0, months_idx, slot=1)
    u_noise = rng.uniform(seed, rng.WORLD, 0, months_idx, slot=2)
    staffing = np.where(u_staff < config.understaffed_share, config.understaffed_level, 1.0)
    staffing = staffing * (0.95 + 0.10 * u_noise)
    load = 1.0 + config.price_rise_load * rise_seen
    mean_wait = config.wait_base_minutes * (load / staffing) ** 2
    k = max(1, int(config.audit_every_months))
    is_audit = (months_idx % k == k - 1) & (months_idx > 0)

    offers = config.offers
    n_off = len(offers)
    reason_ok = np.ones((n_off, len(REASONS)), dtype=bool)
    effect_reason = np.zeros((n_off, len(REASONS)))
    for j, o in enumerate(offers):
        if o.eligible_reasons is not None:
            reason_ok[j] = [r in o.eligible_reasons for r in REASONS]
        for r, v in o.effect_by_reason:
            effect_reason[j, REASONS.index(r)] = v

    n_ag = config.n_agents
    ag = np.arange(n_ag)
    u_tier = rng.uniform(seed, rng.WORLD, 1, ag)
    shares = np.cumsum(config.tier_shares) / sum(config.tier_shares)
    tier = 1 + np.searchsorted(shares, u_tier, side="right")
    tier = np.minimum(tier, 3)
    tier[: min(3, n_ag)] = np.arange(1, min(3, n_ag) + 1)  # at least one agent of each tier
    generosity = config.generosity_sd * rng.normal(seed, rng.WORLD, 2, ag)
    sloppiness = 0.5 * rng.normal(seed, rng.WORLD, 3, ag)
    habit = np.stack([rng.normal(seed, rng.WORLD, 4, ag, slot=j) for j in range(n_off)], axis=1)

    return World(
        config=config, months=config.months, horizon=m_total, month_start=starts, month_day0=day0,
        month_days=mdays, plan_codes=codes, price=price,
        allowance=np.array([p.allowance_units for p in plans], dtype=np.int64),
        overage=np.array([p.overage_cents for p in plans], dtype=np.int64),
        tax_bp=np.array([r for _, r in config.regions], dtype=np.int64),
        staffing=staffing, load=load, mean_wait=mean_wait, is_audit=is_audit, is_rise_seen=rise_seen,
        offer_codes=tuple(o.code for o in offers),
        offer_kind=np.array([OFFER_KINDS.index(o.kind) for o in offers], dtype=np.int64),
        offer_pct=np.array([100 if o.kind == "free_months" else (o.percent_off or 0) for o in offers],
                           dtype=np.int64),
        offer_credit=np.array([o.credit_cents or 0 for o in offers], dtype=np.int64),
        offer_cycles=np.array([o.cycles or 1 for o in offers], dtype=np.int64),
        offer_tier=np.array([o.min_tier for o in offers], dtype=np.int64),
        offer_tenure=np.array([o.min_tenure_months for o in offers], dtype=np.int64),
        offer_cooldown=np.array([o.cooldown_months for o in offers], dtype=np.int64),
        offer_reason_ok=reason_ok,
        offer_effect=np.array([o.effect for o in offers]),
        offer_effect_sens=np.array([o.effect_per_sensitivity for o in offers]),
        offer_effect_reason=effect_reason,
        offer_effect_months=np.array([o.effect_months for o in offers], dtype=np.int64),
        agent_tier=tier.astype(np.int64), agent_generosity=generosity, agent_sloppiness=sloppiness,
        agent_habit=habit, agent_user_id=np.zeros(n_ag, dtype=np.int64),
    )


def rise_price(price_cents: int, rise: float) -> int:
    """A price raised by ``rise`` (0.07 = 7 %), rounded to the nearest ``.99`` (never lower)."""
    target = price_cents * (1.0 + rise)
    new = int(round((target + 1) / 100.0)) * 100 - 1
    return max(new, price_cents + 1)


def channel_index(name: str) -> int:
    return CHANNELS.index(name)
