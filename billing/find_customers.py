"""Find customers: the agent desk's search by name, email, phone or account number.

Read-only. The search text is always a bound parameter; the wildcard characters of LIKE (``%``, ``_``)
and the escape character itself are escaped in it, so a caller searching for ``50%`` finds the
text ``50%`` and never "everything starting with 50". Results carry the identifying fields the agent
desk masks until the caller's identity is verified.
"""
from __future__ import annotations

import re

import duckdb
import pandas as pd

from billing.results import INVALID_INPUT, Result, failure, success

MIN_QUERY_LENGTH = 2
MAX_QUERY_LENGTH = 100
MIN_PHONE_DIGITS = 4
DEFAULT_LIMIT = 20
MAX_LIMIT = 200

COLUMNS = ("customer_id", "account_number", "name", "email", "phone", "postcode", "signup_date",
           "churned_on", "is_active", "plan_name", "match")

_SEARCH_SQL = r"""
WITH hits AS (
    -- one row per customer whose account number, name, email or phone contains the text
    SELECT c.customer_id, c.account_number, c.name, c.email, c.phone, c.postcode, c.signup_date,
           c.churned_on,
           CASE
               WHEN lower(c.account_number) = $exact OR c.customer_id = $id THEN 0
               WHEN lower(c.email) = $exact THEN 1
               WHEN $digits IS NOT NULL AND regexp_replace(coalesce(c.phone, ''), '[^0-9]', '', 'g') = $digits
                   THEN 2
               WHEN c.name ILIKE $prefix ESCAPE '\' THEN 3
               ELSE 4
           END AS match_rank
    FROM customers c
    WHERE c.customer_id = $id
       OR c.account_number ILIKE $contains ESCAPE '\'
       OR c.name ILIKE $contains ESCAPE '\'
       OR c.email ILIKE $contains ESCAPE '\'
       OR ($digits IS NOT NULL
           AND regexp_replace(coalesce(c.phone, ''), '[^0-9]', '', 'g') LIKE '%' || $digits || '%')
    ORDER BY match_rank, c.name, c.customer_id
    LIMIT $limit_plus_one
),
current_plan AS (
    -- one row per hit: the plan of its latest subscription
    SELECT s.customer_id, p.name AS plan_name, s.end_date
    FROM subscriptions s JOIN hits h USING (customer_id) JOIN plans p USING (plan_id)
    QUALIFY row_number() OVER (PARTITION BY s.customer_id ORDER BY s.start_date DESC, s.subscription_id DESC) = 1
),
final AS (
    SELECT h.customer_id, h.account_number, h.name, h.email, h.phone, h.postcode, h.signup_date,
           h.churned_on,
           h.churned_on IS NULL AND cp.customer_id IS NOT NULL AND cp.end_date IS NULL AS is_active,
           cp.plan_name,
           CASE h.match_rank WHEN 0 THEN 'account' WHEN 1 THEN 'email' WHEN 2 THEN 'phone'
                             WHEN 3 THEN 'name' ELSE 'contains' END AS "match",
           h.match_rank
    FROM hits h LEFT JOIN current_plan cp USING (customer_id)
)
SELECT * EXCLUDE (match_rank) FROM final ORDER BY match_rank, name, customer_id
"""


def escape_like(text: str, escape: str = "\\") -> str:
    """``text`` with the LIKE wildcards ``%`` and ``_`` (and the escape character) escaped."""
    return (text.replace(escape, escape + escape).replace("%", escape + "%")
            .replace("_", escape + "_"))


def find_customers(con: duckdb.DuckDBPyConnection, query: str, *, limit: int = DEFAULT_LIMIT) -> Result:
    """Search customers by name, email, phone, account number or customer id.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    query : str
        What the agent typed: part of a name or email, an account number, a phone number in any
        format (only its digits are compared), or a customer id.
    limit : int
        At most this many customers (1..200).

    Returns
    -------
    Result
        ``ok`` with ``data['customers']``: a DataFrame with one row per customer found, best matches
        first: customer_id, account_number, name, email, phone, postcode, signup_date, churned_on,
        is_active (an open subscription and not churned), plan_name (latest subscription), match
        (``account``, ``email``, ``phone``, ``name``: exact or starting with it, ``contains``);
        ``data['truncated']`` True when more customers matched than ``limit``.
        ``invalid_input`` when the text is shorter than 2 or longer than 100 characters, or the
        limit is out of range.

    Notes
    -----
    Matching is case-insensitive. Text matches when the account number, name or email contains it
    (``ILIKE '%text%'`` with the text's ``%``, ``_`` and ``\\`` escaped). A phone matches when its
    digits contain the query's digits (at least 4 of them). A query made only of digits also finds
    the customer with that id. Order: exact account number or id, exact email, exact phone digits,
    name starting with the text, the rest; then by name.
    """
    text = (query or "").strip()
    if len(text) < MIN_QUERY_LENGTH:
        return failure(INVALID_INPUT, f"type at least {MIN_QUERY_LENGTH} characters to search")
    if len(text) > MAX_QUERY_LENGTH:
        return failure(INVALID_INPUT, f"a search may have at most {MAX_QUERY_LENGTH} characters")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        return failure(INVALID_INPUT, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    digits = re.sub(r"\D", "", text)
    escaped = escape_like(text)
    params = {
        "exact": text.lower(),
        "id": int(text) if text.isdigit() and len(text) <= 18 else None,
        "contains": f"%{escaped}%",
        "prefix": f"{escaped}%",
        "digits": digits if len(digits) >= MIN_PHONE_DIGITS else None,
        "limit_plus_one": limit + 1,
    }
    df = con.execute(_SEARCH_SQL, params).df()
    truncated = len(df) > limit
    df = df.head(limit).reset_index(drop=True)
    df["is_active"] = df["is_active"].fillna(False).astype(bool)
    n = len(df)
    message = (f"{n} customer{'s' if n != 1 else ''} found" + (f" (showing the first {limit})" if truncated else "")
               if n else f"no customer matches '{text}'")
    return success(message, customers=df[list(COLUMNS)], truncated=truncated)
