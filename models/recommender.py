"""The offer recommender: for a live contact, which offer (if any) to make, and who may grant it.

:func:`recommend` answers the agent desk for one customer on the phone: every offer of the
catalogue with its eligibility and why not (:func:`data.eligibility.offer_eligibility`, the rules
:func:`billing.grant_offer.grant_offer` checks again when the agent grants), whether
the signed-in agent may grant it or needs a supervisor, the expected retention uplift with its
interval (:class:`models.uplift.OfferUpliftModel`), the expected cost, the expected net value, ranked;
and "no offer" when none pays, saying why. :func:`score_contacts` and :func:`choose_offers` are the
same rule over many contacts (a :func:`analytics.discounts.contact_dataset` frame), for evaluation.

The rule (see :func:`score_contacts`): an offer *pays* for a contact when its expected net value is
above zero and offering it this way has paid on past contacts (the uplift model's evidence check).
The recommender never recommends an offer that is not eligible, nor one beyond the agent's tier (it
says a supervisor is needed instead).
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from analytics import discounts
from analytics.discounts import REASONS
from data.eligibility import offer_eligibility
from data.money import format_cents
from models import daily_features
from models import features as F
from models import registry
from models.churn_risk import ChurnRiskModel
from models.uplift import RULES, OfferUpliftModel, pays_mask

__all__ = ["Recommendation", "RecommenderModels", "RecommendError", "RiskAssessment", "recommend", "churn_risk",
           "load_models", "score_contacts", "choose_offers", "OPTION_COLUMNS", "REASON_COLUMNS", "RULES"]

OPTION_COLUMNS = ("rank", "code", "name", "kind", "eligible", "why_not", "eligibility_message", "may_grant",
                  "needs_tier", "has_estimate", "proven", "uplift", "uplift_lo", "uplift_hi", "expected_cost_cents",
                  "value_cents", "net_value_cents", "net_lo_cents", "net_hi_cents", "pays", "status")


class RecommendError(ValueError):
    """A request the recommender cannot answer (unknown customer, reason or agent): ``code`` says which."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RecommenderModels:
    """The fitted models the recommender uses, and where they came from.

    Attributes
    ----------
    uplift : OfferUpliftModel
        Required.
    churn_risk : ChurnRiskModel or None
        Optional: the churn risk and its reasons are shown when present.
    ids : dict
        Kind -> registry model id (empty for models passed in directly).
    notes : tuple of str
        Status messages (e.g. why the churn-risk model is not used).
    """

    uplift: OfferUpliftModel
    churn_risk: ChurnRiskModel | None = None
    ids: dict = field(default_factory=dict)
    notes: tuple = ()


def load_models(con: duckdb.DuckDBPyConnection, *, root=None, max_age_months: int = registry.MAX_AGE_MONTHS,
                warm_up: bool = True) -> RecommenderModels:
    """The newest usable models from the registry.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    root : path, optional
        Registry folder (default: the registry's default).
    max_age_months : int
    warm_up : bool, default True
        Score one customer once before returning (:func:`churn_risk` and :func:`recommend`, results
        discarded), so that the first call at the desk does not pay for starting the native thread
        pools and the first run of each code path (about a third of a first call).

    Raises
    ------
    registry.ModelUnavailable
        When no uplift model was trained, or the newest is stale or incompatible (its status message).
    """
    up = registry.load_latest("uplift", con=con, root=root, max_age_months=max_age_months)
    if up.model is None:
        raise registry.ModelUnavailable(up.status.message)
    ids, notes, churn = {"uplift": up.record.model_id}, [], None
    try:
        ch = registry.load_latest("churn_risk", con=con, root=root, max_age_months=max_age_months)
        if ch.model is not None:
            churn = ch.model
            ids["churn_risk"] = ch.record.model_id
        else:
            notes.append(f"churn risk not shown: {ch.status.message}")
    except registry.ModelUnavailable as exc:
        notes.append(f"churn risk not shown: {exc}")
    models = RecommenderModels(uplift=up.model, churn_risk=churn, ids=ids, notes=tuple(notes))
    if warm_up:
        _warm_up(con, models)
    return models


def _warm_up(con: duckdb.DuckDBPyConnection, models: RecommenderModels) -> None:
    """One risk and one recommendation for the newest subscription's customer, on its first day."""
    first = con.execute("SELECT customer_id, start_date FROM subscriptions "
                        "ORDER BY subscription_id DESC LIMIT 1").fetchall()
    if not first:
        return
    customer_id, day = int(first[0][0]), first[0][1] + dt.timedelta(days=1)
    churn_risk(con, customer_id=customer_id, as_of=day, models=models)
    recommend(con, customer_id=customer_id, reason=REASONS[0], at=dt.datetime.combine(day, dt.time(9)), models=models)


def _as_models(models) -> RecommenderModels:
    if isinstance(models, RecommenderModels):
        return models
    if isinstance(models, OfferUpliftModel):
        return RecommenderModels(uplift=models)
    if isinstance(models, Mapping):
        if "uplift" not in models:
            raise ValueError("models needs an 'uplift' entry")
        return RecommenderModels(uplift=models["uplift"], churn_risk=models.get("churn_risk"))
    raise TypeError("models must be RecommenderModels, a mapping {'uplift': ..., 'churn_risk': ...} or None")


@dataclass(frozen=True)
class Recommendation:
    """The recommender's answer for one contact.

    Attributes
    ----------
    customer_id : int
    reason : str
    is_intent_to_cancel : bool
    at : datetime.datetime
    agent_id, agent_tier : int or None
        The agent asking (None: nobody signed in as an agent; nothing is grantable).
    action : str
        ``"offer"`` (make ``offer_code``), ``"ask_supervisor"`` (an offer pays but needs a higher tier
        than the agent's: ``best_code``), or ``"no_offer"``.
    offer_code : str or None
        The offer this agent should make: eligible, within the agent's tier, paying; else None.
    best_code : str or None
        The best paying offer whatever the tier (None when none pays).
    message : str
        One or two sentences for the agent, saying why.
    churn_risk : float or None
        Probability the customer churns within 90 days (None without a churn-risk model).
    risk_reasons : pandas.DataFrame
        The features raising this customer's risk most (:meth:`ChurnRiskModel.reasons`).
    value_cents : float
        What keeping the customer through the 180-day window is worth (list price x 6 months).
    options : pandas.DataFrame
        One row per catalogue offer, ranked (columns :data:`OPTION_COLUMNS`): ``status`` is
        ``recommended``, ``pays`` (pays, not the first choice), ``needs_supervisor`` (pays, beyond the
        agent's tier), ``unproven`` (pays on this customer's estimate, but offering it by the rule
        has not paid on past contacts), ``does_not_pay``, ``no_estimate`` (too few past grants to
        estimate) or ``not_eligible`` (``why_not`` says why).
    model_ids : dict
    notes : tuple of str
    """

    customer_id: int
    reason: str
    is_intent_to_cancel: bool
    at: dt.datetime
    agent_id: int | None
    agent_tier: int | None
    action: str
    offer_code: str | None
    best_code: str | None
    message: str
    churn_risk: float | None
    risk_reasons: pd.DataFrame
    value_cents: float
    options: pd.DataFrame
    model_ids: dict = field(default_factory=dict)
    notes: tuple = ()

    def as_dict(self) -> dict:
        """A JSON-able summary (options as a list of records)."""
        def clean(v):
            if isinstance(v, (np.floating, float)):
                return None if not np.isfinite(v) else float(v)
            if isinstance(v, (np.integer,)):
                return int(v)
            if isinstance(v, (np.bool_,)):
                return bool(v)
            if v is pd.NA or v is pd.NaT:
                return None
            if isinstance(v, (dt.date, dt.datetime, pd.Timestamp)):
                return v.isoformat()
            return v
        return {
            "customer_id": self.customer_id, "reason": self.reason, "is_intent_to_cancel": self.is_intent_to_cancel,
            "at": self.at.isoformat(), "agent_id": self.agent_id, "agent_tier": self.agent_tier,
            "action": self.action, "offer_code": self.offer_code, "best_code": self.best_code,
            "message": self.message, "churn_risk": clean(self.churn_risk),
            "risk_reasons": [{k: clean(v) for k, v in r.items()} for r in self.risk_reasons.to_dict("records")],
            "value_cents": clean(self.value_cents),
            "options": [{k: clean(v) for k, v in r.items()} for r in self.options.to_dict("records")],
            "model_ids": dict(self.model_ids), "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------
# The rule, over many contacts
# ---------------------------------------------------------------------------------------------


def score_contacts(uplift: OfferUpliftModel, frame: pd.DataFrame, *, offers: pd.DataFrame | None = None,
                   agent_tier: int | None = None, rule: str = "point", require_evidence: bool = True) -> pd.DataFrame:
    """Expected uplift, cost and net value of every offer for every contact.

    Parameters
    ----------
    uplift : OfferUpliftModel
    frame : pandas.DataFrame
        One row per contact: the covariates, ``elig_<code>``, ``cost_<code>`` (expected cost in
        cents) and ``value_cents`` (a :func:`analytics.discounts.contact_dataset` frame, or the one-row
        frame :func:`recommend` builds).
    offers : pandas.DataFrame, optional
        The catalogue (``code``, ``min_tier``); default: the codes of the ``elig_`` columns, tier 1.
    agent_tier : int, optional
        ``may_grant`` = tier >= the offer's ``min_tier``; None: every tier allowed (the business's
        policy, escalating when needed).
    rule : {"point", "lower"}, default "point"
        When an offer pays for this contact: ``point``: its expected net value ``net > 0``;
        ``lower``: even the low end of its interval, ``net_lo > 0`` (more cautious).
    require_evidence : bool, default True
        Only offers whose targeting by ``rule`` paid on the training contacts can pay
        (:meth:`models.uplift.OfferUpliftModel.proven`).

    Returns
    -------
    pandas.DataFrame
        One row per (contact row, offer): ``row``, ``code``, ``eligible``, ``has_estimate``,
        ``proven``, ``uplift``, ``uplift_lo``, ``uplift_hi``, ``expected_cost_cents``, ``value_cents``,
        ``net_value_cents``, ``net_lo_cents``, ``net_hi_cents``, ``pays``, ``may_grant``, ``needs_tier``.

    Notes
    -----
    ``net = uplift x value - cost``, with ``uplift`` the estimated change in the probability of
    still being a customer 180 days later, ``value`` the revenue of keeping the customer through
    that window and ``cost`` the offer's expected cost (both as defined by
    :func:`analytics.discounts.contact_dataset`). The interval of ``net`` is
    ``[uplift_lo x value - cost, uplift_hi x value - cost]``. An offer *pays* for a contact when it
    is eligible, has an estimate, passes the rule and (with ``require_evidence``) is proven.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    codes = [c[len("elig_"):] for c in frame.columns if c.startswith("elig_")]
    tiers = {c: 1 for c in codes}
    if offers is not None:
        tiers.update({str(r.code): int(r.min_tier) for r in offers.itertuples()})
    proven = uplift.proven(rule) if require_evidence else None
    n = len(frame)
    elig = {c: frame[f"elig_{c}"].fillna(False).to_numpy(dtype=bool) for c in codes}
    wanted = [c for c in codes if c in uplift.offers_ and elig[c].any()]
    est = uplift.predict(frame, offers=wanted) if wanted and n else pd.DataFrame(
        columns=["row", "offer", "uplift", "uplift_lo", "uplift_hi"])
    value = pd.to_numeric(frame["value_cents"], errors="coerce").to_numpy(dtype=float)
    columns = ["row", "code", "eligible", "has_estimate", "proven", "uplift", "uplift_lo", "uplift_hi",
               "expected_cost_cents", "value_cents", "net_value_cents", "net_lo_cents", "net_hi_cents", "pays",
               "may_grant", "needs_tier"]
    if not codes:
        return pd.DataFrame(columns=columns)
    # the estimates by offer, as arrays over the rows (one (row, offer) pair per estimate); built as
    # arrays and assembled once: on one live contact, pandas per offer cost more than the arithmetic
    est_rows = est["row"].to_numpy(dtype=np.int64)
    est_offer = est["offer"].to_numpy(dtype=object)
    est_values = {k: est[k].to_numpy(dtype=float) for k in ("uplift", "uplift_lo", "uplift_hi")}
    parts: dict[str, list] = {k: [] for k in columns}
    for c in codes:
        on = est_offer == c
        u, lo, hi = (np.full(n, np.nan) for _ in range(3))
        for arr, k in ((u, "uplift"), (lo, "uplift_lo"), (hi, "uplift_hi")):
            arr[est_rows[on]] = est_values[k][on]
        cost = pd.to_numeric(frame[f"cost_{c}"], errors="coerce").to_numpy(dtype=float) \
            if f"cost_{c}" in frame.columns else np.full(n, np.nan)
        has = np.isfinite(u) & elig[c]
        ok = proven is None or c in proven
        need = tiers.get(c, 1)
        for k, v in (("row", np.arange(n)), ("code", np.full(n, c, dtype=object)), ("eligible", elig[c]),
                     ("has_estimate", has), ("proven", np.full(n, bool(ok and c in uplift.offers_))),
                     ("uplift", np.where(has, u, np.nan)), ("uplift_lo", np.where(has, lo, np.nan)),
                     ("uplift_hi", np.where(has, hi, np.nan)),
                     ("expected_cost_cents", np.where(elig[c], cost, np.nan)), ("value_cents", value),
                     ("net_value_cents", np.where(has, u * value - cost, np.nan)),
                     ("net_lo_cents", np.where(has, lo * value - cost, np.nan)),
                     ("net_hi_cents", np.where(has, hi * value - cost, np.nan)),
                     ("pays", pays_mask(u, lo, value, cost, has, rule) & ok),
                     ("may_grant", np.full(n, agent_tier is None or int(agent_tier) >= need)),
                     ("needs_tier", np.full(n, need, dtype=np.int64))):
            parts[k].append(v)
    return pd.DataFrame({k: np.concatenate(v) for k, v in parts.items()})


def choose_offers(uplift: OfferUpliftModel, frame: pd.DataFrame, *, offers: pd.DataFrame | None = None,
                  agent_tier: int | None = None, rule: str = "point", require_evidence: bool = True) -> pd.Series:
    """The recommender's choice for each contact: an offer code or ``'none'``.

    The paying offer (:func:`score_contacts`) with the largest expected net value among those the
    agent may grant; ``'none'`` when none pays (or none the agent may grant). Same index as ``frame``.
    """
    scored = score_contacts(uplift, frame, offers=offers, agent_tier=agent_tier, rule=rule,
                            require_evidence=require_evidence)
    ok = scored[scored["pays"] & scored["may_grant"]]
    choice = pd.Series("none", index=range(len(frame)), dtype=object)
    if len(ok):
        best = ok.sort_values(["row", "net_value_cents"], ascending=[True, False]).drop_duplicates("row")
        choice.loc[best["row"].to_numpy()] = best["code"].to_numpy()
    choice.index = frame.index
    return choice


# ---------------------------------------------------------------------------------------------
# One live contact
# ---------------------------------------------------------------------------------------------


def _agent(con, agent_login, agent_id):
    if agent_login is not None and agent_id is not None:
        raise ValueError("give agent_login or agent_id, not both")
    if agent_login is not None:
        # logins compare trimmed and lower-case (billing.manage_users.normalize_login)
        rows = con.execute("SELECT user_id, agent_tier, is_active FROM users WHERE lower(login) = ?",
                           [str(agent_login).strip().lower()]).fetchall()
        if not rows:
            raise RecommendError("unknown_agent", f"no user with login {agent_login!r}")
        if not rows[0][2]:
            raise RecommendError("unknown_agent", f"user {agent_login!r} is disabled")
        return int(rows[0][0]), None if rows[0][1] is None else int(rows[0][1])
    if agent_id is not None:
        rows = con.execute("SELECT user_id, agent_tier, is_active FROM users WHERE user_id = ?",
                           [int(agent_id)]).fetchall()
        if not rows:
            raise RecommendError("unknown_agent", f"no user {agent_id}")
        if not rows[0][2]:
            raise RecommendError("unknown_agent", f"user {agent_id} is disabled")
        return int(rows[0][0]), None if rows[0][1] is None else int(rows[0][1])
    return None, None


def _catalogue(con) -> pd.DataFrame:
    return con.execute("SELECT offer_id, code, name, kind, percent_off, credit_cents, cycles, target_plan_id, "
                       "min_tier, is_active FROM offers ORDER BY offer_id").df()


def _target_price(con, plan_id, at: dt.datetime) -> float:
    if plan_id is None or pd.isna(plan_id):
        return np.nan
    month = at.date().replace(day=1)
    rows = con.execute("SELECT max_by(monthly_price_cents, effective_from) FROM plan_prices "
                       "WHERE plan_id = ? AND effective_from <= ?", [int(plan_id), month]).fetchall()
    return np.nan if not rows or rows[0][0] is None else float(rows[0][0])


REASON_COLUMNS = ("rank", "feature", "value", "reference", "delta")


@dataclass(frozen=True)
class RiskAssessment:
    """One customer's 90-day churn risk on a day, with the features raising it most.

    Attributes
    ----------
    customer_id : int
    as_of : datetime.date
        The day scored: features from data strictly before it.
    risk : float or None
        Probability of churning within 90 days; None with ``note`` saying why.
    reasons : pandas.DataFrame
        Columns :data:`REASON_COLUMNS` (:meth:`models.churn_risk.ChurnRiskModel.reasons`).
    model_id : str or None
    note : str or None
    """

    customer_id: int
    as_of: dt.date
    risk: float | None
    reasons: pd.DataFrame
    model_id: str | None = None
    note: str | None = None


def churn_risk(con: duckdb.DuckDBPyConnection, *, customer_id: int, as_of: dt.date, models=None,
               registry_root=None) -> RiskAssessment:
    """The churn risk of one customer on ``as_of`` and its reasons, for the agent desk.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customer_id : int
    as_of : datetime.date
        The day of the call: like every snapshot, only data before that day counts (the same risk
        all day long).
    models : RecommenderModels or mapping, optional
        Default: the newest usable models of the registry (:func:`load_models`).
    registry_root : path, optional

    Returns
    -------
    RiskAssessment
        ``risk`` None with a note when there is no churn-risk model or no subscription serves the
        customer on the day.

    Raises
    ------
    RecommendError
        ``unknown_customer``.

    Notes
    -----
    Risk = :meth:`models.churn_risk.ChurnRiskModel.explain` of
    :func:`models.features.snapshot_features` at ``as_of`` for the customer: the stored features of
    the day when they are current (:func:`models.daily_features.stored_snapshot`, a few
    milliseconds), else computed on a copy of the customer's history
    (:func:`models.features.one_customer_history`). Both give the features of the snapshot of all
    customers.
    """
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        raise TypeError("as_of must be a datetime.date")
    if not con.execute("SELECT 1 FROM customers WHERE customer_id = ?", [int(customer_id)]).fetchall():
        raise RecommendError("unknown_customer", f"no customer {customer_id}")
    if models is None:
        models = load_models(con, root=registry_root)
    models = _as_models(models)
    none = pd.DataFrame(columns=list(REASON_COLUMNS))
    model_id = models.ids.get("churn_risk") if models.ids else None
    if models.churn_risk is None:
        return RiskAssessment(int(customer_id), as_of, None, none, None,
                              "churn risk not shown: no churn-risk model is trained")
    snap = daily_features.stored_snapshot(con, customer_id=int(customer_id), as_of=as_of)
    if snap is None:                      # no current stored day for it: from the customer's history
        with F.one_customer_history(con, int(customer_id), as_of=as_of) as cur:
            snap = F.snapshot_features(cur, as_of=as_of, customer_ids=[int(customer_id)])
    if snap.empty:
        return RiskAssessment(int(customer_id), as_of, None, none, model_id,
                              "churn risk not shown: the customer has no subscription serving today")
    with _threads().limit(limits=1):
        scores, why = models.churn_risk.explain(snap, top=3)
    return RiskAssessment(int(customer_id), as_of, float(scores.iloc[0]),
                          why.drop(columns=["row", "risk"]).reset_index(drop=True), model_id)


@functools.lru_cache(maxsize=1)
def _threads() -> ThreadpoolController:
    """Native thread pools, inspected once (``threadpool_limits`` re-inspects them: ~20 ms a call)."""
    return ThreadpoolController()


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def recommend(con: duckdb.DuckDBPyConnection, *, customer_id: int, reason: str, at: dt.datetime,
              is_intent_to_cancel: bool = False, agent_login: str | None = None, agent_id: int | None = None,
              models=None, wait_seconds: int | None = None, rule: str = "point", require_evidence: bool = True,
              with_risk: bool = False, registry_root=None) -> Recommendation:
    """Rank the offers for a customer on the phone, and say which one (if any) to make.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customer_id : int
    reason : str
        The contact's reason code (``bill_higher_than_expected``, ``billing_error``, ...).
    at : datetime.datetime
        The contact's instant (UTC).
    is_intent_to_cancel : bool, default False
    agent_login, agent_id : optional
        The agent asking (one of them); without either nothing is marked grantable.
    models : RecommenderModels or mapping, optional
        Default: the newest usable models of the registry (:func:`load_models`).
    wait_seconds : int, optional
        The contact's wait, when known.
    rule : {"point", "lower"}, default "point"
        See :func:`score_contacts`.
    require_evidence : bool, default True
        Only offers whose targeting paid on past contacts (see :func:`score_contacts`).
    with_risk : bool, default False
        Also score the customer's 90-day churn risk and its reasons (:func:`churn_risk` on the day
        of ``at``; needs a churn-risk model). The agent desk asks for it separately.
    registry_root : path, optional
        Registry folder when ``models`` is None.

    Returns
    -------
    Recommendation

    Raises
    ------
    RecommendError
        ``unknown_customer``, ``unknown_reason`` or ``unknown_agent``.
    registry.ModelUnavailable
        When ``models`` is None and no usable uplift model is in the registry.

    Notes
    -----
    Eligibility is :func:`data.eligibility.offer_eligibility` at ``at`` (the same check
    :func:`billing.grant_offer.grant_offer` makes); covariates are
    :func:`analytics.discounts.contact_features` at ``at``; the expected cost of an offer and the
    customer's value are those of :func:`analytics.discounts.contact_dataset` (the definitions the
    uplift model was trained and evaluated with). The offer recommended is the paying offer of
    largest expected net value that the agent may grant; when only offers beyond the agent's tier
    pay, the action is ``ask_supervisor``.
    """
    if reason not in REASONS:
        raise RecommendError("unknown_reason", f"unknown reason {reason!r}; one of: {', '.join(REASONS)}")
    if not isinstance(at, dt.datetime):
        raise TypeError("at must be a datetime.datetime")
    if at.tzinfo is not None:
        at = at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    rows = con.execute("SELECT customer_id, currency FROM customers WHERE customer_id = ?", [int(customer_id)]).fetchall()
    if not rows:
        raise RecommendError("unknown_customer", f"no customer {customer_id}")
    currency = rows[0][1] or "EUR"
    user_id, tier = _agent(con, agent_login, agent_id)
    if models is None:
        models = load_models(con, root=registry_root)
    models = _as_models(models)

    catalogue = _catalogue(con)
    cand = pd.DataFrame({"customer_id": int(customer_id), "offer_id": catalogue["offer_id"].astype(int),
                         "at": at, "reason": reason, "agent_tier": tier})
    contact = pd.DataFrame([{"customer_id": int(customer_id), "contacted_at": at, "reason": reason,
                             "is_intent_to_cancel": bool(is_intent_to_cancel), "wait_seconds": wait_seconds}])
    # the customer's largest history tables read once, then every query on them
    with discounts.one_customer(con, int(customer_id)) as cur:
        elig = offer_eligibility(cur, cand)
        feats = discounts.contact_features(cur, contact).reset_index(drop=True)
    price = pd.to_numeric(feats["monthly_price_cents"], errors="coerce").to_numpy(dtype=float)
    value_months = discounts.HORIZON_DAYS / 30.0
    offer_columns = {}
    for i, o in catalogue.iterrows():
        code = o["code"]
        e = elig.iloc[i]
        offer_columns[f"elig_{code}"] = [bool(e["eligible"])]
        target = _target_price(con, e["target_plan_id"], at) if o["kind"] == "plan_move" else np.nan
        offer_columns[f"cost_{code}"] = discounts.expected_cost(o, price, np.array([target]), value_months)
    offer_columns["value_cents"] = price * value_months
    frame = pd.concat([feats, pd.DataFrame(offer_columns, index=feats.index)], axis=1)
    # one row to predict: one native thread (a pool of OpenMP threads costs more than it saves, and
    # spins against other work on a busy machine)
    with _threads().limit(limits=1):
        scored = score_contacts(models.uplift, frame, offers=catalogue, agent_tier=tier, rule=rule,
                                require_evidence=require_evidence)
    notes = list(models.notes)
    risk, reasons = None, pd.DataFrame(columns=list(REASON_COLUMNS))
    if with_risk and models.churn_risk is not None:
        assessed = churn_risk(con, customer_id=int(customer_id), as_of=at.date(), models=models)
        risk, reasons = assessed.risk, assessed.reasons
        if assessed.note:
            notes.append(assessed.note)

    opts = catalogue[["code", "name", "kind"]].merge(scored.drop(columns=["row", "value_cents"]), on="code")
    opts["why_not"] = elig["why_not"].to_numpy()
    opts["eligibility_message"] = elig["message"].to_numpy()
    # may_grant only means something for an eligible offer; a tier limit never makes it grantable
    opts["may_grant"] = opts["eligible"] & elig["may_grant"].fillna(False).to_numpy(dtype=bool) \
        & (tier is not None)
    opts["value_cents"] = float(frame["value_cents"].iloc[0])
    paying = opts[opts["pays"]].sort_values("net_value_cents", ascending=False)
    grantable = paying[paying["may_grant"]]
    best = paying.iloc[0] if len(paying) else None
    pick = grantable.iloc[0] if len(grantable) else None

    rule_pays = pays_mask(opts["uplift"], opts["uplift_lo"], opts["value_cents"], opts["expected_cost_cents"],
                          opts["has_estimate"], rule)
    opts["status"] = np.select(
        [~opts["eligible"], ~opts["has_estimate"], ~rule_pays, ~opts["pays"], opts["may_grant"]],
        ["not_eligible", "no_estimate", "does_not_pay", "unproven", "pays"], "needs_supervisor")
    if pick is not None:
        opts.loc[opts["code"] == pick["code"], "status"] = "recommended"
    order = opts.assign(_g=np.select([opts["pays"], opts["has_estimate"], opts["eligible"]], [0, 1, 2], 3),
                        _n=opts["net_value_cents"].fillna(-np.inf))
    order = order.sort_values(["_g", "_n", "code"], ascending=[True, False, True]).drop(columns=["_g", "_n"])
    order.insert(0, "rank", np.arange(1, len(order) + 1))
    options = order[list(OPTION_COLUMNS)].reset_index(drop=True)

    def money(c):
        return format_cents(int(round(c)), currency)

    def describe(r):
        return (f"{r['code']}: uplift {_pts(r['uplift'])} [{_pts(r['uplift_lo'])}, {_pts(r['uplift_hi'])}] "
                f"x value {money(r['value_cents'])} - cost {money(r['expected_cost_cents'])} "
                f"= {money(r['net_value_cents'])} expected")

    if pick is not None:
        action, offer_code = "offer", str(pick["code"])
        message = f"Offer {pick['name']} ({describe(pick)})."
        if best is not None and best["code"] != pick["code"]:
            message += f" A tier-{int(best['needs_tier'])} supervisor could grant {best['code']}, worth more."
    elif best is not None:
        action, offer_code = "ask_supervisor", None
        who = "you are not signed in as an agent" if tier is None else f"your tier is {tier}"
        message = (f"{best['name']} pays ({describe(best)}) but needs an agent of tier {int(best['needs_tier'])} "
                   f"and {who}: ask a supervisor.")
    else:
        action, offer_code = "no_offer", None
        eligible = opts[opts["eligible"]]
        estimated = eligible[eligible["has_estimate"]]
        if eligible.empty:
            why = "; ".join(f"{r.code}: {r.why_not}" for r in opts.itertuples())
            message = f"No offer: none is eligible ({why})."
        elif estimated.empty:
            message = ("No offer: the eligible offers (" + ", ".join(eligible["code"]) +
                       ") were granted too rarely to estimate what they do.")
        else:
            top = estimated.sort_values("net_value_cents", ascending=False).iloc[0]
            basis = "even at the low end of its interval" if rule == "lower" else "on its estimate"
            unproven = opts[opts["status"] == "unproven"]
            if len(unproven):
                u = unproven.sort_values("net_value_cents", ascending=False).iloc[0]
                message = (f"No offer: {u['code']} would pay for this customer {basis} ({describe(u)}), but "
                           f"offering it this way has not paid on past contacts (too little evidence yet).")
            else:
                message = (f"No offer: none of the {len(estimated)} eligible offers is expected to pay for itself "
                           f"{basis}; best: {describe(top)}, low end {money(top['net_lo_cents'])}.")
    return Recommendation(
        customer_id=int(customer_id), reason=reason, is_intent_to_cancel=bool(is_intent_to_cancel), at=at,
        agent_id=user_id, agent_tier=tier, action=action, offer_code=offer_code,
        best_code=None if best is None else str(best["code"]), message=message, churn_risk=risk,
        risk_reasons=reasons.reset_index(drop=True), value_cents=float(frame["value_cents"].iloc[0]),
        options=options, model_ids=dict(models.ids), notes=tuple(notes))
