"""Verify a caller's identity before the agent desk shows any account detail.

The caller answers at least two of three questions: postcode, birth date, amount of the last invoice.
Every attempt is written to the audit log (action ``verify_identity``), passed or not, with which
questions were asked and how many answers matched, never the answers themselves. After
:data:`MAX_FAILED_ATTEMPTS` failures for one customer within :data:`LOCK_MINUTES` minutes, further
attempts are refused (and logged) until the window has passed.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

import duckdb

from billing import audit
from billing.manage_users import require_role
from billing.results import INVALID_INPUT, NOT_FOUND, NOT_PERMITTED, Result, failure, success
from data.db import transaction

QUESTIONS = ("postcode", "birth_date", "last_invoice_amount")
REQUIRED_ANSWERS = 2
MAX_FAILED_ATTEMPTS = 5
LOCK_MINUTES = 30
VERIFYING_ROLES = ("agent", "admin")

_NOT_VERIFIED = "identity not verified: the answers do not match our records"

_FACTS_SQL = """
WITH cust AS (
    SELECT customer_id, postcode, birth_date FROM customers WHERE customer_id = $cid
),
latest AS (
    -- the invoices of the customer's latest issue date (two when a plan changed in the month)
    SELECT total_cents FROM invoices
    WHERE customer_id = $cid AND status <> 'void'
    QUALIFY issued_on = max(issued_on) OVER ()
),
recent_failures AS (
    SELECT count(*) AS n FROM audit_log
    WHERE action = 'verify_identity' AND entity = 'customer' AND entity_id = CAST($cid AS VARCHAR)
      AND logged_at > $since AND logged_at <= $at
      AND json_extract_string(detail, '$.passed') = 'false'
      AND coalesce(json_extract_string(detail, '$.why_not'), '') <> 'locked'
),
final AS (
    SELECT c.postcode, c.birth_date,
           (SELECT list(total_cents) FROM latest) AS last_totals,
           (SELECT n FROM recent_failures) AS recent_failures
    FROM cust c
)
SELECT * FROM final
"""


def normalize_postcode(text: Any) -> str:
    """Postcodes are compared upper-case without spaces or dashes: ``'ab1 2cd' == 'AB12CD'``."""
    return re.sub(r"[\s\-]", "", str(text or "")).upper()


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value.strip() == "")


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        return None


def verify_identity(con: duckdb.DuckDBPyConnection, *, customer_id: int, user_id: int | None,
                    at: dt.datetime, postcode: str | None = None, birth_date: dt.date | str | None = None,
                    last_invoice_amount_cents: int | None = None) -> Result:
    """Check a caller's answers against the customer's records; audited whatever the outcome.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customer_id : int
        The customer the caller claims to be.
    user_id : int or None
        The agent asking (an active agent or admin).
    at : datetime.datetime
        When the check is made (UTC).
    postcode, birth_date, last_invoice_amount_cents
        The caller's answers; None or empty = not asked. ``birth_date`` as a date or ISO text,
        the amount in integer cents.

    Returns
    -------
    Result
        ``ok`` (verified) with ``data``: customer_id, asked (names of the questions answered),
        matched (how many answers matched). Failures, each with ``data['why_not']``:

        - ``invalid_input``: ``too_few_answers`` (fewer than two questions answered) or
          ``bad_answer`` (a birth date that is not a date, an amount that is not whole cents);
        - ``not_found``: ``customer_not_found``;
        - ``not_permitted``: ``mismatch`` (an answer does not match; the message never says which),
          ``no_records`` (fewer than two of the three facts are on file, e.g. an imported customer
          without postcode, birth date or invoices: nobody can be verified here),
          ``locked`` (too many failed attempts for this customer lately), or the user may not verify
          callers (not an active agent or admin).

        Every outcome is logged as ``verify_identity`` on the customer with ``detail``: passed,
        why_not, asked, matched.

    Notes
    -----
    Verified when at least two questions are answered and every answer given matches. Postcodes
    match ignoring case, spaces and dashes (:func:`normalize_postcode`); a birth date matches exactly;
    the amount matches the total of any invoice of the customer's latest issue date, or their sum
    (a plan change in a month gives two invoices). A question whose record is missing (no postcode
    on file, no invoice yet) never matches. Locked: :data:`MAX_FAILED_ATTEMPTS` failed attempts
    (not counting refusals while locked) in the :data:`LOCK_MINUTES` minutes before ``at``.
    """
    answers = {"postcode": postcode, "birth_date": birth_date,
               "last_invoice_amount": last_invoice_amount_cents}
    asked = [q for q in QUESTIONS if _given(answers[q])]
    try:
        cid = int(customer_id)
    except (TypeError, ValueError):
        return failure(INVALID_INPUT, f"customer id must be a number, got {customer_id!r}",
                       why_not="bad_answer")

    def done(outcome: Result, matched: int = 0) -> Result:
        with transaction(con):
            audit.log(con, at=at, user_id=user_id, action="verify_identity", entity="customer", entity_id=cid,
                      detail={"passed": outcome.ok, "why_not": outcome.data.get("why_not"),
                              "asked": asked, "matched": matched})
        return outcome

    allowed = require_role(con, user_id, VERIFYING_ROLES)
    if not allowed.ok:
        return done(failure(NOT_PERMITTED, allowed.message, why_not="not_permitted"))
    rows = con.execute(_FACTS_SQL, {"cid": cid, "at": at,
                                    "since": at - dt.timedelta(minutes=LOCK_MINUTES)}).fetchall()
    if not rows:
        return done(failure(NOT_FOUND, f"customer {cid} does not exist", why_not="customer_not_found"))
    record_postcode, record_birth, last_totals, recent_failures = rows[0]
    if recent_failures >= MAX_FAILED_ATTEMPTS:
        return done(failure(NOT_PERMITTED, f"too many failed checks for this customer; try again after "
                                           f"{LOCK_MINUTES} minutes or escalate to a supervisor",
                            why_not="locked"))
    on_file = sum((bool(record_postcode), record_birth is not None, bool(last_totals)))
    if on_file < REQUIRED_ANSWERS:
        return done(failure(NOT_PERMITTED, "this customer has fewer than two of postcode, birth date and an "
                                           "invoice on file, so the identity cannot be checked here; escalate "
                                           "to a supervisor", why_not="no_records"))
    if len(asked) < REQUIRED_ANSWERS:
        return done(failure(INVALID_INPUT, f"ask at least {REQUIRED_ANSWERS} of: postcode, birth date, "
                                           f"last invoice amount", why_not="too_few_answers"))
    checks: dict[str, bool] = {}
    if "postcode" in asked:
        checks["postcode"] = bool(record_postcode) and \
            normalize_postcode(postcode) == normalize_postcode(record_postcode)
    if "birth_date" in asked:
        given = _as_date(birth_date)
        if given is None:
            return done(failure(INVALID_INPUT, f"birth date {birth_date!r} is not a date (YYYY-MM-DD)",
                                why_not="bad_answer"))
        checks["birth_date"] = record_birth is not None and given == record_birth
    if "last_invoice_amount" in asked:
        amount = last_invoice_amount_cents
        if isinstance(amount, bool) or not isinstance(amount, int):
            return done(failure(INVALID_INPUT, "the invoice amount must be whole cents", why_not="bad_answer"))
        totals = [int(t) for t in (last_totals or [])]
        checks["last_invoice_amount"] = bool(totals) and (amount in totals or amount == sum(totals))
    matched = sum(checks.values())
    if matched == len(asked):
        return done(success("identity verified", customer_id=cid, asked=asked, matched=matched), matched)
    return done(failure(NOT_PERMITTED, _NOT_VERIFIED, why_not="mismatch", asked=asked, matched=matched),
                matched)
