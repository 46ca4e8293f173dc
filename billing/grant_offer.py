"""Grant offers: record a discount or plan move for a customer, within the granting agent's authority.

Bulk first: :func:`grant_offers` checks and writes a DataFrame of grant requests with set-based SQL
in one transaction (the simulator grants ~100k a month); :func:`grant_offer` wraps a one-row frame
for the agent desk. The checks live here, whatever the caller: eligibility
(:mod:`billing.eligibility`), the granting user's role and tier, and the consistency of the batch.
A grant snapshots the offer's terms; the billing run reads the grant, never the catalogue's terms.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from billing import change_plan
from billing.eligibility import _evaluate
from billing.results import OK, Result, failure, success
from data.db import transaction

ASSIGNMENTS = ("agent", "holdout", "system")
GRANTING_ROLES = ("agent", "admin")

COLUMNS = ("row", "customer_id", "offer_id", "code", "why_not", "message", "grant_id", "kind",
           "first_period", "new_subscription_id")

# Step 1. One row per request (grain: the input row): the eligibility of :mod:`billing.eligibility`
# (temp table _go_elig) plus the request's own checks, each with a stable why_not.
_CHECK_SQL = """
CREATE OR REPLACE TEMP TABLE _go AS
WITH req AS (
    SELECT g."row", g.customer_id, g.offer_id, g.granted_by, g.contact_id, g.assignment,
           CAST(g.granted_at AS TIMESTAMP) AS granted_at,
           e.why_not AS elig_why_not, e.message AS elig_message, e.kind, e.offer_code, e.percent_off,
           e.credit_cents, e.cycles, e.min_tier, e.cooldown_months, e.first_period, e.target_plan_id
    FROM _go_req g JOIN _go_elig e USING ("row")
),
checked AS (
    SELECT r.*, u.display_name AS user_name, u.role AS user_role,
           CASE WHEN u.role = 'admin' THEN coalesce(u.agent_tier, 3) ELSE u.agent_tier END AS user_tier,
           CASE
               WHEN NOT list_contains($assignments, r.assignment) THEN 'invalid_assignment'
               WHEN r.elig_why_not IN ('offer_not_found', 'customer_not_found') THEN r.elig_why_not
               WHEN r.contact_id IS NOT NULL AND (ct.contact_id IS NULL OR ct.customer_id <> r.customer_id)
                   THEN 'contact_not_found'
               WHEN r.assignment = 'agent' AND r.granted_by IS NULL THEN 'no_agent'
               WHEN r.granted_by IS NOT NULL AND u.user_id IS NULL THEN 'user_not_found'
               WHEN r.assignment = 'agent' AND NOT u.is_active THEN 'user_inactive'
               WHEN r.assignment = 'agent' AND NOT list_contains($roles, u.role) THEN 'wrong_role'
               WHEN r.assignment = 'agent'
                    AND coalesce(CASE WHEN u.role = 'admin' THEN coalesce(u.agent_tier, 3) ELSE u.agent_tier END
                                 < r.min_tier, TRUE)
                   THEN 'tier_too_low'
               ELSE r.elig_why_not
           END AS why_not
    FROM req r
    LEFT JOIN users u ON u.user_id = r.granted_by
    LEFT JOIN contacts ct ON ct.contact_id = r.contact_id
),
final AS (
    SELECT *,
           CASE why_not
               WHEN 'invalid_assignment' THEN 'assignment must be agent, holdout or system'
               WHEN 'contact_not_found' THEN 'contact ' || contact_id || ' is not a contact of this customer'
               WHEN 'no_agent' THEN 'an agent grant needs the granting agent'
               WHEN 'user_not_found' THEN 'user ' || granted_by || ' does not exist'
               WHEN 'user_inactive' THEN 'user ' || user_name || ' is disabled'
               WHEN 'wrong_role' THEN 'a ' || user_role || ' may not grant offers'
               WHEN 'tier_too_low' THEN 'offer ' || offer_code || ' needs an agent of tier ' || min_tier
                   || ' or above; ' || user_name || ' is tier ' || coalesce(CAST(user_tier AS VARCHAR), 'none')
               ELSE elig_message
           END AS message
    FROM checked
)
SELECT * FROM final
"""

# Step 2. Requests of one batch that conflict with an earlier passing request of the same batch:
# the same offer within its cooldown, or a second percent/free-month discount covering the same
# period. Earlier = earlier granted_at, then input order.
_BATCH_SQL = """
UPDATE _go SET why_not = f.why_not,
               message = CASE f.why_not WHEN 'cooldown' THEN 'the same offer is granted earlier in this batch'
                              ELSE 'another discount in this batch already covers '
                                   || strftime(_go.first_period, '%Y-%m') END
FROM (
    SELECT b."row", min(CASE
               WHEN a.offer_id = b.offer_id AND a.cooldown_months > 0
                    AND b.granted_at < a.granted_at + to_months(a.cooldown_months) THEN 'cooldown'
               WHEN a.kind IN ('percent_off', 'free_months') AND b.kind IN ('percent_off', 'free_months')
                    AND b.first_period >= a.first_period
                    AND b.first_period < CAST(a.first_period + to_months(a.cycles) AS DATE)
                   THEN 'discount_active'
           END) AS why_not
    FROM _go a JOIN _go b
      ON a.customer_id = b.customer_id
     AND (a.granted_at < b.granted_at OR (a.granted_at = b.granted_at AND a."row" < b."row"))
    WHERE a.why_not IS NULL AND b.why_not IS NULL
    GROUP BY b."row"
) f
WHERE _go."row" = f."row" AND f.why_not IS NOT NULL
"""

# Step 4. The grants, numbered max + row_number in input order, with the offer's terms snapshotted.
_INSERT_SQL = """
INSERT INTO offer_grants (grant_id, customer_id, offer_id, contact_id, granted_by, granted_at, kind,
    percent_off, credit_cents, cycles, first_period, assignment)
SELECT i.grant_id, g.customer_id, g.offer_id, g.contact_id, g.granted_by, g.granted_at, g.kind,
       CASE g.kind WHEN 'percent_off' THEN g.percent_off WHEN 'free_months' THEN coalesce(g.percent_off, 100) END,
       CASE WHEN g.kind = 'fixed_credit' THEN g.credit_cents END,
       CASE WHEN g.kind IN ('percent_off', 'free_months') THEN g.cycles ELSE 1 END,
       g.first_period, g.assignment
FROM _go g JOIN _go_ids i USING ("row")
ORDER BY i.grant_id
"""

# People's grants are audited, one row each (set-based, like the grants).
_AUDIT_SQL = """
INSERT INTO audit_log
SELECT (SELECT coalesce(max(audit_id), 0) FROM audit_log) + row_number() OVER (ORDER BY i.grant_id),
       g.granted_at, g.granted_by, 'grant_offer', 'offer_grant', CAST(i.grant_id AS VARCHAR),
       to_json({'assignment': g.assignment, 'contact_id': g.contact_id, 'customer_id': g.customer_id,
                'first_period': g.first_period, 'kind': g.kind, 'offer_code': g.offer_code,
                'offer_id': g.offer_id})
FROM _go g JOIN _go_ids i USING ("row")
WHERE g.granted_by IS NOT NULL
"""

_TEMP_TABLES = ("_go_elig", "_go", "_go_moves", "_go_ids")


def _requests_frame(requests: pd.DataFrame, at: dt.datetime) -> pd.DataFrame:
    """The typed frame the queries read; raises ValueError for a missing column (a caller's bug)."""
    missing = [c for c in ("customer_id", "offer_id") if c not in requests.columns]
    if missing:
        raise ValueError(f"grant requests need columns: {', '.join(missing)}")
    df = requests.reset_index(drop=True)
    n = len(df)

    def col(name, default=None):
        if name not in df.columns:
            return pd.Series([default] * n, dtype=object)
        return df[name].astype(object).where(df[name].notna(), default)

    granted_at = pd.to_datetime(col("granted_at", at))
    if getattr(granted_at.dt, "tz", None) is not None:
        granted_at = granted_at.dt.tz_convert("UTC").dt.tz_localize(None)
    return pd.DataFrame({
        "row": range(n),
        "customer_id": pd.array(df["customer_id"], dtype="Int64"),
        "offer_id": pd.array(df["offer_id"], dtype="Int64"),
        "granted_by": pd.array(col("granted_by"), dtype="Int64"),
        "contact_id": pd.array(col("contact_id"), dtype="Int64"),
        "assignment": col("assignment", "agent").astype("string"),
        "reason": col("reason").astype("string"),
        "granted_at": granted_at,
    })


def grant_offers(con: duckdb.DuckDBPyConnection, requests: pd.DataFrame, *,
                 at: dt.datetime) -> pd.DataFrame:
    """Grant offers to customers in bulk: check every request, write the valid ones in one transaction.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    requests : pandas.DataFrame
        One row per grant: ``customer_id``, ``offer_id``; optionally ``granted_by`` (users.user_id;
        required for ``agent``), ``contact_id``, ``assignment`` (``agent`` default, ``holdout``
        for a randomized assignment, ``system``), ``reason`` (contact reason code; defaults to the
        contact's reason), ``granted_at`` (defaults to ``at``).
    at : datetime.datetime
        When the grants are made (default ``granted_at``).

    Returns
    -------
    pandas.DataFrame
        One row per request in input order: ``row``, ``customer_id``, ``offer_id``, ``code``,
        ``why_not``, ``message``, ``grant_id`` (null unless ok), ``kind``, ``first_period``,
        ``new_subscription_id`` (plan_move). Codes:

        - ``ok``: written;
        - ``not_found``: why_not ``offer_not_found`` or ``customer_not_found``;
        - ``invalid_input``: ``invalid_assignment``, ``contact_not_found`` (unknown, or a contact of
          another customer);
        - ``not_permitted``: ``no_agent``, ``user_not_found``, ``user_inactive``, ``wrong_role``
          (only agents and admins grant);
        - ``over_authority``: ``tier_too_low`` (the agent's tier is below the offer's min_tier);
        - ``not_eligible``: a why_not of :func:`billing.eligibility.offer_eligibility`, a conflict
          with an earlier request of the batch (``cooldown``, ``discount_active``), or for
          plan_move a refusal of :func:`billing.change_plan.change_plans` (``no_open_subscription``,
          ``already_billed``, ...).

    Raises
    ------
    ValueError
        When a required column is missing (a caller's bug).

    Notes
    -----
    Checks are made in the order of the codes above; an agent's authority is checked before the
    customer's eligibility. Authority applies to ``agent`` grants: the user must exist, be active,
    be an agent (or an admin, whose missing tier counts as 3) with ``agent_tier >= min_tier``.
    ``holdout`` and ``system`` grants need no agent (a given ``granted_by`` must exist).

    Each grant snapshots the offer's terms (kind, percent_off, credit_cents, cycles: 100 % for
    free_months, 1 cycle for fixed_credit and plan_move) and its ``first_period``: the first month
    on or after the month of ``granted_at`` with no invoice for the customer, so with billing in
    arrears the next invoice carries the discount. A plan_move grant also changes the plan, in the
    same transaction, effective on the grant's day, or on the first day of ``first_period`` when
    the grant's month is already invoiced. ``grant_id`` = max + row_number over the written rows
    in input order. Grants by a person (``granted_by`` set) are audited.
    """
    frame = _requests_frame(requests, at)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    con.register("_go_req", frame)
    try:
        with transaction(con):
            out = _grant(con, at=at)
    finally:
        con.unregister("_go_req")
        for name in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {name}")
    return out


def _grant(con: duckdb.DuckDBPyConnection, *, at: dt.datetime) -> pd.DataFrame:
    """The steps of :func:`grant_offers` inside its transaction."""
    candidates = con.execute("""
        SELECT g."row", g.customer_id, g.offer_id, g.granted_at AS "at",
               coalesce(g.reason, ct.reason) AS reason, CAST(NULL AS INTEGER) AS agent_tier
        FROM _go_req g LEFT JOIN contacts ct ON ct.contact_id = g.contact_id
        ORDER BY g."row"
    """).df()
    _evaluate(con, candidates, into="_go_elig")
    con.execute(_CHECK_SQL, {"assignments": list(ASSIGNMENTS), "roles": list(GRANTING_ROLES)})
    con.execute(_BATCH_SQL)
    # Step 3. Plan moves change the plan through billing.change_plan; a refused change refuses the grant.
    moves = con.execute("""
        SELECT "row", customer_id, target_plan_id AS new_plan_id,
               CASE WHEN first_period = CAST(date_trunc('month', granted_at) AS DATE)
                    THEN CAST(granted_at AS DATE) ELSE first_period END AS effective_date,
               granted_by AS user_id
        FROM _go WHERE why_not IS NULL AND kind = 'plan_move' ORDER BY "row"
    """).df()
    con.execute("CREATE OR REPLACE TEMP TABLE _go_moves (\"row\" BIGINT, code VARCHAR, why_not VARCHAR, "
                "message VARCHAR, new_subscription_id BIGINT)")
    if len(moves):
        con.register("_go_changed", change_plan._apply(con, moves, at=at))
        try:
            con.execute("INSERT INTO _go_moves SELECT \"row\", code, why_not, message, new_subscription_id "
                        "FROM _go_changed")
        finally:
            con.unregister("_go_changed")
        con.execute("UPDATE _go SET why_not = m.why_not, message = m.message FROM _go_moves m "
                    "WHERE _go.\"row\" = m.\"row\" AND m.code <> 'ok'")
    base = con.execute("SELECT coalesce(max(grant_id), 0) FROM offer_grants").fetchall()[0][0]
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _go_ids AS
        SELECT "row", ? + row_number() OVER (ORDER BY "row") AS grant_id FROM _go WHERE why_not IS NULL
    """, [base])
    con.execute(_INSERT_SQL)
    con.execute(_AUDIT_SQL)
    return con.execute("""
        SELECT g."row", g.customer_id, g.offer_id,
               CASE WHEN g.why_not IS NULL THEN 'ok'
                    WHEN g.why_not IN ('offer_not_found', 'customer_not_found') THEN 'not_found'
                    WHEN g.why_not IN ('invalid_assignment', 'contact_not_found') THEN 'invalid_input'
                    WHEN g.why_not IN ('no_agent', 'user_not_found', 'user_inactive', 'wrong_role')
                        THEN 'not_permitted'
                    WHEN g.why_not = 'tier_too_low' THEN 'over_authority'
                    ELSE 'not_eligible' END AS code,
               g.why_not,
               CASE WHEN g.why_not IS NOT NULL THEN g.message
                    WHEN g.kind = 'plan_move' THEN 'granted ' || g.offer_code || ': ' || m.message
                    WHEN g.kind = 'fixed_credit' THEN 'granted ' || g.offer_code || ': credit on the invoice for '
                        || strftime(g.first_period, '%Y-%m') || ' onwards'
                    ELSE 'granted ' || g.offer_code || ' for ' || g.cycles || ' period(s) from '
                        || strftime(g.first_period, '%Y-%m') END AS message,
               i.grant_id, g.kind, g.first_period,
               CASE WHEN g.why_not IS NULL THEN m.new_subscription_id END AS new_subscription_id
        FROM _go g LEFT JOIN _go_ids i USING ("row") LEFT JOIN _go_moves m USING ("row")
        ORDER BY g."row"
    """).df()


def grant_offer(con: duckdb.DuckDBPyConnection, *, customer_id: int, offer_id: int,
                agent_id: int | None, contact_id: int | None = None, reason: str | None = None,
                at: dt.datetime, assignment: str = "agent") -> Result:
    """Grant one offer to one customer (the agent desk); see :func:`grant_offers`.

    Returns
    -------
    Result
        ``ok`` with ``data``: grant_id, first_period (date), kind, new_subscription_id (plan_move);
        or ``not_found``, ``invalid_input``, ``not_permitted``, ``over_authority``,
        ``not_eligible`` with ``data['why_not']``. Nothing is written on a failure.
    """
    out = grant_offers(con, pd.DataFrame([{
        "customer_id": customer_id, "offer_id": offer_id, "granted_by": agent_id,
        "contact_id": contact_id, "assignment": assignment, "reason": reason, "granted_at": at}]), at=at)
    r = out.iloc[0]
    if r["code"] != OK:
        return failure(r["code"], r["message"], why_not=r["why_not"])
    return success(r["message"], grant_id=int(r["grant_id"]), kind=r["kind"],
                   first_period=pd.Timestamp(r["first_period"]).date(),
                   new_subscription_id=None if pd.isna(r["new_subscription_id"])
                   else int(r["new_subscription_id"]))
