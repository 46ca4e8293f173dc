"""The simulated world's knobs: :class:`SimConfig`, the catalogue it sells, the demo defaults.

Every mechanism of the world (DESIGN.md section 5, docs/SIMULATION.md) reads its parameters from a
frozen :class:`SimConfig`; the same config and seed always build the same database. Parameters are
grouped by mechanism and documented where they are declared. Hazard and contact coefficients are on
the log scale unless named ``*_rate`` (a monthly rate) or ``p_*`` (a probability).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class PlanSpec:
    """A plan of the catalogue: price in cents, allowance in units, overage price per unit."""

    code: str
    name: str
    rank: int
    price_cents: int
    allowance_units: int
    overage_cents: int


@dataclass(frozen=True)
class OfferSpec:
    """An offer of the catalogue with its true effect on the churn hazard.

    The offer lowers the customer's log hazard by
    ``max(0, effect + effect_per_sensitivity * (price_sensitivity - 1) + effect_by_reason[reason])``
    for ``effect_months`` months starting with the month of the contact (the month of the grant);
    a later grant replaces the effect of an earlier one. Its billing terms (``kind`` ...) are those
    of the ``offers`` table; a plan move also lowers the bill, a discount that ends raises it.
    """

    code: str
    name: str
    kind: str
    min_tier: int
    percent_off: int | None = None
    credit_cents: int | None = None
    cycles: int | None = None
    min_tenure_months: int = 0
    cooldown_months: int = 0
    eligible_reasons: tuple[str, ...] | None = None
    effect: float = 0.0
    effect_per_sensitivity: float = 0.0
    effect_by_reason: tuple[tuple[str, float], ...] = ()
    effect_months: int = 1


REASONS = ("bill_higher_than_expected", "billing_error", "bill_not_understood", "wants_cheaper_plan",
           "service_issue", "cancel_request")
CHANNELS = ("phone", "chat", "email")
SEGMENTS = ("consumer", "small_business", "student")
ACQUISITION = ("web", "retail", "partner", "telesales")

PLANS = (
    PlanSpec("basic", "Basic", 1, 1499, 15, 100),
    PlanSpec("standard", "Standard", 2, 2499, 40, 80),
    PlanSpec("plus", "Plus", 3, 3999, 100, 50),
    PlanSpec("premium", "Premium", 4, 5999, 300, 30),
)

# (region, VAT in basis points)
REGIONS = (("north", 2100), ("south", 1900), ("east", 2000), ("west", 2000), ("central", 2300))

_BILL = ("bill_higher_than_expected", "wants_cheaper_plan", "cancel_request")

OFFERS = (
    OfferSpec("pct10_3m", "10% off for 3 months", "percent_off", 1, percent_off=10, cycles=3,
              cooldown_months=6, effect=0.25, effect_per_sensitivity=0.20, effect_months=3),
    OfferSpec("credit_20", "EUR 20 goodwill credit", "fixed_credit", 1, credit_cents=2000,
              cooldown_months=6,
              eligible_reasons=("billing_error", "bill_higher_than_expected", "bill_not_understood",
                                "service_issue"),
              effect=0.15, effect_by_reason=(("billing_error", 0.70),), effect_months=2),
    OfferSpec("plan_move", "Move to a cheaper plan", "plan_move", 1, min_tenure_months=1,
              cooldown_months=6, eligible_reasons=_BILL, effect=0.55, effect_per_sensitivity=0.20,
              effect_by_reason=(("wants_cheaper_plan", 0.45),), effect_months=6),
    OfferSpec("pct25_6m", "25% off for 6 months", "percent_off", 2, percent_off=25, cycles=6,
              min_tenure_months=3, cooldown_months=12, eligible_reasons=_BILL,
              effect=0.45, effect_per_sensitivity=0.75,
              effect_by_reason=(("bill_higher_than_expected", 0.15), ("wants_cheaper_plan", 0.15)),
              effect_months=6),
    OfferSpec("free_1m", "One month free", "free_months", 2, cycles=1, min_tenure_months=6,
              cooldown_months=12, effect=0.35, effect_months=1),
    OfferSpec("pct50_12m", "50% off for 12 months", "percent_off", 3, percent_off=50, cycles=12,
              min_tenure_months=12, cooldown_months=24, eligible_reasons=("cancel_request",),
              effect=0.85, effect_per_sensitivity=0.40, effect_by_reason=(("cancel_request", 0.25),),
              effect_months=12),
)


@dataclass(frozen=True)
class SimConfig:
    """Everything that decides a simulated world. Frozen: same config (and seed) -> same data.

    Parameters are grouped by mechanism; see docs/SIMULATION.md for the full model.
    """

    # --- size and calendar -------------------------------------------------------------------
    customers: int = 20_000           # customers who ever sign up (all sign up inside the window)
    months: int = 36                  # billing periods simulated, the first one is `start`
    start: str = "2023-01"            # YYYY-MM of the first month
    seed: int = 7
    launch_share: float = 0.12        # share of all sign-ups in the first month (the launch wave)
    signup_growth: float = 0.02       # monthly growth of the sign-up rate after the launch

    # --- catalogue and prices ----------------------------------------------------------------
    plans: tuple[PlanSpec, ...] = PLANS
    offers: tuple[OfferSpec, ...] = OFFERS
    regions: tuple[tuple[str, int], ...] = REGIONS
    # (month offset, plan code or "*" for all, relative rise): the new price is recorded with
    # set_plan_price from that month on; rises at or beyond `months` are ignored
    price_rises: tuple[tuple[int, str, float], ...] = (
        (7, "standard", 0.07), (7, "plus", 0.07),
        (19, "*", 0.06),
        (31, "basic", 0.10), (31, "premium", 0.08),
    )

    # --- usage -------------------------------------------------------------------------------
    usage_median_share: float = 0.45  # median need as a share of the first plan's allowance
    usage_spread: float = 0.45        # sd of log need across customers
    usage_noise: float = 0.20         # sd of log usage month to month
    usage_trend: float = 0.005        # monthly growth of need

    # --- billing errors ----------------------------------------------------------------------
    p_billing_error: float = 0.012    # share of invoices (customer-periods) with an injected error
    p_duplicate_error: float = 0.6    # of which a duplicated plan line (else a wrong fee)
    audit_every_months: int = 4       # a periodic audit corrects all open errors every k months

    # --- bill shock --------------------------------------------------------------------------
    shock_floor: float = 0.5          # shock = rise of the recurring bill / max(previous, floor * list price)
    shock_cap: float = 0.6

    # --- payments ----------------------------------------------------------------------------
    p_autopay_fail: float = 0.012     # + autopay_fail_unreliable * (1 - reliability)
    autopay_fail_unreliable: float = 0.05
    p_autopay_recover: float = 0.55   # a failed debit paid by hand later in the month
    p_manual_nopay: float = 0.010     # + manual_nopay_unreliable * (1 - reliability)
    manual_nopay_unreliable: float = 0.10
    p_nopay_again: float = 0.20       # when a period is already overdue, + again_unreliable * (1 - rel)
    nopay_again_unreliable: float = 0.40
    p_late: float = 0.15              # manual payers paying after the due date (+ 0.25 * (1 - rel))

    # --- contacts (monthly rates by reason) --------------------------------------------------
    rate_service: float = 0.012
    rate_not_understood: float = 0.003
    rate_not_understood_overdue: float = 0.10
    rate_not_understood_first_bill: float = 0.03
    rate_higher_per_shock: float = 0.6
    rate_cheaper: float = 0.002
    rate_cheaper_per_shock: float = 0.45
    rate_cheaper_overage: float = 0.006
    rate_error_new: float = 0.55      # a new error on the bill, times (0.6 + 0.8 * (1 - patience))
    rate_error_open: float = 0.08     # an older error still open
    rate_cancel: float = 0.0015
    rate_cancel_per_shock: float = 0.30
    p_channel: tuple[float, float, float] = (0.55, 0.30, 0.15)

    # --- queue -------------------------------------------------------------------------------
    wait_base_minutes: float = 4.0    # mean wait = base * (load / staffing)^2, by channel factor
    wait_channel_factor: tuple[float, float, float] = (1.0, 0.6, 2.0)
    wait_cap_minutes: float = 120.0
    understaffed_share: float = 0.15  # share of months with short staffing
    understaffed_level: float = 0.65
    price_rise_load: float = 0.4      # extra load in the month after a price rise

    # --- agents ------------------------------------------------------------------------------
    agents: int | None = None         # None: max(12, min(600, customers // 600))
    tier_shares: tuple[float, float, float] = (0.6, 0.3, 0.1)
    generosity_sd: float = 0.7
    offer_base: float = -2.6          # log-odds of offering anything, plus the terms below
    offer_intent: float = 2.4
    offer_cancel_request: float = 1.0
    offer_bill_reason: float = 0.6
    offer_error_reason: float = 0.8
    offer_high_plan: float = 0.4
    offer_new_customer: float = 0.4
    offer_per_prior_grant: float = -0.6
    p_unresolved: float = 0.10        # base probability a contact is left unresolved
    p_escalated: float = 0.05

    # --- randomized holdout --------------------------------------------------------------------
    holdout_share: float = 0.10

    # --- churn hazard (cloglog: monthly p = 1 - exp(-exp(log_h))) -----------------------------
    base_hazard: float = 0.008
    early_tenure: float = 0.9         # + early_tenure * exp(-tenure_months / 4)
    frailty_sd: float = 0.30          # hidden log-frailty
    beta_patience: float = -0.4       # * (patience - 0.5)
    beta_shock: float = 2.5           # * shock * price_sensitivity
    beta_error: float = 0.5878        # log(1.8): an uncorrected billing error
    beta_wait_minute: float = 0.0247  # log(1.025) per minute waited this month
    beta_unresolved: float = 0.4700   # log(1.6): this month's contact left unresolved
    beta_intent: float = 1.6          # stated intent to cancel, the month of the contact
    beta_intent_after: float = 0.8    # ... the two months after
    beta_cancel_request: float = 1.0  # a cancel request, the month of the contact
    beta_autopay: float = -0.2
    segment_effects: tuple[float, float, float] = (0.0, -0.3, 0.3)
    channel_effects: tuple[float, float, float, float] = (0.0, -0.1, 0.0, 0.35)
    p_self_downgrade: float = 0.004   # + 0.05 * shock * sensitivity
    p_self_upgrade: float = 0.006     # when over the allowance last month

    # --- truth -------------------------------------------------------------------------------
    outcome_days: int = 180

    def replace(self, **changes) -> "SimConfig":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def start_date(self) -> dt.date:
        """First day of the first simulated month."""
        from billing.pricing import parse_period
        return parse_period(self.start)

    @property
    def n_agents(self) -> int:
        """Number of simulated care agents."""
        if self.agents is not None:
            return int(self.agents)
        return int(max(12, min(600, self.customers // 600)))

    def check(self) -> None:
        """Raise ValueError with a one-line message when a parameter is out of range."""
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        if not 1 <= self.months <= 240:
            raise ValueError("months must be between 1 and 240")
        if not 0.0 <= self.holdout_share <= 1.0:
            raise ValueError("holdout_share must be between 0 and 1")
        if not 0 <= self.seed < 2**63:
            raise ValueError("seed must be a non-negative integer")
        self.start_date  # noqa: B018 - validates the YYYY-MM text
        codes = [p.code for p in self.plans]
        if sorted(p.rank for p in self.plans) != list(range(1, len(self.plans) + 1)):
            raise ValueError("plan ranks must be 1..number of plans")
        for _, code, _ in self.price_rises:
            if code != "*" and code not in codes:
                raise ValueError(f"price rise for unknown plan {code!r}")


# The app's default world: 20,000 customers over 24 months, about 30 s of CPU and 45 s on the shared
# 2-core machine (36 months take about 45 s of CPU, 70 s there; see docs/SIMULATION.md).
DEFAULT_DEMO = SimConfig(customers=20_000, months=24, start="2024-01", seed=7)


def default_start(months: int, today: dt.date) -> str:
    """``YYYY-MM`` of the first month of a ``months``-month world that ends with the last full month
    before ``today`` (callers above ``data/`` pass today's date; nothing here reads the clock)."""
    index = today.year * 12 + today.month - 1 - int(months)
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def demo_config(today: dt.date, **changes) -> SimConfig:
    """:data:`DEFAULT_DEMO` (with ``changes``) ending with the last full month before ``today``."""
    months = changes.get("months", DEFAULT_DEMO.months)
    return DEFAULT_DEMO.replace(**{"start": default_start(months, today), **changes})


@dataclass(frozen=True)
class DemoUser:
    """A sign-in of the demo world."""

    login: str
    password: str
    role: str
    agent_tier: int | None
    display_name: str


# One user per role with a known password (README lists them). Simulated agents cannot sign in.
DEMO_USERS = (
    DemoUser("admin", "admin-demo", "admin", None, "Demo Admin"),
    DemoUser("leader", "leader-demo", "leader", None, "Demo Leader"),
    DemoUser("analyst", "analyst-demo", "analyst", None, "Demo Analyst"),
    DemoUser("agent", "agent-demo", "agent", 1, "Demo Agent (tier 1)"),
    DemoUser("supervisor", "supervisor-demo", "agent", 3, "Demo Supervisor (tier 3)"),
)

