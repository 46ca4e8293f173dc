"""Offer eligibility rules as one read-only, set-based query: may this customer get this offer now,
and may an agent of this tier grant it?

The rules live here, below every layer that needs them: ``billing/`` checks them before it writes a
grant (:mod:`billing.eligibility`, :mod:`billing.grant_offer`), ``analytics/`` asks what was eligible
at each past contact, ``models/`` marks the offers a live contact may get. Bulk first:
:func:`offer_eligibility` checks a DataFrame of candidates (the simulator asks for ~100k a month).
Nothing is written, so it also works on a read-only connection.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

# Stable why_not codes, in the order they are checked (the first that applies is reported).
WHY_NOT = ("invalid_input", "offer_not_found", "offer_inactive", "customer_not_found",
           "customer_not_active", "tenure_too_short", "reason_not_eligible", "cooldown",
           "discount_active", "no_cheaper_plan")

COLUMNS = ("row", "customer_id", "offer_id", "kind", "eligible", "why_not", "message", "may_grant",
           "needs_tier", "first_period", "target_plan_id")

# One row per candidate (grain: the input row). Reads the registered frame _elig_in
# (row, customer_id, offer_id, at, reason, agent_tier); billing.grant_offer reuses it inside its
# transaction, which is why the query carries more columns than offer_eligibility returns.
_ELIGIBILITY_SQL = """
WITH cand AS (
    SELECT CAST("row" AS BIGINT) AS "row", CAST(customer_id AS BIGINT) AS customer_id,
           CAST(offer_id AS INTEGER) AS offer_id, CAST("at" AS TIMESTAMP) AS "at",
           CAST(CAST("at" AS TIMESTAMP) AS DATE) AS at_date,
           CAST(date_trunc('month', CAST("at" AS TIMESTAMP)) AS DATE) AS at_month,
           CAST(reason AS VARCHAR) AS reason, CAST(agent_tier AS INTEGER) AS agent_tier
    FROM _elig_in
),
-- the subscription serving the customer on the candidate's day (the latest, if several)
serving AS (
    SELECT c."row", s.subscription_id, s.plan_id
    FROM cand c JOIN subscriptions s
      ON s.customer_id = c.customer_id AND s.start_date <= c.at_date
     AND (s.end_date IS NULL OR s.end_date >= c.at_date)
    QUALIFY row_number() OVER (PARTITION BY c."row" ORDER BY s.start_date DESC, s.subscription_id DESC) = 1
),
-- periods of the customer already invoiced from the candidate's month on (any status: a billing
-- run never invoices a (subscription, period) twice, so an invoiced period is closed)
billed AS (
    SELECT DISTINCT c."row", i.period_start
    FROM cand c JOIN invoices i ON i.customer_id = c.customer_id
    WHERE i.period_start >= c.at_month
),
-- first_period: the first month on or after the candidate's month with no invoice yet; it is either
-- that month itself or the month after an invoiced one
first_unbilled AS (
    SELECT m."row", min(m.month) AS first_period
    FROM (SELECT "row", at_month AS month FROM cand
          UNION ALL
          SELECT "row", CAST(period_start + INTERVAL 1 MONTH AS DATE) FROM billed) m
    LEFT JOIN billed b ON b."row" = m."row" AND b.period_start = m.month
    WHERE b."row" IS NULL
    GROUP BY m."row"
),
-- another grant of the same offer to the customer less than cooldown_months away
cooling AS (
    SELECT DISTINCT c."row"
    FROM cand c
    JOIN offers o ON o.offer_id = c.offer_id AND o.cooldown_months > 0
    JOIN offer_grants g ON g.customer_id = c.customer_id AND g.offer_id = c.offer_id
    WHERE g.granted_at > c."at" - to_months(o.cooldown_months)
      AND g.granted_at < c."at" + to_months(o.cooldown_months)
),
-- a percent or free-month grant of the customer already covering the new grant's first period
discounted AS (
    SELECT DISTINCT c."row"
    FROM cand c
    JOIN first_unbilled f USING ("row")
    JOIN offer_grants g ON g.customer_id = c.customer_id
    WHERE g.kind IN ('percent_off', 'free_months')
      AND f.first_period >= g.first_period
      AND f.first_period < CAST(g.first_period + to_months(g.cycles) AS DATE)
),
-- plan_move: the offer's target when it is cheaper (lower rank), else the next cheaper active plan;
-- it must have a price for the period the move takes effect in (first_period's month)
target AS (
    SELECT c."row", p.plan_id AS target_plan_id
    FROM cand c
    JOIN offers o ON o.offer_id = c.offer_id AND o.kind = 'plan_move'
    JOIN serving s USING ("row")
    JOIN first_unbilled f USING ("row")
    JOIN plans cur ON cur.plan_id = s.plan_id
    JOIN plans p ON p.is_active AND p.rank < cur.rank
                AND (o.target_plan_id IS NULL OR p.plan_id = o.target_plan_id)
    WHERE EXISTS (SELECT 1 FROM plan_prices pp
                  WHERE pp.plan_id = p.plan_id AND pp.effective_from <= f.first_period)
    QUALIFY row_number() OVER (PARTITION BY c."row" ORDER BY p.rank DESC, p.plan_id) = 1
),
checked AS (
    SELECT c.*, o.code AS offer_code, o.name AS offer_name, o.kind, o.percent_off, o.credit_cents,
           o.cycles, o.min_tier, o.min_tenure_months, o.cooldown_months, o.eligible_reasons,
           cu.signup_date, s.subscription_id, s.plan_id AS current_plan_id,
           CASE WHEN cu.customer_id IS NOT NULL THEN f.first_period END AS first_period,
           t.target_plan_id,
           CASE
               WHEN c."at" IS NULL THEN 'invalid_input'
               WHEN o.offer_id IS NULL THEN 'offer_not_found'
               WHEN NOT o.is_active THEN 'offer_inactive'
               WHEN cu.customer_id IS NULL THEN 'customer_not_found'
               WHEN s."row" IS NULL THEN 'customer_not_active'
               WHEN c.at_date < CAST(cu.signup_date + to_months(o.min_tenure_months) AS DATE)
                   THEN 'tenure_too_short'
               WHEN o.eligible_reasons IS NOT NULL
                    AND (c.reason IS NULL OR NOT list_contains(o.eligible_reasons, c.reason))
                   THEN 'reason_not_eligible'
               WHEN cl."row" IS NOT NULL THEN 'cooldown'
               WHEN o.kind IN ('percent_off', 'free_months') AND d."row" IS NOT NULL THEN 'discount_active'
               WHEN o.kind = 'plan_move' AND t."row" IS NULL THEN 'no_cheaper_plan'
           END AS why_not
    FROM cand c
    LEFT JOIN offers o ON o.offer_id = c.offer_id
    LEFT JOIN customers cu ON cu.customer_id = c.customer_id
    LEFT JOIN serving s USING ("row")
    LEFT JOIN first_unbilled f USING ("row")
    LEFT JOIN cooling cl USING ("row")
    LEFT JOIN discounted d USING ("row")
    LEFT JOIN target t USING ("row")
),
final AS (
    SELECT *,
           why_not IS NULL AS eligible,
           coalesce(agent_tier >= min_tier, FALSE) AS may_grant,
           min_tier AS needs_tier,
           CASE why_not
               WHEN 'invalid_input' THEN 'the check needs a time (at)'
               WHEN 'offer_not_found'
                   THEN 'offer ' || coalesce(CAST(offer_id AS VARCHAR), '(none)') || ' does not exist'
               WHEN 'offer_inactive' THEN 'offer ' || offer_code || ' is withdrawn'
               WHEN 'customer_not_found'
                   THEN 'customer ' || coalesce(CAST(customer_id AS VARCHAR), '(none)') || ' does not exist'
               WHEN 'customer_not_active'
                   THEN 'the customer has no active subscription on ' || CAST(at_date AS VARCHAR)
               WHEN 'tenure_too_short' THEN 'needs ' || min_tenure_months || ' months as a customer; customer since '
                   || CAST(signup_date AS VARCHAR)
               WHEN 'reason_not_eligible' THEN 'offer ' || offer_code || ' is only for contacts about '
                   || array_to_string(eligible_reasons, ', ')
               WHEN 'cooldown' THEN 'offer ' || offer_code || ' was granted to this customer less than '
                   || cooldown_months || ' months ago'
               WHEN 'discount_active' THEN 'a discount already covers ' || strftime(first_period, '%Y-%m')
               WHEN 'no_cheaper_plan' THEN 'no cheaper plan to move this customer to'
               ELSE 'eligible for ' || offer_code
                   || CASE WHEN agent_tier IS NOT NULL AND agent_tier < min_tier
                           THEN '; needs an agent of tier ' || min_tier ELSE '' END
           END AS message
    FROM checked
)
SELECT * FROM final ORDER BY "row"
"""


def _candidates_frame(candidates: pd.DataFrame) -> pd.DataFrame:
    """The candidates as the typed frame the query reads (row, customer_id, offer_id, at, reason,
    agent_tier); raises ValueError for a missing column (a caller's bug)."""
    missing = [c for c in ("customer_id", "offer_id", "at") if c not in candidates.columns]
    if missing:
        raise ValueError(f"candidates need columns: {', '.join(missing)}")
    n = len(candidates)
    at = pd.to_datetime(_column(candidates, "at", n))
    if getattr(at.dt, "tz", None) is not None:
        at = at.dt.tz_convert("UTC").dt.tz_localize(None)
    return pd.DataFrame({
        "row": range(n),
        "customer_id": pd.array(_column(candidates, "customer_id", n), dtype="Int64"),
        "offer_id": pd.array(_column(candidates, "offer_id", n), dtype="Int64"),
        "at": at,
        "reason": _column(candidates, "reason", n).astype("string"),
        "agent_tier": pd.array(_column(candidates, "agent_tier", n), dtype="Int64"),
    })


def _column(df: pd.DataFrame, name: str, n: int) -> pd.Series:
    """Column ``name`` of ``df`` re-indexed 0..n-1, or all-null when absent."""
    if name in df.columns:
        return df[name].reset_index(drop=True)
    return pd.Series([None] * n, dtype=object)


def _evaluate(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, *, into: str | None = None):
    """Run the eligibility query over a typed candidates frame.

    Returns the full result as a DataFrame, or, with ``into`` (a code constant), creates that temp
    table instead and returns None (billing.grant_offer, inside its transaction).
    """
    con.register("_elig_in", frame)
    try:
        if into is None:
            return con.execute(_ELIGIBILITY_SQL).df()
        con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS {_ELIGIBILITY_SQL}")
        return None
    finally:
        con.unregister("_elig_in")


def offer_eligibility(con: duckdb.DuckDBPyConnection, candidates: pd.DataFrame) -> pd.DataFrame:
    """Check many (customer, offer) candidates at once.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    candidates : pandas.DataFrame
        One row per candidate: ``customer_id``, ``offer_id``, ``at`` (timestamp of the check),
        ``reason`` (contact reason code, optional/nullable), ``agent_tier`` (optional/nullable).

    Returns
    -------
    pandas.DataFrame
        One row per candidate in input order: ``row`` (0-based input position), ``customer_id``,
        ``offer_id``, ``kind``, ``eligible`` (bool), ``why_not`` (code or null), ``message``,
        ``may_grant`` (agent_tier >= the offer's min_tier; False when agent_tier is null),
        ``needs_tier``, ``first_period`` (the period a grant now would start), ``target_plan_id``
        (plan_move only).

    Raises
    ------
    ValueError
        When a required column is missing (a caller's bug, not a business outcome).

    Notes
    -----
    The first rule that fails is reported (codes in this order, see :data:`WHY_NOT`):

    - ``offer_not_found`` / ``offer_inactive``; ``customer_not_found``;
    - ``customer_not_active``: no subscription serves the customer on the day of ``at`` (churned,
      not started yet);
    - ``tenure_too_short``: ``at`` is before ``signup_date + min_tenure_months`` months (calendar
      months, the 31st counting to the end of a shorter month);
    - ``reason_not_eligible``: the offer lists eligible reasons and ``reason`` is null or not one;
    - ``cooldown``: a grant of the same offer to the customer less than ``cooldown_months`` months
      before (or after) ``at``;
    - ``discount_active`` (percent_off, free_months): an existing percent or free-month grant covers
      ``first_period``, the period the new grant would start;
    - ``no_cheaper_plan`` (plan_move): no active plan of lower rank than the current one (or the
      offer's target is not of lower rank, inactive or unpriced) with a price for ``first_period``.

    ``first_period`` is the first month on or after the month of ``at`` with no invoice for the
    customer yet (billing is in arrears, so normally the current month: the next invoice carries
    the discount). Eligibility does not depend on the agent: ``may_grant``/``needs_tier`` say
    whether the agent's tier suffices.
    """
    frame = _candidates_frame(candidates)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    out = _evaluate(con, frame)
    return out[list(COLUMNS)].reset_index(drop=True)
