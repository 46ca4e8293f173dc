"""Sign up customers: a customer row and an open subscription on a plan, in bulk or one at a time."""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from billing.results import INVALID_INPUT, Result, failure, success
from data.db import transaction

REQUIRED = ("name", "segment", "region", "channel", "signup_date", "plan_id")
OPTIONAL = {"customer_id": None, "account_number": None, "email": None, "phone": None,
            "postcode": None, "birth_date": None, "currency": "EUR", "is_autopay": False,
            "is_paperless": False, "start_date": None}


def create_customers(con: duckdb.DuckDBPyConnection, customers: pd.DataFrame, *,
                     at: dt.datetime) -> Result:
    """Create customers, each with an open subscription starting on its start date.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customers : pandas.DataFrame
        One row per customer: name, segment, region, channel, signup_date, plan_id (required);
        customer_id, account_number, email, phone, postcode, birth_date, currency, is_autopay,
        is_paperless, start_date (optional; start_date defaults to signup_date, ids to the next
        free ones, account numbers to ``AC`` + the id padded to 8 digits).
    at : datetime.datetime
        When the rows are created.

    Returns
    -------
    Result
        ``data['customer_ids']`` and ``data['subscription_ids']`` (numpy arrays in input order), or
        ``invalid_input`` naming the first problem; nothing is written then.

    Notes
    -----
    All or nothing: a missing field, an unknown plan, a plan with no price at the start date, or a
    duplicate account number rejects the whole batch.
    """
    missing = [c for c in REQUIRED if c not in customers.columns]
    if missing:
        return failure(INVALID_INPUT, f"missing columns: {', '.join(missing)}")
    if customers.empty:
        return success("no customers to create", customer_ids=[], subscription_ids=[])
    df = customers.copy()
    for col, default in OPTIONAL.items():
        if col not in df.columns:
            df[col] = default
    nulls = [c for c in REQUIRED if df[c].isna().any()]
    if nulls:
        return failure(INVALID_INPUT, f"empty values in required columns: {', '.join(nulls)}")
    df["start_date"] = df["start_date"].fillna(df["signup_date"])
    df["_row"] = range(len(df))
    con.register("_new_customers", df)
    try:
        with transaction(con):
            base_c, base_s = con.execute(
                "SELECT (SELECT coalesce(max(customer_id), 0) FROM customers), "
                "(SELECT coalesce(max(subscription_id), 0) FROM subscriptions)").fetchall()[0]
            con.execute("""
                CREATE OR REPLACE TEMP TABLE _cust AS
                SELECT n.*,
                       coalesce(CAST(n.customer_id AS BIGINT), ? + n._row + 1) AS cid,
                       ? + n._row + 1 AS sid
                FROM _new_customers n
            """, [base_c, base_s])
            problem = con.execute("""
                WITH bad_plan AS (
                    SELECT 'row ' || (c._row + 1) || ': plan ' || c.plan_id || ' has no price on ' ||
                           CAST(CAST(c.start_date AS DATE) AS VARCHAR) AS msg
                    FROM _cust c
                    WHERE NOT EXISTS (SELECT 1 FROM plan_prices p WHERE p.plan_id = c.plan_id
                                      AND p.effective_from <= CAST(c.start_date AS DATE))
                ),
                dup AS (
                    SELECT 'customer id ' || cid || ' already exists' AS msg FROM _cust
                    WHERE cid IN (SELECT customer_id FROM customers)
                    UNION ALL
                    SELECT 'customer id ' || cid || ' given twice' FROM _cust GROUP BY cid HAVING count(*) > 1
                )
                SELECT msg FROM bad_plan UNION ALL SELECT msg FROM dup LIMIT 1
            """).fetchall()
            if problem:
                raise _Reject(problem[0][0])
            con.execute("""
                INSERT INTO customers (customer_id, account_number, name, email, phone, postcode,
                    birth_date, segment, region, channel, signup_date, currency, is_autopay,
                    is_paperless, created_at)
                SELECT cid, coalesce(account_number, 'AC' || lpad(CAST(cid AS VARCHAR), 8, '0')),
                       name, email, phone, postcode, CAST(birth_date AS DATE), segment, region, channel,
                       CAST(signup_date AS DATE), currency, is_autopay, is_paperless, ?
                FROM _cust ORDER BY _row
            """, [at])
            con.execute("""
                INSERT INTO subscriptions (subscription_id, customer_id, plan_id, start_date)
                SELECT sid, cid, plan_id, CAST(start_date AS DATE) FROM _cust ORDER BY _row
            """)
            ids = con.execute("SELECT cid, sid FROM _cust ORDER BY _row").fetchnumpy()
    except _Reject as exc:
        return failure(INVALID_INPUT, str(exc))
    except duckdb.ConstraintException as exc:
        return failure(INVALID_INPUT, "rejected: " + str(exc).splitlines()[0])
    finally:
        con.unregister("_new_customers")
        con.execute("DROP TABLE IF EXISTS _cust")
    return success(f"{len(df)} customers created", customer_ids=ids["cid"], subscription_ids=ids["sid"])


def create_customer(con: duckdb.DuckDBPyConnection, *, name: str, segment: str, region: str,
                    channel: str, signup_date: dt.date, plan_id: int, at: dt.datetime,
                    **optional) -> Result:
    """Create one customer with an open subscription; see :func:`create_customers`.

    Returns
    -------
    Result
        ``data['customer_id']`` and ``data['subscription_id']`` on success.
    """
    unknown = set(optional) - set(OPTIONAL)
    if unknown:
        return failure(INVALID_INPUT, f"unknown fields: {', '.join(sorted(unknown))}")
    row = {"name": name, "segment": segment, "region": region, "channel": channel,
           "signup_date": signup_date, "plan_id": plan_id, **optional}
    res = create_customers(con, pd.DataFrame([row]), at=at)
    if not res.ok:
        return res
    return success("customer created", customer_id=int(res["customer_ids"][0]),
                   subscription_id=int(res["subscription_ids"][0]))


class _Reject(Exception):
    pass
