"""Find customers: the agent desk's search by name, email, phone or account number.

Read-only. The search text is always a bound parameter; the wildcard characters of LIKE (``%``, ``_``)
and the escape character itself are escaped in it, so a caller searching for ``50%`` finds the
text ``50%`` and never "everything starting with 50". Results carry the identifying fields the agent
desk masks until the caller's identity is verified.
"""
from __future__ import annotations

import re

import duckdb

from billing.results import INVALID_INPUT, Result, failure, success

MIN_QUERY_LENGTH = 2
MAX_QUERY_LENGTH = 100
MIN_PHONE_DIGITS = 4
DEFAULT_LIMIT = 20
MAX_LIMIT = 200

COLUMNS = ("customer_id", "account_number", "name", "email", "phone", "postcode", "signup_date",
           "churned_on", "is_active", "plan_name", "match")

# Fast path: an account number or customer id typed in full finds the customer by its key (indexed),
# an email typed in full by plain equality (no lower-casing of every email).
_EXACT_SQL = """
SELECT c.customer_id,
       CASE WHEN c.account_number IN ($as_typed, $upper) OR c.customer_id = $id THEN 0 ELSE 1 END AS match_rank
FROM customers c
WHERE c.account_number = $as_typed OR c.account_number = $upper OR c.customer_id = $id
   OR c.email = $email OR c.email = $email_lower
"""

# The search: one row per customer matching one of the conditions chosen for the text (code
# constants; the text itself only ever travels as a bound parameter); best matches first.
_SCAN_SQL = r"""
SELECT c.customer_id,
       CASE
           WHEN {email_exact} THEN 1
           WHEN {phone_exact} THEN 2
           WHEN c.name ILIKE $prefix ESCAPE '\' THEN 3
           ELSE 4
       END AS match_rank
FROM customers c
WHERE {where}
ORDER BY match_rank, c.name, c.customer_id
LIMIT $limit_plus_one
"""
_BY_NAME = "c.name ILIKE $contains ESCAPE '\\'"
_BY_ACCOUNT = "c.account_number ILIKE $contains ESCAPE '\\'"
_BY_EMAIL = "c.email ILIKE $contains ESCAPE '\\'"
_EMAIL_EXACT = "lower(c.email) = $exact"
# phone digits with anything between them: '555 0101' matches '+31 20 555-0101'. The LIKE of the
# digits in order (a necessary condition, several times cheaper than the regular expression) runs
# first, so the expression only checks the few phones it lets through.
_BY_PHONE = "(c.phone LIKE $phone_like AND regexp_matches(c.phone, $phone_pattern))"
_PHONE_EXACT = "regexp_full_match(c.phone, $phone_full)"

_PHONE_LIKE = re.compile(r"[\d\s+\-().]+")


# The hits with what the desk shows about them.
_DETAIL_SQL = """
WITH hits AS (
    SELECT * FROM _fc_hits
),
current_plan AS (
    -- one row per hit: the plan of its latest subscription
    SELECT s.customer_id, p.name AS plan_name, s.end_date
    FROM subscriptions s JOIN hits h USING (customer_id) JOIN plans p USING (plan_id)
    QUALIFY row_number() OVER (PARTITION BY s.customer_id ORDER BY s.start_date DESC, s.subscription_id DESC) = 1
),
final AS (
    SELECT c.customer_id, c.account_number, c.name, c.email, c.phone, c.postcode, c.signup_date,
           c.churned_on,
           c.churned_on IS NULL AND cp.customer_id IS NOT NULL AND cp.end_date IS NULL AS is_active,
           cp.plan_name,
           CASE h.match_rank WHEN 0 THEN 'account' WHEN 1 THEN 'email' WHEN 2 THEN 'phone'
                             WHEN 3 THEN 'name' ELSE 'contains' END AS "match",
           h.match_rank
    FROM hits h JOIN customers c USING (customer_id) LEFT JOIN current_plan cp USING (customer_id)
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
    An account number typed in full (any case), a customer id, or an email typed in full (as stored or
    in lower case) finds that customer and nothing else. Otherwise matching is case-insensitive, with ``ILIKE '%text%'`` (the text's ``%``,
    ``_`` and ``\\`` escaped): the name contains the text; the account number, when the text has a
    digit; the email, when the text has an ``@``. A text that looks like a phone number (digits,
    spaces, ``+ - ( ) .``, at least 4 digits) matches phones whose digits contain its digits in
    order, whatever separators are written between them. Order: exact email, exact phone digits,
    name starting with the text, the rest; then by name. (Each kind of text scans only the columns
    it can match: a million customers are searched within the agent desk's time budget.)
    """
    text = (query or "").strip()
    if len(text) < MIN_QUERY_LENGTH:
        return failure(INVALID_INPUT, f"type at least {MIN_QUERY_LENGTH} characters to search")
    if len(text) > MAX_QUERY_LENGTH:
        return failure(INVALID_INPUT, f"a search may have at most {MAX_QUERY_LENGTH} characters")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        return failure(INVALID_INPUT, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    digits = re.sub(r"\D", "", text)
    phone_like = bool(_PHONE_LIKE.fullmatch(text)) and len(digits) >= MIN_PHONE_DIGITS
    key = int(text) if text.isdigit() and len(text) <= 18 else None
    email = text if "@" in text else None
    hits = con.execute(_EXACT_SQL, {"as_typed": text, "upper": text.upper(), "id": key, "email": email,
                                    "email_lower": email and email.lower()}).df()
    if hits.empty:
        escaped = escape_like(text)
        where, params = [], {"prefix": f"{escaped}%", "limit_plus_one": limit + 1, "contains": f"%{escaped}%"}
        if not phone_like:
            where.append(_BY_NAME)
        if any(ch.isdigit() for ch in text):
            where.append(_BY_ACCOUNT)
        email_exact = phone_exact = "FALSE"
        if "@" in text:
            where.append(_BY_EMAIL)
            email_exact, params["exact"] = _EMAIL_EXACT, text.lower()
        if phone_like:
            gap = "[^0-9]*"
            where.append(_BY_PHONE)
            phone_exact = _PHONE_EXACT
            params["phone_pattern"] = gap.join(digits)
            params["phone_like"] = "%" + "%".join(digits) + "%"
            params["phone_full"] = "[^0-9]*" + gap.join(digits) + "[^0-9]*"
        sql = _SCAN_SQL.format(where=" OR ".join(where), email_exact=email_exact, phone_exact=phone_exact)
        hits = con.execute(sql, params).df()
    con.register("_fc_hits", hits)
    try:
        df = con.execute(_DETAIL_SQL).df()
    finally:
        con.unregister("_fc_hits")
    truncated = len(df) > limit
    df = df.head(limit).reset_index(drop=True)
    df["is_active"] = df["is_active"].fillna(False).astype(bool)
    n = len(df)
    message = (f"{n} customer{'s' if n != 1 else ''} found" + (f" (showing the first {limit})" if truncated else "")
               if n else f"no customer matches '{text}'")
    return success(message, customers=df[list(COLUMNS)], truncated=truncated)
