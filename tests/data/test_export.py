"""data/export.py: CSV downloads safe against formula injection."""
from __future__ import annotations

import csv
import datetime as dt
import io

import pandas as pd
import pytest

from data.export import (FORMULA_PREFIXES, mask_email, mask_phone, mask_pii, mask_postcode, safe_cell,
                         safe_frame, to_csv_bytes)


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


@pytest.mark.parametrize("text", ["=1+1", "+31 20 123", "-2+3", "@SUM(A1)", "\tx", "\rx",
                                  '=HYPERLINK("http://evil","click")'])
def test_cells_starting_with_a_formula_character_are_quoted(text):
    assert safe_cell(text) == "'" + text
    rows = _rows(to_csv_bytes(pd.DataFrame({"name": [text]})))
    assert rows[1][0] == "'" + text


@pytest.mark.parametrize("text", ["Alice", "a=b", "42", "", " =not first", "O'Brien", "€12.00"])
def test_ordinary_text_is_unchanged(text):
    assert safe_cell(text) == text


def test_numbers_dates_and_missing_values_are_not_touched():
    df = pd.DataFrame({"amount_cents": [-500, 1200], "rate": [-0.5, 1.25], "flag": [True, False],
                       "day": [dt.date(2024, 1, 31), None], "when": pd.to_datetime(["2024-01-01", None]),
                       "note": [None, "-minus"]})
    rows = _rows(to_csv_bytes(df))
    assert rows[0] == ["amount_cents", "rate", "flag", "day", "when", "note"]
    assert rows[1][:4] == ["-500", "-0.5", "True", "2024-01-31"]
    assert rows[1][5] == ""
    assert rows[2][5] == "'-minus"


def test_column_names_are_made_safe_too():
    rows = _rows(to_csv_bytes(pd.DataFrame({"=cmd": [1]})))
    assert rows[0] == ["'=cmd"]


def test_object_columns_mixing_numbers_and_text_quote_only_the_text():
    df = pd.DataFrame({"mixed": [-3, "=x", None, "ok"]})
    out = safe_frame(df)
    assert out["mixed"].tolist()[:2] == [-3, "'=x"]
    assert pd.isna(out["mixed"].iloc[2]) and out["mixed"].iloc[3] == "ok"


def test_the_source_frame_is_not_modified_and_the_index_is_optional():
    df = pd.DataFrame({"v": ["=1"]}, index=pd.Index(["@row"], name="key"))
    to_csv_bytes(df)
    assert df["v"].iloc[0] == "=1"
    rows = _rows(to_csv_bytes(df, index=True))
    assert rows[0] == ["key", "v"] and rows[1] == ["'@row", "'=1"]


def test_utf8_with_bom_and_every_prefix_listed():
    data = to_csv_bytes(pd.DataFrame({"name": ["Zoë"]}))
    assert data.startswith(b"\xef\xbb\xbf") and "Zoë" in data.decode("utf-8-sig")
    assert set(FORMULA_PREFIXES) == {"=", "+", "-", "@", "\t", "\r"}


def test_an_empty_frame_gives_just_the_header():
    assert _rows(to_csv_bytes(pd.DataFrame({"a": pd.Series(dtype=object)}))) == [["a"]]


def test_a_field_with_a_line_break_stays_one_cell():
    rows = _rows(to_csv_bytes(pd.DataFrame({"note": ["two\nlines", "cr\ronly"], "n": [1, 2]})))
    assert rows[1] == ["two\nlines", "1"] and rows[2] == ["cr\ronly", "2"]


def test_personal_data_is_masked():
    df = pd.DataFrame({"name": ["Alice"], "email": ["alice@example.com"], "phone": ["+31 20 555 0101"],
                       "postcode": ["1011 AB"], "birth_date": [dt.date(1980, 1, 2)]})
    out = mask_pii(df)
    assert out.iloc[0].tolist() == ["Alice", "a***@example.com", "*** **01", "10***", "****-**-**"]
    assert df["email"].iloc[0] == "alice@example.com"
    blank = mask_pii(pd.DataFrame({"email": [None], "birth_date": [pd.NaT], "phone": [""]}))
    assert blank["email"].isna().all() and blank["birth_date"].isna().all() and blank["phone"].iloc[0] == ""
    assert mask_pii(pd.DataFrame({"x": [1]})).equals(pd.DataFrame({"x": [1]}))
    assert mask_email("nodomain") == "n***" and mask_phone("12") == "*** **12" and mask_postcode("9") == "9***"
