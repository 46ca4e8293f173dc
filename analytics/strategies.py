"""Discount effectiveness per offer and the comparison of offer strategies, stored per run.

Built on the contact dataset (:func:`analytics.discounts.contact_dataset`) and the generic
estimators (:mod:`analytics.effects`, :mod:`analytics.cate`, :mod:`analytics.policy`):

- :func:`fit_effects` fits the models once: one cross-fitted doubly robust
  :class:`~analytics.effects.EffectEstimator` over all contacts with every offer as an arm
  (eligibility flags among the covariates) and a :class:`~analytics.cate.DRLearner` on it;
- :func:`discount_effectiveness` puts, per offer against no offer, the naive difference, the
  adjusted (AIPW) estimate over the contacts where the offer was eligible, the randomized holdout's
  estimate, costs and returns, overlap diagnostics and effects by segment, plan, reason and tenure;
- :func:`compare_strategies` values offer policies (current practice, no offers, each offer to
  everyone eligible, model-targeted, model-targeted under a budget) doubly robustly;
- :func:`run_effects` computes both and stores them (tables ``effects_*``, see :data:`EFFECTS_DDL`);
  :func:`latest_effects` reads the newest stored run, so pages show results without refitting.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV

from analytics import policy as pol
from analytics.cate import DRLearner, cate_by_group
from analytics.discounts import FEATURES, HORIZON_DAYS, ContactDataset, contact_dataset
from analytics.effects import EffectEstimator, z_value
from data.db import has_table, transaction
from data.money import format_cents

__all__ = [
    "CONTROL",
    "EFFECTS_DDL",
    "EffectivenessResult",
    "EffectsFit",
    "MODIFIERS",
    "SEGMENT_DIMENSIONS",
    "StoredEffects",
    "compare_strategies",
    "discount_effectiveness",
    "fit_effects",
    "latest_effects",
    "load_latest",
    "run_effects",
    "strategy_policies",
]

CONTROL = "none"
Progress = Callable[[int, int, str], None]

# Effect modifiers of the DR-learner's final (linear) stage: what plausibly changes how much an
# offer helps, not every covariate (a smaller, smoother model targets better on noisy pseudo-outcomes).
MODIFIERS = ["reason", "is_intent_to_cancel", "tenure_band", "plan_rank", "segment", "bill_change_pct",
             "is_discount_ended", "is_price_rise", "prior_grants", "prior_contacts_90d",
             "billing_error_credits", "overdue_cents", "monthly_price_cents"]

# Heterogeneity is reported along these columns of the analysis frame (dimension -> column).
SEGMENT_DIMENSIONS = {"segment": "segment", "plan": "plan", "reason": "reason", "tenure_band": "tenure_band"}

# Tables of stored runs. One row per run; per run one row per offer, per strategy, and per
# (dimension, group, offer). Money estimates are whole cents (BIGINT), rounded half away from zero;
# effects are shares (0.012 = 1.2 percentage points of 180-day retention).
EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS effects_runs (
    run_id       BIGINT    PRIMARY KEY,
    created_at   TIMESTAMP NOT NULL,
    as_of        DATE      NOT NULL,
    window_start DATE,                        -- first contact day analysed
    window_end   DATE,                        -- last contact day analysed
    n_contacts   BIGINT    NOT NULL,          -- contacts analysed (with follow-up, sampled)
    n_left_out   BIGINT    NOT NULL,          -- contacts without 180 days of follow-up before as_of
    params       VARCHAR   NOT NULL           -- JSON: horizon, budget, sample, folds, notes, timings
);
CREATE TABLE IF NOT EXISTS effects_offer_results (
    run_id                      BIGINT  NOT NULL,
    offer_id                    INTEGER NOT NULL,
    code                        VARCHAR NOT NULL,
    name                        VARCHAR,
    n_eligible                  BIGINT,     -- analysed contacts where the offer was eligible
    n_granted                   BIGINT,     -- ... that got it (agent or holdout)
    n_holdout_offer             BIGINT,     -- holdout contacts with it as a candidate, given it
    n_holdout_none              BIGINT,     -- ... given no offer
    retained_granted            DOUBLE,
    retained_not_granted        DOUBLE,     -- eligible contacts given no offer
    naive                       DOUBLE, naive_lo DOUBLE, naive_hi DOUBLE,
    adjusted                    DOUBLE, adjusted_se DOUBLE, adjusted_lo DOUBLE, adjusted_hi DOUBLE,
    adjusted_p                  DOUBLE,
    holdout                     DOUBLE, holdout_lo DOUBLE, holdout_hi DOUBLE,
    discount_cost_cents         BIGINT,     -- mean billed cost per contact that got the offer
    expected_cost_cents         BIGINT,     -- mean expected cost per eligible contact
    cost_per_customer_kept_cents BIGINT,    -- expected cost / adjusted effect (NULL if effect <= 0)
    revenue_kept_cents          BIGINT, revenue_kept_lo_cents BIGINT, revenue_kept_hi_cents BIGINT,
    roi                         DOUBLE, roi_lo DOUBLE, roi_hi DOUBLE,
    ess_treated                 DOUBLE,     -- Kish effective sample size of its arm
    p_min                       DOUBLE,     -- smallest propensity of the offer among eligible contacts
    p_q05                       DOUBLE,
    share_clipped               DOUBLE,
    max_weight                  DOUBLE,
    note                        VARCHAR,
    PRIMARY KEY (run_id, offer_id)
);
CREATE TABLE IF NOT EXISTS effects_strategy_results (
    run_id                      BIGINT  NOT NULL,
    strategy                    VARCHAR NOT NULL,
    label                       VARCHAR NOT NULL,
    position                    INTEGER NOT NULL,
    method                      VARCHAR NOT NULL,   -- 'observed' (current practice) or 'dr'
    n                           BIGINT  NOT NULL,
    share_treated               DOUBLE,
    retained                    DOUBLE,
    kept_per_1000               DOUBLE, kept_per_1000_lo DOUBLE, kept_per_1000_hi DOUBLE,
    revenue_kept_per_1000_cents BIGINT, revenue_kept_per_1000_lo_cents BIGINT,
    revenue_kept_per_1000_hi_cents BIGINT,
    discount_cost_per_1000_cents BIGINT,
    net_value_per_1000_cents    BIGINT, net_value_per_1000_lo_cents BIGINT, net_value_per_1000_hi_cents BIGINT,
    value_per_contact_cents     BIGINT, value_per_contact_lo_cents BIGINT, value_per_contact_hi_cents BIGINT,
    net_value_total_cents       BIGINT,
    discount_cost_total_cents   BIGINT,
    budget_cents                BIGINT,
    PRIMARY KEY (run_id, strategy)
);
CREATE TABLE IF NOT EXISTS effects_segment_results (
    run_id    BIGINT  NOT NULL,
    dimension VARCHAR NOT NULL,
    grp       VARCHAR NOT NULL,
    code      VARCHAR NOT NULL,
    n         BIGINT  NOT NULL,
    cate_mean DOUBLE,
    dr        DOUBLE, dr_se DOUBLE, dr_lo DOUBLE, dr_hi DOUBLE,
    PRIMARY KEY (run_id, dimension, grp, code)
);
"""

OFFER_COLUMNS = [
    "offer_id", "name", "n_eligible", "n_granted", "n_holdout_offer", "n_holdout_none",
    "retained_granted", "retained_not_granted", "naive", "naive_lo", "naive_hi",
    "adjusted", "adjusted_se", "adjusted_lo", "adjusted_hi", "adjusted_p", "holdout", "holdout_lo", "holdout_hi",
    "discount_cost_cents", "expected_cost_cents", "cost_per_customer_kept_cents",
    "revenue_kept_cents", "revenue_kept_lo_cents", "revenue_kept_hi_cents", "roi", "roi_lo", "roi_hi",
    "ess_treated", "p_min", "p_q05", "share_clipped", "max_weight", "note",
]
STRATEGY_COLUMNS = [
    "label", "method", "n", "share_treated", "retained", "kept_per_1000", "kept_per_1000_lo", "kept_per_1000_hi",
    "revenue_kept_per_1000_cents", "revenue_kept_per_1000_lo_cents", "revenue_kept_per_1000_hi_cents",
    "discount_cost_per_1000_cents", "net_value_per_1000_cents", "net_value_per_1000_lo_cents",
    "net_value_per_1000_hi_cents", "value_per_contact_cents", "value_per_contact_lo_cents",
    "value_per_contact_hi_cents", "net_value_total_cents", "discount_cost_total_cents", "budget_cents",
]
SEGMENT_COLUMNS = ["dimension", "grp", "code", "n", "cate_mean", "dr", "dr_se", "dr_lo", "dr_hi"]


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectsFit:
    """The fitted models of one analysis (reused by effectiveness, strategies and storage).

    Attributes
    ----------
    dataset : ContactDataset
        All followed-up contacts (see :func:`analytics.discounts.contact_dataset`).
    frame : pandas.DataFrame
        The analysis sample (index 0..n-1): the dataset's frame without contacts given an offer
        with too few grants to estimate, plus a ``plan`` column (plan name before the contact).
    effects : EffectEstimator
        Fitted on ``frame``: treatment = offer code or ``'none'``, outcome ``retained_180``.
    learner : DRLearner
        Cross-fitted per-contact effects (``learner.cate_``) of each offer vs none.
    arms : list of str
        ``'none'`` then the offer codes estimated.
    eligible, cost : pandas.DataFrame
        Contacts x arms: eligibility at the contact (``'none'`` always) and expected cost in cents
        (0 where not eligible, and for ``'none'``).
    value : pandas.Series
        Value of keeping each contact's customer through the window, cents.
    offers : pandas.DataFrame
        The offer catalogue (offer_id, code, name, kind ...).
    skipped : dict
        Offer code -> number of granted contacts, for offers left out (fewer than ``min_granted``).
    params : dict
        What the fit was asked (horizon, folds, sample, seed ...) and how long it took.
    """

    dataset: ContactDataset
    frame: pd.DataFrame
    effects: EffectEstimator
    learner: DRLearner
    arms: list
    eligible: pd.DataFrame
    cost: pd.DataFrame
    value: pd.Series
    offers: pd.DataFrame
    skipped: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def treatments(self) -> list:
        """The offer codes estimated (the arms without ``'none'``)."""
        return [a for a in self.arms if a != CONTROL]


@contextlib.contextmanager
def _threads(n: int | None):
    """Limit BLAS/OpenMP threads while models fit (None: library defaults)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=int(n)):
        yield


def fit_effects(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, horizon_days: int = HORIZON_DAYS,
                sample: int | None = None, cv: int = 5, min_granted: int = 10, random_state: int = 0,
                threads: int | None = 1, dataset: ContactDataset | None = None,
                progress: Progress | None = None) -> EffectsFit:
    """Build the contact dataset and fit the effect models once.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        Analysis date: contacts need ``horizon_days`` of follow-up before it.
    horizon_days : int, default 180
    sample : int, optional
        Fit on at most this many followed-up contacts (uniform random sample, see
        :func:`~analytics.discounts.contact_dataset`); for very large histories.
    cv : int, default 5
        Cross-fitting folds of the nuisance models and of the DR-learner's final stage.
    min_granted : int, default 10
        Offers granted at fewer analysed contacts are not estimated: their contacts leave the
        analysis sample and the offer is listed in ``skipped``.
    random_state : int, default 0
    threads : int or None, default 1
        BLAS/OpenMP threads while fitting. One thread is the safe default: on a shared 2-core
        machine oversubscribed threads made one logistic fit 60 times slower.
    dataset : ContactDataset, optional
        A dataset already built with the same ``as_of`` and ``horizon_days``.
    progress : callable, optional
        ``progress(done, total, label)``.

    Returns
    -------
    EffectsFit

    Raises
    ------
    ValueError
        When there are no followed-up contacts, or no offer with enough grants (one-line message).

    Notes
    -----
    One :class:`~analytics.effects.EffectEstimator` is fitted on every analysed contact with the
    treatment "offer code granted, or none" (a multi-valued treatment). Covariates: the
    :data:`~analytics.discounts.FEATURES` and each offer's eligibility flag, so the propensity
    model learns that ineligible offers are (almost) never given. Propensity: multinomial
    logistic regression; outcome: gradient boosting per arm; both cross-fitted (``cv`` folds).
    The randomized holdout gives every eligible offer a probability of at least
    ``holdout share / (1 + eligible offers)``, which keeps the propensities of eligible offers away
    from zero (overlap by design). The :class:`~analytics.cate.DRLearner` regresses the
    cross-fitted pseudo-outcome differences on :data:`MODIFIERS` with a cross-fitted ridge
    regression: a unit's effect never comes from a final model trained on its own pseudo-outcome.
    """
    started = time.perf_counter()
    steps = 4

    def tick(done, label):
        if progress:
            progress(done, steps, label)

    if dataset is None:
        tick(0, "contact dataset")
        dataset = contact_dataset(con, as_of=as_of, horizon_days=horizon_days, sample=sample, seed=random_state)
    t_data = time.perf_counter() - started
    if dataset.n == 0:
        raise ValueError(f"no contacts with {horizon_days} days of follow-up before {as_of}")
    offers = _offers(con)
    frame = dataset.frame.copy()
    plans = dict(con.execute("SELECT plan_id, name FROM plans").fetchall())
    frame["plan"] = frame["plan_id_before"].map(lambda p: plans.get(int(p)) if pd.notna(p) else None).astype(object)
    granted = frame["treatment"].value_counts()
    codes = [c for c in dataset.offers]
    skipped = {c: int(granted.get(c, 0)) for c in codes if granted.get(c, 0) < min_granted}
    treatments = [c for c in codes if c not in skipped]
    if not treatments:
        raise ValueError(f"no offer was granted at {min_granted} or more analysed contacts; nothing to estimate")
    if CONTROL not in granted.index or granted[CONTROL] < min_granted:
        raise ValueError("too few contacts without an offer to compare with")
    frame = frame[frame["treatment"].isin([CONTROL, *treatments])].reset_index(drop=True)
    covariates = FEATURES + [f"elig_{c}" for c in codes]
    tick(1, "effects (cross-fitted AIPW)")
    with _threads(threads):
        est = EffectEstimator(cv=cv, min_arm_size=min(min_granted, 30), random_state=random_state).fit(
            frame, treatment="treatment", outcome="retained_180", control=CONTROL, covariates=covariates)
        t_est = time.perf_counter() - started - t_data
        tick(2, "per-contact effects (DR-learner)")
        learner = DRLearner(final_model=RidgeCV(alphas=np.logspace(-1, 4, 12)), cv=cv,
                            random_state=random_state).fit(
            frame, treatment="treatment", outcome="retained_180", control=CONTROL, covariates=covariates,
            modifiers=MODIFIERS, effects=est)
    arms = list(est.arms_)
    eligible = pd.DataFrame({a: (frame[f"elig_{a}"].astype(bool) if a != CONTROL else True) for a in arms},
                            index=frame.index)
    cost = pd.DataFrame({a: (frame[f"cost_{a}"].astype(float).fillna(0.0) if a != CONTROL else 0.0)
                         for a in arms}, index=frame.index)
    cost = cost.where(eligible, 0.0)
    value = frame["value_cents"].astype(float).fillna(0.0).rename("value_cents")
    tick(3, "fitted")
    params = {"as_of": str(as_of), "horizon_days": int(dataset.horizon_days), "sample": sample, "cv": int(cv),
              "min_granted": int(min_granted), "random_state": random_state, "threads": threads,
              "value_months": dataset.value_months, "n_followed_up": dataset.n + dataset.n_sampled_out,
              "n_sampled_out": dataset.n_sampled_out, "skipped": skipped, "notes": list(dataset.notes),
              "seconds_dataset": round(t_data, 2), "seconds_effects": round(t_est, 2),
              "seconds_fit": round(time.perf_counter() - started, 2)}
    return EffectsFit(dataset=dataset, frame=frame, effects=est, learner=learner, arms=arms, eligible=eligible,
                      cost=cost, value=value, offers=offers, skipped=skipped, params=params)


def _offers(con) -> pd.DataFrame:
    return con.execute("SELECT offer_id, code, name, kind, percent_off, credit_cents, cycles, min_tier "
                       "FROM offers ORDER BY offer_id").df()


# ---------------------------------------------------------------------------------------------
# Discount effectiveness
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectivenessResult:
    """Per-offer effects on 180-day retention, side by side, with costs and returns.

    Attributes
    ----------
    offers : pandas.DataFrame
        One row per catalogue offer (index ``code``), columns :data:`OFFER_COLUMNS`. Effects are
        differences in the share retained 180 days after the contact (0.01 = one percentage point);
        money in cents per contact.
    segments : pandas.DataFrame
        One row per (dimension, group, offer): columns :data:`SEGMENT_COLUMNS` (``dr`` is the
        group's AIPW effect with interval, ``cate_mean`` the DR-learner's mean prediction).
    overlap : pandas.DataFrame
        :attr:`EffectEstimator.overlap_` of the fit (one row per arm).
    n_contacts, n_left_out : int
        Contacts analysed; contacts left out for lack of follow-up.
    window : tuple of datetime.date
    as_of : datetime.date
    notes : tuple of str
    """

    offers: pd.DataFrame
    segments: pd.DataFrame
    overlap: pd.DataFrame
    n_contacts: int
    n_left_out: int
    window: tuple
    as_of: dt.date
    notes: tuple = ()


def discount_effectiveness(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, alpha: float = 0.05,
                           fit: EffectsFit | None = None, **fit_kwargs) -> EffectivenessResult:
    """Effect of each offer on 180-day retention against no offer: naive, adjusted, holdout.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
    alpha : float, default 0.05
        Intervals have coverage ``1 - alpha``.
    fit : EffectsFit, optional
        Models already fitted by :func:`fit_effects` (otherwise fitted here with ``fit_kwargs``).

    Returns
    -------
    EffectivenessResult

    Notes
    -----
    For offer ``k``, over the analysed contacts where ``k`` was eligible (``E_k``):

    - naive: share retained among contacts of ``E_k`` given ``k`` minus among those given no
      offer, Wald interval (confounded: agents give offers to customers at risk);
    - adjusted: ``mean over E_k of (G_k - G_none)``, the cross-fitted AIPW pseudo-outcomes of the
      multi-valued estimator (:func:`fit_effects`); standard error ``sd / sqrt(|E_k|)``. The
      estimand is the average effect of giving ``k`` rather than nothing over the contacts where
      ``k`` could be given, whatever they got;
    - holdout: within the randomized holdout (``holdout_assignments``), share retained among
      contacts drawn to ``k`` minus among those drawn to no offer, over contacts where ``k`` was
      a candidate (each had the same chance of both arms), Wald interval. NaN without the
      experiment log (the holdout's no-offer arm leaves no grant behind);
    - ``discount_cost_cents``: mean billed cost of the offer per contact that got it (see
      ``discount_cost_cents`` of the dataset); ``expected_cost_cents``: mean expected cost over
      ``E_k`` (what giving it to every eligible contact costs per contact);
    - ``revenue_kept_cents``: ``mean over E_k of value x (G_k - G_none)``: revenue kept per
      eligible contact given the offer, with interval; ``cost_per_customer_kept_cents`` =
      expected cost / adjusted effect (NULL when the effect is not positive);
      ``roi = (revenue kept - expected cost) / expected cost``;
    - overlap: the offer's smallest and 5 % propensity among ``E_k``, share of the contrast's
      units whose propensity was clipped, largest weight, Kish effective size of its arm.

    Offers with too few grants (``fit.skipped``) keep their counts with NaN estimates and a note.
    """
    if fit is None:
        fit = fit_effects(con, as_of=as_of, **fit_kwargs)
    z = z_value(alpha)
    est, frame, ds = fit.effects, fit.frame, fit.dataset
    full = ds.frame
    rows = []
    for _, o in fit.offers.iterrows():
        code = o["code"]
        rows.append(_offer_row(code, o, fit, full, frame, est, z))
    offers = pd.DataFrame(rows).set_index("code")[OFFER_COLUMNS]
    segments = _segments(fit, alpha)
    notes = list(ds.notes)
    for code, n in fit.skipped.items():
        notes.append(f"{code}: granted at {n} analysed contacts, too few to estimate")
    if ds.n_sampled_out:
        notes.append(f"fitted on a random sample of {ds.n:,} of {ds.n + ds.n_sampled_out:,} followed-up contacts")
    return EffectivenessResult(offers=offers, segments=segments, overlap=est.overlap_.copy(),
                               n_contacts=len(frame), n_left_out=ds.n_without_follow_up, window=ds.window,
                               as_of=ds.as_of, notes=tuple(notes))


def _wald(a: np.ndarray, b: np.ndarray, z: float):
    if len(a) < 2 or len(b) < 2:
        return np.nan, np.nan, np.nan
    d = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return d, d - z * se, d + z * se


def _offer_row(code, o, fit: EffectsFit, full: pd.DataFrame, frame: pd.DataFrame, est, z) -> dict:
    elig_full = full[f"elig_{code}"].to_numpy(dtype=bool)
    y_full = full["retained_180"].to_numpy(dtype=float)
    t_full = full["treatment"].to_numpy()
    given = elig_full & (t_full == code)
    nothing = elig_full & (t_full == CONTROL)
    naive, naive_lo, naive_hi = _wald(y_full[given], y_full[nothing], z)
    # holdout: randomized arms among contacts where the offer was a candidate
    cands = full["holdout_candidates"]
    is_cand = full["is_holdout"].to_numpy(dtype=bool) & cands.map(
        lambda c: c is not None and code in c).to_numpy(dtype=bool)
    h_offer, h_none = is_cand & (t_full == code), is_cand & (t_full == CONTROL)
    holdout, holdout_lo, holdout_hi = _wald(y_full[h_offer], y_full[h_none], z)
    paid = full.loc[given, "discount_cost_cents"].to_numpy(dtype=float)
    row = {
        "code": code, "offer_id": int(o["offer_id"]), "name": o["name"],
        "n_eligible": int(elig_full.sum()), "n_granted": int(given.sum()),
        "n_holdout_offer": int(h_offer.sum()), "n_holdout_none": int(h_none.sum()),
        "retained_granted": float(y_full[given].mean()) if given.any() else np.nan,
        "retained_not_granted": float(y_full[nothing].mean()) if nothing.any() else np.nan,
        "naive": naive, "naive_lo": naive_lo, "naive_hi": naive_hi,
        "holdout": holdout, "holdout_lo": holdout_lo, "holdout_hi": holdout_hi,
        "discount_cost_cents": float(paid.mean()) if paid.size else np.nan,
        "note": None,
    }
    nan_keys = ["adjusted", "adjusted_se", "adjusted_lo", "adjusted_hi", "adjusted_p", "expected_cost_cents",
                "cost_per_customer_kept_cents", "revenue_kept_cents", "revenue_kept_lo_cents",
                "revenue_kept_hi_cents", "roi", "roi_lo", "roi_hi", "ess_treated", "p_min", "p_q05",
                "share_clipped", "max_weight"]
    row.update({k: np.nan for k in nan_keys})
    if code not in fit.treatments:
        row["note"] = f"granted at {fit.skipped.get(code, 0)} analysed contacts: too few to estimate"
        return row
    from scipy import stats
    m = fit.eligible[code].to_numpy(dtype=bool) & est.in_sample_.to_numpy()
    n = int(m.sum())
    if n < 2:
        row["note"] = "never eligible in the analysis sample"
        return row
    d = est.pseudo_effects_[code].to_numpy()[m]
    adj, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(n))
    v = fit.value.to_numpy()[m] * d
    rev, rev_se = float(v.mean()), float(v.std(ddof=1) / np.sqrt(n))
    cost = float(fit.cost[code].to_numpy()[m].mean())
    t = frame["treatment"].to_numpy()[m]
    e = est.propensity_[code].to_numpy()[m]
    own = np.where(t == code, e, est.propensity_[CONTROL].to_numpy()[m])[(t == code) | (t == CONTROL)]
    clip = float(est.clip)
    row.update({
        "adjusted": adj, "adjusted_se": se, "adjusted_lo": adj - z * se, "adjusted_hi": adj + z * se,
        "adjusted_p": float(2 * stats.norm.sf(abs(adj / se))) if se > 0 else np.nan,
        "expected_cost_cents": cost,
        "cost_per_customer_kept_cents": cost / adj if adj > 0 else np.nan,
        "revenue_kept_cents": rev, "revenue_kept_lo_cents": rev - z * rev_se, "revenue_kept_hi_cents": rev + z * rev_se,
        "roi": (rev - cost) / cost if cost > 0 else np.nan,
        "roi_lo": (rev - z * rev_se - cost) / cost if cost > 0 else np.nan,
        "roi_hi": (rev + z * rev_se - cost) / cost if cost > 0 else np.nan,
        "ess_treated": float(est.overlap_.loc[code, "ess"]),
        "p_min": float(e.min()), "p_q05": float(np.quantile(e, 0.05)),
        "share_clipped": float((own < clip).mean()) if own.size else np.nan,
        "max_weight": float(1.0 / max(own.min(), clip)) if own.size else np.nan,
    })
    return row


def _segments(fit: EffectsFit, alpha: float) -> pd.DataFrame:
    parts = []
    for dim, col in SEGMENT_DIMENSIONS.items():
        labels = fit.frame[col].astype(object)
        for code in fit.treatments:
            g = labels.where(fit.eligible[code].to_numpy(), None)
            if g.notna().sum() == 0:
                continue
            out = cate_by_group(fit.learner, g, alpha=alpha).reset_index()
            out = out[(out["treatment"] == code) & out["group"].notna()]
            out = out[out["n"] >= 2]
            if out.empty:
                continue
            out = out.rename(columns={"group": "grp", "treatment": "code"})
            out["dimension"] = dim
            out["grp"] = out["grp"].astype(str)
            parts.append(out[SEGMENT_COLUMNS])
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SEGMENT_COLUMNS})
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------


def strategy_policies(fit: EffectsFit, *, budget_cents: float | None = None) -> dict:
    """The offer policies compared, as (name -> (label, policy)).

    Parameters
    ----------
    fit : EffectsFit
    budget_cents : float, optional
        Total expected discount spend allowed over the analysed contacts for the budget policy.
        Default: half of what the unconstrained model-targeted policy spends.

    Returns
    -------
    dict
        Keys ``current_practice`` (policy ``"observed"``), ``no_offers``, ``all_<code>`` for each
        estimated offer, ``targeted``, ``targeted_budget``; values ``(label, policy)`` where
        ``policy`` is a Series of arms on ``fit.frame``'s index (or ``"observed"``). The budget
        used is in ``out["targeted_budget"][2]``.
    """
    est, names = fit.effects, dict(zip(fit.offers["code"], fit.offers["name"]))
    out = {"current_practice": ("Current practice", "observed"),
           "no_offers": ("No offers", pol.always_control(est))}
    for code in [c for c in fit.offers["code"] if c in fit.treatments]:
        out[f"all_{code}"] = (f"{names.get(code, code)} to everyone eligible",
                              pol.always(est, code, eligible=fit.eligible))
    cate = fit.learner.cate_[fit.treatments]
    targeted = pol.targeted_policy(cate, control=CONTROL, value=fit.value, cost=fit.cost, eligible=fit.eligible)
    out["targeted"] = ("Model-targeted", targeted)
    spent = _spend(fit, targeted)
    budget = float(spent / 2) if budget_cents is None else float(budget_cents)
    budgeted = pol.budget_policy(cate, control=CONTROL, budget=budget, value=fit.value, cost=fit.cost,
                                 eligible=fit.eligible)
    out["targeted_budget"] = (f"Model-targeted, budget {format_cents(_cents(budget))}", budgeted, budget)
    return out


def _spend(fit: EffectsFit, policy: pd.Series) -> float:
    arms = list(fit.cost.columns)
    codes = pd.Categorical(policy.reindex(fit.frame.index), categories=arms).codes
    return float(fit.cost.to_numpy()[np.arange(len(codes)), codes].sum())


def compare_strategies(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, budget_cents: float | None = None,
                       alpha: float = 0.05, fit: EffectsFit | None = None, **fit_kwargs) -> pd.DataFrame:
    """Doubly robust values of offer strategies against giving no offers.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
    budget_cents : float, optional
        Total expected discount spend the budget-constrained strategy may use over the analysed
        contacts; default half the spend of the unconstrained model-targeted strategy.
    alpha : float, default 0.05
    fit : EffectsFit, optional
        Models already fitted by :func:`fit_effects` (otherwise fitted here with ``fit_kwargs``).

    Returns
    -------
    pandas.DataFrame
        One row per strategy (index ``strategy``: ``current_practice``, ``no_offers``,
        ``all_<code>``..., ``targeted``, ``targeted_budget``), columns :data:`STRATEGY_COLUMNS`.

    Notes
    -----
    Each strategy assigns every analysed contact an arm (no offer or an eligible offer). With the
    AIPW pseudo-outcomes ``G`` of :func:`fit_effects`, a contact's value ``value`` (cents) and the
    arm's expected cost ``cost``, per contact (see :func:`analytics.policy.policy_value`):

    - ``retained`` = ``mean(G_pi)``; ``kept_per_1000`` = 1000 x its difference from no offers
      (customers kept per 1,000 contacts);
    - ``revenue_kept_per_1000_cents`` = 1000 x ``mean(value x (G_pi - G_none))``;
    - ``discount_cost_per_1000_cents`` = 1000 x ``mean(cost_pi)`` (expected cost of the offers
      given; no offers costs 0);
    - ``net_value_per_1000_cents`` = revenue kept - discount cost, against no offers;
      ``value_per_contact_cents`` = ``mean(value x G_pi - cost_pi)`` (absolute);
      ``net_value_total_cents`` = net value per contact x the followed-up contacts of the window.

    Intervals come from the per-contact terms (influence functions), paired with no offers.
    Current practice is valued from the observed outcomes and costs directly. The model-targeted
    strategy gives each contact the eligible offer with the largest expected net gain
    ``value x CATE - cost`` when positive, from the DR-learner's cross-fitted CATEs, so no
    contact is scored by a model trained on it and all strategies are valued on the same contacts.
    The budget strategy fills the budget greedily by gain per extra cost
    (:func:`analytics.policy.budget_policy`).
    """
    if fit is None:
        fit = fit_effects(con, as_of=as_of, **fit_kwargs)
    specs = strategy_policies(fit, budget_cents=budget_cents)
    policies = {name: spec[1] for name, spec in specs.items()}
    est = fit.effects
    kept = pol.compare_policies(est, policies, baseline="no_offers", alpha=alpha)
    revenue = pol.compare_policies(est, policies, value=fit.value, baseline="no_offers", alpha=alpha)
    net = pol.compare_policies(est, policies, value=fit.value, cost=fit.cost, baseline="no_offers", alpha=alpha)
    scale = fit.params.get("n_followed_up", len(fit.frame))
    rows = []
    for name, spec in specs.items():
        k, r, v = kept.loc[name], revenue.loc[name], net.loc[name]
        rows.append({
            "strategy": name, "label": spec[0], "method": v["method"], "n": int(v["n"]),
            "share_treated": float(v["share_treated"]), "retained": float(k["outcome"]),
            "kept_per_1000": 1000 * k["diff"], "kept_per_1000_lo": 1000 * k["diff_lo"],
            "kept_per_1000_hi": 1000 * k["diff_hi"],
            "revenue_kept_per_1000_cents": 1000 * r["diff"], "revenue_kept_per_1000_lo_cents": 1000 * r["diff_lo"],
            "revenue_kept_per_1000_hi_cents": 1000 * r["diff_hi"],
            "discount_cost_per_1000_cents": 1000 * v["cost"],
            "net_value_per_1000_cents": 1000 * v["diff"], "net_value_per_1000_lo_cents": 1000 * v["diff_lo"],
            "net_value_per_1000_hi_cents": 1000 * v["diff_hi"],
            "value_per_contact_cents": v["value"], "value_per_contact_lo_cents": v["lo"],
            "value_per_contact_hi_cents": v["hi"],
            "net_value_total_cents": v["diff"] * scale, "discount_cost_total_cents": v["cost"] * scale,
            "budget_cents": spec[2] if len(spec) > 2 else np.nan,
        })
    return pd.DataFrame(rows).set_index("strategy")[STRATEGY_COLUMNS]


# ---------------------------------------------------------------------------------------------
# Stored runs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEffects:
    """One stored run: its row of ``effects_runs`` (``run`` dict, ``params`` decoded) and results."""

    run_id: int
    run: dict
    offers: pd.DataFrame
    strategies: pd.DataFrame
    segments: pd.DataFrame


def _cents(x) -> int | None:
    if x is None or not np.isfinite(x):
        return None
    return int(np.sign(x) * np.floor(abs(x) + 0.5))


def run_effects(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, at: dt.datetime,
                budget_cents: float | None = None, progress: Progress | None = None,
                fit: EffectsFit | None = None, **fit_kwargs) -> int:
    """Compute discount effectiveness and the strategy comparison, and store them as a new run.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A writable connection.
    as_of : datetime.date
        Analysis date (see :func:`fit_effects`).
    at : datetime.datetime
        When the run is made (``effects_runs.created_at``).
    budget_cents : float, optional
        See :func:`compare_strategies`.
    progress : callable, optional
        ``progress(done, total, label)``.
    fit : EffectsFit, optional
        Models already fitted on this database's data with the same ``as_of``.
    **fit_kwargs
        Passed to :func:`fit_effects` (``sample``, ``cv``, ``horizon_days`` ...).

    Returns
    -------
    int
        The new ``run_id``.

    Notes
    -----
    Creates the tables of :data:`EFFECTS_DDL` if needed, then writes the run's rows in one
    transaction; ``run_id`` = max + 1. Earlier runs are kept.
    """
    started = time.perf_counter()
    total = 7

    def tick(done, label):
        if progress:
            progress(done, total, label)

    def inner(done, _total, label):
        tick(done, label)

    if fit is None:
        fit = fit_effects(con, as_of=as_of, progress=inner, **fit_kwargs)
    tick(4, "discount effectiveness")
    eff = discount_effectiveness(con, as_of=as_of, fit=fit)
    tick(5, "strategies")
    strat = compare_strategies(con, as_of=as_of, budget_cents=budget_cents, fit=fit)
    tick(6, "storing")
    params = dict(fit.params)
    params.update({"budget_cents": _cents(strat.loc["targeted_budget", "budget_cents"]),
                   "notes": list(eff.notes), "seconds_total": round(time.perf_counter() - started, 2)})
    run_id = _store(con, at=at, as_of=as_of, fit=fit, eff=eff, strat=strat, params=params)
    tick(7, "done")
    return run_id


def _money_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if c.endswith("_cents"):
            out[c] = pd.array([_cents(float(x)) if pd.notna(x) else None for x in out[c]], dtype="Int64")
    return out


def _store(con, *, at, as_of, fit: EffectsFit, eff: EffectivenessResult, strat: pd.DataFrame, params) -> int:
    offers = _money_frame(eff.offers.reset_index())
    offers.insert(0, "run_id", 0)
    offers = offers[["run_id", "offer_id", "code", *[c for c in OFFER_COLUMNS if c != "offer_id"]]]
    strategies = _money_frame(strat.reset_index())
    strategies.insert(0, "run_id", 0)
    strategies.insert(3, "position", np.arange(len(strategies)))
    strategies = strategies[["run_id", "strategy", "label", "position", *[c for c in STRATEGY_COLUMNS
                                                                            if c != "label"]]]
    segments = eff.segments.copy()
    segments.insert(0, "run_id", 0)
    con.execute(EFFECTS_DDL)
    with transaction(con):
        run_id = int(con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM effects_runs").fetchall()[0][0])
        w0, w1 = eff.window if eff.window else (None, None)
        con.execute("INSERT INTO effects_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, at, as_of, w0, w1, int(eff.n_contacts), int(eff.n_left_out),
                     json.dumps(params, default=str)])
        for table, frame in (("effects_offer_results", offers), ("effects_strategy_results", strategies),
                             ("effects_segment_results", segments)):
            if frame.empty:
                continue
            frame = frame.assign(run_id=run_id)
            con.register("_effects_rows", frame)
            try:
                cols = ", ".join(f'"{c}"' for c in frame.columns)
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _effects_rows")
            finally:
                con.unregister("_effects_rows")
    return run_id


def latest_effects(con: duckdb.DuckDBPyConnection, run_id: int | None = None) -> StoredEffects | None:
    """The newest stored run (or run ``run_id``), or None when there is none.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Read-only is enough.
    run_id : int, optional

    Returns
    -------
    StoredEffects or None
        ``offers`` indexed by ``code`` (catalogue order), ``strategies`` by ``strategy`` (in the
        order computed), ``segments`` as stored; ``run`` holds the ``effects_runs`` row with
        ``params`` decoded from JSON.
    """
    if not has_table(con, "effects_runs"):
        return None
    if run_id is None:
        rows = con.execute("SELECT max(run_id) FROM effects_runs").fetchall()
        if not rows or rows[0][0] is None:
            return None
        run_id = int(rows[0][0])
    run = con.execute("SELECT * FROM effects_runs WHERE run_id = ?", [run_id]).df()
    if run.empty:
        return None
    info = run.iloc[0].to_dict()
    info["params"] = json.loads(info["params"]) if info.get("params") else {}
    for k in ("as_of", "window_start", "window_end"):
        if info.get(k) is not None and not pd.isna(info[k]):
            info[k] = pd.Timestamp(info[k]).date()
    offers = con.execute("SELECT * EXCLUDE (run_id) FROM effects_offer_results WHERE run_id = ? "
                         "ORDER BY offer_id", [run_id]).df().set_index("code")
    strategies = con.execute("SELECT * EXCLUDE (run_id) FROM effects_strategy_results WHERE run_id = ? "
                             "ORDER BY position", [run_id]).df().set_index("strategy")
    segments = con.execute("SELECT * EXCLUDE (run_id) FROM effects_segment_results WHERE run_id = ? "
                           "ORDER BY dimension, code, grp", [run_id]).df()
    return StoredEffects(run_id=run_id, run=info, offers=offers, strategies=strategies, segments=segments)


# ---------------------------------------------------------------------------------------------
# The stored run as the Discount strategies page shows it
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectsView:
    """The newest stored run, shaped for the Discount strategies page (see :func:`load_latest`).

    Attributes
    ----------
    run_id : int
    as_of : datetime.date
    window : tuple of datetime.date
    n_contacts, n_left_out : int
    outcome_days : int
    currency : str
    summary : str
        One or two sentences: the best strategy and the offers with a clearly positive effect.
    effects : pandas.DataFrame
        One row per offer: ``offer`` (name), ``code`` and the columns of ``effects_offer_results``.
    strategies : pandas.DataFrame
        One row per strategy: ``strategy`` (label), ``key``, totals over the analysed window
        ``net_value_cents``, ``lo_cents``, ``hi_cents`` (net value against no offers) and
        ``cost_cents`` (discount cost), then the per-1,000-contact columns.
    by_segment : pandas.DataFrame
        Matrix of adjusted effects: rows ``"dimension: group"``, columns offer names.
    segments : pandas.DataFrame
        The stored long form (dimension, grp, code, n, cate_mean, dr, dr_se, dr_lo, dr_hi).
    """

    run_id: int
    as_of: dt.date
    window: tuple
    n_contacts: int
    n_left_out: int
    outcome_days: int
    currency: str
    summary: str
    effects: pd.DataFrame
    strategies: pd.DataFrame
    by_segment: pd.DataFrame
    segments: pd.DataFrame


def load_latest(con: duckdb.DuckDBPyConnection) -> EffectsView | None:
    """The newest stored effects run for the page, or None when none is stored.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Read-only is enough.

    Returns
    -------
    EffectsView or None

    Notes
    -----
    Totals over the analysed window are the per-contact estimates times the contacts with
    follow-up in the window (before any sampling): ``net_value_cents`` is the net value against
    giving no offers, ``cost_cents`` the expected discount cost of the strategy.
    """
    stored = latest_effects(con)
    if stored is None:
        return None
    run = stored.run
    params = run.get("params", {}) or {}
    n_window = int(params.get("n_followed_up") or run["n_contacts"])
    cur = con.execute("SELECT currency FROM customers GROUP BY currency ORDER BY count(*) DESC LIMIT 1").fetchall()
    currency = cur[0][0] if cur else "EUR"
    effects = stored.offers.reset_index()
    effects.insert(0, "offer", effects.pop("name").fillna(effects["code"]))
    s = stored.strategies.reset_index()
    scale = n_window / 1000.0
    strategies = pd.DataFrame({
        "strategy": s["label"], "key": s["strategy"],
        "net_value_cents": s["net_value_total_cents"].astype("float64"),
        "lo_cents": s["net_value_per_1000_lo_cents"].astype("float64") * scale,
        "hi_cents": s["net_value_per_1000_hi_cents"].astype("float64") * scale,
        "cost_cents": s["discount_cost_total_cents"].astype("float64"),
    })
    strategies = pd.concat([strategies, s.drop(columns=["strategy", "label"])], axis=1)
    names = dict(zip(effects["code"], effects["offer"]))
    seg = stored.segments
    if seg.empty:
        by_segment = pd.DataFrame()
    else:
        rows = seg.assign(row=seg["dimension"].str.replace("_", " ") + ": " + seg["grp"].astype(str),
                          offer=seg["code"].map(names).fillna(seg["code"]))
        by_segment = rows.pivot_table(index="row", columns="offer", values="dr", aggfunc="first", sort=False)
        by_segment = by_segment[[names[c] for c in effects["code"] if names.get(c) in by_segment.columns]]
        by_segment.index.name = None
        by_segment.columns.name = None
    return EffectsView(run_id=stored.run_id, as_of=run["as_of"], window=(run.get("window_start"), run.get("window_end")),
                       n_contacts=int(run["n_contacts"]), n_left_out=int(run["n_left_out"]),
                       outcome_days=int(params.get("horizon_days", HORIZON_DAYS)), currency=currency,
                       summary=_summary(effects, s, currency), effects=effects, strategies=strategies,
                       by_segment=by_segment, segments=seg)


def _summary(effects: pd.DataFrame, strategies: pd.DataFrame, currency: str) -> str:
    parts = []
    others = strategies[strategies["strategy"] != "no_offers"].dropna(subset=["net_value_per_1000_cents"])
    if not others.empty:
        best = others.sort_values("net_value_per_1000_cents", ascending=False).iloc[0]
        v = format_cents(int(best["net_value_per_1000_cents"]), currency)
        if best["net_value_per_1000_cents"] > 0:
            parts.append(f"Highest estimated net value: {best['label']} ({v} per 1,000 contacts against no offers).")
        else:
            parts.append(f"No strategy is estimated to beat giving no offers; the closest is {best['label']} "
                         f"({v} per 1,000 contacts).")
    clear = effects[(effects["adjusted_lo"] > 0)] if "adjusted_lo" in effects else effects.iloc[:0]
    if len(clear):
        parts.append("Offers whose adjusted effect is clearly positive: " + ", ".join(clear["offer"]) + ".")
    else:
        parts.append("No offer has an adjusted effect on retention that is clearly above zero.")
    return " ".join(parts)
