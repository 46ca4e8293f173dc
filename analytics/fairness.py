"""Is this customer treated fairly? The agent desk's fairness check for a customer on the phone.

Four questions about the customer's recent bills (the last ``recent_months`` billing periods up to
``as_of``), each answered from the records only:

- billing errors: a line charged twice on one invoice (or the plan charged again as a fee), a credit
  note issued for a billing error, a contact that reported one;
- price rises of the customer's plan(s) that took effect in the window;
- discounts that ended in the window (the first full-price bill after a discount is a bill shock);
- what peers pay: customers on the same plan in the same tenure band, their invoice for the same
  period (median, quartiles), against what this customer paid.

Read-only; works on imported databases without invoices or contacts (the answers are then empty).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from data.money import format_cents, format_invoice_number

RECENT_MONTHS = 6
# Tenure bands in whole months since signup, at the start of the compared period: (label, lo, hi).
TENURE_BANDS = (("under 6 months", 0, 5), ("6-11 months", 6, 11), ("12-23 months", 12, 23),
                ("2-4 years", 24, 59), ("5 years or more", 60, None))
MIN_PEERS = 5
_BAND_RANGE = {label: (lo, hi) for label, lo, hi in TENURE_BANDS}

INVOICE_COLUMNS = ("invoice_id", "number", "period_start", "issued_on", "due_on", "plan_name", "subtotal_cents",
                   "discount_cents", "tax_cents", "credit_cents", "total_cents", "currency", "status")
ERROR_COLUMNS = ("invoice_id", "number", "period_start", "source", "detail", "amount_cents")
PRICE_COLUMNS = ("plan_id", "plan_name", "effective_from", "old_price_cents", "new_price_cents",
                 "change_pct")
DISCOUNT_COLUMNS = ("grant_id", "offer_name", "kind", "percent_off", "first_period", "last_period")


@dataclass(frozen=True)
class PeerComparison:
    """What customers on the same plan and in the same tenure band paid for one period.

    Attributes
    ----------
    plan_id, plan_name : the customer's plan on that period's invoice
    tenure_band : str
        Label of the band (:data:`TENURE_BANDS`), by whole months from signup to the period start.
    period_start : datetime.date
        The period compared: the customer's latest invoiced period.
    n_peers : int
        Peers with an invoice for the period (the customer excluded).
    p25_cents, median_cents, p75_cents : int or None
        Quartiles of the peers' invoice totals for the period (None when fewer than
        :data:`MIN_PEERS` peers).
    customer_cents : int
        What the customer's invoice(s) for the period total.
    share_paying_less : float or None
        Share of peers whose total is lower than the customer's (ties count half).
    currency : str
    """

    plan_id: int
    plan_name: str
    tenure_band: str
    period_start: dt.date
    n_peers: int
    p25_cents: int | None
    median_cents: int | None
    p75_cents: int | None
    customer_cents: int
    share_paying_less: float | None
    currency: str

    @property
    def enough_peers(self) -> bool:
        return self.n_peers >= MIN_PEERS and self.median_cents is not None

    @property
    def pays_above_peers(self) -> bool:
        """The customer pays more than three quarters of peers (above the upper quartile)."""
        return self.enough_peers and self.customer_cents > (self.p75_cents or 0)


@dataclass(frozen=True)
class FairnessCheck:
    """The answers of :func:`fairness_check`; each table may be empty.

    Attributes
    ----------
    customer_id : int
    as_of : datetime.date
    window_start : datetime.date
        First period looked at.
    invoices : pandas.DataFrame
        The bills looked at, latest first: one row per invoice of the window issued by ``as_of``
        (:data:`INVOICE_COLUMNS`).
    billing_errors : pandas.DataFrame
        One row per finding: invoice_id, number, period_start, source (``duplicate_line``,
        ``credit_note``, ``reported``), detail, amount_cents.
    price_rises : pandas.DataFrame
        One row per rise: plan_id, plan_name, effective_from, old_price_cents, new_price_cents,
        change_pct.
    ended_discounts : pandas.DataFrame
        One row per grant that ended: grant_id, offer_name, kind, percent_off, first_period,
        last_period.
    peers : PeerComparison or None
        None when the customer has no invoice (e.g. an imported database without bills).
    findings : tuple of str
        The same facts in plain language, most important first.
    """

    customer_id: int
    as_of: dt.date
    window_start: dt.date
    invoices: pd.DataFrame = field(repr=False)
    billing_errors: pd.DataFrame = field(repr=False)
    price_rises: pd.DataFrame = field(repr=False)
    ended_discounts: pd.DataFrame = field(repr=False)
    peers: PeerComparison | None
    findings: tuple[str, ...]

    @property
    def concerns(self) -> int:
        """How many of the four questions raise a concern."""
        return (int(not self.billing_errors.empty) + int(not self.price_rises.empty)
                + int(not self.ended_discounts.empty)
                + int(self.peers is not None and self.peers.pays_above_peers))


_INVOICES_SQL = """
SELECT i.invoice_id, i.period_start, i.issued_on, i.due_on, p.name AS plan_name, i.subtotal_cents,
       i.discount_cents, i.tax_cents, i.credit_cents, i.total_cents, i.currency, i.status
FROM invoices i JOIN plans p USING (plan_id)
WHERE i.customer_id = $cid AND i.period_start >= $window_start AND i.issued_on <= $as_of
ORDER BY i.period_start DESC, i.invoice_id DESC
"""

_ERRORS_SQL = """
WITH recent AS (
    -- one row per invoice of the customer in the window
    SELECT invoice_id, period_start FROM invoices
    WHERE customer_id = $cid AND period_start >= $window_start AND issued_on <= $as_of AND status <> 'void'
),
duplicates AS (
    -- one row per group of identical chargeable lines on one invoice
    SELECT r.invoice_id, r.period_start, 'duplicate_line' AS source,
           'line ''' || l.description || ''' is charged ' || count(*) || ' times' AS detail,
           CAST(l.amount_cents * (count(*) - 1) AS BIGINT) AS amount_cents
    FROM recent r JOIN invoice_lines l USING (invoice_id)
    WHERE l.kind IN ('plan', 'proration', 'usage', 'charge')
    GROUP BY r.invoice_id, r.period_start, l.kind, l.description, l.amount_cents
    HAVING count(*) > 1
),
plan_again AS (
    -- one row per one-off charge named like the invoice's plan: the plan charged a second time
    SELECT r.invoice_id, r.period_start, 'duplicate_line' AS source,
           'the plan ''' || p.name || ''' is charged again as a one-off charge' AS detail,
           l.amount_cents
    FROM recent r JOIN invoices i USING (invoice_id) JOIN plans p ON p.plan_id = i.plan_id
    JOIN invoice_lines l ON l.invoice_id = r.invoice_id
    WHERE l.kind = 'charge' AND l.description = p.name
),
credited AS (
    -- one row per credit note issued to correct a billing error on a recent invoice
    SELECT r.invoice_id, r.period_start, 'credit_note' AS source,
           'credit note CN-' || lpad(CAST(c.credit_note_id AS VARCHAR), 8, '0') || ' corrected a billing error'
               AS detail,
           c.total_cents AS amount_cents
    FROM recent r JOIN credit_notes c USING (invoice_id)
    WHERE c.reason = 'billing_error'
),
reported AS (
    -- one row per contact in the window that reported a billing error
    SELECT ct.invoice_id, i.period_start, 'reported' AS source,
           'the customer reported a billing error on ' || strftime(ct.contacted_at, '%Y-%m-%d')
               || ' (' || ct.resolution || ')' AS detail,
           CAST(NULL AS BIGINT) AS amount_cents
    FROM contacts ct LEFT JOIN invoices i USING (invoice_id)
    WHERE ct.customer_id = $cid AND ct.reason = 'billing_error'
      AND ct.contacted_at >= $window_start AND CAST(ct.contacted_at AS DATE) <= $as_of
),
final AS (
    SELECT * FROM duplicates UNION ALL SELECT * FROM plan_again UNION ALL SELECT * FROM credited UNION ALL SELECT * FROM reported
)
SELECT * FROM final ORDER BY period_start DESC NULLS LAST, invoice_id DESC, source
"""

_PRICE_SQL = """
WITH plans_held AS (
    -- the plans the customer was on in the window (subscriptions overlapping it)
    SELECT DISTINCT s.plan_id FROM subscriptions s
    WHERE s.customer_id = $cid AND s.start_date <= $as_of
      AND (s.end_date IS NULL OR s.end_date >= $window_start)
),
history AS (
    SELECT pp.plan_id, pp.effective_from, pp.monthly_price_cents,
           lag(pp.monthly_price_cents) OVER (PARTITION BY pp.plan_id ORDER BY pp.effective_from) AS old_price
    FROM plan_prices pp JOIN plans_held USING (plan_id)
),
final AS (
    SELECT h.plan_id, p.name AS plan_name, h.effective_from, h.old_price AS old_price_cents,
           h.monthly_price_cents AS new_price_cents,
           round(100.0 * (h.monthly_price_cents - h.old_price) / nullif(h.old_price, 0), 1) AS change_pct
    FROM history h JOIN plans p USING (plan_id)
    WHERE h.effective_from > $window_start AND h.effective_from <= $as_of
      AND h.monthly_price_cents > h.old_price
)
SELECT * FROM final ORDER BY effective_from DESC, plan_id
"""

_DISCOUNTS_SQL = """
WITH grants AS (
    SELECT g.grant_id, o.name AS offer_name, g.kind, g.percent_off, g.first_period,
           CAST(g.first_period + to_months(g.cycles - 1) AS DATE) AS last_period
    FROM offer_grants g JOIN offers o USING (offer_id)
    WHERE g.customer_id = $cid AND g.kind IN ('percent_off', 'free_months')
),
final AS (
    -- grants whose last covered period is in the window and before the current month
    SELECT * FROM grants WHERE last_period >= $window_start AND last_period < $this_month
)
SELECT * FROM final ORDER BY last_period DESC, grant_id
"""

# The customer's latest invoiced period (by ``issued_on <= as_of``, voids aside), its plan and what it
# totalled; ``{since}`` narrows the scan to recent periods first (the invoice table is in period order,
# so DuckDB skips older row groups), with a second, unnarrowed look only when that finds nothing.
_OWN_SQL = """
SELECT i.period_start, arg_max(i.plan_id, i.invoice_id) AS plan_id, sum(i.total_cents) AS total_cents,
       any_value(i.currency) AS currency, any_value(c.signup_date) AS signup_date
FROM invoices i JOIN customers c USING (customer_id)
WHERE i.customer_id = $cid AND i.issued_on <= $as_of AND i.status <> 'void' {since}
GROUP BY i.period_start
ORDER BY i.period_start DESC
LIMIT 1
"""

# The peers' spread: one row per peer (another customer who signed up in the band's date range, with
# an invoice on the same plan for the same period, summed over a plan change), then one row of count,
# quartiles and how many pay less than the customer (ties count half).
_PEERS_SQL = """
WITH peer_totals AS (
    SELECT i.customer_id, sum(i.total_cents) AS total_cents
    FROM invoices i JOIN customers c USING (customer_id)
    WHERE i.period_start = $period AND i.plan_id = $plan_id AND i.status <> 'void'
      AND i.customer_id <> $cid
      AND c.signup_date <= $signed_by AND ($signed_after IS NULL OR c.signup_date > $signed_after)
    GROUP BY i.customer_id
),
final AS (
    SELECT count(*) AS n_peers,
           quantile_cont(total_cents, [0.25, 0.5, 0.75]) AS q,
           coalesce(count(*) FILTER (WHERE total_cents < $total)
                    + 0.5 * count(*) FILTER (WHERE total_cents = $total), 0) AS below
    FROM peer_totals
)
SELECT n_peers, q[1], q[2], q[3], below FROM final
"""


def _month_shift(day: dt.date, months: int) -> dt.date:
    """First day of the month ``months`` months after (negative: before) ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pd.DataFrame:
    """Execute ``sql`` with the named parameters it references (DuckDB refuses unused ones)."""
    used = set(re.findall(r"\$([a-z_]+)", sql))
    return con.execute(sql, {k: v for k, v in params.items() if k in used}).df()


def tenure_band(months: int) -> str:
    """The label of the tenure band of ``months`` whole months since signup."""
    for label, lo, hi in TENURE_BANDS:
        if months >= lo and (hi is None or months <= hi):
            return label
    return TENURE_BANDS[0][0]


def _frame(con, sql: str, params: dict, columns) -> pd.DataFrame:
    df = _run(con, sql, params)
    return df[list(columns)] if len(df.columns) else pd.DataFrame(columns=list(columns))


def _peers(con: duckdb.DuckDBPyConnection, customer_id: int, as_of: dt.date,
           window_start: dt.date) -> PeerComparison | None:
    params = {"cid": int(customer_id), "as_of": as_of}
    own = con.execute(_OWN_SQL.format(since="AND i.period_start >= $since"),
                      {**params, "since": window_start}).fetchall()
    if not own:
        own = con.execute(_OWN_SQL.format(since=""), params).fetchall()
    if not own:
        return None
    period, plan_id, total, currency, signup = own[0]
    months = (period.year * 12 + period.month) - (signup.year * 12 + signup.month) - (signup.day > 1)
    if months < 0:   # signed up after the period: no band
        return None
    band = tenure_band(months)
    lo, hi = _BAND_RANGE[band]
    plan_name = con.execute("SELECT name FROM plans WHERE plan_id = ?", [plan_id]).fetchall()[0][0]
    n, p25, p50, p75, below = con.execute(_PEERS_SQL, {
        "cid": int(customer_id), "period": period, "plan_id": plan_id, "total": total,
        "signed_by": _month_shift(period, -lo),
        "signed_after": None if hi is None else _month_shift(period, -(hi + 1))}).fetchall()[0]
    enough = n >= MIN_PEERS

    def cents(v):
        return int(round(v)) if enough and v is not None else None

    return PeerComparison(
        plan_id=int(plan_id), plan_name=plan_name, tenure_band=band, period_start=period, n_peers=int(n),
        p25_cents=cents(p25), median_cents=cents(p50), p75_cents=cents(p75), customer_cents=int(total),
        share_paying_less=float(below) / n if enough else None, currency=currency)


def _findings(errors: pd.DataFrame, rises: pd.DataFrame, ended: pd.DataFrame,
              peers: PeerComparison | None, recent_months: int, currency: str) -> tuple[str, ...]:
    out: list[str] = []
    for r in errors.itertuples():
        where = (f" on {format_invoice_number(r.invoice_id)} ({pd.Timestamp(r.period_start):%Y-%m})"
                 if not pd.isna(r.invoice_id) else "")
        amount = f"; {format_cents(int(r.amount_cents), currency)} at stake" \
            if not pd.isna(r.amount_cents) and r.amount_cents else ""
        label = {"duplicate_line": "Possible billing error", "credit_note": "Corrected billing error",
                 "reported": "Reported billing error"}[r.source]
        out.append(f"{label}{where}: {r.detail}{amount}.")
    for r in rises.itertuples():
        out.append(f"Price rise: {r.plan_name} went from {format_cents(int(r.old_price_cents), currency)} to "
                   f"{format_cents(int(r.new_price_cents), currency)} a month from "
                   f"{pd.Timestamp(r.effective_from):%Y-%m-%d} (+{r.change_pct:g}%).")
    for r in ended.itertuples():
        first_full = (pd.Timestamp(r.last_period) + pd.DateOffset(months=1))
        out.append(f"Discount '{r.offer_name}' ended: it covered {pd.Timestamp(r.first_period):%Y-%m} to "
                   f"{pd.Timestamp(r.last_period):%Y-%m}; the {first_full:%Y-%m} bill is the first without it.")
    if peers is None:
        out.append("No invoice yet, so no comparison with peers.")
    elif not peers.enough_peers:
        out.append(f"Too few peers on {peers.plan_name} ({peers.tenure_band} as a customer) to compare "
                   f"({peers.n_peers}).")
    else:
        cur = peers.currency
        verdict = ("more than most of them" if peers.pays_above_peers
                   else "less than most of them" if peers.customer_cents < (peers.p25_cents or 0)
                   else "in line with them")
        out.append(f"Peers on {peers.plan_name} with {peers.tenure_band} as customers paid a median of "
                   f"{format_cents(peers.median_cents, cur)} for {peers.period_start:%Y-%m} (middle half "
                   f"{format_cents(peers.p25_cents, cur)} to {format_cents(peers.p75_cents, cur)}, "
                   f"{peers.n_peers:,} peers); this customer paid {format_cents(peers.customer_cents, cur)}, "
                   f"{verdict}.")
    if errors.empty:
        out.insert(0, f"No billing errors found on the bills of the last {recent_months} months.")
    return tuple(out)


def fairness_check(con: duckdb.DuckDBPyConnection, customer_id: int, *, as_of: dt.date,
                   recent_months: int = RECENT_MONTHS) -> FairnessCheck | None:
    """Billing errors, price rises, ended discounts and what peers pay, for one customer.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    customer_id : int
    as_of : datetime.date
        The day of the check: only invoices issued, contacts made and prices in effect by then count.
    recent_months : int
        How many billing periods to look at, ``as_of``'s month included: the window starts on the
        first day of the month ``recent_months - 1`` months before it.

    Returns
    -------
    FairnessCheck or None
        None when there is no such customer.

    Notes
    -----
    - Billing error: on an invoice of the window, two or more chargeable lines (plan, proration,
      usage, charge) with the same kind, description and amount (the surplus is at stake), or a
      one-off charge named like the invoice's plan (the plan charged twice); a credit
      note of reason ``billing_error`` against an invoice of the window; a contact of reason
      ``billing_error`` in the window.
    - Price rise: a price of a plan the customer held in the window, effective after the window's
      start and by ``as_of``, higher than the price before it.
    - Ended discount: a percent-off or free-month grant whose last covered period
      (``first_period + cycles - 1`` months) is in the window and before ``as_of``'s month.
    - Peers: the customer's latest invoiced period ``P`` and its plan; peers are the other customers
      in the same tenure band (whole months from signup to ``P``, :data:`TENURE_BANDS`) with an
      invoice on that plan for ``P``; each peer's total for ``P`` (summed over a plan change) is
      compared; quartiles by linear interpolation, shown when there are at least
      :data:`MIN_PEERS` peers.
    """
    exists = con.execute("SELECT currency FROM customers WHERE customer_id = ?", [int(customer_id)]).fetchall()
    if not exists:
        return None
    currency = exists[0][0]
    this_month = _month_shift(as_of, 0)
    window_start = _month_shift(as_of, -(recent_months - 1))
    params = {"cid": int(customer_id), "as_of": as_of, "window_start": window_start, "this_month": this_month}
    invoices = _frame(con, _INVOICES_SQL, params, INVOICE_COLUMNS[:1] + INVOICE_COLUMNS[2:])
    invoices.insert(1, "number", invoices["invoice_id"].map(lambda v: format_invoice_number(int(v))))
    errors = _frame(con, _ERRORS_SQL, params, ERROR_COLUMNS[:1] + ERROR_COLUMNS[2:])
    errors.insert(1, "number", errors["invoice_id"].map(
        lambda v: None if pd.isna(v) else format_invoice_number(int(v))))
    rises = _frame(con, _PRICE_SQL, params, PRICE_COLUMNS)
    ended = _frame(con, _DISCOUNTS_SQL, params, DISCOUNT_COLUMNS)
    peers = _peers(con, customer_id, as_of, window_start)
    return FairnessCheck(
        customer_id=int(customer_id), as_of=as_of, window_start=window_start,
        invoices=invoices.reset_index(drop=True), billing_errors=errors.reset_index(drop=True), price_rises=rises.reset_index(drop=True),
        ended_discounts=ended.reset_index(drop=True), peers=peers,
        findings=_findings(errors, rises, ended, peers, recent_months, currency))
