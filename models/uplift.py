"""Offer uplift: the per-contact effect of each offer on 180-day retention, with an interval.

:class:`OfferUpliftModel` fits :class:`analytics.cate.DRLearner` on the discount-effect dataset
(:func:`analytics.discounts.contact_dataset`: unit = contact, treatment = the offer granted or
``'none'``, outcome = retained 180 days later) and predicts, for any contact described by
:func:`analytics.discounts.contact_features` (historical or live), each offer's effect on the
probability of staying, with a bootstrap interval of the final stage.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import NotFittedError

from analytics import discounts
from analytics.cate import DRLearner
from analytics.effects import EffectEstimator, prepare_covariates, seeded, z_value

__all__ = ["OfferUpliftModel", "CONTROL", "MODIFIERS", "RULES", "uplift_dataset", "pays_mask", "pick_offers",
           "default_final_model"]

CONTROL = "none"

# Effect modifiers of the final stage: what plausibly changes how much an offer helps (the
# complaint, the stated intent, tenure, price and bill shock, recent intent and contacts). Fewer
# modifiers than covariates keep the per-contact effects stable on a few thousand contacts; the
# nuisance stage still adjusts for every covariate.
MODIFIERS = ("reason", "is_intent_to_cancel", "tenure_months", "monthly_price_cents", "bill_change_pct",
             "prior_intent_90d", "prior_contacts_90d")


RULES = ("lower", "point")


def pays_mask(uplift, uplift_lo, value, cost, eligible, rule: str = "lower") -> np.ndarray:
    """Where an offer pays for itself: ``uplift_lo x value - cost > 0`` (rule ``lower``) or
    ``uplift x value - cost > 0`` (rule ``point``), for eligible offers with an estimate.

    All arguments broadcast (contacts x offers); NaN never pays.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    u = np.asarray(uplift_lo if rule == "lower" else uplift, dtype=float)
    crit = u * np.asarray(value, dtype=float) - np.asarray(cost, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.asarray(eligible, dtype=bool) & np.isfinite(crit) & (crit > 0)


def pick_offers(net, pays) -> np.ndarray:
    """Per contact, the column of the paying offer with the largest expected net value (-1: none)."""
    net = np.where(np.asarray(pays, dtype=bool), np.asarray(net, dtype=float), -np.inf)
    best = np.argmax(net, axis=1) if net.shape[1] else np.zeros(net.shape[0], dtype=int)
    return np.where(np.isfinite(net.max(axis=1, initial=-np.inf)), best, -1)


def default_final_model() -> HistGradientBoostingRegressor:
    """The DR-learner's final stage used by default (see :class:`OfferUpliftModel`)."""
    return HistGradientBoostingRegressor(max_iter=100, learning_rate=0.05, max_depth=2, min_samples_leaf=300,
                                         l2_regularization=10.0, early_stopping=False)


def uplift_dataset(con, *, as_of: dt.date, sample: int | None = None, seed: int = 0):
    """The contact dataset the uplift model is fitted on (:func:`analytics.discounts.contact_dataset`)."""
    return discounts.contact_dataset(con, as_of=as_of, sample=sample, seed=seed)


class OfferUpliftModel(BaseEstimator):
    """Per-contact effect of each offer vs no offer on 180-day retention (DR-learner).

    Parameters
    ----------
    min_arm_size : int, default 40
        Offers granted at fewer contacts are left out of the fit (their contacts too): the model
        gives them no estimate and the recommender never proposes them.
    n_bootstrap : int, default 10
        Bootstrap refits of the final stage, for the interval. Few are needed: the interval model
        (``sd_models_``) is a regression of the bootstrap spread on the covariates, which averages
        the spread over similar contacts.
    alpha : float, default 0.1
        Intervals have coverage ``1 - alpha``.
    cv : int, default 5
        Cross-fitting folds (nuisance and final stage).
    clip : float, default 0.05
        Lower bound of the propensities before inversion (at most 20x weights: pseudo-outcomes of
        rarely chosen offers stay bounded).
    final_model : sklearn regressor, optional
        Final-stage model of the DR-learner. Default :func:`default_final_model`: shallow, strongly
        regularised gradient boosting (depth 2, at least 300 contacts a leaf), because the
        pseudo-outcomes are very noisy on a few thousand contacts.
    covariates : sequence of str, optional
        Confounders the nuisance stage adjusts for; default :data:`analytics.discounts.FEATURES`.
    modifiers : sequence of str, optional
        Effect modifiers of the final stage; default :data:`MODIFIERS`.
    random_state : int, default 0

    Attributes
    ----------
    learner_ : analytics.cate.DRLearner
        The fitted learner (``learner_.effects_`` holds the AIPW nuisance stage).
    offers_ : list of str
        Offer codes with an estimate.
    left_out_ : dict
        Offer code -> number of contacts, for offers left out (too few grants).
    boot_models_ : dict
        Offer code -> list of final-stage models fitted on bootstrap resamples.
    evidence_ : pandas.DataFrame or None
        Index (rule, offer or ``all``): ``n_targeted``, ``gain_cents`` (mean net gain per training
        contact of targeting the offer by the rule, against no offer, in cents), ``se_cents``,
        ``lo_cents``, ``hi_cents``, ``proven`` (``lo_cents > 0``). None when the frame has no
        ``value_cents`` and ``cost_<offer>`` columns.
    sd_models_ : dict
        Offer code -> regressor of the bootstrap standard deviation on the covariates (the fast
        interval used by :meth:`predict`; :meth:`bootstrap_sd` gives the exact one).
    covariates_ : list of str
    prep_ : sklearn transformer or None
        The preprocessor shared by every level's final pipeline (transform once, predict many).
    window_ : tuple of date
        First and last contact day of the training data.
    n_ : int
        Contacts in the fit.
    summary_ : pandas.DataFrame
        One row per offer: ``n_treated``, ``ate`` (AIPW average effect) with ``ate_lo``/``ate_hi``,
        ``naive``, ``cate_mean``, ``cate_q10``/``cate_q90``, ``share_positive``.

    Notes
    -----
    Estimand: ``tau_k(x) = P(retained_180 | offer k, x) - P(retained_180 | no offer, x)`` for a
    contact with covariates ``x`` (see :class:`analytics.cate.DRLearner`). The point estimate is
    the DR-learner's final model fitted on all contacts. The interval is
    ``point +- z * sd_b`` where ``sd_b`` is the standard deviation of the predictions of
    ``n_bootstrap`` final-stage models fitted on bootstrap resamples of the contacts' pseudo-outcomes:
    it reflects the final stage's sampling variability given the (cross-fitted) nuisance models,
    not the nuisance models' own uncertainty, so it is a lower bound on the real uncertainty.
    Evidence (``evidence_``): the per-contact effects are noisy, and choosing the best of several
    noisy estimates for many contacts finds offers that "pay" by chance. So each offer's use is
    checked on the training contacts themselves, which is honest because the DR-learner's
    per-contact effects there (``cate_``) are cross-fitted (no contact's effect comes from a model
    that saw its outcome): the rule picks offers with those effects, and the doubly robust value of
    "offer k where the rule picks k, nothing elsewhere" against "nothing" is the mean over contacts
    of ``1[pick = k] x (value x (G_k - G_none) - cost_k)`` (``G`` the AIPW pseudo-outcomes), with a
    normal interval. Offers whose lower end is not above zero are disabled and the rule re-run with
    the others until every remaining offer pays; those are *proven*, and the recommender only
    proposes proven offers (:func:`models.recommender.score_contacts`). ``evidence_`` holds each
    offer's last evaluation (``n_targeted`` contacts it was picked for) and the whole policy's
    (``all``).
    Identification assumes no unmeasured confounding of the agents' choices given the covariates
    (the randomized holdout contacts make the propensities bounded away from zero).
    """

    def __init__(self, min_arm_size=40, n_bootstrap=10, alpha=0.1, cv=5, clip=0.05, final_model=None,
                 covariates=None, modifiers=None, random_state=0):
        self.min_arm_size = min_arm_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.cv = cv
        self.clip = clip
        self.final_model = final_model
        self.covariates = covariates
        self.modifiers = modifiers
        self.random_state = random_state

    def fit(self, frame: pd.DataFrame, *, progress: Callable[[str], None] | None = None) -> "OfferUpliftModel":
        """Fit on a contact dataset frame.

        Parameters
        ----------
        frame : pandas.DataFrame
            :attr:`analytics.discounts.ContactDataset.frame` (or any frame with ``treatment``,
            ``retained_180`` and the covariates).
        progress : callable, optional
            ``progress(label)`` before each stage.

        Returns
        -------
        OfferUpliftModel
            self, fitted.
        """
        say = progress or (lambda label: None)
        covariates = list(self.covariates) if self.covariates is not None else list(discounts.FEATURES)
        missing = [c for c in [*covariates, "treatment", "retained_180"] if c not in frame.columns]
        if missing:
            raise ValueError(f"missing columns: {missing}")
        counts = frame["treatment"].value_counts()
        if CONTROL not in counts.index:
            raise ValueError("no contact without an offer: the uplift needs a control arm")
        small = {str(k): int(v) for k, v in counts.items() if k != CONTROL and v < int(self.min_arm_size)}
        kept = frame[~frame["treatment"].isin(list(small))].reset_index(drop=True)
        if kept["treatment"].nunique() < 2:
            raise ValueError(f"no offer was granted at {int(self.min_arm_size)} contacts or more: nothing to learn")
        ee = EffectEstimator(cv=self.cv, clip=self.clip, min_arm_size=min(int(self.min_arm_size), 30),
                             random_state=self.random_state)
        say(f"DR-learner on {len(kept)} contacts, {kept['treatment'].nunique() - 1} offers")
        final = self.final_model if self.final_model is not None else default_final_model()
        learner = DRLearner(effect_estimator=ee, final_model=final, cv=self.cv,
                            random_state=self.random_state)
        learner.fit(kept, treatment="treatment", outcome="retained_180", control=CONTROL, covariates=covariates,
                    modifiers=list(MODIFIERS if self.modifiers is None else self.modifiers))
        self.learner_ = learner
        self.prep_ = self._shared_prep(learner.models_)
        self.covariates_ = covariates
        self.offers_ = [str(o) for o in learner.effects_.treatments_]
        self.left_out_ = small
        self.n_ = int(len(kept))
        if "contact_date" in kept.columns and len(kept):
            d = pd.to_datetime(kept["contact_date"])
            self.window_ = (d.min().date(), d.max().date())
        else:
            self.window_ = (None, None)
        say(f"bootstrap intervals ({int(self.n_bootstrap)} resamples)")
        self.boot_models_ = self._bootstrap(kept)
        say("interval model")
        self.sd_models_ = self._sd_models(kept)
        self.evidence_ = self._evidence(kept)
        self.summary_ = self._summary()
        return self

    def _evidence(self, kept: pd.DataFrame) -> pd.DataFrame | None:
        """Did targeting each offer by the rule pay on the training contacts? (DR policy values)"""
        codes = self.offers_
        if "value_cents" not in kept.columns or any(f"cost_{c}" not in kept.columns for c in codes):
            return None
        learner = self.learner_
        keep = learner.effects_.in_sample_.to_numpy()
        frame = kept[keep].reset_index(drop=True)
        n = len(frame)
        z = z_value(self.alpha)
        est = np.column_stack([learner.cate_[self._level(c)].to_numpy()[keep] for c in codes])
        X = self._transform(frame)
        sd = np.column_stack([np.maximum(self.sd_models_[c].predict(X), 0.0) if c in self.sd_models_
                              else np.full(n, np.nan) for c in codes])
        est = np.clip(est, -1.0, 1.0)
        lo = np.clip(est - z * sd, -1.0, 1.0)
        value = frame["value_cents"].to_numpy(dtype=float)[:, None]
        cost = np.column_stack([frame[f"cost_{c}"].to_numpy(dtype=float) for c in codes])
        elig = np.column_stack([frame[f"elig_{c}"].to_numpy(dtype=bool) if f"elig_{c}" in frame.columns
                                else np.isfinite(cost[:, j]) for j, c in enumerate(codes)])
        G = learner.effects_.pseudo_outcomes_.to_numpy()[keep]
        arms = [str(a) for a in learner.effects_.arms_]
        g0 = G[:, arms.index(CONTROL)]
        gains = np.column_stack([value[:, 0] * (G[:, arms.index(c)] - g0) - np.nan_to_num(cost[:, j])
                                 for j, c in enumerate(codes)])
        rows = []
        for rule in RULES:
            pays = pays_mask(est, lo, value, cost, elig, rule)
            enabled = np.ones(len(codes), dtype=bool)
            last = {}
            for _ in range(len(codes)):
                # the rule with the offers still enabled; offers whose targeting does not pay are
                # disabled and the others re-evaluated, until every enabled offer pays
                picks = pick_offers(est * value - cost, pays & enabled[None, :])
                for j, c in enumerate(codes):
                    if enabled[j]:
                        last[c] = self._gain_row(rule, c, picks == j, np.where(picks == j, gains[:, j], 0.0), z)
                total = np.where(picks >= 0, gains[np.arange(n), np.maximum(picks, 0)], 0.0)
                last["all"] = self._gain_row(rule, "all", picks >= 0, total, z)
                failing = [j for j, c in enumerate(codes) if enabled[j] and not last[c]["proven"]]
                if not failing:
                    break
                enabled[failing] = False
            rows += [last[c] for c in [*codes, "all"]]
        return pd.DataFrame(rows).set_index(["rule", "offer"])

    @staticmethod
    def _gain_row(rule, offer, on, gain, z):
        n_targeted = int(np.sum(on))
        m = float(gain.mean())
        se = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else np.nan
        return {"rule": rule, "offer": offer, "n_targeted": n_targeted, "gain_cents": m, "se_cents": se,
                "lo_cents": m - z * se, "hi_cents": m + z * se, "proven": bool(n_targeted > 0 and m - z * se > 0)}

    def proven(self, rule: str = "point") -> list[str] | None:
        """Offers whose targeting by ``rule`` paid on the training contacts (None: not assessed)."""
        ev = getattr(self, "evidence_", None)
        if ev is None:
            return None
        sub = ev.loc[rule]
        return [o for o in self.offers_ if o in sub.index and bool(sub.loc[o, "proven"])]

    def _bootstrap(self, kept: pd.DataFrame) -> dict:
        """Final-stage models refitted on bootstrap resamples of the analysis sample."""
        learner = self.learner_
        V = prepare_covariates(kept, learner.modifiers_)
        rows_in = np.flatnonzero(learner.effects_.in_sample_.to_numpy())
        prep = self.prep_
        X = prep.transform(V) if prep is not None else V
        rng = np.random.default_rng(self.random_state)
        out = {o: [] for o in self.offers_}
        for b in range(int(self.n_bootstrap)):
            pick = rows_in[rng.integers(0, len(rows_in), len(rows_in))]
            Xb = X[pick] if prep is not None else X.iloc[pick]
            for level in learner.models_:
                target = learner.effects_.pseudo_effects_[level].to_numpy()
                m = seeded(clone(self._final_step(level)), self.random_state + b).fit(Xb, target[pick])
                out[str(level)].append(m)
        return out

    def _transform(self, frame: pd.DataFrame):
        V = prepare_covariates(frame, self.learner_.modifiers_)
        return self.prep_.transform(V) if self.prep_ is not None else V

    def _sd_models(self, kept: pd.DataFrame) -> dict:
        """Per offer, a regressor of the bootstrap standard deviation on the covariates."""
        X = self._transform(kept)
        out = {}
        for offer, boots in self.boot_models_.items():
            if len(boots) < 2:
                continue
            sd = np.std(np.column_stack([m.predict(X) for m in boots]), axis=1, ddof=1)
            model = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, max_depth=4, min_samples_leaf=10,
                                                  early_stopping=False, random_state=self.random_state)
            out[offer] = model.fit(X, sd)
        return out

    def bootstrap_sd(self, features: pd.DataFrame) -> pd.DataFrame:
        """The exact bootstrap standard deviation of each offer's effect (slow: every resample predicts).

        Returns
        -------
        pandas.DataFrame
            One row per row of ``features`` (same index), one column per offer.
        """
        if not hasattr(self, "learner_"):
            raise NotFittedError("OfferUpliftModel is not fitted; call fit first")
        X = self._transform(features)
        out = {o: np.std(np.column_stack([m.predict(X) for m in boots]), axis=1, ddof=1)
               for o, boots in self.boot_models_.items() if len(boots) > 1}
        return pd.DataFrame(out, index=features.index).reindex(columns=self.offers_)

    def _final_step(self, level):
        """The final regressor of a level, without the shared preprocessor when there is one."""
        model = self.learner_.models_[level]
        return model.named_steps["model"] if self.prep_ is not None else model

    @staticmethod
    def _shared_prep(models: dict):
        """The preprocessor every level's final pipeline shares, or None.

        The DR-learner fits one pipeline (preprocessor + regressor) per level on the same rows, so
        the fitted preprocessors are identical; transforming once saves most of a prediction's time.
        """
        steps = [getattr(m, "named_steps", {}) for m in models.values()]
        if not steps or not all("prep" in s and "model" in s and len(s) == 2 for s in steps):
            return None
        return steps[0]["prep"]

    def _summary(self) -> pd.DataFrame:
        s = self.learner_.effects_.summary_
        c = self.learner_.summary_
        out = pd.DataFrame({
            "n_treated": s["n_treated"], "ate": s["aipw"], "ate_lo": s["aipw_lo"], "ate_hi": s["aipw_hi"],
            "naive": s["naive"], "cate_mean": c["cate_mean"], "cate_q10": c["cate_q10"],
            "cate_q90": c["cate_q90"], "share_positive": c["share_positive"]})
        out.index = out.index.map(str)
        out.index.name = "offer"
        return out

    def predict(self, features: pd.DataFrame, *, offers: Sequence[str] | None = None) -> pd.DataFrame:
        """Effect of each offer vs no offer for each contact, with its interval.

        Parameters
        ----------
        features : pandas.DataFrame
            Contacts with the covariate columns (:func:`analytics.discounts.contact_features`).
        offers : sequence of str, optional
            Only these offers (default: every offer with an estimate); others are skipped.

        Returns
        -------
        pandas.DataFrame
            One row per (contact row, offer with an estimate): ``row`` (position in ``features``),
            ``offer``, ``uplift``, ``uplift_lo``, ``uplift_hi``, ``uplift_sd`` (probability points
            as fractions: 0.05 = five more customers in a hundred stay).
        """
        if not hasattr(self, "learner_"):
            raise NotFittedError("OfferUpliftModel is not fitted; call fit first")
        wanted = self.offers_ if offers is None else [o for o in self.offers_ if o in set(offers)]
        cols = ["row", "offer", "uplift", "uplift_lo", "uplift_hi", "uplift_sd"]
        if not wanted or len(features) == 0:
            return pd.DataFrame(columns=cols)
        missing = [c for c in self.learner_.modifiers_ if c not in features.columns]
        if missing:
            raise ValueError(f"missing covariate columns: {missing}")
        X = self._transform(features)
        z = z_value(self.alpha)
        parts = []
        for offer in wanted:
            est = np.clip(self._final_step(self._level(offer)).predict(X).astype(float), -1.0, 1.0)
            sd_model = self.sd_models_.get(offer)
            sd = np.maximum(sd_model.predict(X), 0.0) if sd_model is not None else np.full(len(est), np.nan)
            parts.append(pd.DataFrame({"row": np.arange(len(features)), "offer": offer, "uplift": est,
                                       "uplift_lo": np.clip(est - z * sd, -1.0, 1.0),
                                       "uplift_hi": np.clip(est + z * sd, -1.0, 1.0), "uplift_sd": sd}))
        out = pd.concat(parts, ignore_index=True)
        return out.sort_values(["row", "offer"], kind="stable").reset_index(drop=True)[cols]

    def _level(self, offer):
        for level in self.learner_.cate_.columns:
            if str(level) == offer:
                return level
        raise KeyError(offer)

    def predict_wide(self, features: pd.DataFrame, column: str = "uplift") -> pd.DataFrame:
        """One row per contact (index of ``features``), one column per offer: ``column`` of :meth:`predict`."""
        long = self.predict(features)
        if long.empty:
            return pd.DataFrame(index=features.index, columns=self.offers_, dtype=float)
        wide = long.pivot(index="row", columns="offer", values=column).reindex(columns=self.offers_)
        wide.index = features.index
        wide.columns.name = None
        return wide
