"""End the subscriptions of customers who leave two billing periods unpaid (involuntary churn).

One set-based pass: the customers :func:`billing.account.overdue_customers` lists with at least
:data:`MIN_OVERDUE_PERIODS` overdue periods and an open subscription get it ended through
:func:`billing.cancel_subscription.cancel_subscriptions` (``involuntary``, ``non_payment``). Paying
before the run (so that fewer than two periods stay overdue) prevents it. Re-running changes nothing.
"""
from __future__ import annotations

import datetime as dt

import duckdb

from billing import audit
from billing.account import MIN_OVERDUE_PERIODS, customer_group_by, overdue_customers_sql
from billing.cancel_subscription import cancel_subscriptions
from billing.results import OK, Result, success
from data.db import transaction

CHURN_KIND = "involuntary"
CHURN_REASON = "non_payment"
END_REASON = "non_payment"

# One row per customer to churn (grain: customer), with the last day served of the open subscription
# (the latest, as cancel_subscriptions picks it).
# (only customers with an open subscription can be ended: the balances are computed for them only)
_TO_END_SQL = """
WITH overdue AS (
""" + overdue_customers_sql("SELECT customer_id FROM subscriptions WHERE end_date IS NULL") + """
),
open_subs AS (
    SELECT s.subscription_id, s.customer_id, s.start_date, o.overdue_cents
    FROM subscriptions s JOIN overdue o USING (customer_id)
    WHERE s.end_date IS NULL
    QUALIFY row_number() OVER (PARTITION BY s.customer_id
                               ORDER BY s.start_date DESC, s.subscription_id DESC) = 1
),
last_billed AS (
    SELECT i.subscription_id, max(i.period_end) AS last_billed_end
    FROM invoices i WHERE i.subscription_id IN (SELECT subscription_id FROM open_subs)
    GROUP BY i.subscription_id
),
final AS (
    SELECT s.customer_id, s.subscription_id, s.overdue_cents,
           CAST(greatest(CAST($as_of AS DATE) - INTERVAL 1 DAY,
                         coalesce(b.last_billed_end, DATE '0001-01-01'),
                         s.start_date) AS DATE) AS end_date,
           $churn_reason AS churn_reason, $churn_kind AS churn_kind, $end_reason AS end_reason
    FROM open_subs s LEFT JOIN last_billed b USING (subscription_id)
)
SELECT * FROM final ORDER BY customer_id
"""


def end_for_non_payment(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, at: dt.datetime,
                        user_id: int | None = None) -> Result:
    """End the open subscription of every customer with two or more overdue periods.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        The day of the run: an invoice is overdue when its balance is positive and
        ``due_on < as_of``.
    at : datetime.datetime
        When the run happens (audit time).
    user_id : int, optional
        Who started it (None = scheduled).

    Returns
    -------
    Result
        Always ok. ``data``: ended (subscriptions ended), refused (cancellations refused: 0 unless
        something changed the data between the read and the write), customer_ids and subscription_ids (lists),
        overdue_cents (their overdue balance), outcomes (the per-row frame of
        :func:`billing.cancel_subscription.cancel_subscriptions`).

    Notes
    -----
    Rule: a customer with an open subscription (``end_date IS NULL``) and overdue invoices of at
    least two distinct periods (:func:`billing.account.overdue_customers`) churns involuntarily.

    End date: ``greatest(as_of - 1 day, last day of the subscription's latest invoiced period,
    start_date)``. The customer is served up to the day before the run and billed for those days in
    arrears by the next run; the end date never falls inside a period already invoiced (that invoice
    charged the whole period and invoices are never edited) and never before the start.

    Written by :func:`billing.cancel_subscription.cancel_subscriptions` (one transaction, set-based):
    ``end_reason = 'non_payment'``, the customer ``churned_on`` = end date,
    ``churn_kind = 'involuntary'``, ``churn_reason = 'non_payment'``. Then one audit row for the run
    (its own transaction: cancel_subscriptions commits its own).

    Known limit: with a plan change scheduled for after ``as_of`` (the old subscription already has a
    future end date, the new one opens later), only the open (new) subscription is ended, on its
    start date; the old one still serves until its scheduled end.
    """
    with customer_group_by(con):
        to_end = con.execute(_TO_END_SQL, {"as_of": as_of, "min_periods": MIN_OVERDUE_PERIODS,
                                           "churn_reason": CHURN_REASON, "churn_kind": CHURN_KIND,
                                           "end_reason": END_REASON}).df()
    outcomes = cancel_subscriptions(con, to_end[["customer_id", "end_date", "churn_reason", "churn_kind",
                                                 "end_reason"]], at=at, user_id=user_id)
    done = outcomes[outcomes["code"] == OK] if len(outcomes) else outcomes
    customer_ids = [int(c) for c in done["customer_id"]] if len(done) else []
    subscription_ids = [int(s) for s in done["subscription_id"]] if len(done) else []
    overdue_cents = int(to_end.loc[to_end["customer_id"].isin(customer_ids), "overdue_cents"].sum())
    refused = len(outcomes) - len(done)
    with transaction(con):
        audit.log(con, at=at, user_id=user_id, action="end_for_non_payment", entity="run",
                  entity_id=str(as_of),
                  detail={"subscriptions_ended": len(done), "refused": refused,
                          "overdue_cents": overdue_cents})
    message = f"{len(done)} subscriptions ended for non-payment"
    if refused:
        first = outcomes[outcomes["code"] != OK].iloc[0]
        message += (f"; {refused} refused, first: customer {first['customer_id']} "
                    f"({first['code']}: {first['message']})")
    return success(message, ended=len(done), refused=refused, customer_ids=customer_ids,
                   subscription_ids=subscription_ids, overdue_cents=overdue_cents, outcomes=outcomes)
