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



# Personal data shown masked to roles that do not need it (analysts, leaders) and to agents before
# the caller's identity is verified.
PII_COLUMNS = ("email", "phone", "postcode", "birth_date")


def mask_email(value: Any) -> Any:
    """``alice@example.com`` -> ``a***@example.com``."""
    if not isinstance(value, str) or not value:
        return value
    local, at, domain = value.partition("@")
    return (local[:1] + "***" + at + domain) if at else local[:1] + "***"


def mask_phone(value: Any) -> Any:
    """Only the last two digits stay: ``+31 20 555 0101`` -> ``*** **01``."""
    if not isinstance(value, str) or not value:
        return value
    digits = [c for c in value if c.isdigit()]
    return "*** **" + "".join(digits[-2:])


def mask_postcode(value: Any) -> Any:
    """Only the first two characters stay: ``1011 AB`` -> ``10***``."""
    if not isinstance(value, str) or not value:
        return value
    return value.strip()[:2] + "***"


def mask_pii(df: pd.DataFrame, columns: tuple[str, ...] = PII_COLUMNS) -> pd.DataFrame:
    """A copy of ``df`` with its personal-data columns masked.

    Parameters
    ----------
    df : pandas.DataFrame
    columns : tuple of str
        Column names holding personal data; those present are masked.

    Returns
    -------
    pandas.DataFrame
        email keeps its first character and domain, phone its last two digits, postcode its first
        two characters; birth_date becomes ``****-**-**``. Missing values stay missing.
    """
    present = [c for c in columns if c in df.columns]
    if not present:
        return df
    out = df.copy()
    rules = {"email": mask_email, "phone": mask_phone, "postcode": mask_postcode}
    for c in present:
        col = out[c].astype(object)
        if c in rules:
            out[c] = col.map(rules[c], na_action="ignore")
        else:
            out[c] = col.map(lambda v: None if pd.isna(v) else "****-**-**")
    return out
