"""data/money.py: the one module that rounds and formats money."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from data import money
from data.db import connect


@pytest.mark.parametrize("n,d,expected", [(5, 10, 1), (-5, 10, -1), (4, 10, 0), (15, 10, 2), (-15, 10, -2),
                                          (25, 10, 3), (0, 7, 0), (7, 2, 4), (-7, 2, -4)])
def test_round_div_is_half_away_from_zero(n, d, expected):
    assert money.round_div(n, d) == expected


@given(st.integers(-10**12, 10**12), st.integers(1, 10**6))
def test_sql_macro_agrees_with_python(n, d):
    con = _con()
    assert con.execute("SELECT round_div(CAST(? AS BIGINT), CAST(? AS BIGINT))", [n, d]).fetchall()[0][0] \
        == money.round_div(n, d)


_CON = None


def _con():
    global _CON
    if _CON is None:
        _CON = connect(":memory:")
    return _CON


def test_tax_at_exactly_half_a_cent():
    assert money.tax_of(10, 500) == 1          # 0.5 cent
    assert money.tax_of(-10, 500) == -1


def test_prorate_full_period_is_exact():
    assert money.prorate(1999, 31, 31) == 1999
    assert money.prorate(1999, 1, 31) == 64


@pytest.mark.parametrize("cents,text", [(0, "€0.00"), (123456, "€1,234.56"), (-5, "-€0.05")])
def test_format_cents(cents, text):
    assert money.format_cents(cents, "EUR") == text


@pytest.mark.parametrize("text,cents", [("12.34", 1234), ("€1,234.5", 123450), ("3", 300)])
def test_parse_cents(text, cents):
    assert money.parse_cents(text) == cents


@pytest.mark.parametrize("text", ["1.234", "abc", "", "nan"])
def test_parse_cents_refuses_bad_amounts(text):
    with pytest.raises(ValueError):
        money.parse_cents(text)


def test_document_numbers_round_trip():
    assert money.format_invoice_number(42) == "INV-00000042"
    assert money.parse_document_number("INV-00000042") == 42
    assert money.parse_document_number("inv-42") == 42
    with pytest.raises(ValueError):
        money.parse_document_number("INV-x")
