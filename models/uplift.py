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

__all__ = ["OfferUpliftModel", "CONTROL", "MODIFIERS", "uplift_dataset"]

CONTROL = "none"

# Effect modifiers of the final stage: what plausibly changes how much an offer helps (the
# complaint, the stated intent, tenure, price and bill shock, recent intent and contacts). Fewer
# modifiers than covariates keep the per-contact effects stable on a few thousand contacts; the
# nuisance stage still adjusts for every covariate.
MODIFIERS = ("reason", "is_intent_to_cancel", "tenure_months", "monthly_price_cents", "bill_change_pct",
             "prior_intent_90d", "prior_contacts_90d")


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
    n_bootstrap : int, default 20
        Bootstrap refits of the final stage, for the interval.
    alpha : float, default 0.1
        Intervals have coverage ``1 - alpha``.
    cv : int, default 5
        Cross-fitting folds (nuisance and final stage).
    clip : float, default 0.02
        Lower bound of the propensities before inversion.
    final_model : sklearn regressor, optional
        Final-stage model of the DR-learner (default: its own).
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
    Identification assumes no unmeasured confounding of the agents' choices given the covariates
    (the randomized holdout contacts make the propensities bounded away from zero).
    """

    def __init__(self, min_arm_size=40, n_bootstrap=20, alpha=0.1, cv=5, clip=0.02, final_model=None,
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
        learner = DRLearner(effect_estimator=ee, final_model=self.final_model, cv=self.cv,
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
        self.summary_ = self._summary()
        return self

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
            est = self._final_step(self._level(offer)).predict(X).astype(float)
            sd_model = self.sd_models_.get(offer)
            sd = np.maximum(sd_model.predict(X), 0.0) if sd_model is not None else np.full(len(est), np.nan)
            parts.append(pd.DataFrame({"row": np.arange(len(features)), "offer": offer, "uplift": est,
                                       "uplift_lo": est - z * sd, "uplift_hi": est + z * sd, "uplift_sd": sd}))
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
