"""Doubly robust values of treatment-assignment policies, and helpers that build policies.

A policy assigns one arm (the control or a treatment level) to each unit, given as a
``pandas.Series`` on the fitted frame's index or an array in its row order. Its value is
estimated off-policy from a fitted :class:`analytics.effects.EffectEstimator`, optionally as a
net value: per-unit value of the outcome minus a per-unit, per-arm cost. Nothing here knows
what the units, arms or costs are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

from analytics.effects import z_value

__all__ = [
    "PolicyValue",
    "always",
    "always_control",
    "budget_policy",
    "compare_policies",
    "current_practice_value",
    "expected_net_gain",
    "observed_policy",
    "policy_value",
    "targeted_policy",
]


@dataclass(frozen=True)
class PolicyValue:
    """Estimated value of one policy (means per unit of the analysis sample).

    Attributes
    ----------
    value, se, lo, hi : float
        Net value per unit (``benefit - cost``), its standard error and interval.
    n : int
        Units the mean is over.
    outcome : float
        Mean outcome under the policy (for a 0/1 outcome: the share with the outcome).
    benefit : float
        Mean of per-unit value times outcome.
    cost : float
        Mean cost of the arms the policy assigns.
    shares : dict
        Arm -> share of units the policy assigns to it.
    method : str
        ``"dr"`` (doubly robust, off-policy) or ``"observed"`` (empirical mean of current practice).
    """

    value: float
    se: float
    lo: float
    hi: float
    n: int
    outcome: float
    benefit: float
    cost: float
    shares: dict = field(default_factory=dict)
    method: str = "dr"


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def _check_fitted(effects):
    for attr in ("pseudo_outcomes_", "in_sample_", "arms_", "control_", "treatment_", "outcome_"):
        if not hasattr(effects, attr):
            raise NotFittedError("effects must be a fitted EffectEstimator (missing " + attr + ")")


def _align(x, index, what):
    """A Series reindexed to ``index`` (must cover it), or an array of the same length."""
    if isinstance(x, pd.Series):
        if not x.index.equals(index):
            if not index.isin(x.index).all():
                raise ValueError(f"{what} does not cover every unit of the fitted frame")
            x = x.reindex(index)
        return x.to_numpy()
    arr = np.asarray(x)
    if arr.ndim != 1 or len(arr) != len(index):
        raise ValueError(f"{what} must have one entry per unit ({len(index)}), got shape {arr.shape}")
    return arr


def _codes(policy, index, arms, what="policy"):
    labels = _align(policy, index, what)
    codes = pd.Categorical(labels, categories=arms).codes.astype(int)
    if (codes < 0).any():
        unknown = sorted({str(v) for v in pd.unique(labels[codes < 0])})
        raise ValueError(f"{what} assigns unknown arms {unknown}; arms are {[str(a) for a in arms]}")
    return codes


def _unit_values(value, index):
    if value is None:
        return np.ones(len(index))
    if np.isscalar(value):
        return np.full(len(index), float(value))
    v = _align(value, index, "value").astype(float)
    if np.isnan(v).any():
        raise ValueError("value has missing entries")
    return v


def _arm_matrix(x, index, arms, what, default):
    """Per-unit, per-arm numbers: None -> ``default`` everywhere; a mapping/Series by arm ->
    the same for every unit; a DataFrame (units x arms) -> as given. A missing control column
    takes ``default``; a missing treatment column is an error."""
    out = np.full((len(index), len(arms)), float(default))
    if x is None:
        return out
    if isinstance(x, pd.DataFrame):
        if not x.index.equals(index):
            if not index.isin(x.index).all():
                raise ValueError(f"{what} does not cover every unit of the fitted frame")
            x = x.reindex(index)
        get = lambda a: x[a].to_numpy()  # noqa: E731
        have = set(x.columns)
    elif isinstance(x, (Mapping, pd.Series)):
        get = lambda a: x[a]  # noqa: E731
        have = set(x.keys())
    else:
        raise TypeError(f"{what} must be a mapping arm -> number or a DataFrame of units x arms")
    unknown = sorted(str(a) for a in have - set(arms))
    if unknown:
        raise ValueError(f"{what} names unknown arms {unknown}; arms are {[str(a) for a in arms]}")
    missing = [str(a) for a in arms[1:] if a not in have]
    if missing:
        raise ValueError(f"{what} gives no entry for arms {missing}")
    for j, a in enumerate(arms):
        if a in have:
            out[:, j] = get(a)
    if pd.isna(out).any():
        raise ValueError(f"{what} has missing entries")
    return out


def _eligibility(eligible, index, arms):
    mat = _arm_matrix(eligible, index, arms, "eligible", True)
    if not np.isin(mat, [0, 1]).all():
        raise ValueError("eligible must hold booleans")
    mat = mat.astype(bool)
    mat[:, 0] = True  # the control is always allowed
    return mat


def _shares(codes, arms):
    counts = np.bincount(codes, minlength=len(arms)) / max(len(codes), 1)
    return {a: float(c) for a, c in zip(arms, counts)}


def _estimate(terms, outcome, benefit, cost, codes, arms, alpha, method):
    n = len(terms)
    se = float(terms.std(ddof=1) / np.sqrt(n))
    z = z_value(alpha)
    v = float(terms.mean())
    return PolicyValue(value=v, se=se, lo=v - z * se, hi=v + z * se, n=n, outcome=float(outcome.mean()),
                       benefit=float(benefit.mean()), cost=float(cost.mean()),
                       shares=_shares(codes, arms), method=method)


def _dr_terms(effects, policy, value, cost):
    _check_fitted(effects)
    index, arms = effects.pseudo_outcomes_.index, list(effects.arms_)
    keep = effects.in_sample_.to_numpy()
    codes = _codes(policy, index, arms)[keep]
    rows = np.arange(len(codes))
    G = effects.pseudo_outcomes_.to_numpy()[keep][rows, codes]
    v = _unit_values(value, index)[keep]
    c = _arm_matrix(cost, index, arms, "cost", 0.0)[keep][rows, codes]
    return v * G - c, G, v * G, c, codes, arms


def _observed_terms(effects, value, cost):
    _check_fitted(effects)
    index, arms = effects.pseudo_outcomes_.index, list(effects.arms_)
    keep = effects.in_sample_.to_numpy()
    codes = _codes(effects.treatment_, index, arms, "observed treatment")[keep]
    y = effects.outcome_.to_numpy()[keep]
    v = _unit_values(value, index)[keep]
    c = _arm_matrix(cost, index, arms, "cost", 0.0)[keep][np.arange(len(codes)), codes]
    return v * y - c, y, v * y, c, codes, arms


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def policy_value(effects, policy, *, value=None, cost=None, alpha: float = 0.05) -> PolicyValue:
    """Doubly robust off-policy value of a deterministic policy.

    Parameters
    ----------
    effects : EffectEstimator
        Fitted on the units the policy is evaluated on.
    policy : pandas.Series or array-like
        Arm assigned to each unit (labels of the treatment column, control included).
    value : float, pandas.Series or array-like, optional
        Per-unit value of the outcome (e.g. revenue kept if retained). Default 1.
    cost : mapping arm -> float or pandas.DataFrame (units x arms), optional
        Cost of giving each arm to each unit; the control defaults to 0. Default: no costs.
    alpha : float, default 0.05
        The interval has coverage ``1 - alpha``.

    Returns
    -------
    PolicyValue

    Notes
    -----
    With ``pi(x)`` the arm the policy assigns and ``G_a`` the AIPW pseudo-outcome of
    :class:`~analytics.effects.EffectEstimator`, the value of the outcome under the policy is
    ``V = mean(mu_pi(X) + 1[T = pi(X)] (Y - mu_pi(X)) / e_pi(X)) = mean(G_pi)`` and the net
    value is ``mean(value * G_pi - cost_pi)``, with standard error ``sd / sqrt(n)`` of the
    per-unit terms (influence function). Costs are taken as known given unit and arm (use an
    expected cost if the real cost depends on the outcome). The policy must be chosen without
    the units' own outcomes: e.g. from cross-fitted effects (:func:`targeted_policy` on
    ``DRLearner.cate_``). Trimmed units are left out.
    """
    terms, G, b, c, codes, arms = _dr_terms(effects, policy, value, cost)
    return _estimate(terms, G, b, c, codes, arms, alpha, "dr")


def current_practice_value(effects, *, value=None, cost=None, alpha: float = 0.05) -> PolicyValue:
    """Value of the assignment actually observed (current practice), from the data directly.

    Parameters
    ----------
    effects : EffectEstimator
        Fitted; supplies the observed treatment and outcome.
    value, cost, alpha
        As in :func:`policy_value`.

    Returns
    -------
    PolicyValue
        ``method="observed"``.

    Notes
    -----
    The value of current practice is the empirical mean ``mean(value * Y - cost_T)`` over the
    analysis sample; no model is needed, and it includes any randomness in how arms were given.
    The DR value of :func:`observed_policy` estimates the same quantity with more noise.
    """
    terms, y, b, c, codes, arms = _observed_terms(effects, value, cost)
    return _estimate(terms, y, b, c, codes, arms, alpha, "observed")


def compare_policies(effects, policies: Mapping, *, value=None, cost=None, baseline=None,
                     alpha: float = 0.05) -> pd.DataFrame:
    """Values of several policies side by side, with paired differences against a baseline.

    Parameters
    ----------
    effects : EffectEstimator
        Fitted.
    policies : mapping name -> policy
        Each policy as in :func:`policy_value`, or the string ``"observed"`` for current
        practice valued as in :func:`current_practice_value`.
    value, cost, alpha
        As in :func:`policy_value`.
    baseline : str, optional
        Name of the policy the differences are taken against; default the first one.

    Returns
    -------
    pandas.DataFrame
        One row per policy (index ``policy``): ``method``, ``n``, ``outcome``, ``benefit``,
        ``cost``, ``value``, ``se``, ``lo``, ``hi``, ``share_treated`` (share not given the
        control), ``diff``, ``diff_se``, ``diff_lo``, ``diff_hi``; totals over the sample are
        the means times ``n``.

    Notes
    -----
    The difference between two policies is the mean of the per-unit differences of their
    terms, so its interval accounts for both being estimated on the same units.
    """
    if not policies:
        raise ValueError("policies is empty")
    names = list(policies)
    baseline = names[0] if baseline is None else baseline
    if baseline not in policies:
        raise ValueError(f"baseline {baseline!r} is not one of the policies {names}")
    z = z_value(alpha)
    terms, rows = {}, []
    for name in names:
        pol = policies[name]
        if isinstance(pol, str) and pol == "observed":
            t, o, b, c, codes, arms = _observed_terms(effects, value, cost)
            method = "observed"
        else:
            t, o, b, c, codes, arms = _dr_terms(effects, pol, value, cost)
            method = "dr"
        terms[name] = t
        est = _estimate(t, o, b, c, codes, arms, alpha, method)
        rows.append({"policy": name, "method": method, "n": est.n, "outcome": est.outcome,
                     "benefit": est.benefit, "cost": est.cost, "value": est.value, "se": est.se,
                     "lo": est.lo, "hi": est.hi, "share_treated": 1.0 - est.shares[arms[0]]})
    out = pd.DataFrame(rows).set_index("policy")
    diffs = {name: terms[name] - terms[baseline] for name in names}
    out["diff"] = [float(d.mean()) for d in diffs.values()]
    out["diff_se"] = [float(d.std(ddof=1) / np.sqrt(len(d))) for d in diffs.values()]
    out["diff_lo"] = out["diff"] - z * out["diff_se"]
    out["diff_hi"] = out["diff"] + z * out["diff_se"]
    return out


# ---------------------------------------------------------------------------------------------
# Building policies
# ---------------------------------------------------------------------------------------------


def always(effects, arm, *, eligible=None) -> pd.Series:
    """Give ``arm`` to every unit where it is eligible, the control elsewhere.

    Parameters
    ----------
    effects : EffectEstimator
        Fitted; supplies the units and arms.
    arm : object
        An arm label (the control gives "always control").
    eligible : pandas.DataFrame of bool (units x arms), optional
        Which arms each unit may get; missing control column means the control is allowed.

    Returns
    -------
    pandas.Series
        Arm per unit, on the fitted index.
    """
    _check_fitted(effects)
    index, arms = effects.pseudo_outcomes_.index, list(effects.arms_)
    if arm not in arms:
        raise ValueError(f"unknown arm {arm!r}; arms are {[str(a) for a in arms]}")
    ok = _eligibility(eligible, index, arms)[:, arms.index(arm)]
    labels = np.full(len(index), effects.control_, dtype=object)
    labels[ok] = arm
    return pd.Series(labels, index=index, name="arm", dtype=object)


def always_control(effects) -> pd.Series:
    """The policy that gives every unit the control (see :func:`always`)."""
    return always(effects, effects.control_)


def observed_policy(effects) -> pd.Series:
    """The arms actually observed, as a policy (for DR evaluation; see :func:`current_practice_value`)."""
    _check_fitted(effects)
    return effects.treatment_.rename("arm")


def expected_net_gain(cate: pd.DataFrame, *, control, value=None, cost=None, eligible=None) -> pd.DataFrame:
    """Expected net gain of each arm over the control for each unit.

    Parameters
    ----------
    cate : pandas.DataFrame
        Units x treatment levels: estimated effect on the outcome vs the control
        (e.g. ``DRLearner.cate_``).
    control : object
        The control label.
    value, cost, eligible
        As in :func:`policy_value` and :func:`always`, on ``cate``'s index.

    Returns
    -------
    pandas.DataFrame
        Units x arms (control first, always 0); ineligible arms are NaN.

    Notes
    -----
    ``gain_k(x) = value(x) * cate_k(x) - (cost_k(x) - cost_0(x))``.
    """
    index, arms = cate.index, [control, *cate.columns]
    if control in cate.columns:
        raise ValueError("cate must hold treatment levels only, not the control")
    v = _unit_values(value, index)
    c = _arm_matrix(cost, index, arms, "cost", 0.0)
    gain = np.column_stack([np.zeros(len(index)), v[:, None] * cate.to_numpy(dtype=float)]) - (c - c[:, [0]])
    gain[~_eligibility(eligible, index, arms)] = np.nan
    return pd.DataFrame(gain, index=index, columns=pd.Index(arms, name="arm"))


def targeted_policy(cate: pd.DataFrame, *, control, value=None, cost=None, eligible=None) -> pd.Series:
    """Give each unit the eligible arm with the largest expected net gain (control if none > 0).

    Parameters
    ----------
    cate, control, value, cost, eligible
        As in :func:`expected_net_gain`.

    Returns
    -------
    pandas.Series
        Arm per unit, on ``cate``'s index.

    Notes
    -----
    ``pi(x) = argmax_a gain_a(x)`` over eligible arms, with ``gain_0 = 0``; ties go to the
    control. Use cross-fitted effects so the policy can be valued on the same units.
    """
    gain = expected_net_gain(cate, control=control, value=value, cost=cost, eligible=eligible)
    g = np.nan_to_num(gain.to_numpy(), nan=-np.inf)
    best = g.argmax(axis=1)  # first maximum: the control wins ties
    labels = np.asarray(gain.columns, dtype=object)[best]
    return pd.Series(labels, index=cate.index, name="arm", dtype=object)


def budget_policy(cate: pd.DataFrame, *, control, budget: float, value=None, cost=None,
                  eligible=None) -> pd.Series:
    """Targeting under a budget: greedy by net gain per unit of extra cost until it is spent.

    Parameters
    ----------
    cate, control, value, cost, eligible
        As in :func:`expected_net_gain`.
    budget : float
        Largest total extra cost (over giving everyone the control) the policy may spend;
        ``numpy.inf`` gives :func:`targeted_policy`.

    Returns
    -------
    pandas.Series
        Arm per unit, on ``cate``'s index.

    Notes
    -----
    Each unit starts on its best arm that costs no more than the control (usually the control).
    Its other eligible arms form a chain of upgrades along the upper concave hull of
    (extra cost, net gain): each step goes to the arm with the largest extra gain per extra cost,
    so the ratios fall along the chain and the last step reaches the unit's best arm. All units'
    upgrades are taken in decreasing order of that ratio while the budget allows; an upgrade
    that would overrun it is skipped (with the rest of that unit's chain) and the next one is
    tried. With one treatment arm this is "sort by gain per cost, treat until the money runs out".
    """
    if budget is None or np.isnan(budget) or budget < 0:
        raise ValueError(f"budget must be a non-negative number, got {budget!r}")
    gain = expected_net_gain(cate, control=control, value=value, cost=cost, eligible=eligible)
    arms = list(gain.columns)
    g = np.nan_to_num(gain.to_numpy(), nan=-np.inf)
    x = _arm_matrix(cost, cate.index, arms, "cost", 0.0)
    x = x - x[:, [0]]
    n, rows = len(g), np.arange(len(g))
    current = np.where(x <= 0, g, -np.inf).argmax(axis=1)  # free start; the control is free
    steps = []  # (unit, to_arm, ratio, extra_cost, step_number)
    for step in range(len(arms)):
        dx = x - x[rows, current][:, None]
        dg = g - g[rows, current][:, None]
        valid = (dx > 0) & (dg > 0)
        if not valid.any():
            break
        ratio = np.where(valid, dg / np.where(valid, dx, 1.0), -np.inf)
        best = ratio.argmax(axis=1)
        units = np.flatnonzero(valid.any(axis=1))
        steps.append((units, best[units], ratio[units, best[units]], dx[units, best[units]],
                      np.full(units.size, step)))
        current[units] = best[units]
    choice = np.where(x <= 0, g, -np.inf).argmax(axis=1)
    if steps:
        unit, to, ratio, dx, step = (np.concatenate(parts) for parts in zip(*steps))
        if dx.sum() <= budget:
            choice[unit] = to  # later steps overwrite earlier ones: every unit ends on its best arm
        else:
            done = np.zeros(n, dtype=int)  # upgrades applied per unit
            blocked = np.zeros(n, dtype=bool)
            spent = 0.0
            for i in np.lexsort((step, -ratio)):
                u = unit[i]
                if blocked[u] or done[u] != step[i]:
                    continue
                if spent + dx[i] > budget:
                    blocked[u] = True
                    continue
                spent += dx[i]
                choice[u] = to[i]
                done[u] += 1
    labels = np.asarray(arms, dtype=object)[choice]
    return pd.Series(labels, index=cate.index, name="arm", dtype=object)
