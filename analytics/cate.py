"""Heterogeneous (conditional) effects of a multi-valued treatment: the DR-learner.

Builds on :class:`analytics.effects.EffectEstimator`: its cross-fitted AIPW pseudo-outcome
differences are regressed on covariates, again cross-fitted, to give each unit an estimated
effect of each treatment level against the control. Generic over any DataFrame.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold

from analytics.effects import EffectEstimator, prepare_covariates, seeded, with_preprocessor, z_value

__all__ = ["DRLearner", "cate_by_group"]


class DRLearner(BaseEstimator):
    """Per-unit effect (CATE) of each treatment level vs control, by the DR-learner.

    Parameters
    ----------
    effect_estimator : EffectEstimator, optional
        Unfitted template for the nuisance stage (propensity and outcome models, folds,
        clipping). Default: ``EffectEstimator(random_state=random_state)``.
    final_model : sklearn regressor, optional
        Regression of the pseudo-outcome difference on the effect modifiers. Default: a shallow,
        strongly regularised histogram gradient boosting regressor.
    preprocess : bool, default True
        Put the default preprocessor (imputation, scaling, one-hot) in front of ``final_model``.
    cv : int, default 5
        Folds of the final-stage cross-fitting.
    random_state : int or None, default 0
        Seeds the final-stage folds and unset model ``random_state`` parameters.

    Attributes
    ----------
    effects_ : EffectEstimator
        The fitted nuisance stage (also usable for policy evaluation).
    cate_ : pandas.DataFrame
        Per unit (original index) and treatment level: estimated effect vs control. Units in
        the analysis sample get the prediction of the final model fitted without their fold;
        units trimmed out get the model fitted on the whole analysis sample (never on them).
    models_ : dict
        Treatment level -> final model fitted on the whole analysis sample (used by ``predict``).
    modifiers_ : list of str
        Columns the final stage regresses on.
    summary_ : pandas.DataFrame
        One row per treatment level: ``n``, ``ate_aipw`` (mean pseudo-outcome difference),
        ``cate_mean``, ``cate_sd``, ``cate_q10``, ``cate_q50``, ``cate_q90``, ``share_positive``.

    Notes
    -----
    The estimand for treatment level ``k`` is the conditional average treatment effect
    ``tau_k(v) = E[Y(k) - Y(0) | V = v]`` for effect modifiers ``V`` (by default all the
    covariates). The DR-learner (Kennedy, 2023) regresses the cross-fitted AIPW pseudo-outcome
    difference ``G_k - G_0`` (see :class:`~analytics.effects.EffectEstimator`) on ``V``; its
    conditional mean is ``tau_k(v)`` when either nuisance model is right. The final stage is
    itself cross-fitted: a unit's CATE never comes from a model trained on its own
    pseudo-outcome, so policies built from ``cate_`` can be evaluated on the same sample.
    """

    def __init__(self, effect_estimator=None, final_model=None, preprocess=True, cv=5, random_state=0):
        self.effect_estimator = effect_estimator
        self.final_model = final_model
        self.preprocess = preprocess
        self.cv = cv
        self.random_state = random_state

    def fit(self, df, *, treatment, outcome, control, covariates, modifiers=None, effects=None):
        """Fit (or reuse) the nuisance stage, then the cross-fitted final regressions.

        Parameters
        ----------
        df : pandas.DataFrame
            One row per unit, with a unique index.
        treatment, outcome, control, covariates
            As in :meth:`EffectEstimator.fit`.
        modifiers : sequence of str, optional
            Effect modifiers for the final stage; default ``covariates``.
        effects : EffectEstimator, optional
            An estimator already fitted on this same ``df`` (same index) to reuse instead of
            fitting the nuisance stage again.

        Returns
        -------
        DRLearner
            self, fitted.
        """
        if effects is None:
            template = self.effect_estimator
            if template is None:
                template = EffectEstimator(random_state=self.random_state)
            effects = clone(template).fit(
                df, treatment=treatment, outcome=outcome, control=control, covariates=covariates
            )
        else:
            if not hasattr(effects, "pseudo_effects_"):
                raise NotFittedError("effects must be a fitted EffectEstimator")
            if not effects.pseudo_effects_.index.equals(df.index):
                raise ValueError("effects was fitted on a frame with a different index than df")
        modifiers = list(covariates if modifiers is None else modifiers)
        missing = [c for c in modifiers if c not in df.columns]
        if missing:
            raise ValueError(f"missing modifier columns: {missing}")
        if int(self.cv) < 2:
            raise ValueError(f"cv must be at least 2, got {self.cv!r}")

        V = prepare_covariates(df, modifiers)
        keep = effects.in_sample_.to_numpy()
        rows_in = np.flatnonzero(keep)
        base = self.final_model
        if base is None:
            base = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.05, max_depth=3,
                                                 min_samples_leaf=100, l2_regularization=1.0,
                                                 early_stopping=False)
        template = with_preprocessor(base, V, self.preprocess)
        splitter = KFold(n_splits=int(self.cv), shuffle=True, random_state=self.random_state)
        splits = list(splitter.split(rows_in))

        cate = np.full(effects.pseudo_effects_.shape, np.nan)
        self.models_ = {}
        for j, level in enumerate(effects.treatments_):
            target = effects.pseudo_effects_[level].to_numpy()
            for tr, te in splits:
                model = seeded(clone(template), self.random_state)
                model.fit(V.iloc[rows_in[tr]], target[rows_in[tr]])
                cate[rows_in[te], j] = model.predict(V.iloc[rows_in[te]])
            full = seeded(clone(template), self.random_state).fit(V.iloc[rows_in], target[rows_in])
            self.models_[level] = full
            if (~keep).any():
                cate[~keep, j] = full.predict(V.iloc[np.flatnonzero(~keep)])

        self.effects_ = effects
        self.modifiers_ = modifiers
        self.cate_ = pd.DataFrame(cate, index=df.index, columns=effects.pseudo_effects_.columns)
        self.summary_ = self._summary(keep)
        return self

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """Estimated effect of each treatment level vs control for new units.

        Parameters
        ----------
        df : pandas.DataFrame
            Must hold the modifier columns.

        Returns
        -------
        pandas.DataFrame
            One row per row of ``df`` (same index), one column per treatment level.
        """
        if not hasattr(self, "models_"):
            raise NotFittedError("DRLearner is not fitted; call fit first")
        missing = [c for c in self.modifiers_ if c not in df.columns]
        if missing:
            raise ValueError(f"missing modifier columns: {missing}")
        V = prepare_covariates(df, self.modifiers_)
        out = {level: model.predict(V) for level, model in self.models_.items()}
        return pd.DataFrame(out, index=df.index, columns=self.cate_.columns)

    def _summary(self, keep):
        rows = []
        for level in self.cate_.columns:
            c = self.cate_[level].to_numpy()[keep]
            d = self.effects_.pseudo_effects_[level].to_numpy()[keep]
            q = np.quantile(c, [0.1, 0.5, 0.9])
            rows.append({"treatment": level, "n": int(keep.sum()), "ate_aipw": d.mean(),
                         "cate_mean": c.mean(), "cate_sd": c.std(ddof=1),
                         "cate_q10": q[0], "cate_q50": q[1], "cate_q90": q[2],
                         "share_positive": float((c > 0).mean())})
        return pd.DataFrame(rows).set_index("treatment")


def cate_by_group(learner: DRLearner, groups, *, alpha: float = 0.05) -> pd.DataFrame:
    """Summarise per-unit effects of a fitted :class:`DRLearner` by a grouping variable.

    Parameters
    ----------
    learner : DRLearner
        A fitted learner.
    groups : pandas.Series or array-like
        Group label per unit: a Series on the fitted frame's index, or an array in its row order.
    alpha : float, default 0.05
        Intervals have coverage ``1 - alpha``.

    Returns
    -------
    pandas.DataFrame
        One row per (group, treatment): ``n``, ``cate_mean`` (mean per-unit CATE),
        ``dr``, ``dr_se``, ``dr_lo``, ``dr_hi``.

    Notes
    -----
    The group effect ``E[Y(k) - Y(0) | group = g]`` is estimated by ``dr``, the mean of the AIPW
    pseudo-outcome differences within the group, with standard error ``sd / sqrt(n_g)``
    (the interval conditions on the groups, which must not be chosen from the outcomes).
    ``cate_mean`` is the mean of the model's per-unit CATEs in the group: smoother, with no
    interval. Only units of the analysis sample (not trimmed) count.
    """
    if not hasattr(learner, "cate_"):
        raise NotFittedError("learner is not fitted; call fit first")
    index = learner.cate_.index
    if isinstance(groups, pd.Series):
        if not groups.index.equals(index):
            if not index.isin(groups.index).all():
                raise ValueError("groups does not cover every unit of the fitted frame")
            groups = groups.reindex(index)
    else:
        groups = pd.Series(np.asarray(groups), index=index) if len(groups) == len(index) else None
        if groups is None:
            raise ValueError("groups must have one label per unit of the fitted frame")
    keep = learner.effects_.in_sample_.to_numpy()
    z = z_value(alpha)
    rows = []
    g = groups.to_numpy()[keep]
    for level in learner.cate_.columns:
        frame = pd.DataFrame({"group": g,
                              "cate": learner.cate_[level].to_numpy()[keep],
                              "d": learner.effects_.pseudo_effects_[level].to_numpy()[keep]})
        agg = frame.groupby("group", sort=True, dropna=False).agg(
            n=("d", "size"), cate_mean=("cate", "mean"), dr=("d", "mean"), sd=("d", "std"))
        agg["dr_se"] = agg.pop("sd") / np.sqrt(agg["n"])
        agg["dr_lo"] = agg["dr"] - z * agg["dr_se"]
        agg["dr_hi"] = agg["dr"] + z * agg["dr_se"]
        agg["treatment"] = level
        rows.append(agg.reset_index())
    return pd.concat(rows, ignore_index=True).set_index(["group", "treatment"])
