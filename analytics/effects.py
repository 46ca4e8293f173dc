"""Average effects of a multi-valued treatment on an outcome, from any DataFrame.

One row per unit (for discount effectiveness: one row per contact), with a treatment column
holding a control level and one or more treatment levels, a binary or continuous outcome and
numeric or categorical covariates. :class:`EffectEstimator` puts three estimates of each
treatment-versus-control effect side by side: the naive difference in means, inverse
propensity weighting and the cross-fitted doubly robust (AIPW) estimate, with overlap
diagnostics. It knows nothing about where the frame came from.

Heterogeneous effects (the DR-learner) live in :mod:`analytics.cate`; values of assignment
policies in :mod:`analytics.policy`. Both reuse the per-unit pseudo-outcomes kept here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

__all__ = ["EffectEstimator", "make_preprocessor", "prepare_covariates"]


# ---------------------------------------------------------------------------------------------
# Shared helpers (also used by analytics.cate)
# ---------------------------------------------------------------------------------------------


def prepare_covariates(df: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Return the covariate columns in the form every model here receives.

    Parameters
    ----------
    df : pandas.DataFrame
        The input frame.
    covariates : sequence of str
        Covariate column names.

    Returns
    -------
    pandas.DataFrame
        A copy: booleans become 0/1 integers; non-numeric columns (object, string, category)
        become object columns of strings, missing values kept as missing.
    """
    X = df.loc[:, list(covariates)].copy()
    for col in X.columns:
        s = X[col]
        if pd.api.types.is_bool_dtype(s):
            X[col] = s.astype(int)
        elif not pd.api.types.is_numeric_dtype(s):
            X[col] = s.astype(object).where(s.isna(), s.astype(str))
    return X


def make_preprocessor(X: pd.DataFrame) -> ColumnTransformer:
    """Build the default covariate preprocessor for a prepared covariate frame.

    Parameters
    ----------
    X : pandas.DataFrame
        Output of :func:`prepare_covariates`.

    Returns
    -------
    sklearn.compose.ColumnTransformer
        Numeric columns: median imputation then standard scaling. Other columns: missing
        values as their own level then one-hot encoding (unknown levels ignored). Dense output.
    """
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    parts = []
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if categorical:
        parts.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            )
        )
    return ColumnTransformer(parts, sparse_threshold=0.0)


def with_preprocessor(model, X: pd.DataFrame, preprocess: bool):
    """Clone ``model`` and, when ``preprocess``, put the default preprocessor in front of it."""
    model = clone(model)
    if preprocess:
        return Pipeline([("prep", make_preprocessor(X)), ("model", model)])
    return model


def seeded(model, random_state):
    """Set every unset ``random_state`` inside ``model`` (nested pipelines too) and return it."""
    if random_state is None:
        return model
    params = model.get_params(deep=True)
    unset = {
        k: random_state
        for k, v in params.items()
        if (k == "random_state" or k.endswith("__random_state")) and v is None
    }
    if unset:
        model.set_params(**unset)
    return model


def z_value(alpha: float) -> float:
    """Two-sided normal critical value for a ``1 - alpha`` interval."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(stats.norm.ppf(1.0 - alpha / 2.0))


def _kish_ess(w: np.ndarray) -> float:
    w = w[w > 0]
    return float(w.sum() ** 2 / (w**2).sum()) if w.size else 0.0


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _validate(df, treatment, outcome, control, covariates, min_arm_size, outcome_type):
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if isinstance(covariates, str):
        raise TypeError("covariates must be a sequence of column names, not a single string")
    covariates = list(covariates)
    if not covariates:
        raise ValueError("covariates is empty: name at least one covariate column")
    needed = [treatment, outcome, *covariates]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}; the frame has {list(df.columns)}")
    if treatment in covariates or outcome in covariates:
        raise ValueError("the treatment and outcome columns must not also be covariates")
    if len(set(covariates)) != len(covariates):
        raise ValueError("covariates lists a column more than once")
    if not df.index.is_unique:
        raise ValueError("the frame's index has duplicates; call reset_index(drop=True) first")
    if df[treatment].isna().any():
        raise ValueError(f"treatment column {treatment!r} has {int(df[treatment].isna().sum())} missing values")
    y = df[outcome]
    if pd.api.types.is_bool_dtype(y):
        y = y.astype(int)
    if not pd.api.types.is_numeric_dtype(y):
        raise ValueError(f"outcome column {outcome!r} must be numeric or boolean, got dtype {y.dtype}")
    if y.isna().any():
        raise ValueError(f"outcome column {outcome!r} has {int(y.isna().sum())} missing values")
    levels = pd.unique(df[treatment])
    if control not in set(levels):
        raise ValueError(f"control level {control!r} not found in {treatment!r}; levels are {sorted(map(str, levels))}")
    others = sorted((lv for lv in levels if lv != control), key=str)
    if not others:
        raise ValueError(f"treatment column {treatment!r} holds only the control level {control!r}")
    arms = [control, *others]
    counts = df[treatment].value_counts()
    small = {str(a): int(counts[a]) for a in arms if counts[a] < min_arm_size}
    if small:
        raise ValueError(
            f"arms with fewer than min_arm_size={min_arm_size} units: {small}; "
            "drop or merge them, or lower min_arm_size"
        )
    is_binary = bool(np.isin(np.unique(y.to_numpy()), [0, 1]).all())
    if outcome_type == "auto":
        outcome_type = "binary" if is_binary else "continuous"
    elif outcome_type == "binary" and not is_binary:
        raise ValueError(f"outcome_type='binary' but {outcome!r} holds values other than 0 and 1")
    elif outcome_type not in ("binary", "continuous"):
        raise ValueError(f"outcome_type must be 'auto', 'binary' or 'continuous', got {outcome_type!r}")
    return arms, covariates, y.to_numpy(dtype=float), outcome_type


# ---------------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------------


class EffectEstimator(BaseEstimator):
    """Naive, IPW and cross-fitted doubly robust (AIPW) effects of each treatment vs control.

    Parameters
    ----------
    propensity_model : sklearn classifier, optional
        Multinomial model of the treatment given covariates (needs ``predict_proba``).
        Default: ``LogisticRegression(max_iter=2000)``.
    outcome_model : sklearn estimator, optional
        Outcome model, fitted separately in each arm. A classifier is used through
        ``predict_proba`` for a binary outcome, a regressor through ``predict``. Default: a small
        histogram gradient boosting classifier (binary outcome) or regressor (continuous).
    preprocess : bool, default True
        Put :func:`make_preprocessor` (imputation, scaling, one-hot) in front of both models.
        Set False when the models given are pipelines that handle raw covariates themselves.
    cv : int, default 5
        Number of cross-fitting folds, stratified by treatment.
    clip : float, default 0.01
        Lower bound applied to every estimated propensity before it is inverted.
    trim : float or None, default None
        If set, units whose smallest propensity over all arms is below ``trim`` are left out
        of every estimate (the estimand becomes the effect in the region of overlap).
    min_arm_size : int, default 30
        Arms with fewer units raise ``ValueError`` (no stable estimate is possible).
    outcome_type : {"auto", "binary", "continuous"}, default "auto"
        "auto" means binary when the outcome holds only 0 and 1.
    alpha : float, default 0.05
        Intervals have coverage ``1 - alpha``.
    random_state : int or None, default 0
        Seeds the folds and every model parameter ``random_state`` left unset.

    Attributes
    ----------
    summary_ : pandas.DataFrame
        One row per treatment level (index ``treatment``) against the control: ``n``,
        ``n_treated``, ``n_control``; ``naive``, ``naive_se``, ``naive_lo``, ``naive_hi``;
        ``ipw``, ``ipw_se``, ``ipw_lo``, ``ipw_hi``; ``aipw``, ``aipw_se``, ``aipw_lo``,
        ``aipw_hi``, ``aipw_p``; ``ess_treated``, ``ess_control``, ``max_weight``,
        ``share_clipped``, ``share_trimmed``.
    arm_means_ : pandas.DataFrame
        One row per arm: mean outcome observed, by IPW and by AIPW (mean potential outcome),
        with standard errors and AIPW interval.
    overlap_ : pandas.DataFrame
        One row per arm: ``n``, Kish effective sample size ``ess`` and ``ess_share``,
        ``max_weight`` (largest ``1/e``) and ``max_weight_share`` (its share of the arm's
        total weight), ``share_clipped``, quantiles of the arm's own propensity among its
        units, and ``p_min_all`` (smallest propensity for the arm over all units).
    propensity_by_arm_ : pandas.DataFrame
        Distribution (mean, min, 5%, median, 95%, max) of each arm's propensity among the units
        of each observed arm; index (observed arm, propensity of).
    propensity_, mu_, pseudo_outcomes_ : pandas.DataFrame
        Per unit (original index) and arm: cross-fitted propensity (unclipped), cross-fitted
        outcome prediction, and AIPW pseudo-outcome.
    pseudo_effects_ : pandas.DataFrame
        Per unit and treatment level: pseudo-outcome of the level minus that of the control.
    in_sample_ : pandas.Series of bool
        Units used in the estimates (all of them unless ``trim`` is set).
    treatment_, outcome_ : pandas.Series
        The observed treatment and outcome (outcome as float).
    folds_ : numpy.ndarray
        Cross-fitting fold of each unit.
    arms_ : list
        Control level first, then the treatment levels sorted by their string form.
    control_, treatments_, covariates_, outcome_type_, share_trimmed_, n_
        As fitted.

    Notes
    -----
    For treatment level ``k`` and control ``0``, the estimand is the average treatment effect
    over the analysis population, ``tau_k = E[Y(k) - Y(0)]``, where ``Y(a)`` is the potential
    outcome under arm ``a``. With ``e_a(x) = P(T = a | X = x)`` and
    ``mu_a(x) = E[Y | T = a, X = x]`` estimated out of fold (cross-fitting, so no unit's
    nuisance values come from a model that saw it):

    - naive: ``mean(Y | T = k) - mean(Y | T = 0)``, Wald interval from the two sample variances;
    - IPW (Hajek): ``m_a = sum(1[T=a] Y / e_a) / sum(1[T=a] / e_a)`` and ``tau_k = m_k - m_0``,
      interval from the influence function ``1[T=a] (Y - m_a) / e_a / mean(1[T=a] / e_a)``
      (propensities treated as known);
    - AIPW: pseudo-outcome ``G_a = mu_a(X) + 1[T=a] (Y - mu_a(X)) / e_a(X)`` per unit,
      ``tau_k = mean(G_k - G_0)``, standard error ``sd(G_k - G_0) / sqrt(n)``.

    Propensities are bounded below by ``clip`` before inversion. IPW and AIPW assume no
    unmeasured confounding given the covariates and overlap; the naive difference assumes
    randomization. ``share_clipped`` is the share of the units used for a contrast whose own
    weight was capped by ``clip``. Kish's effective sample size of arm ``a`` is
    ``(sum w)^2 / sum(w^2)`` with ``w = 1 / e_a`` over the arm's units.
    """

    def __init__(
        self,
        propensity_model=None,
        outcome_model=None,
        preprocess=True,
        cv=5,
        clip=0.01,
        trim=None,
        min_arm_size=30,
        outcome_type="auto",
        alpha=0.05,
        random_state=0,
    ):
        self.propensity_model = propensity_model
        self.outcome_model = outcome_model
        self.preprocess = preprocess
        self.cv = cv
        self.clip = clip
        self.trim = trim
        self.min_arm_size = min_arm_size
        self.outcome_type = outcome_type
        self.alpha = alpha
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, df, *, treatment, outcome, control, covariates):
        """Estimate the nuisance models by cross-fitting and compute every estimate.

        Parameters
        ----------
        df : pandas.DataFrame
            One row per unit, with a unique index.
        treatment : str
            Column holding the arm of each unit (any hashable levels).
        outcome : str
            Numeric or boolean outcome column.
        control : object
            The level of ``treatment`` that is the control.
        covariates : sequence of str
            Covariate columns, numeric or categorical.

        Returns
        -------
        EffectEstimator
            self, fitted.
        """
        if int(self.cv) < 2:
            raise ValueError(f"cv must be at least 2, got {self.cv!r}")
        if not 0.0 <= float(self.clip) < 0.5:
            raise ValueError(f"clip must be in [0, 0.5), got {self.clip!r}")
        arms, covariates, y, outcome_type = _validate(
            df, treatment, outcome, control, covariates, max(int(self.min_arm_size), int(self.cv)),
            self.outcome_type,
        )
        z = z_value(self.alpha)
        X = prepare_covariates(df, covariates)
        t = df[treatment].map({a: i for i, a in enumerate(arms)}).to_numpy(dtype=int)
        e, mu, folds = self._crossfit(X, t, y, len(arms), outcome_type == "binary")

        keep = np.ones(len(y), dtype=bool)
        if self.trim is not None:
            keep = e.min(axis=1) >= float(self.trim)
            for i, a in enumerate(arms):
                if (t[keep] == i).sum() < 2:
                    raise ValueError(f"trim={self.trim} leaves fewer than 2 units in arm {a!r}; lower trim")
        e_c = np.maximum(e, float(self.clip))
        onehot = t[:, None] == np.arange(len(arms))[None, :]
        G = mu + onehot * (y[:, None] - mu) / e_c

        idx = df.index
        cols = pd.Index(arms, name="arm")
        self.arms_ = arms
        self.control_ = control
        self.treatments_ = arms[1:]
        self.covariates_ = covariates
        self.outcome_type_ = outcome_type
        self.n_ = int(keep.sum())
        self.share_trimmed_ = float(1.0 - keep.mean())
        self.folds_ = folds
        self.in_sample_ = pd.Series(keep, index=idx, name="in_sample")
        self.treatment_ = df[treatment].rename("treatment")
        self.outcome_ = pd.Series(y, index=idx, name="outcome")
        self.propensity_ = pd.DataFrame(e, index=idx, columns=cols)
        self.mu_ = pd.DataFrame(mu, index=idx, columns=cols)
        self.pseudo_outcomes_ = pd.DataFrame(G, index=idx, columns=cols)
        eff = G[:, 1:] - G[:, [0]]
        self.pseudo_effects_ = pd.DataFrame(eff, index=idx, columns=pd.Index(arms[1:], name="treatment"))

        tk, yk, ek, ok, Gk = t[keep], y[keep], e[keep], onehot[keep], G[keep]
        self.overlap_ = self._overlap(arms, tk, ek, ok)
        self.propensity_by_arm_ = self._propensity_by_arm(arms, tk, ek)
        ipw_means, ipw_if = self._ipw(yk, np.maximum(ek, float(self.clip)), ok)
        self.arm_means_ = self._arm_means(arms, tk, yk, ipw_means, ipw_if, Gk, z)
        self.summary_ = self._summary(arms, tk, yk, ek, ipw_means, ipw_if, Gk, z)
        return self

    def _crossfit(self, X, t, y, n_arms, binary):
        prop_template = with_preprocessor(
            self.propensity_model if self.propensity_model is not None else LogisticRegression(max_iter=2000),
            X,
            self.preprocess,
        )
        if self.outcome_model is not None:
            out_base = self.outcome_model
            if not binary and is_classifier(out_base):
                raise ValueError("outcome_model is a classifier but the outcome is continuous")
        else:
            kw = dict(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=40,
                      l2_regularization=1.0, early_stopping=False)
            out_base = HistGradientBoostingClassifier(**kw) if binary else HistGradientBoostingRegressor(**kw)
        out_template = with_preprocessor(out_base, X, self.preprocess)

        n = len(y)
        e = np.full((n, n_arms), np.nan)
        mu = np.full((n, n_arms), np.nan)
        folds = np.empty(n, dtype=int)
        splitter = StratifiedKFold(n_splits=int(self.cv), shuffle=True, random_state=self.random_state)
        for f, (tr, te) in enumerate(splitter.split(np.zeros(n), t)):
            folds[te] = f
            pm = seeded(clone(prop_template), self.random_state).fit(X.iloc[tr], t[tr])
            proba = pm.predict_proba(X.iloc[te])
            classes = list(pm.classes_)
            for a in range(n_arms):
                e[te, a] = proba[:, classes.index(a)]
            for a in range(n_arms):
                rows = tr[t[tr] == a]
                mu[te, a] = self._fit_predict_outcome(out_template, X.iloc[rows], y[rows], X.iloc[te], binary)
        return e, mu, folds

    def _fit_predict_outcome(self, template, X_tr, y_tr, X_te, binary):
        if binary and np.unique(y_tr).size < 2:
            return np.full(len(X_te), float(y_tr.mean()))
        model = seeded(clone(template), self.random_state)
        if binary and is_classifier(model):
            model.fit(X_tr, y_tr.astype(int))
            return model.predict_proba(X_te)[:, list(model.classes_).index(1)]
        return model.fit(X_tr, y_tr).predict(X_te)

    # -- estimates -------------------------------------------------------------------------

    @staticmethod
    def _ipw(y, e_c, onehot):
        w = onehot / e_c
        means = (w * y[:, None]).sum(axis=0) / w.sum(axis=0)
        infl = w * (y[:, None] - means[None, :]) / w.mean(axis=0)[None, :]
        return means, infl

    def _arm_means(self, arms, t, y, ipw_means, ipw_if, G, z):
        n = len(y)
        rows = []
        for i, a in enumerate(arms):
            ya = y[t == i]
            aipw, aipw_se = G[:, i].mean(), G[:, i].std(ddof=1) / np.sqrt(n)
            rows.append({
                "arm": a, "n": int(ya.size),
                "observed": ya.mean(), "observed_se": ya.std(ddof=1) / np.sqrt(ya.size),
                "ipw": ipw_means[i], "ipw_se": ipw_if[:, i].std(ddof=1) / np.sqrt(n),
                "aipw": aipw, "aipw_se": aipw_se, "aipw_lo": aipw - z * aipw_se, "aipw_hi": aipw + z * aipw_se,
            })
        return pd.DataFrame(rows).set_index("arm")

    def _summary(self, arms, t, y, e, ipw_means, ipw_if, G, z):
        n = len(y)
        clip = float(self.clip)
        y0 = y[t == 0]
        rows = []
        for k in range(1, len(arms)):
            yk = y[t == k]
            naive = yk.mean() - y0.mean()
            naive_se = np.sqrt(yk.var(ddof=1) / yk.size + y0.var(ddof=1) / y0.size)
            ipw = ipw_means[k] - ipw_means[0]
            ipw_se = (ipw_if[:, k] - ipw_if[:, 0]).std(ddof=1) / np.sqrt(n)
            d = G[:, k] - G[:, 0]
            aipw, aipw_se = d.mean(), d.std(ddof=1) / np.sqrt(n)
            pair = (t == k) | (t == 0)
            own = np.where(t == k, e[:, k], e[:, 0])[pair]
            rows.append({
                "treatment": arms[k], "control": arms[0],
                "n": int(pair.sum()), "n_treated": int(yk.size), "n_control": int(y0.size),
                "naive": naive, "naive_se": naive_se,
                "naive_lo": naive - z * naive_se, "naive_hi": naive + z * naive_se,
                "ipw": ipw, "ipw_se": ipw_se, "ipw_lo": ipw - z * ipw_se, "ipw_hi": ipw + z * ipw_se,
                "aipw": aipw, "aipw_se": aipw_se, "aipw_lo": aipw - z * aipw_se, "aipw_hi": aipw + z * aipw_se,
                "aipw_p": float(2 * stats.norm.sf(abs(aipw / aipw_se))) if aipw_se > 0 else np.nan,
                "ess_treated": self.overlap_.loc[arms[k], "ess"],
                "ess_control": self.overlap_.loc[arms[0], "ess"],
                "max_weight": float(1.0 / np.maximum(own, clip).min()),
                "share_clipped": float((own < clip).mean()),
                "share_trimmed": self.share_trimmed_,
            })
        return pd.DataFrame(rows).set_index("treatment")

    def _overlap(self, arms, t, e, onehot):
        clip = float(self.clip)
        rows = []
        for i, a in enumerate(arms):
            own = e[t == i, i]
            w = 1.0 / np.maximum(own, clip)
            q = np.quantile(own, [0.0, 0.05, 0.5, 0.95, 1.0])
            ess = _kish_ess(w)
            rows.append({
                "arm": a, "n": int(own.size), "ess": ess, "ess_share": ess / own.size,
                "max_weight": float(w.max()), "max_weight_share": float(w.max() / w.sum()),
                "share_clipped": float((own < clip).mean()),
                "p_min": q[0], "p_q05": q[1], "p_median": q[2], "p_q95": q[3], "p_max": q[4],
                "p_min_all": float(e[:, i].min()),
            })
        return pd.DataFrame(rows).set_index("arm")

    @staticmethod
    def _propensity_by_arm(arms, t, e):
        rows = []
        for i, a in enumerate(arms):
            for j, b in enumerate(arms):
                p = e[t == i, j]
                q = np.quantile(p, [0.0, 0.05, 0.5, 0.95, 1.0])
                rows.append({"observed_arm": a, "propensity_of": b, "mean": p.mean(),
                             "min": q[0], "q05": q[1], "median": q[2], "q95": q[3], "max": q[4]})
        return pd.DataFrame(rows).set_index(["observed_arm", "propensity_of"])
