"""Money: integer cents, rounding and formatting. The one module that rounds money.

Every amount in Retention Desk is an integer number of minor units (cents) with a currency code
next to it. Floats never hold money. Rounding is half away from zero, done here in Python and, for
set-based SQL, by the DuckDB macro ``round_div`` that :data:`SQL_MACROS` defines on every connection.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}

# round_div(n, d): n / d rounded half away from zero, for integer n and positive integer d.
# floor((2|n| + d) / 2d) is exact for every integer n and d > 0.
SQL_MACROS = """
CREATE OR REPLACE TEMP MACRO round_div(n, d) AS
    CAST(sign(n) * ((2 * abs(n) + d) // (2 * d)) AS BIGINT);
"""


def round_div(numerator: int, denominator: int) -> int:
    """Divide two integers and round half away from zero.

    Parameters
    ----------
    numerator : int
    denominator : int
        Must be positive.

    Returns
    -------
    int

    Notes
    -----
    ``round_div(n, d) = sign(n) * floor((2|n| + d) / (2d))``: exact integer arithmetic, so 0.5
    rounds to 1 and -0.5 to -1. The SQL macro ``round_div`` computes the same expression.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    n = int(numerator)
    sign = -1 if n < 0 else 1
    return sign * ((2 * abs(n) + denominator) // (2 * denominator))


def percent_of(amount_cents: int, percent: int) -> int:
    """``percent`` % of ``amount_cents``, rounded half away from zero."""
    return round_div(amount_cents * percent, 100)


def tax_of(net_cents: int, rate_bp: int) -> int:
    """Tax on a net amount at a rate in basis points (2000 = 20 %), rounded half away from zero."""
    return round_div(net_cents * rate_bp, 10_000)


def prorate(amount_cents: int, days: int, days_in_period: int) -> int:
    """``amount_cents`` for ``days`` of a ``days_in_period``-day period, rounded half away from zero."""
    if days >= days_in_period:
        return int(amount_cents)
    return round_div(amount_cents * days, days_in_period)


def format_cents(amount_cents: int | None, currency: str = "EUR") -> str:
    """Format cents for people: ``format_cents(-123456, 'EUR') == '-€1,234.56'``."""
    if amount_cents is None:
        return ""
    cents = int(amount_cents)
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    symbol = CURRENCY_SYMBOLS.get(currency, currency + " ")
    return f"{sign}{symbol}{whole:,}.{frac:02d}"


def parse_cents(text: str | int | float) -> int:
    """Parse a human amount (``'12.34'``, ``'1,234.5'``, ``'€3'``) into cents.

    Raises
    ------
    ValueError
        When the text is not an amount with at most two decimals.
    """
    if isinstance(text, int):
        return text * 100
    raw = str(text).strip()
    for symbol in CURRENCY_SYMBOLS.values():
        raw = raw.replace(symbol, "")
    raw = raw.replace(",", "").strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount: {text!r}")
    if value != value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP):
        raise ValueError(f"more than two decimals in amount: {text!r}")
    return int(value * 100)


def format_invoice_number(invoice_id: int) -> str:
    """Invoice number as printed: ``INV-00000042``."""
    return f"INV-{int(invoice_id):08d}"


def format_credit_note_number(credit_note_id: int) -> str:
    """Credit note number as printed: ``CN-00000007``."""
    return f"CN-{int(credit_note_id):08d}"


def parse_document_number(text: str, prefix: str = "INV") -> int:
    """Accept ``INV-00000042``, ``inv-42`` or ``42`` and return 42.

    Raises
    ------
    ValueError
        When the text is not such a number.
    """
    raw = str(text).strip().upper()
    if raw.startswith(prefix + "-"):
        raw = raw[len(prefix) + 1:]
    if not raw.isdigit():
        raise ValueError(f"not a {prefix} number: {text!r}")
    return int(raw)
