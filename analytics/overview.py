"""The Overview page's numbers: headline KPIs with their change on last month, and monthly trends.

Built on :func:`analytics.metrics.monthly_metrics` (the one definition of each metric); this module
only picks the reference month, the headline figures and their change. Also the app's business
date: which day the data describes (:func:`data_as_of`, :func:`business_date`).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from analytics.metrics import monthly_metrics
from data.db import has_table
from data.money import format_cents

TREND_MONTHS = 24
TREND_COLUMNS = ("month", "customers_end", "new_customers", "churned_customers", "mrr_cents",
                 "mrr_new_cents", "mrr_expansion_cents", "mrr_contraction_cents", "mrr_churn_cents",
                 "mrr_reactivation_cents", "logo_churn_rate", "revenue_churn_rate",
                 "net_revenue_retention", "arpu_cents", "contacts", "complaints", "mean_wait_minutes",
                 "discount_spend_cents", "gross_billed_cents", "invoices")

# (key, label, metric column, unit, which direction is good)
HEADLINE = (
    ("customers", "Customers", "customers_end", "count", "up"),
    ("mrr", "MRR", "mrr_cents", "cents", "up"),
    ("logo_churn", "Churn rate", "logo_churn_rate", "rate", "down"),
    ("nrr", "Net revenue retention", "net_revenue_retention", "rate", "up"),
    ("arpu", "ARPU", "arpu_cents", "cents", "up"),
    ("contacts", "Care contacts", "contacts", "count", "down"),
    ("mean_wait", "Mean wait", "mean_wait_minutes", "minutes", "down"),
    ("discount_spend", "Discount spend", "discount_spend_cents", "cents", "down"),
)


@dataclass(frozen=True)
class Kpi:
    """One headline figure for the reference month and its change on the month before.

    Attributes
    ----------
    key, label : str
    value, previous : float or None
        None when the metric is undefined (e.g. a rate with no customers, no contacts recorded).
    unit : str
        ``count``, ``cents``, ``rate`` (a share, 0.05 = 5 %), ``minutes``.
    good_direction : str
        ``up`` or ``down``: which change is good news.
    currency : str
    """

    key: str
    label: str
    value: float | None
    previous: float | None
    unit: str
    good_direction: str
    currency: str = "EUR"

    @property
    def change(self) -> float | None:
        """value - previous (percentage points for rates), None when either is missing."""
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous

    @property
    def relative_change(self) -> float | None:
        """change / |previous| for counts, money and minutes; None for rates or a zero previous."""
        if self.change is None or self.unit == "rate" or not self.previous:
            return None
        return self.change / abs(self.previous)

    @property
    def is_good(self) -> bool | None:
        if not self.change:
            return None
        return (self.change > 0) == (self.good_direction == "up")

    def format(self, value: float | None = None) -> str:
        """The value for people: ``1,234``, ``€12.50``, ``3.2%``, ``4.5 min``; ``-`` when missing."""
        v = self.value if value is None else value
        if v is None:
            return "-"
        if self.unit == "cents":
            return format_cents(int(round(v)), self.currency)
        if self.unit == "rate":
            return f"{100 * v:.1f}%"
        if self.unit == "minutes":
            return f"{v:.1f} min"
        return f"{int(round(v)):,}"

    @property
    def change_text(self) -> str | None:
        """The change for people: ``+1.2 pp``, ``+€120.00 (+3.1%)``, ``-12 (-2.0%)``; None when unknown."""
        c = self.change
        if c is None:
            return None
        sign = "+" if c >= 0 else "-"
        if self.unit == "rate":
            return f"{sign}{abs(100 * c):.1f} pp"
        if self.unit == "cents":
            head = f"{sign}{format_cents(abs(int(round(c))), self.currency)}"
        elif self.unit == "minutes":
            head = f"{sign}{abs(c):.1f} min"
        else:
            head = f"{sign}{abs(int(round(c))):,}"
        rel = self.relative_change
        return head if rel is None else f"{head} ({rel:+.1%})"


@dataclass(frozen=True)
class Overview:
    """Everything the Overview page shows.

    Attributes
    ----------
    as_of : datetime.date
    month : datetime.date
        The reference month: the last complete month at ``as_of``.
    previous_month : datetime.date
    kpis : tuple of Kpi
    trends : pandas.DataFrame
        One row per month up to ``month`` (columns :data:`TREND_COLUMNS`).
    currency : str
    has_invoices, has_contacts : bool
        Whether the window has any invoices / contacts (an imported file may have neither).
    """

    as_of: dt.date
    month: dt.date
    previous_month: dt.date
    kpis: tuple[Kpi, ...]
    trends: pd.DataFrame = field(repr=False)
    currency: str
    has_invoices: bool
    has_contacts: bool

    def kpi(self, key: str) -> Kpi:
        return next(k for k in self.kpis if k.key == key)


def _month_shift(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def reference_month(as_of: dt.date) -> dt.date:
    """The last complete month at ``as_of``: its own month on a month's last day, else the one before."""
    if (as_of + dt.timedelta(days=1)).day == 1:
        return as_of.replace(day=1)
    return _month_shift(as_of, -1)


def data_as_of(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The latest business day the database records (None for an empty database).

    Notes
    -----
    The latest of: invoice issue dates, contact and payment days, signup and churn dates,
    subscription starts. A simulated world ends on the day its last billing run issues invoices.
    """
    rows = con.execute("""
        WITH days AS (
            SELECT max(issued_on) AS d FROM invoices
            UNION ALL SELECT CAST(max(contacted_at) AS DATE) FROM contacts
            UNION ALL SELECT CAST(max(received_at) AS DATE) FROM payments
            UNION ALL SELECT max(signup_date) FROM customers
            UNION ALL SELECT max(churned_on) FROM customers
            UNION ALL SELECT max(start_date) FROM subscriptions
        )
        SELECT max(d) FROM days
    """).fetchall()
    return rows[0][0] if rows and rows[0][0] is not None else None


def business_date(con: duckdb.DuckDBPyConnection, *, today: dt.date) -> dt.date:
    """The day the app works on: a simulated world's own last day, otherwise ``today``.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    today : datetime.date
        The calendar date (the caller's clock; the app passes ``date.today()`` or an override).

    Returns
    -------
    datetime.date

    Notes
    -----
    A simulated world (it has the ``sim_world`` table) lives in its own calendar: the app works on
    :func:`data_as_of` (the day of its last billing run), so that "the next period" and new grants
    follow on from the simulated history. A real database works on ``today``.
    """
    if has_table(con, "sim_world"):
        return data_as_of(con) or today
    return today


def has_customers(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database holds any customer (an empty database needs a demo world or an import)."""
    return bool(con.execute("SELECT count(*) FROM (SELECT 1 FROM customers LIMIT 1)").fetchall()[0][0])


def _currency(con: duckdb.DuckDBPyConnection) -> str:
    rows = con.execute("SELECT currency FROM plans GROUP BY currency ORDER BY count(*) DESC LIMIT 1").fetchall()
    return rows[0][0] if rows else "EUR"


def _first_month(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    rows = con.execute("SELECT min(signup_date) FROM customers").fetchall()
    return rows[0][0].replace(day=1) if rows and rows[0][0] is not None else None


def _value(v) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or pd.isna(v):
        return None
    return float(v)


def overview(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, months: int = TREND_MONTHS,
             segment: str | None = None, region: str | None = None,
             channel: str | None = None) -> Overview | None:
    """Headline KPIs of the last complete month with the change on the month before, and trends.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    as_of : datetime.date
        What is known (the app's business date).
    months : int
        Length of the trend window, ending with the reference month (shorter when the history is).
    segment, region, channel : str, optional
        Customer filters passed to :func:`analytics.metrics.monthly_metrics`.

    Returns
    -------
    Overview or None
        None when no customer has signed up by ``as_of``.

    Notes
    -----
    Reference month ``M`` = :func:`reference_month` of ``as_of``. Each KPI is the metric of
    :func:`analytics.metrics.monthly_metrics` for ``M`` (customers and MRR at the end of ``M``, logo
    churn rate, net revenue retention, ARPU, contacts, mean wait, discount spend = discounts + credits
    invoiced for ``M``), its value for ``M - 1``, and the change: absolute (percentage points for
    rates) and relative for counts, money and minutes. A mean wait with no contacts is missing.
    """
    first = _first_month(con)
    if first is None or first > as_of:
        return None
    month = reference_month(as_of)
    if month < first:
        month = first
    start = max(first, _month_shift(month, -(max(months, 2) - 1)))
    df = monthly_metrics(con, start, month, as_of=as_of, segment=segment, region=region, channel=channel)
    df = df.sort_values("month").reset_index(drop=True)
    currency = _currency(con)
    cur = df.iloc[-1]
    prev = df.iloc[-2] if len(df) >= 2 else None
    kpis = tuple(
        Kpi(key=key, label=label, value=_value(cur[col]),
            previous=None if prev is None else _value(prev[col]), unit=unit, good_direction=good,
            currency=currency)
        for key, label, col, unit, good in HEADLINE)
    trends = df[[c for c in TREND_COLUMNS if c in df.columns]].copy()
    trends["month"] = pd.to_datetime(trends["month"])
    return Overview(as_of=as_of, month=month, previous_month=_month_shift(month, -1), kpis=kpis,
                    trends=trends, currency=currency, has_invoices=bool(df["invoices"].sum()),
                    has_contacts=bool(df["contacts"].sum()))


def filter_options(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """The values the customer filters can take (segment, region, channel; plans as (plan_id, name)).

    Returns
    -------
    dict
        ``segment``, ``region``, ``channel``: sorted distinct values of the customers; ``plan``: list of
        ``(plan_id, name)`` by rank; ``attributes``: names of the imported customer attributes
        (``customer_attributes``), e.g. a Telco file's contract type.
    """
    out: dict[str, list] = {}
    for col in ("segment", "region", "channel"):
        # column names are code constants, never user input
        out[col] = [r[0] for r in con.execute(
            f"SELECT DISTINCT {col} FROM customers WHERE {col} IS NOT NULL ORDER BY 1").fetchall()]
    out["plan"] = [(int(r[0]), r[1]) for r in con.execute(
        "SELECT plan_id, name FROM plans ORDER BY rank, plan_id").fetchall()]
    out["attributes"] = [r[0] for r in con.execute(
        "SELECT DISTINCT name FROM customer_attributes ORDER BY 1").fetchall()]
    return out
