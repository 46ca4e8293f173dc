"""Contacts as units of analysis: covariates known at the contact, and the discount-effect dataset.

Two public pieces, shared by the effect analysis (:mod:`analytics.strategies`) and the models
(``models/``, the offer recommender):

- :func:`contact_features` (with :data:`FEATURES`, :data:`CATEGORICAL`): for any frame of contacts,
  historical or live (the agent desk, one row), the covariates known strictly before the contact:
  tenure, plan and price, the last bills and their changes, earlier contacts, grants, billing-error
  credit notes, overdue balance, failed payments, the customer's traits, the contact's reason and
  stated intent. One set-based query (ASOF and window joins) over the customers in the frame.
- :func:`contact_dataset`: one row per contact with 180 days of follow-up before ``as_of``: the
  covariates, the treatment (offer granted at the contact, or ``'none'``), how it was assigned
  (agent or randomized holdout), the outcome (still a customer 180 days later), each offer's
  eligibility at the contact (:func:`billing.eligibility.offer_eligibility` on the database as it
  was just before the contact), each offer's expected cost, the cost of the offer granted and the
  customer's value.

Read-only: temporary tables live in a private cursor and are dropped afterwards.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from data.eligibility import offer_eligibility
from data.db import has_table

__all__ = [
    "CATEGORICAL",
    "ContactDataset",
    "FEATURES",
    "HORIZON_DAYS",
    "NUMERIC",
    "REASONS",
    "TENURE_BANDS",
    "contact_dataset",
    "contact_features",
    "expected_cost",
    "offer_catalogue",
    "one_customer",
    "tenure_band",
]

HORIZON_DAYS = 180
DAYS_PER_MONTH = 30.4375

# Tenure bands in whole months since signup (label, lowest month, highest month or None).
TENURE_BANDS = (("under 6 months", 0, 5), ("6-11 months", 6, 11), ("12-23 months", 12, 23),
                ("2-4 years", 24, 59), ("5 years or more", 60, None))

# Covariates of a contact, all known strictly before it (see contact_features for definitions).
NUMERIC = [
    "tenure_months", "plan_rank", "monthly_price_cents", "last_bill_cents", "bill_change_cents",
    "bill_change_pct", "is_discount_ended", "is_price_rise", "prior_contacts_90d",
    "prior_unresolved_90d", "prior_intent_90d", "prior_grants_12m", "prior_grants",
    "billing_error_credits", "overdue_cents", "failed_payments_90d", "wait_minutes",
    "is_autopay", "is_paperless", "is_intent_to_cancel",
]
CATEGORICAL = ["segment", "region", "channel", "reason", "tenure_band"]
FEATURES = NUMERIC + CATEGORICAL

# Contact reason codes (schema contacts.reason), in the schema's order.
REASONS = ("bill_higher_than_expected", "billing_error", "bill_not_understood", "wants_cheaper_plan",
           "service_issue", "cancel_request")


def tenure_band(months) -> pd.Series | str:
    """Label of the tenure band (:data:`TENURE_BANDS`) of whole months since signup."""
    def one(m):
        if m is None or pd.isna(m):
            return None
        m = int(m)
        for label, lo, hi in TENURE_BANDS:
            if m >= lo and (hi is None or m <= hi):
                return label
        return TENURE_BANDS[0][0]
    if np.isscalar(months) or months is None:
        return one(months)
    s = pd.Series(months)
    return s.map(one).astype(object)


# ---------------------------------------------------------------------------------------------
# Covariates at the contact
# ---------------------------------------------------------------------------------------------

# Each query below has the grain "one row per input contact" ("row"), or fewer rows when there is
# nothing to count (missing rows mean 0 / unknown). They read the registered frame _cf_cand
# (row, customer_id, at, at_date, at_month, ...) and read the history tables only for the customers
# in it (semi-join), so a single live contact costs a few milliseconds. Several small queries rather
# than one with many CTEs: binding a large statement alone costs more than running these on one row.
_BASE_SQL = """
WITH serving AS (
    -- the subscription serving the customer just before the contact: started by its day and not
    -- ended before the day before it; one started before the day wins (a plan move made at the
    -- contact ends the old subscription the day before and starts the new one on the day)
    SELECT c."row", c.at_month, s.plan_id
    FROM _cf_cand c
    JOIN subscriptions s ON s.customer_id = c.customer_id AND s.start_date <= c.at_date
     AND (s.end_date IS NULL OR s.end_date >= c.at_date - 1)
    QUALIFY row_number() OVER (PARTITION BY c."row"
                               ORDER BY (s.start_date < c.at_date) DESC, s.start_date DESC,
                                        s.subscription_id DESC) = 1
),
final AS (
    SELECT c."row", date_diff('day', cu.signup_date, c.at_date) AS tenure_days,
           date_diff('month', cu.signup_date, c.at_date)
               - CASE WHEN day(c.at_date) < day(cu.signup_date) THEN 1 ELSE 0 END AS tenure_whole_months,
           cu.segment, cu.region, cu.channel, cu.is_autopay, cu.is_paperless,
           p.rank AS plan_rank, pp.monthly_price_cents
    FROM _cf_cand c
    LEFT JOIN customers cu ON cu.customer_id = c.customer_id
    LEFT JOIN serving s ON s."row" = c."row"
    LEFT JOIN plans p ON p.plan_id = s.plan_id
    ASOF LEFT JOIN plan_prices pp ON pp.plan_id = s.plan_id AND s.at_month >= pp.effective_from
)
SELECT * FROM final
"""

_BILL_SQL = """
WITH bills AS (
    -- one row per customer and billed period: what the customer was asked to pay for it
    SELECT customer_id, period_start, CAST(max(issued_on) AS TIMESTAMP) AS known_at,
           sum(total_cents) AS total_cents, sum(discount_cents) AS discount_cents,
           arg_max(plan_id, subscription_id) AS plan_id,
           CAST(period_start - INTERVAL 1 MONTH AS DATE) AS month_before
    FROM invoices
    WHERE status = 'finalized' AND customer_id IN (SELECT customer_id FROM _cf_cand)
    GROUP BY customer_id, period_start
),
bill_seq AS (
    -- with the plan's price for the period and for the month before, and the bill before
    SELECT b.customer_id, b.known_at, b.total_cents, b.discount_cents,
           p1.monthly_price_cents AS price_cents, p0.monthly_price_cents AS price_before_cents,
           lag(b.total_cents) OVER w AS prev_total_cents,
           lag(b.discount_cents) OVER w AS prev_discount_cents
    FROM bills b
    ASOF LEFT JOIN plan_prices p1 ON p1.plan_id = b.plan_id AND b.period_start >= p1.effective_from
    ASOF LEFT JOIN plan_prices p0 ON p0.plan_id = b.plan_id AND b.month_before >= p0.effective_from
    WINDOW w AS (PARTITION BY b.customer_id ORDER BY b.period_start)
),
final AS (
    SELECT c."row", b.total_cents AS last_bill_cents,
           b.total_cents - b.prev_total_cents AS bill_change_cents,
           CASE WHEN b.prev_total_cents > 0
                THEN (b.total_cents - b.prev_total_cents) / CAST(b.prev_total_cents AS DOUBLE) END
               AS bill_change_pct,
           coalesce(b.prev_discount_cents > b.discount_cents, FALSE) AS is_discount_ended,
           coalesce(b.price_cents > b.price_before_cents, FALSE) AS is_price_rise
    FROM _cf_cand c
    ASOF JOIN bill_seq b ON c.customer_id = b.customer_id AND c."at" > b.known_at
)
SELECT * FROM final
"""

_COUNTS_SQL = """
WITH events AS (
    -- earlier contacts (90 days), grants (ever), billing-error credit notes (ever) and failed
    -- payments (90 days) of the customers, as (customer, instant, kind)
    SELECT customer_id, contacted_at AS t,
           CASE WHEN resolution = 'unresolved' THEN 2 ELSE 1 END
               + CASE WHEN is_intent_to_cancel THEN 10 ELSE 0 END AS kind
    FROM contacts WHERE customer_id IN (SELECT customer_id FROM _cf_cand)
    UNION ALL
    SELECT customer_id, granted_at, 100 FROM offer_grants
    WHERE customer_id IN (SELECT customer_id FROM _cf_cand)
    UNION ALL
    SELECT customer_id, issued_at, 200 FROM credit_notes
    WHERE reason = 'billing_error' AND customer_id IN (SELECT customer_id FROM _cf_cand)
    UNION ALL
    SELECT customer_id, received_at, 300 FROM payments
    WHERE status = 'failed' AND customer_id IN (SELECT customer_id FROM _cf_cand)
),
final AS (
    SELECT c."row",
           count(*) FILTER (WHERE e.kind < 100 AND e.t >= c."at" - INTERVAL 90 DAY) AS prior_contacts_90d,
           count(*) FILTER (WHERE e.kind IN (2, 12) AND e.t >= c."at" - INTERVAL 90 DAY) AS prior_unresolved_90d,
           count(*) FILTER (WHERE e.kind IN (11, 12) AND e.t >= c."at" - INTERVAL 90 DAY) AS prior_intent_90d,
           count(*) FILTER (WHERE e.kind = 100 AND e.t >= c."at" - INTERVAL 12 MONTH) AS prior_grants_12m,
           count(*) FILTER (WHERE e.kind = 100) AS prior_grants,
           count(*) FILTER (WHERE e.kind = 200) AS billing_error_credits,
           count(*) FILTER (WHERE e.kind = 300 AND e.t >= c."at" - INTERVAL 90 DAY) AS failed_payments_90d
    FROM _cf_cand c
    JOIN events e ON e.customer_id = c.customer_id AND e.t < c."at"
    GROUP BY c."row"
)
SELECT * FROM final
"""

_OVERDUE_SQL = """
WITH money_events AS (
    -- bills count from the day after their due date, credit notes and settled payments when made
    SELECT customer_id, CAST(due_on + INTERVAL 1 DAY AS TIMESTAMP) AS t, total_cents AS amount
    FROM invoices
    WHERE status = 'finalized' AND customer_id IN (SELECT customer_id FROM _cf_cand)
    UNION ALL
    SELECT customer_id, issued_at, -total_cents
    FROM credit_notes WHERE customer_id IN (SELECT customer_id FROM _cf_cand)
    UNION ALL
    SELECT customer_id, received_at, -amount_cents
    FROM payments WHERE status = 'settled' AND customer_id IN (SELECT customer_id FROM _cf_cand)
),
owed AS (
    -- payments settle the oldest bills first, so the running sum floored at zero is what is overdue
    SELECT customer_id, t,
           sum(amount) OVER (PARTITION BY customer_id ORDER BY t
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_cents
    FROM money_events
),
final AS (
    SELECT c."row", greatest(o.running_cents, 0) AS overdue_cents
    FROM _cf_cand c
    ASOF JOIN owed o ON c.customer_id = o.customer_id AND c."at" > o.t
)
SELECT * FROM final
"""

_FEATURE_QUERIES = (_BASE_SQL, _BILL_SQL, _COUNTS_SQL, _OVERDUE_SQL)
# The same four as one statement, for one customer's contact (a quarter less time than four: each is
# mostly planning); for many contacts the four apart are cheaper than joining their results.
_ONE_STATEMENT_SQL = ("SELECT * FROM (" + _BASE_SQL + ") q0 "
                      + " ".join(f'LEFT JOIN ({q}) q{i} USING ("row")' for i, q in enumerate(_FEATURE_QUERIES) if i))


def _features_input(contacts: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("customer_id", "contacted_at") if c not in contacts.columns]
    if missing:
        raise ValueError(f"contacts need columns: {', '.join(missing)}")
    n = len(contacts)

    def col(name, default=None):
        if name in contacts.columns:
            return contacts[name].reset_index(drop=True)
        return pd.Series([default] * n, dtype=object)

    at = pd.to_datetime(col("contacted_at"))
    if getattr(at.dt, "tz", None) is not None:
        at = at.dt.tz_convert("UTC").dt.tz_localize(None)
    if at.isna().any():
        raise ValueError(f"contacted_at is missing in {int(at.isna().sum())} rows")
    cid = pd.array(col("customer_id"), dtype="Int64")
    if pd.isna(cid).any():
        raise ValueError(f"customer_id is missing in {int(pd.isna(cid).sum())} rows")
    return pd.DataFrame({
        "row": np.arange(n, dtype=np.int64),
        "customer_id": cid,
        "at": at.astype("datetime64[us]"),
        "reason": col("reason").astype("string"),
        "is_intent_to_cancel": col("is_intent_to_cancel").astype("boolean").fillna(False),
        "wait_seconds": pd.to_numeric(col("wait_seconds"), errors="coerce").astype("Float64"),
    })


_CAND_VIEW = """
CREATE OR REPLACE TEMP VIEW _cf_cand AS
SELECT "row", customer_id, "at", CAST("at" AS DATE) AS at_date,
       CAST(date_trunc('month', "at") AS DATE) AS at_month
FROM _cf_in
"""
_FLOATS = ("tenure_whole_months", "plan_rank", "monthly_price_cents", "last_bill_cents", "bill_change_cents",
           "bill_change_pct")
_COUNTS = ("prior_contacts_90d", "prior_unresolved_90d", "prior_intent_90d", "prior_grants_12m",
           "prior_grants", "billing_error_credits", "failed_payments_90d", "overdue_cents")
_FLAGS = ("is_discount_ended", "is_price_rise", "is_autopay", "is_paperless")
_TEXTS = ("segment", "region", "channel")


def _run_feature_queries(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> pd.DataFrame:
    """Run the feature queries on a private cursor and assemble their columns by input row."""
    n = len(frame)
    got: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scoped = _SCOPES.get(id(con))
    if scoped is not None and set(frame["customer_id"].tolist()) != {scoped}:
        raise ValueError(f"this cursor holds the history of customer {scoped} only (analytics.discounts.one_customer)")
    # the one-customer cursor is private already (and its copies are invisible to another cursor)
    cur = con if scoped is not None else con.cursor()
    try:
        cur.register("_cf_in", frame[["row", "customer_id", "at"]])
        cur.execute(_CAND_VIEW)
        for sql in (_ONE_STATEMENT_SQL,) if scoped is not None else _FEATURE_QUERIES:
            part = cur.execute(sql).fetchnumpy()
            rows = np.asarray(part.pop("row"), dtype=np.int64)
            for name, values in part.items():
                got[name] = (rows, values)
        cur.execute("DROP VIEW IF EXISTS _cf_cand")
        cur.unregister("_cf_in")
    finally:
        if cur is not con:
            cur.close()

    def column(name, default, dtype):
        out = np.full(n, default, dtype=dtype)
        if name in got:
            rows, values = got[name]
            if np.ma.isMaskedArray(values):
                keep = ~np.ma.getmaskarray(values)
                rows, values = rows[keep], np.ma.getdata(values)[keep]
            out[rows] = values
        return out

    cols = {name: column(name, np.nan, float) for name in _FLOATS}
    cols["tenure_months"] = column("tenure_days", np.nan, float) / DAYS_PER_MONTH
    cols.update({name: column(name, 0, np.int64) for name in _COUNTS if name != "overdue_cents"})
    cols["overdue_cents"] = column("overdue_cents", 0.0, float)
    cols.update({name: column(name, False, bool) for name in _FLAGS})
    cols.update({name: column(name, None, object) for name in _TEXTS})
    cols["wait_minutes"] = frame["wait_seconds"].to_numpy(dtype=float, na_value=np.nan) / 60.0
    cols["is_intent_to_cancel"] = frame["is_intent_to_cancel"].to_numpy(dtype=bool)
    reason = frame["reason"].astype(object)
    cols["reason"] = reason.where(reason.notna(), None).to_numpy(dtype=object)
    cols["tenure_band"] = np.array([tenure_band(m) for m in cols["tenure_whole_months"]], dtype=object)
    return pd.DataFrame(cols)


def contact_features(con: duckdb.DuckDBPyConnection, contacts: pd.DataFrame) -> pd.DataFrame:
    """Covariates of each contact known strictly before it, one set-based query.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    contacts : pandas.DataFrame
        One row per contact: ``customer_id``, ``contacted_at`` (timestamp, naive UTC or aware),
        ``reason``, ``is_intent_to_cancel``; optional ``wait_seconds`` (and ``contact_id``, passed
        through). Live contacts need not be in the database.

    Returns
    -------
    pandas.DataFrame
        One row per input row, same index and order: the columns of :data:`FEATURES` plus
        ``tenure_whole_months`` (and ``contact_id`` when given). Categorical columns
        (:data:`CATEGORICAL`) are strings; flags booleans; the rest numbers (NaN where unknown,
        e.g. no bill yet).

    Raises
    ------
    ValueError
        When ``customer_id`` or ``contacted_at`` is missing (a caller's bug).

    Notes
    -----
    With ``t`` the contact's instant and ``d`` its day, every fact counts only if it happened
    before ``t`` (bills: issued on a day before ``t``):

    - ``tenure_months``: days from ``customers.signup_date`` to ``d`` / 30.4375;
      ``tenure_band`` the :data:`TENURE_BANDS` label of whole calendar months;
    - ``plan_rank``, ``monthly_price_cents``: the subscription serving the customer just before
      the contact (one that started before ``d`` and did not end before ``d - 1``: a plan move made
      at the contact is not seen) and its list price (tax excluded) for the month of ``d``;
    - ``last_bill_cents``: total of the customer's finalized invoices for the latest period issued
      before ``t``; ``bill_change_cents`` / ``bill_change_pct``: its change from the period before
      (bill shock, absolute and relative); ``is_discount_ended``: the discount on the last bill is
      smaller than on the one before; ``is_price_rise``: the last bill's plan cost more for that
      period than for the month before;
    - ``prior_contacts_90d``, ``prior_unresolved_90d``, ``prior_intent_90d``: earlier contacts in
      the 90 days before ``t`` (all, left unresolved, with a stated intent to cancel);
    - ``prior_grants_12m``, ``prior_grants``: offers granted in the 12 months before ``t``, ever;
    - ``billing_error_credits``: credit notes with reason ``billing_error`` issued before ``t``;
    - ``overdue_cents``: finalized invoice totals past their due date, less credit notes and
      settled payments before ``t``, floored at 0 (payments settle the oldest bills first);
    - ``failed_payments_90d``: failed payment attempts in the 90 days before ``t``;
    - ``wait_minutes``: the contact's wait (``wait_seconds`` / 60), NaN when not given;
    - the customer's ``segment``, ``region``, acquisition ``channel``, ``is_autopay``,
      ``is_paperless`` (as recorded now: the schema keeps no history of them), and the
      contact's ``reason`` and ``is_intent_to_cancel``.

    History tables are read only for the customers of the frame, so one live contact costs a few
    milliseconds on the demo world; all historical contacts run in one pass.
    """
    if not isinstance(contacts, pd.DataFrame):
        raise TypeError(f"contacts must be a DataFrame, got {type(contacts).__name__}")
    frame = _features_input(contacts)
    cols = ["tenure_whole_months", *FEATURES]
    if frame.empty:
        out = pd.DataFrame({c: pd.Series(dtype=object) for c in cols}, index=contacts.index)
    else:
        out = _run_feature_queries(con, frame)[cols]
        out.index = contacts.index
    if "contact_id" in contacts.columns:
        out.insert(0, "contact_id", contacts["contact_id"].to_numpy())
    return out


# The history tables one_customer copies: the large ones that contact_features and data.eligibility
# read more than once (invoices three times, payments twice). Copying a table read once only adds a
# statement (measured on the 1,000,000-customer world: copying all seven per-customer tables saved
# nothing, copying these two saved about 15 % of a recommendation's CPU).
CUSTOMER_TABLES = ("invoices", "payments")


# id of each open one_customer cursor -> its customer (contact_features runs on such a cursor itself)
_SCOPES: dict[int, int] = {}


def _quoted_database(cur) -> str:
    """The connection's own catalog, quoted ("main.x" alone would find a temporary shadow ``x``)."""
    return '"' + str(cur.execute("SELECT current_database()").fetchall()[0][0]).replace('"', '""') + '"'


@contextlib.contextmanager
def one_customer(con: duckdb.DuckDBPyConnection, customer_id: int) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private cursor on which the largest history tables hold one customer's rows only.

    For a live contact: :func:`contact_features` and :func:`data.eligibility.offer_eligibility` for
    that customer, run on this cursor, read the customer's invoices and payments once (here)
    instead of scanning those tables in every query, with the same results.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customer_id : int

    Yields
    ------
    duckdb.DuckDBPyConnection
        A cursor of ``con`` on which each table of :data:`CUSTOMER_TABLES` is a temporary copy of
        the customer's rows (same name and columns, so it shadows the stored table); closed, with
        its copies, on exit.

    Notes
    -----
    The history tables have no index on ``customer_id`` (they are written in billing and time
    order), so every query filtering them by customer scans them; the copy's constant filter
    (``customer_id = ?``) lets DuckDB skip the row groups whose min/max exclude the customer
    (about a third of the invoices' row groups remain: one per billed month). Only queries about
    this customer may use the cursor: another customer has no invoices or payments on it
    (:func:`contact_features` refuses one).
    """
    cur = con.cursor()
    try:
        db = _quoted_database(cur)
        for table in CUSTOMER_TABLES:
            cur.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM {db}.main.{table} WHERE customer_id = ?",
                        [int(customer_id)])
        _SCOPES[id(cur)] = int(customer_id)
        yield cur
    finally:
        _SCOPES.pop(id(cur), None)
        cur.close()


# ---------------------------------------------------------------------------------------------
# The contact dataset
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactDataset:
    """One row per contact with 180 days of follow-up: covariates, treatment, outcome, costs.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per contact (index 0..n-1), see :func:`contact_dataset` for the columns.
    n_total : int
        Contacts made before ``as_of`` (in the database's history).
    n_without_follow_up : int
        Of those, contacts left out because fewer than ``horizon_days`` days separate them from
        ``as_of`` (their outcome is not known yet).
    window : tuple of (datetime.date, datetime.date) or (None, None)
        Days of the first and last contact in ``frame``.
    as_of : datetime.date
    horizon_days : int
    offers : tuple of str
        Offer codes in catalogue (offer_id) order; each has ``elig_<code>`` and ``cost_<code>``.
    value_months : float
        Months of revenue a kept customer is worth (``horizon_days`` / 30, i.e. 6).
    n_sampled_out : int
        Followed-up contacts left out by ``sample`` (0 when all are kept).
    has_holdout_log : bool
        Whether the database keeps the holdout's experiment log (``holdout_assignments``).
    """

    frame: pd.DataFrame
    n_total: int
    n_without_follow_up: int
    window: tuple
    as_of: dt.date | None = None
    horizon_days: int = HORIZON_DAYS
    offers: tuple = ()
    value_months: float = HORIZON_DAYS / 30
    n_sampled_out: int = 0
    has_holdout_log: bool = False
    notes: tuple = field(default_factory=tuple)

    @property
    def n(self) -> int:
        """Contacts in ``frame``."""
        return len(self.frame)


def offer_catalogue(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The offers table in offer_id order (code, kind, terms)."""
    return con.execute(
        "SELECT offer_id, code, name, kind, percent_off, credit_cents, cycles, target_plan_id, min_tier, "
        "is_active FROM offers ORDER BY offer_id").df()


# Grain: one row per contact made before $as_of (with its follow-up status), with the grant made at it
# (the first by grant_id if several), its holdout record and its outcome.
_CONTACTS_SQL = """
WITH picked AS (
    SELECT k.contact_id, k.customer_id, k.contacted_at, CAST(k.contacted_at AS DATE) AS contact_date,
           k.reason, k.is_intent_to_cancel, k.wait_seconds, k.channel AS contact_channel, k.resolution,
           CAST(k.contacted_at AS DATE) + $horizon < $as_of AS is_followed_up
    FROM contacts k
    WHERE CAST(k.contacted_at AS DATE) < $as_of
),
grants AS (
    SELECT g.contact_id, g.grant_id, g.offer_id, o.code, g.assignment, g.kind, g.percent_off,
           g.credit_cents, g.cycles, g.first_period, g.customer_id, count(*) OVER (PARTITION BY g.contact_id) AS n_grants
    FROM offer_grants g JOIN offers o USING (offer_id)
    WHERE g.contact_id IS NOT NULL AND g.granted_at < $as_of_ts
    QUALIFY row_number() OVER (PARTITION BY g.contact_id ORDER BY g.grant_id) = 1
),
{holdout_cte}
-- the customer is served on the day horizon days after the contact (any subscription)
served AS (
    SELECT p.contact_id
    FROM picked p
    WHERE p.is_followed_up AND EXISTS (
        SELECT 1 FROM subscriptions s
        WHERE s.customer_id = p.customer_id AND s.start_date <= p.contact_date + $horizon
          AND (s.end_date IS NULL OR s.end_date >= p.contact_date + $horizon))
),
final AS (
    SELECT p.*, g.grant_id, g.offer_id, coalesce(g.code, 'none') AS treatment, g.n_grants,
           CASE WHEN h.contact_id IS NOT NULL THEN 'holdout' ELSE g.assignment END AS assignment,
           h.contact_id IS NOT NULL AS is_holdout, h.candidate_codes AS holdout_candidates,
           g.kind AS grant_kind, g.percent_off AS grant_percent_off, g.credit_cents AS grant_credit_cents,
           g.cycles AS grant_cycles, g.first_period AS grant_first_period,
           CASE WHEN p.is_followed_up THEN s.contact_id IS NOT NULL END AS is_retained
    FROM picked p
    LEFT JOIN grants g USING (contact_id)
    LEFT JOIN holdout h USING (contact_id)
    LEFT JOIN served s USING (contact_id)
)
SELECT * FROM final ORDER BY contacted_at, contact_id
"""

_HOLDOUT_CTE = """holdout AS (
    SELECT h.contact_id, list(o.code ORDER BY o.offer_id) FILTER (WHERE o.code IS NOT NULL) AS candidate_codes
    FROM holdout_assignments h
    LEFT JOIN (SELECT contact_id, unnest(candidate_offer_ids) AS offer_id FROM holdout_assignments) u
           USING (contact_id)
    LEFT JOIN offers o ON o.offer_id = u.offer_id
    WHERE h.assigned_at < $as_of_ts
    GROUP BY h.contact_id
),"""
_HOLDOUT_FROM_GRANTS = """holdout AS (
    SELECT contact_id, CAST(NULL AS VARCHAR[]) AS candidate_codes FROM grants WHERE assignment = 'holdout'
),"""

# Billed cost of each grant: discount and credit lines carrying it on invoices issued by as_of, and
# how many of its periods are invoiced; churn of the customer by as_of.
_GRANT_COST_SQL = """
WITH g AS (
    SELECT g.grant_id, g.customer_id, g.kind, g.cycles, g.first_period, g.credit_cents
    FROM offer_grants g WHERE g.grant_id IN (SELECT grant_id FROM _ds_grants)
),
billed AS (
    SELECT l.grant_id, -sum(l.amount_cents) AS billed_cents, count(DISTINCT i.period_start) AS periods
    FROM invoice_lines l JOIN invoices i USING (invoice_id)
    WHERE l.grant_id IN (SELECT grant_id FROM _ds_grants) AND l.kind IN ('discount', 'credit')
      AND i.issued_on <= $as_of AND i.status = 'finalized'
    GROUP BY l.grant_id
),
last_billed AS (
    SELECT i.customer_id, max(i.period_start) AS last_period
    FROM invoices i WHERE i.customer_id IN (SELECT customer_id FROM g) AND i.issued_on <= $as_of
    GROUP BY i.customer_id
),
gone AS (
    SELECT customer_id FROM customers
    WHERE customer_id IN (SELECT customer_id FROM g) AND churned_on IS NOT NULL AND churned_on < $as_of
),
final AS (
    SELECT g.grant_id, coalesce(b.billed_cents, 0) AS billed_cents,
           CASE
               WHEN gn.customer_id IS NOT NULL THEN TRUE
               WHEN g.kind IN ('percent_off', 'free_months')
                   THEN lb.last_period >= CAST(g.first_period + to_months(g.cycles - 1) AS DATE)
               WHEN g.kind = 'fixed_credit' THEN coalesce(b.billed_cents, 0) >= g.credit_cents
               ELSE FALSE
           END AS is_complete
    FROM g
    LEFT JOIN billed b USING (grant_id)
    LEFT JOIN last_billed lb USING (customer_id)
    LEFT JOIN gone gn USING (customer_id)
)
SELECT * FROM final
"""


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def contact_dataset(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, horizon_days: int = HORIZON_DAYS,
                    sample: int | None = None, seed: int = 0) -> ContactDataset:
    """The discount-effect dataset: one row per contact with ``horizon_days`` of follow-up.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        Only what happened before this day counts; contacts need their whole follow-up before it.
    horizon_days : int, default 180
        Days after the contact at which retention is measured.
    sample : int, optional
        Keep at most this many followed-up contacts, a uniform random subset (by ``seed``) drawn
        before the per-contact work (for very large histories; counted in ``n_sampled_out``).
    seed : int, default 0

    Returns
    -------
    ContactDataset
        ``frame`` columns: ``contact_id``, ``customer_id``, ``contacted_at``, ``contact_date``,
        the :data:`FEATURES` (see :func:`contact_features`), ``tenure_whole_months``,
        ``treatment`` (offer code granted at the contact, or ``'none'``), ``offer_id``,
        ``grant_id``, ``assignment`` (``'agent'``, ``'holdout'``, another grant assignment, or
        None when nothing was granted outside the holdout), ``is_holdout``,
        ``holdout_candidates`` (offer codes the holdout drew among; None outside it or without
        the experiment log), ``retained_180`` (0/1), ``outcome_date``, ``elig_<code>`` and
        ``cost_<code>`` for each offer, ``discount_cost_cents``, ``is_cost_final``,
        ``monthly_revenue_cents``, ``value_cents``, ``plan_id_before``.

    Notes
    -----
    - Unit: a contact made before ``as_of``. Contacts whose day + ``horizon_days`` is after
      ``as_of`` are left out and counted (``n_without_follow_up``).
    - Treatment: the offer of the grant recorded for the contact (``offer_grants.contact_id``;
      the first by grant_id if several), else ``'none'``.
    - Assignment: ``'holdout'`` for contacts in the holdout's experiment log
      (``holdout_assignments``, where the database has it: it also identifies the holdout's
      no-offer arm), or with a grant assigned ``'holdout'``; otherwise the grant's assignment
      (``'agent'``), or None for no offer outside the holdout.
    - Outcome ``retained_180``: 1 when a subscription of the customer serves the day
      ``contact day + horizon_days`` (the customer has not churned, i.e. has no ``churned_on``
      before that day, or has come back by then).
    - Eligibility ``elig_<code>``: :func:`billing.eligibility.offer_eligibility` at the contact's
      instant on the database as it was just before the contact: grants made at or after it,
      invoices issued after its day and subscriptions opened by a plan change at or after it are
      hidden (the customer's own grant and plan move would otherwise make the offer look
      ineligible), and every catalogue offer counts as active (the catalogue keeps no history
      of withdrawals). Any agent tier: eligibility is about the customer.
    - Expected cost ``cost_<code>`` in cents (tax excluded), of giving the offer at the contact
      if the customer stays through its terms: percent off: ``cycles x round(price x pct / 100)``;
      free months: ``cycles x price``; fixed credit: ``credit_cents``; plan move: the monthly
      price difference to the plan it would move to, over the value horizon (6 months), with
      ``price`` the list price of the plan before the contact for the contact's month (price rises
      later are ignored). NaN where the offer was not eligible.
    - ``discount_cost_cents`` of the granted offer: the discount and credit lines billed for the
      grant by ``as_of`` when its terms are fully billed or the customer has left
      (``is_cost_final``), otherwise the larger of what is billed and the expected cost; plan
      moves are always costed at the expected price difference. 0 for ``'none'``.
    - Customer value ``value_cents = monthly_revenue_cents x horizon_days / 30``: the list price
      of the plan serving the customer just before the contact, for its month (tax excluded, before
      temporary discounts), times 6 months for the 180-day window: the revenue a contact kept
      through the window brings. The same for every offer, so effects times value are comparable.
    """
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        raise TypeError("as_of must be a datetime.date")
    horizon_days = int(horizon_days)
    if horizon_days < 1:
        raise ValueError("horizon_days must be at least 1")
    has_log = has_table(con, "holdout_assignments")
    sql = _CONTACTS_SQL.replace("{holdout_cte}", _HOLDOUT_CTE if has_log else _HOLDOUT_FROM_GRANTS)
    params = {"as_of": as_of, "as_of_ts": dt.datetime.combine(as_of, dt.time()), "horizon": horizon_days}
    cur = con.cursor()
    try:
        allc = cur.execute(sql, params).df()
    finally:
        cur.close()
    n_total = len(allc)
    fol = allc[allc["is_followed_up"].astype(bool)].reset_index(drop=True)
    n_without = n_total - len(fol)
    n_sampled_out = 0
    if sample is not None and len(fol) > int(sample):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(fol), size=int(sample), replace=False))
        n_sampled_out = len(fol) - len(keep)
        fol = fol.iloc[keep].reset_index(drop=True)
    offers = offer_catalogue(con)
    codes = tuple(offers["code"])
    value_months = horizon_days / 30.0
    if fol.empty:
        frame = _empty_frame(codes)
        return ContactDataset(frame=frame, n_total=n_total, n_without_follow_up=n_without, window=(None, None),
                              as_of=as_of, horizon_days=horizon_days, offers=codes, value_months=value_months,
                              n_sampled_out=n_sampled_out, has_holdout_log=has_log)

    feats = contact_features(con, fol[["customer_id", "contacted_at", "reason", "is_intent_to_cancel",
                                       "wait_seconds"]])
    elig = _eligibility_before(con, fol, offers)
    frame = pd.concat([fol[["contact_id", "customer_id", "contacted_at", "contact_date"]], feats], axis=1)
    frame["treatment"] = fol["treatment"].astype(object)
    frame["offer_id"] = fol["offer_id"].astype("Int64")
    frame["grant_id"] = fol["grant_id"].astype("Int64")
    frame["assignment"] = fol["assignment"].astype(object).where(fol["assignment"].notna(), None)
    frame["is_holdout"] = fol["is_holdout"].astype(bool)
    frame["holdout_candidates"] = fol["holdout_candidates"].map(
        lambda v: tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else None)
    frame["retained_180"] = fol["is_retained"].astype(bool).astype(int)
    frame["outcome_date"] = pd.to_datetime(fol["contact_date"]) + pd.Timedelta(days=horizon_days)
    for code in codes:
        frame[f"elig_{code}"] = elig[f"elig_{code}"].to_numpy(dtype=bool)
    price = frame["monthly_price_cents"].to_numpy(dtype=float)
    for _, o in offers.iterrows():
        frame[f"cost_{o['code']}"] = expected_cost(o, price, elig[f"target_price_{o['code']}"].to_numpy(dtype=float),
                                                   value_months)
        frame.loc[~frame[f"elig_{o['code']}"], f"cost_{o['code']}"] = np.nan
    frame["plan_id_before"] = elig["plan_id_before"].astype("Int64").to_numpy()
    _granted_cost(con, frame, fol, offers, as_of, value_months)
    frame["monthly_revenue_cents"] = price
    frame["value_cents"] = price * value_months
    dates = pd.to_datetime(frame["contact_date"])
    window = (dates.min().date(), dates.max().date())
    notes = []
    several = int((fol["n_grants"].fillna(0) > 1).sum())
    if several:
        notes.append(f"{several} contacts had more than one grant; the first counts as the treatment")
    return ContactDataset(frame=frame, n_total=n_total, n_without_follow_up=n_without, window=window,
                          as_of=as_of, horizon_days=horizon_days, offers=codes, value_months=value_months,
                          n_sampled_out=n_sampled_out, has_holdout_log=has_log, notes=tuple(notes))


def _empty_frame(codes) -> pd.DataFrame:
    cols = ["contact_id", "customer_id", "contacted_at", "contact_date", "tenure_whole_months", *FEATURES,
            "treatment", "offer_id", "grant_id", "assignment", "is_holdout", "holdout_candidates",
            "retained_180", "outcome_date"]
    cols += [f"elig_{c}" for c in codes] + [f"cost_{c}" for c in codes]
    cols += ["plan_id_before", "discount_cost_cents", "is_cost_final", "monthly_revenue_cents", "value_cents"]
    return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})


def expected_cost(offer, price: np.ndarray, target_price: np.ndarray, value_months: float) -> np.ndarray:
    """Expected cost of giving an offer, in cents (tax excluded), for each of many customers.

    Parameters
    ----------
    offer : mapping or pandas.Series
        One offer of the catalogue (:func:`offer_catalogue`): ``kind``, ``percent_off``,
        ``credit_cents``, ``cycles``.
    price : numpy.ndarray
        Each customer's monthly list price in cents (the plan serving them, tax excluded, before
        temporary discounts).
    target_price : numpy.ndarray
        Plan moves: the monthly list price of the plan the customer would move to (NaN: none);
        ignored for the other kinds.
    value_months : float
        Months of the value horizon (``horizon_days / 30``, i.e. 6).

    Returns
    -------
    numpy.ndarray
        One cost per customer (float cents; NaN where the price is unknown).

    Notes
    -----
    The cost of the offer if the customer stays through its terms, with ``cycles`` 1 when missing:

    - percent off: ``cycles x round(price x percent_off / 100)`` (half away from zero, as
      :func:`data.money.round_div`);
    - free months: ``cycles x price``;
    - fixed credit: ``credit_cents``;
    - plan move: ``max(price - target_price, 0) x value_months``, the monthly price difference
      over the value horizon;
    - any other kind: 0.

    :func:`contact_dataset` defines ``cost_<code>`` with it and the recommender costs a live
    contact's offers with it, so the two always agree.
    """
    kind = offer["kind"]
    cycles = 1 if pd.isna(offer["cycles"]) else int(offer["cycles"])
    if kind == "percent_off":
        pct = int(offer["percent_off"])
        # round half away from zero, as data.money.round_div does
        return cycles * np.floor(price * pct / 100.0 + 0.5)
    if kind == "free_months":
        return cycles * price
    if kind == "fixed_credit":
        return np.full(len(price), float(offer["credit_cents"]))
    if kind == "plan_move":
        return np.maximum(price - target_price, 0.0) * value_months
    return np.zeros(len(price))


# Shadow tables: the database as it was just before each contact of a batch (one contact per
# customer), for billing.eligibility's query, which reads them by their unqualified names.
_SHADOW_SQL = (
    """CREATE OR REPLACE TEMP TABLE offer_grants AS
       SELECT g.* FROM {db}.main.offer_grants g JOIN _ds_batch b ON b.customer_id = g.customer_id
       WHERE g.granted_at < b."at" """,
    """CREATE OR REPLACE TEMP TABLE invoices AS
       SELECT i.* FROM {db}.main.invoices i JOIN _ds_batch b ON b.customer_id = i.customer_id
       WHERE i.issued_on <= CAST(b."at" AS DATE)""",
    """CREATE OR REPLACE TEMP TABLE subscriptions AS
       SELECT s.subscription_id, s.customer_id, s.plan_id, s.start_date,
              CASE WHEN s.end_reason = 'plan_change' AND s.end_date >= CAST(b."at" AS DATE) - 1
                   THEN NULL ELSE s.end_date END AS end_date,
              CASE WHEN s.end_reason = 'plan_change' AND s.end_date >= CAST(b."at" AS DATE) - 1
                   THEN NULL ELSE s.end_reason END AS end_reason,
              s.previous_subscription_id
       FROM {db}.main.subscriptions s JOIN _ds_batch b ON b.customer_id = s.customer_id
       WHERE s.start_date < CAST(b."at" AS DATE)
          OR (s.start_date = CAST(b."at" AS DATE) AND s.previous_subscription_id IS NULL)""",
    """CREATE OR REPLACE TEMP TABLE offers AS SELECT * REPLACE (TRUE AS is_active) FROM {db}.main.offers""",
)
_SHADOWS = ("offer_grants", "invoices", "subscriptions", "offers")


def _eligibility_before(con, fol: pd.DataFrame, offers: pd.DataFrame) -> pd.DataFrame:
    """Per contact: ``elig_<code>``, ``target_price_<code>`` (plan moves) and ``plan_id_before``.

    Contacts are processed in batches holding at most one contact per customer (the k-th contact of
    each customer), each batch against temporary tables that hide what happened from its contacts on.
    """
    n = len(fol)
    out = pd.DataFrame(index=range(n))
    for code in offers["code"]:
        out[f"elig_{code}"] = False
        out[f"target_price_{code}"] = np.nan
    out["plan_id_before"] = pd.array([pd.NA] * n, dtype="Int64")
    if n == 0 or offers.empty:
        return out
    base = pd.DataFrame({"pos": np.arange(n), "customer_id": fol["customer_id"].astype("int64").to_numpy(),
                         "at": pd.to_datetime(fol["contacted_at"]).astype("datetime64[us]").to_numpy(),
                         "reason": fol["reason"].astype(object).to_numpy()})
    base["k"] = base.sort_values(["at", "pos"]).groupby("customer_id").cumcount().reindex(base.index)
    offer_ids = offers["offer_id"].astype(int).to_numpy()
    codes = offers["code"].to_numpy()
    cur = con.cursor()
    db = _quoted_database(cur)
    try:
        for k, batch in base.groupby("k", sort=True):
            cur.register("_ds_batch", batch[["customer_id", "at"]])
            try:
                for sql in _SHADOW_SQL:
                    cur.execute(sql.replace("{db}", db))
                cand = pd.DataFrame({
                    "customer_id": np.repeat(batch["customer_id"].to_numpy(), len(offer_ids)),
                    "offer_id": np.tile(offer_ids, len(batch)),
                    "at": np.repeat(batch["at"].to_numpy(), len(offer_ids)),
                    "reason": np.repeat(batch["reason"].to_numpy(), len(offer_ids)),
                })
                res = offer_eligibility(cur, cand)
                ok = res["eligible"].to_numpy(dtype=bool).reshape(len(batch), len(offer_ids))
                target = pd.to_numeric(res["target_plan_id"], errors="coerce").to_numpy(dtype=float)
                target = target.reshape(len(batch), len(offer_ids))
                pos = batch["pos"].to_numpy()
                for j, code in enumerate(codes):
                    out.loc[pos, f"elig_{code}"] = ok[:, j]
                    if np.isfinite(target[:, j]).any():
                        out.loc[pos, f"target_price_{code}"] = _target_prices(cur, batch, target[:, j])
                plan = cur.execute("""
                    SELECT b.customer_id, s.plan_id FROM _ds_batch b
                    JOIN subscriptions s ON s.customer_id = b.customer_id
                     AND s.start_date <= CAST(b."at" AS DATE)
                     AND (s.end_date IS NULL OR s.end_date >= CAST(b."at" AS DATE))
                    QUALIFY row_number() OVER (PARTITION BY b.customer_id
                                               ORDER BY s.start_date DESC, s.subscription_id DESC) = 1
                """).df()
                mp = dict(zip(plan["customer_id"], plan["plan_id"]))
                out.loc[pos, "plan_id_before"] = pd.array(
                    [mp.get(c, pd.NA) for c in batch["customer_id"]], dtype="Int64")
            finally:
                cur.unregister("_ds_batch")
    finally:
        for name in _SHADOWS:
            try:
                cur.execute(f"DROP TABLE IF EXISTS temp.{name}")
            except duckdb.Error:
                pass
        cur.close()
    return out


def _target_prices(cur, batch: pd.DataFrame, target: np.ndarray) -> np.ndarray:
    """List price of each target plan for the month of the batch's contacts (NaN where no target)."""
    frame = pd.DataFrame({"i": np.arange(len(batch)), "plan_id": target,
                          "month": pd.to_datetime(batch["at"].to_numpy()).to_period("M").to_timestamp()})
    frame = frame[np.isfinite(frame["plan_id"])]
    frame["plan_id"] = frame["plan_id"].astype("int64")
    cur.register("_ds_target", frame)
    try:
        got = cur.execute("""
            SELECT t.i, (SELECT max_by(pp.monthly_price_cents, pp.effective_from) FROM plan_prices pp
                         WHERE pp.plan_id = t.plan_id AND pp.effective_from <= CAST(t.month AS DATE)) AS price
            FROM _ds_target t
        """).df()
    finally:
        cur.unregister("_ds_target")
    out = np.full(len(batch), np.nan)
    out[got["i"].to_numpy(dtype=int)] = pd.to_numeric(got["price"], errors="coerce").to_numpy(dtype=float)
    return out


def _granted_cost(con, frame: pd.DataFrame, fol: pd.DataFrame, offers: pd.DataFrame, as_of: dt.date,
                  value_months: float) -> None:
    """Fill ``discount_cost_cents`` and ``is_cost_final`` for the offer granted at each contact."""
    frame["discount_cost_cents"] = 0.0
    frame["is_cost_final"] = True
    granted = frame["grant_id"].notna().to_numpy()
    if not granted.any():
        return
    grants = pd.DataFrame({"grant_id": frame.loc[granted, "grant_id"].astype("int64").to_numpy()})
    cur = con.cursor()
    try:
        cur.register("_ds_grants", grants)
        billed = cur.execute(_GRANT_COST_SQL, {"as_of": as_of}).df()
    finally:
        cur.close()
    billed = billed.set_index("grant_id")
    gid = frame.loc[granted, "grant_id"].astype("int64")
    b = billed.reindex(gid.to_numpy())
    billed_cents = b["billed_cents"].fillna(0).to_numpy(dtype=float)
    complete = b["is_complete"].fillna(False).to_numpy(dtype=bool)
    # expected cost of the granted offer at this contact, from the grant's own terms
    price = frame.loc[granted, "monthly_price_cents"].to_numpy(dtype=float)
    kinds = fol.loc[granted, "grant_kind"].to_numpy()
    cycles = fol.loc[granted, "grant_cycles"].fillna(1).to_numpy(dtype=float)
    pct = fol.loc[granted, "grant_percent_off"].fillna(0).to_numpy(dtype=float)
    credit = fol.loc[granted, "grant_credit_cents"].fillna(0).to_numpy(dtype=float)
    treat = frame.loc[granted, "treatment"].to_numpy()
    move_cost = np.array([frame.loc[i, f"cost_{t}"] if f"cost_{t}" in frame.columns else np.nan
                          for i, t in zip(frame.index[granted], treat)], dtype=float)
    expected = np.select(
        [kinds == "percent_off", kinds == "free_months", kinds == "fixed_credit", kinds == "plan_move"],
        [cycles * np.floor(price * pct / 100.0 + 0.5), cycles * price, credit, move_cost], default=0.0)
    expected = np.nan_to_num(expected, nan=0.0)
    is_move = kinds == "plan_move"
    cost = np.where(is_move, expected, np.where(complete, billed_cents, np.maximum(billed_cents, expected)))
    frame.loc[granted, "discount_cost_cents"] = cost
    frame.loc[granted, "is_cost_final"] = complete & ~is_move
