"""CSV downloads that are safe to open in a spreadsheet.

Every table a user can download from the app goes through :func:`to_csv_bytes`. A cell whose text
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be read by Excel, LibreOffice
or Google Sheets as a formula (CSV/formula injection, OWASP); such cells are prefixed with a single
quote so they are shown as text. Numbers stay numbers: a negative amount is a number column, not text.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """One cell made safe for a spreadsheet.

    Parameters
    ----------
    value : Any
        The cell's value.

    Returns
    -------
    Any
        Text starting with one of :data:`FORMULA_PREFIXES` gets a leading ``'``; other values are
        returned unchanged (numbers, dates, booleans, missing values).

    Notes
    -----
    Only text can carry a formula; a numeric cell is written by its number, which a spreadsheet never
    evaluates as a formula.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every text cell and column name passed through :func:`safe_cell`."""
    out = df.copy()
    out.columns = [safe_cell(str(c)) for c in out.columns]
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col) \
                or pd.api.types.is_datetime64_any_dtype(col):
            continue
        out.isetitem(i, col.map(safe_cell, na_action="ignore"))
    return out


def to_csv_bytes(df: pd.DataFrame, *, index: bool = False) -> bytes:
    """The frame as UTF-8 CSV bytes (with a byte-order mark, so spreadsheets read the accents).

    Parameters
    ----------
    df : pandas.DataFrame
    index : bool
        Write the index as the first column.

    Returns
    -------
    bytes
        CSV text (RFC 4180: CRLF line ends, so a field holding a CR or LF is quoted): header row,
        then one row per frame row; text cells made safe by :func:`safe_cell`.
    """
    frame = df.reset_index() if index else df
    return safe_frame(frame).to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")

