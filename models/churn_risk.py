"""Churn risk: the probability that a customer churns within 90 days, from snapshot features.

:class:`ChurnRiskModel` is a scikit-learn estimator over any feature frame (numeric and
categorical columns): gradient boosting (``kind="hgb"``) or the logistic-regression baseline
(``kind="logistic"``, one-hot + scaling). It explains each customer's score with per-feature
*reasons*. :func:`classification_metrics` and :func:`calibration_table` score probabilities;
:func:`time_split` and :func:`fit_churn_risk` run the time-based validation on monthly snapshots
of a database (:mod:`models.features`) and refit the model on every labelled snapshot.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from models import features as F

__all__ = ["ChurnRiskModel", "ChurnRiskFit", "classification_metrics", "calibration_table", "time_split",
           "fit_churn_risk", "KINDS"]

KINDS = ("hgb", "logistic")


def _as_categories(values: np.ndarray) -> np.ndarray:
    """Object array of strings, with missing values as NaN (what the encoders take)."""
    missing = pd.isna(values)
    out = np.empty(len(values), dtype=object)
    out[missing] = np.nan
    out[~missing] = [str(v) for v in values[~missing]]
    return out


class ChurnRiskModel(ClassifierMixin, BaseEstimator):
    """Probability of churn (a binary label) from numeric and categorical features.

    Parameters
    ----------
    kind : {"hgb", "logistic"}, default "hgb"
        ``hgb``: :class:`~sklearn.ensemble.HistGradientBoostingClassifier` on the raw numeric
        columns and ordinal-coded categories (native categorical splits). ``logistic``: the
        baseline, :class:`~sklearn.linear_model.LogisticRegression` after median imputation and
        scaling of numeric columns and one-hot encoding of categorical ones.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        Gradient boosting hyperparameters (``hgb`` only).
    C : float, default 1.0
        Inverse regularisation strength (``logistic`` only).
    features : sequence of str, optional
        Columns to use; default every column of ``X`` given to :meth:`fit`.
    categorical : sequence of str, optional
        Which of them are categorical; default the non-numeric ones.
    random_state : int, default 0

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted preprocessing and classifier.
    features_, numeric_, categorical_ : list of str
    reference_ : dict
        Feature -> reference value used by :meth:`reasons`: the training median of a numeric
        feature, the most frequent level of a categorical one.
    base_rate_ : float
        Share of positives in the training data.
    n_train_ : int
    summary_ : pandas.DataFrame
        One row per feature: ``kind`` (numeric/categorical), ``reference``, ``importance``
        (mean absolute reason delta over up to 500 training rows, see :meth:`reasons`).

    Notes
    -----
    Reasons are local, model-agnostic deltas: for customer ``x`` and feature ``j``,
    ``delta_j = p(x) - p(x with x_j replaced by reference_j)``, the change in predicted risk
    that this customer's value of ``j`` causes compared with a typical customer's value, others
    held fixed. Positive deltas raise the risk. They are not additive (interactions), but they
    are exact statements about the model, cheap (one prediction per feature) and need no
    background sample at scoring time.
    """

    def __init__(self, kind="hgb", max_iter=200, learning_rate=0.03, max_leaf_nodes=8, min_samples_leaf=200,
                 l2_regularization=5.0, C=1.0, features=None, categorical=None, random_state=0):
        self.kind = kind
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.C = C
        self.features = features
        self.categorical = categorical
        self.random_state = random_state

    # -- fitting ------------------------------------------------------------------------------

    def _columns(self, X: pd.DataFrame):
        feats = list(self.features) if self.features is not None else list(X.columns)
        missing = [c for c in feats if c not in X.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        if self.categorical is not None:
            cat = [c for c in feats if c in set(self.categorical)]
        else:
            cat = [c for c in feats if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))]
        num = [c for c in feats if c not in cat]
        return feats, num, cat

    def _build(self, num, cat):
        if self.kind == "hgb":
            parts = []
            if num:
                parts.append(("num", "passthrough", num))
            if cat:
                parts.append(("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                                    encoded_missing_value=np.nan), cat))
            prep = ColumnTransformer(parts, sparse_threshold=0.0, verbose_feature_names_out=False)
            mask = [False] * len(num) + [True] * len(cat)
            clf = HistGradientBoostingClassifier(
                max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
                categorical_features=mask if cat else None, early_stopping=False, random_state=self.random_state)
            return Pipeline([("prep", prep), ("model", clf)])
        if self.kind == "logistic":
            parts = []
            if num:
                parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num))
            if cat:
                parts.append(("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                                                   OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat))
            prep = ColumnTransformer(parts, sparse_threshold=0.0)
            clf = LogisticRegression(C=self.C, max_iter=5000)
            return Pipeline([("prep", prep), ("model", clf)])
        raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's columns: numbers as floats, categories as strings (missing as NaN)."""
        data = {}
        for c in self.numeric_:
            data[c] = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=float)
        for c in self.categorical_:
            data[c] = _as_categories(X[c].to_numpy(dtype=object))
        return pd.DataFrame(data, index=X.index)[self.features_]

    def fit(self, X: pd.DataFrame, y) -> "ChurnRiskModel":
        """Fit on a feature frame and a binary label.

        Parameters
        ----------
        X : pandas.DataFrame
            One row per unit (customer snapshot).
        y : array-like of bool or 0/1

        Returns
        -------
        ChurnRiskModel
            self, fitted.
        """
        if not isinstance(X, pd.DataFrame):
            raise TypeError("X must be a pandas DataFrame")
        yv = np.asarray(y).astype(int)
        if len(yv) != len(X):
            raise ValueError("X and y have different lengths")
        if np.unique(yv).size < 2:
            raise ValueError("y holds one class only: churn risk needs churners and stayers")
        self.features_, self.numeric_, self.categorical_ = self._columns(X)
        Xp = self._prepare(X)
        self.pipeline_ = self._build(self.numeric_, self.categorical_).fit(Xp, yv)
        self.classes_ = np.array([0, 1])
        ref = {}
        for c in self.numeric_:
            med = Xp[c].median()
            ref[c] = float(med) if pd.notna(med) else 0.0
        for c in self.categorical_:
            mode = Xp[c].dropna().mode()
            ref[c] = mode.iloc[0] if len(mode) else np.nan
        self.reference_ = ref
        self.base_rate_ = float(yv.mean())
        self.n_train_ = int(len(yv))
        sample = X.sample(n=min(len(X), 500), random_state=self.random_state) if len(X) else X
        deltas = self._deltas(sample)
        self.summary_ = pd.DataFrame({
            "kind": ["numeric" if c in self.numeric_ else "categorical" for c in self.features_],
            "reference": [ref[c] for c in self.features_],
            "importance": deltas.abs().mean().reindex(self.features_).to_numpy(),
        }, index=pd.Index(self.features_, name="feature")).sort_values("importance", ascending=False)
        return self

    # -- scoring ------------------------------------------------------------------------------

    def _check(self):
        if not hasattr(self, "pipeline_"):
            raise NotFittedError("ChurnRiskModel is not fitted; call fit first")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of (stay, churn), one row per row of ``X``."""
        self._check()
        return self.pipeline_.predict_proba(self._prepare(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where the churn probability is at least one half."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def predict_risk(self, X: pd.DataFrame) -> pd.Series:
        """Churn probability per row (same index as ``X``)."""
        return pd.Series(self.predict_proba(X)[:, 1], index=X.index, name="risk")

    def _deltas(self, X: pd.DataFrame, *, with_risk: bool = False):
        """Per row and feature: risk - risk with the feature set to its reference value.

        One prediction over ``(1 + features) x rows`` rows: the rows themselves, then one block per
        feature with that feature replaced by its reference.
        """
        n, feats = len(X), self.features_
        if n == 0:
            empty = pd.DataFrame(columns=feats, dtype=float)
            return (empty, np.zeros(0)) if with_risk else empty
        base = self._prepare(X)
        k = len(feats)
        data = {}
        for j, c in enumerate(feats):
            col = np.tile(base[c].to_numpy(), k + 1)
            block = slice((j + 1) * n, (j + 2) * n)
            if c in self.categorical_:
                col = col.astype(object)
            col[block] = self.reference_[c]
            data[c] = col
        p = self.pipeline_.predict_proba(pd.DataFrame(data, columns=feats))[:, 1]
        p0 = p[:n]
        deltas = pd.DataFrame(p0[:, None] - p[n:].reshape(k, n).T, index=X.index, columns=feats)
        return (deltas, p0) if with_risk else deltas

    def reasons(self, X: pd.DataFrame, *, top: int = 3, min_delta: float = 0.0) -> pd.DataFrame:
        """The features that raise each row's churn risk most.

        Parameters
        ----------
        X : pandas.DataFrame
        top : int, default 3
            Reasons per row at most.
        min_delta : float, default 0.0
            Only features whose delta exceeds this (in probability points).

        Returns
        -------
        pandas.DataFrame
            One row per (input row, reason): ``row`` (position in ``X``), ``rank`` (1 = strongest),
            ``feature``, ``value`` (this row's), ``reference``, ``delta`` (risk points the value adds
            compared with the reference, > ``min_delta``), ``risk`` (the row's churn probability).

        Notes
        -----
        See the class Notes for the definition of a delta.
        """
        return self.explain(X, top=top, min_delta=min_delta)[1]

    def explain(self, X: pd.DataFrame, *, top: int = 3, min_delta: float = 0.0) -> tuple[pd.Series, pd.DataFrame]:
        """Each row's churn risk and its reasons, in one pass (see :meth:`predict_risk`, :meth:`reasons`)."""
        self._check()
        deltas, risk = self._deltas(X, with_risk=True)
        rows = []
        values = X.reset_index(drop=True)
        for i in range(len(X)):
            d = deltas.iloc[i].sort_values(ascending=False)
            d = d[d > float(min_delta)].head(int(top))
            for rank, (feat, delta) in enumerate(d.items(), start=1):
                rows.append({"row": i, "rank": rank, "feature": feat, "value": values.at[i, feat],
                             "reference": self.reference_[feat], "delta": float(delta), "risk": float(risk[i])})
        reasons = pd.DataFrame(rows, columns=["row", "rank", "feature", "value", "reference", "delta", "risk"])
        return pd.Series(risk, index=X.index, name="risk"), reasons


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def calibration_table(y, p, *, bins: int = 10) -> pd.DataFrame:
    """Observed churn rate against mean predicted risk, in equal-count bins of the prediction.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin``, ``n``, ``predicted`` (mean predicted), ``observed`` (share of
        positives), ``lo``/``hi`` (bin's smallest and largest prediction).
    """
    y = np.asarray(y).astype(float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return pd.DataFrame(columns=["bin", "n", "predicted", "observed", "lo", "hi"])
    order = np.argsort(p, kind="mergesort")
    groups = np.array_split(order, min(int(bins), len(p)))
    rows = []
    for b, idx in enumerate(groups):
        if len(idx) == 0:
            continue
        rows.append({"bin": b + 1, "n": int(len(idx)), "predicted": float(p[idx].mean()),
                     "observed": float(y[idx].mean()), "lo": float(p[idx].min()), "hi": float(p[idx].max())})
    return pd.DataFrame(rows)


def classification_metrics(y, p, *, bins: int = 10) -> dict:
    """Discrimination and calibration of predicted probabilities.

    Returns
    -------
    dict
        ``n``, ``positives``, ``base_rate``, ``mean_predicted``, ``roc_auc``, ``pr_auc`` (average
        precision), ``brier``, ``log_loss``, ``ece``.

    Notes
    -----
    ``ece`` (expected calibration error) = ``sum_b (n_b / n) |observed_b - predicted_b|`` over
    ``bins`` equal-count bins of the prediction (:func:`calibration_table`). ROC and PR AUC are
    NaN when ``y`` holds one class.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    two = np.unique(y).size == 2
    cal = calibration_table(y, p, bins=bins)
    ece = float((cal["n"] * (cal["observed"] - cal["predicted"]).abs()).sum() / max(len(y), 1)) if len(cal) else np.nan
    return {
        "n": int(len(y)), "positives": int(y.sum()), "base_rate": float(y.mean()) if len(y) else np.nan,
        "mean_predicted": float(p.mean()) if len(p) else np.nan,
        "roc_auc": float(roc_auc_score(y, p)) if two else np.nan,
        "pr_auc": float(average_precision_score(y, p)) if two else np.nan,
        "brier": float(brier_score_loss(y, p)) if len(y) else np.nan,
        "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])) if len(y) else np.nan,
        "ece": ece,
    }


# ---------------------------------------------------------------------------------------------
# Time-based validation on a database
# ---------------------------------------------------------------------------------------------


def time_split(snapshots: Sequence[dt.date], *, test_months: int = 3, horizon_days: int = 90):
    """Split monthly snapshots into earlier training and later test snapshots.

    Returns
    -------
    (list of date, list of date)
        ``train``: snapshots whose label window ends before the first test snapshot
        (``S + horizon_days <= first test``), so no training label looks into the test period;
        ``test``: the last ``test_months`` snapshots.
    """
    snaps = sorted(snapshots)
    if len(snaps) < int(test_months) + 2:
        raise ValueError(f"need at least {int(test_months) + 2} labelled monthly snapshots, have {len(snaps)}")
    test = snaps[-int(test_months):]
    cut = pd.Timestamp(test[0])
    train = [s for s in snaps[:-int(test_months)] if pd.Timestamp(s) + pd.Timedelta(days=int(horizon_days)) <= cut]
    if len(train) < 1:
        raise ValueError("no training snapshot ends its label window before the test period")
    return train, test


@dataclass(frozen=True)
class ChurnRiskFit:
    """A churn-risk model fitted on a database, with its time-based validation.

    Attributes
    ----------
    model : ChurnRiskModel
        Gradient boosting refitted on every labelled snapshot (the deployed model).
    baseline : ChurnRiskModel
        The logistic baseline as validated (fitted on the training snapshots only).
    metrics : dict
        ``{"hgb": {...}, "logistic": {...}}`` on the test snapshots (:func:`classification_metrics`)
        of models fitted on the training snapshots only.
    calibration : pandas.DataFrame
        Calibration table of the gradient boosting model on the test snapshots (``model`` column
        says which, both models stacked).
    train_snapshots, test_snapshots : list of date
    window : tuple of date
        First snapshot and the last day of data any label used (last snapshot + horizon - 1).
    horizon_days : int
    sample : float
        Share of customers used.
    n_rows : dict
        Rows in ``train``, ``test`` and ``all``.
    """

    model: ChurnRiskModel
    baseline: ChurnRiskModel
    metrics: dict
    calibration: pd.DataFrame
    train_snapshots: list
    test_snapshots: list
    window: tuple
    horizon_days: int
    sample: float
    n_rows: dict = field(default_factory=dict)


def fit_churn_risk(con, *, horizon_days: int = 90, test_months: int = 3, max_snapshots: int | None = 24,
                   max_rows: int = 400_000, sample: float | None = None, hgb_params: dict | None = None,
                   progress: Callable[[str], None] | None = None) -> ChurnRiskFit:
    """Time-validate and fit the churn-risk models on a database's monthly snapshots.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    horizon_days : int, default 90
    test_months : int, default 3
        The latest labelled snapshots held out for the test.
    max_snapshots : int or None, default 24
        Use at most this many latest labelled snapshots.
    max_rows : int, default 400,000
        When ``sample`` is None, sample customers so that the stacked snapshots hold about this
        many rows (large databases; the share used is reported in ``sample``).
    sample : float, optional
        Share of customers to use (overrides ``max_rows``).
    hgb_params : dict, optional
        Extra :class:`ChurnRiskModel` parameters for the gradient boosting model.
    progress : callable, optional
        ``progress(label)`` at each step.

    Returns
    -------
    ChurnRiskFit

    Notes
    -----
    Validation is by time: models are fitted on the training snapshots (labels complete before
    the first test snapshot) and scored on the later test snapshots; the reported metrics are
    those. The deployed gradient boosting model is then refitted on all the snapshots.
    """
    say = progress or (lambda label: None)
    snaps = F.monthly_snapshots(con, horizon_days=horizon_days)
    if max_snapshots is not None:
        snaps = snaps[-int(max_snapshots):]
    train_s, test_s = time_split(snaps, test_months=test_months, horizon_days=horizon_days)
    used = sorted(set(train_s) | set(test_s))
    if sample is None:
        active = con.execute("SELECT count(DISTINCT customer_id) FROM subscriptions WHERE end_date IS NULL "
                             "OR end_date >= ?", [used[0]]).fetchall()[0][0] or 1
        sample = float(min(1.0, max_rows / max(1, active * len(used))))
        sample = max(sample, 1e-4)
    say(f"features for {len(used)} snapshots (sample {sample:.3f})")
    frame = F.snapshot_frame(con, used, horizon_days=horizon_days, sample=sample)
    if frame.empty:
        raise ValueError("no customers in the snapshots")
    when = pd.to_datetime(frame["as_of"])
    is_train = when.isin(pd.to_datetime(train_s)).to_numpy()
    is_test = when.isin(pd.to_datetime(test_s)).to_numpy()
    X, y = frame[list(F.FEATURES)], frame["churned"].to_numpy()
    metrics, cal, fitted = {}, [], {}
    kinds = {"hgb": dict(kind="hgb", categorical=F.CATEGORICAL, **(hgb_params or {})),
             "logistic": dict(kind="logistic", categorical=F.CATEGORICAL)}
    for name, params in kinds.items():
        say(f"validate {name}")
        m = ChurnRiskModel(**params).fit(X[is_train], y[is_train])
        fitted[name] = m
        p = m.predict_proba(X[is_test])[:, 1]
        metrics[name] = classification_metrics(y[is_test], p)
        c = calibration_table(y[is_test], p)
        c.insert(0, "model", name)
        cal.append(c)
    say("refit on all snapshots")
    model = ChurnRiskModel(**kinds["hgb"]).fit(X, y)
    baseline = fitted["logistic"]
    window = (used[0], (pd.Timestamp(used[-1]) + pd.Timedelta(days=int(horizon_days) - 1)).date())
    return ChurnRiskFit(model=model, baseline=baseline, metrics=metrics,
                        calibration=pd.concat(cal, ignore_index=True), train_snapshots=list(train_s),
                        test_snapshots=list(test_s), window=window, horizon_days=int(horizon_days),
                        sample=float(sample),
                        n_rows={"train": int(is_train.sum()), "test": int(is_test.sum()), "all": int(len(X))})
