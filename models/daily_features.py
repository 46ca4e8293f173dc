"""The churn-risk features of every customer for one day, stored, for the agent desk.

A snapshot at ``as_of`` counts only data dated before that day (:func:`models.features.snapshot_features`),
so every customer's features are the same all day long. :func:`store_daily_features` computes them for
every customer once (``python cli.py daily-features``, after the night's billing and payment runs; the
app's first-start analyses do it too) and :func:`stored_snapshot` reads one customer's row back in a few
milliseconds, where computing it live from the customer's history takes a fifth of a second.

A stored row is used only while it is still what the live computation would give:

- the day's **watermark**: no row dated before ``as_of`` was added since to the append-only history
  tables (invoices, payments, credit notes, contacts, offer grants, usage records: the rows beyond the
  stored counts are checked), and the price list and plans are unchanged (a digest of them);
- the customer's **digest**: their customer row and subscriptions, which are updated in place
  (attributes, cancellations, plan changes), hash as they did.

Otherwise, or for a customer without a stored row, :func:`stored_snapshot` returns None and the caller
computes live (:func:`models.recommender.churn_risk` does).
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

import duckdb
import pandas as pd

from data.db import has_table, transaction
from models import features as F

__all__ = ["DAILY_DDL", "StoredDay", "store_daily_features", "stored_snapshot", "stored_day", "KEEP_DAYS"]

KEEP_DAYS = 2        # days of features kept (the newest); older ones are deleted when a day is stored

# The append-only tables the snapshot reads, with the date that places a row before or after as_of
# (usage by its period: a late record for a billed month changes the usage share).
_DATED = (("invoices", "issued_on"), ("payments", "received_at"), ("credit_notes", "issued_at"),
          ("contacts", "contacted_at"), ("offer_grants", "granted_at"), ("usage_records", "period_start"))

_TYPES = {c: ("VARCHAR" if c in F.CATEGORICAL else "DOUBLE") for c in F.FEATURES}
DAILY_DDL = """
CREATE TABLE IF NOT EXISTS daily_feature_days (
    as_of       DATE      PRIMARY KEY,
    created_at  TIMESTAMP NOT NULL,
    n_customers BIGINT    NOT NULL,
    seconds     DOUBLE    NOT NULL,
    watermark   VARCHAR   NOT NULL    -- JSON: row counts of the dated tables, digest of prices and plans
);
CREATE TABLE IF NOT EXISTS daily_features (
    as_of       DATE   NOT NULL,
    customer_id BIGINT NOT NULL,
    digest      UBIGINT NOT NULL,     -- the customer's row and subscriptions when stored
""" + ",\n".join(f"    {c} {t}" for c, t in _TYPES.items()) + "\n);\n"

# Per customer: a hash of what the snapshot reads from rows that are updated in place, for the
# customers {which} selects (the registered frame _dd_ids, or one bound $cid).
_DIGEST_SQL = """
SELECT c.customer_id,
       xor(hash(c.signup_date, c.segment, c.region, c.channel, c.is_autopay, c.is_paperless),
           coalesce(s.subs, 0)) AS digest
FROM customers c
LEFT JOIN (SELECT customer_id,
                  bit_xor(hash(subscription_id, plan_id, start_date, end_date, end_reason,
                               previous_subscription_id)) AS subs
           FROM subscriptions WHERE customer_id {which}
           GROUP BY customer_id) s USING (customer_id)
WHERE c.customer_id {which}
"""
_DIGEST_MANY_SQL = _DIGEST_SQL.replace("{which}", "IN (SELECT customer_id FROM _dd_ids)")
_DIGEST_ONE_SQL = _DIGEST_SQL.replace("{which}", "= $cid")

# The day's watermark: the dated tables' row counts, and a digest of the price list and plans.
_COUNTS_SQL = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t, _ in _DATED)
_PRICES_SQL = """
SELECT string_agg(plan_id || ':' || effective_from || ':' || monthly_price_cents || ':' || usage_allowance_units,
                  ',' ORDER BY plan_id, effective_from)
       || '|' || (SELECT string_agg(plan_id || ':' || rank, ',' ORDER BY plan_id) FROM plans)
FROM plan_prices
"""


@dataclass(frozen=True)
class StoredDay:
    """A stored day of features.

    Attributes
    ----------
    as_of : datetime.date
    created_at : datetime.datetime
    n_customers : int
        Customers served on the eve of ``as_of`` (the snapshot's population).
    seconds : float
        Time to compute and store them.
    """

    as_of: dt.date
    created_at: dt.datetime
    n_customers: int
    seconds: float


def _watermark(con: duckdb.DuckDBPyConnection) -> dict:
    counts = con.execute(_COUNTS_SQL).fetchall()[0]
    prices = con.execute(_PRICES_SQL).fetchall()[0][0]
    return {"counts": {t: int(n) for (t, _), n in zip(_DATED, counts)}, "prices": str(prices)}


def _digests(con: duckdb.DuckDBPyConnection, customer_ids) -> pd.DataFrame:
    cur = con.cursor()
    try:
        cur.register("_dd_ids", pd.DataFrame({"customer_id": pd.array(list(customer_ids), dtype="Int64")}))
        return cur.execute(_DIGEST_MANY_SQL).df()
    finally:
        cur.close()


def store_daily_features(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, at: dt.datetime) -> StoredDay:
    """Compute the snapshot features of every customer served on ``as_of`` and store them.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A writable connection.
    as_of : datetime.date
        The day (normally the business day that starts: data before it counts).
    at : datetime.datetime
        When they are stored (``created_at``).

    Returns
    -------
    StoredDay

    Raises
    ------
    TypeError
        When ``as_of`` is not a date or ``at`` not a datetime (nothing is written).

    Notes
    -----
    The features are :func:`models.features.snapshot_features` at ``as_of`` (one query over every
    customer). The day's rows replace any stored for the same day, in one transaction; only the
    newest :data:`KEEP_DAYS` days are kept.
    """
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        raise TypeError("as_of must be a datetime.date")
    if not isinstance(at, dt.datetime):
        raise TypeError("at must be a datetime.datetime")
    started = time.perf_counter()
    watermark = _watermark(con)          # before reading: a row added meanwhile makes the day stale
    snap = F.snapshot_features(con, as_of=as_of)
    digests = _digests(con, snap["customer_id"])
    columns = ["as_of", "customer_id", "digest", *F.FEATURES]
    rows = snap.merge(digests, on="customer_id", how="left").assign(as_of=as_of)[columns]
    con.execute(DAILY_DDL)
    cols = ", ".join(columns)
    with transaction(con):
        con.execute("DELETE FROM daily_features WHERE as_of = ?", [as_of])
        con.execute("DELETE FROM daily_feature_days WHERE as_of = ?", [as_of])
        con.register("_dd_rows", rows)
        try:
            con.execute(f"INSERT INTO daily_features ({cols}) SELECT {cols} FROM _dd_rows ORDER BY customer_id")
        finally:
            con.unregister("_dd_rows")
        seconds = time.perf_counter() - started
        con.execute("INSERT INTO daily_feature_days VALUES (?, ?, ?, ?, ?)",
                    [as_of, at, len(rows), round(seconds, 3), json.dumps(watermark)])
        old = [r[0] for r in con.execute("SELECT as_of FROM daily_feature_days ORDER BY as_of DESC "
                                         "OFFSET ?", [KEEP_DAYS]).fetchall()]
        if old:
            con.execute("DELETE FROM daily_features WHERE as_of IN (SELECT unnest(?::DATE[]))", [old])
            con.execute("DELETE FROM daily_feature_days WHERE as_of IN (SELECT unnest(?::DATE[]))", [old])
    return StoredDay(as_of=as_of, created_at=at, n_customers=len(rows), seconds=round(seconds, 3))


def stored_day(con: duckdb.DuckDBPyConnection, *, as_of: dt.date) -> StoredDay | None:
    """The stored day ``as_of`` if it is still current (see the module's notes), else None."""
    if not has_table(con, "daily_feature_days"):
        return None
    day = con.execute("SELECT created_at, n_customers, seconds, watermark FROM daily_feature_days WHERE as_of = ?",
                      [as_of]).fetchall()
    if not day:
        return None
    created_at, n, seconds, stored = day[0]
    stored = json.loads(stored)
    now = _watermark(con)
    if now["prices"] != stored["prices"]:
        return None
    grown = [(t, c) for t, c in _DATED if now["counts"][t] != stored["counts"][t]]
    if any(now["counts"][t] < stored["counts"][t] for t, _ in grown):
        return None                       # rows were deleted: not an append-only history any more
    if grown:
        # the rows added since: any dated before the day changes the snapshot
        late = con.execute("SELECT " + ", ".join(
            f"(SELECT count(*) FROM {t} WHERE rowid >= {int(stored['counts'][t])} AND {c} < CAST($as_of AS DATE))"
            for t, c in grown), {"as_of": as_of}).fetchall()[0]
        if any(late):
            return None
    return StoredDay(as_of=as_of, created_at=created_at, n_customers=int(n), seconds=float(seconds))


def stored_snapshot(con: duckdb.DuckDBPyConnection, *, customer_id: int, as_of: dt.date) -> pd.DataFrame | None:
    """One customer's stored features at ``as_of``, in the shape of :func:`models.features.snapshot_features`.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customer_id : int
    as_of : datetime.date

    Returns
    -------
    pandas.DataFrame or None
        One row (``customer_id``, ``as_of`` and :data:`models.features.FEATURES`), equal to
        ``snapshot_features(con, as_of=as_of, customer_ids=[customer_id])``; None when no current
        day is stored for ``as_of``, the customer has no stored row, or their customer row or
        subscriptions changed since (then compute it live).
    """
    if stored_day(con, as_of=as_of) is None:
        return None
    row = con.execute(_ROW_SQL, [as_of, int(customer_id)]).fetchall()
    if not row:
        return None
    now = con.execute(_DIGEST_ONE_SQL, {"cid": int(customer_id)}).fetchall()
    if not now or int(now[0][1]) != int(row[0][1]):
        return None
    values = dict(zip(F.FEATURES, row[0][2:]))
    out = pd.DataFrame({"customer_id": [int(customer_id)],
                        **{c: [float("nan") if values[c] is None else float(values[c])] for c in F.NUMERIC},
                        **{c: pd.Series([values[c]], dtype=object) for c in F.CATEGORICAL}})
    out.insert(1, "as_of", pd.Timestamp(as_of))           # as snapshot_features does
    return out[["customer_id", "as_of", *F.FEATURES]]


_ROW_SQL = ("SELECT " + ", ".join(["customer_id", "digest", *F.FEATURES])
            + " FROM daily_features WHERE as_of = ? AND customer_id = ?")
