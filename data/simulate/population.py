"""Who signs up, when, and what they are like: observable traits and hidden ones.

All customers of the world are drawn at once (index 0 .. customers - 1, in sign-up order; the
customer_id is index + 1). Observable traits go to ``customers`` through
:func:`billing.create_customers.create_customers` in the month of sign-up; hidden traits go to
``sim_customers`` only.

Hidden traits
-------------
price_sensitivity
    Multiplies the hazard term of a bill shock and the effect of discounts; mean about 1
    (students higher, small businesses lower, telesales-acquired higher).
patience
    In (0, 1): impatient customers complain more about errors and churn a little more.
log_frailty
    Normal(0, frailty_sd): unobserved proneness to leave.
usage_need
    Units a month the customer needs (grows with ``usage_trend``), independent of the plan.
reliability
    In (0, 1): how reliably the customer pays.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.simulate import rng
from data.simulate.config import ACQUISITION, SEGMENTS, SimConfig
from data.simulate.exogenous import World

FIRST_NAMES = (
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Finn", "Sophie", "Milan", "Julia",
    "Sem", "Tess", "Daan", "Zoe", "Levi", "Anna", "Bram", "Lotte", "Jesse", "Eva", "Thomas", "Sara",
    "Ruben", "Nora", "Max", "Lina", "Hugo", "Fleur", "Adam", "Yara", "Omar", "Ines", "Mohamed",
    "Lea", "David", "Maria", "Jan", "Fatima", "Pieter", "Anouk", "Karim", "Elif", "Mehmet", "Chloe",
    "Victor", "Amira", "Lars", "Ingrid", "Paul", "Hanna", "Sven", "Rosa", "Tim", "Laura", "Koen",
    "Esther", "Marco", "Giulia", "Pablo",
)
LAST_NAMES = (
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser",
    "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks",
    "van Leeuwen", "Dekker", "Brouwer", "de Wit", "Dijkstra", "Smits", "de Graaf", "van der Meer",
    "Kok", "Jacobs", "de Haan", "Vermeulen", "van den Heuvel", "Schouten", "Willems", "Hoekstra",
    "Koster", "Verhoeven", "Prins", "Yilmaz", "El Amrani", "Kaya", "Rossi", "Garcia", "Martin",
    "Muller", "Schmidt", "Novak", "Kowalski", "Nguyen", "Chen", "Singh", "Ahmed", "Costa", "Silva",
    "Dubois", "Lambert", "Fischer", "Weber", "Andersen", "Nielsen", "Larsen", "Hansen",
)
MAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example")
POSTCODE_AREA = {"north": (9000, 9999), "south": (5000, 6499), "east": (7000, 8299),
                 "west": (2000, 3499), "central": (1000, 1999)}

SEGMENT_WEIGHTS = (0.70, 0.20, 0.10)
CHANNEL_WEIGHTS = (0.45, 0.25, 0.15, 0.15)
REGION_WEIGHTS = (0.18, 0.22, 0.17, 0.23, 0.20)
# plan choice (by rank) per segment
PLAN_WEIGHTS = {0: (0.30, 0.37, 0.21, 0.12), 1: (0.10, 0.30, 0.35, 0.25), 2: (0.55, 0.35, 0.08, 0.02)}


@dataclass
class Population:
    """Traits of every customer of the world, indexed 0 .. n - 1 (customer_id = index + 1)."""

    n: int
    signup_month: np.ndarray
    signup_day: np.ndarray
    segment: np.ndarray        # index into SEGMENTS
    channel: np.ndarray        # index into ACQUISITION
    region: np.ndarray         # index into config.regions
    plan: np.ndarray           # first plan, index = rank - 1
    is_autopay: np.ndarray
    is_paperless: np.ndarray
    pays_by_card: np.ndarray   # preferred method: card (else direct debit / bank transfer)
    price_sensitivity: np.ndarray
    patience: np.ndarray
    log_frailty: np.ndarray
    usage_need: np.ndarray
    reliability: np.ndarray

    def sim_customers(self) -> pd.DataFrame:
        """The hidden traits as the ``sim_customers`` table (one row per customer)."""
        return pd.DataFrame({
            "customer_id": np.arange(1, self.n + 1, dtype=np.int64),
            "price_sensitivity": self.price_sensitivity, "patience": self.patience,
            "log_frailty": self.log_frailty, "usage_need": self.usage_need,
            "reliability": self.reliability,
        })


def _categorical(u: np.ndarray, weights) -> np.ndarray:
    cum = np.cumsum(weights) / np.sum(weights)
    return np.minimum(np.searchsorted(cum, u, side="right"), len(weights) - 1)


def signup_counts(config: SimConfig) -> np.ndarray:
    """Sign-ups per month: ``launch_share`` in month 0, the rest growing by ``signup_growth``."""
    m = config.months
    if m == 1:
        return np.array([config.customers])
    w = np.exp(config.signup_growth * np.arange(1, m))
    w = (1.0 - config.launch_share) * w / w.sum()
    weights = np.concatenate([[config.launch_share], w])
    raw = weights * config.customers
    counts = np.floor(raw).astype(np.int64)
    rest = config.customers - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts


def draw_population(config: SimConfig, world: World) -> Population:
    """Draw every customer's sign-up date and traits (deterministic in the seed)."""
    n, seed = config.customers, config.seed
    idx = np.arange(n)
    month = np.repeat(np.arange(config.months), signup_counts(config))
    day = rng.integers(seed, rng.SIGNUP, 0, idx, 1, 29)
    order = np.lexsort((idx, day, month))          # sign-up order: ids grow with time
    day = day[order]

    def u(slot):
        return rng.uniform(seed, rng.TRAITS, 0, idx, slot)

    def z(slot):
        return rng.normal(seed, rng.TRAITS, 0, idx, slot)

    segment = _categorical(u(1), SEGMENT_WEIGHTS)
    channel = _categorical(u(2), CHANNEL_WEIGHTS)
    region = _categorical(u(3), REGION_WEIGHTS[: len(config.regions)])
    plan = np.zeros(n, dtype=np.int64)
    u_plan = u(4)
    for s, w in PLAN_WEIGHTS.items():
        mask = segment == s
        plan[mask] = _categorical(u_plan[mask], w[: len(config.plans)])
    autopay = u(5) < np.where(channel == 0, 0.70, 0.55) - 0.15 * (segment == 2)
    paperless = u(6) < np.where(channel == 0, 0.75, 0.45)
    card = u(7) < 0.35

    sens = np.exp(0.45 * z(8) - 0.10) * np.choose(segment, (1.0, 0.7, 1.4)) \
        * np.where(channel == ACQUISITION.index("telesales"), 1.2, 1.0)
    patience = np.clip(rng.uniform(seed, rng.TRAITS, 0, idx, 9) ** 0.8, 0.01, 0.99)
    frailty = config.frailty_sd * z(10)
    allowance = world.allowance[plan].astype(float)
    need = np.maximum(1.0, config.usage_median_share * allowance * np.exp(config.usage_spread * z(11)))
    reliability = np.clip(1.0 - 0.5 * u(12) ** 2 - 0.1 * (segment == 2), 0.05, 1.0)
    return Population(n=n, signup_month=month.astype(np.int64), signup_day=day.astype(np.int64),
                      segment=segment, channel=channel, region=region, plan=plan,
                      is_autopay=autopay, is_paperless=paperless, pays_by_card=card,
                      price_sensitivity=sens, patience=patience, log_frailty=frailty,
                      usage_need=need, reliability=reliability)


def customers_frame(pop: Population, idx: np.ndarray, world: World) -> pd.DataFrame:
    """The rows for :func:`billing.create_customers.create_customers` of customers ``idx``.

    Names, e-mails, phones, postcodes and birth dates are fake but deterministic in the seed.
    """
    config = world.config
    seed = config.seed
    idx = np.asarray(idx, dtype=np.int64)
    first = np.array(FIRST_NAMES, dtype=object)[rng.integers(seed, rng.NAMES, 0, idx, 0, len(FIRST_NAMES), 1)]
    last = np.array(LAST_NAMES, dtype=object)[rng.integers(seed, rng.NAMES, 0, idx, 0, len(LAST_NAMES), 2)]
    names = pd.Series(first) + " " + pd.Series(last)
    local = (pd.Series(first).str.lower() + "." + pd.Series(last).str.lower().str.replace(" ", "", regex=False)
             + (idx % 997).astype(str))
    domain = np.array(MAIL_DOMAINS, dtype=object)[rng.integers(seed, rng.NAMES, 0, idx, 0, len(MAIL_DOMAINS), 3)]
    email = local + "@" + pd.Series(domain)
    phone = "+31 6 " + pd.Series(rng.integers(seed, rng.NAMES, 0, idx, 10_000_000, 100_000_000, 4)).astype(str)
    region_names = np.array([r for r, _ in config.regions], dtype=object)[pop.region[idx]]
    lo = np.array([POSTCODE_AREA.get(r, (1000, 9999))[0] for r in region_names])
    hi = np.array([POSTCODE_AREA.get(r, (1000, 9999))[1] for r in region_names])
    num = lo + np.floor(rng.uniform(seed, rng.NAMES, 0, idx, 5) * (hi - lo + 1)).astype(np.int64)
    letters = np.array(list("ABCDEFGHJKLMNPRSTVWXZ"), dtype=object)
    l1 = letters[rng.integers(seed, rng.NAMES, 0, idx, 0, len(letters), 6)]
    l2 = letters[rng.integers(seed, rng.NAMES, 0, idx, 0, len(letters), 7)]
    postcode = pd.Series(num).astype(str) + " " + pd.Series(l1) + pd.Series(l2)
    signup = world.month_day0[pop.signup_month[idx]] + pop.signup_day[idx] - 1
    seg = pop.segment[idx]
    age = np.where(seg == 2, 18 + 8 * rng.uniform(seed, rng.NAMES, 0, idx, 8),
                   22 + 58 * rng.uniform(seed, rng.NAMES, 0, idx, 8) ** 1.3)
    birth = signup - np.floor(age * 365.25).astype(np.int64)
    return pd.DataFrame({
        "customer_id": idx + 1,
        "name": names.to_numpy(),
        "email": email.to_numpy(),
        "phone": phone.to_numpy(),
        "postcode": postcode.to_numpy(),
        "birth_date": birth.astype("datetime64[D]"),
        "segment": np.array(SEGMENTS, dtype=object)[seg],
        "region": region_names,
        "channel": np.array(ACQUISITION, dtype=object)[pop.channel[idx]],
        "signup_date": signup.astype("datetime64[D]"),
        "start_date": signup.astype("datetime64[D]"),
        "plan_id": pop.plan[idx] + 1,
        "is_autopay": pop.is_autopay[idx],
        "is_paperless": pop.is_paperless[idx],
        "currency": "EUR",
    })


def date_of(day_number: np.ndarray | int) -> dt.date:
    """The date of a day number (days since 1970-01-01)."""
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(day_number))
