"""Writing a simulated month into the database through the real billing use cases.

Each function turns the month's numpy events into one bulk call of a ``billing`` use case (never a
loop over customers) and checks the per-row codes it returns; refusals are counted in
:class:`Checks` (a consistent world has none). Usage records are metered data with no use case of
their own and are bulk-loaded like an import.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from billing.add_charge import add_charges
from billing.cancel_subscription import cancel_subscriptions
from billing.change_plan import change_plans
from billing.grant_offer import grant_offers
from billing.issue_credit_note import issue_credit_notes
from billing.record_contact import record_contacts
from billing.record_payment import record_payments
from data.simulate import tables


@dataclass
class Checks:
    """Counts of disagreements between the simulation and the engine (all zero in a consistent world)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, n: int, example: str = "") -> None:
        if n:
            self.counts[name] = self.counts.get(name, 0) + int(n)
            self.examples.setdefault(name, example)

    def check_codes(self, name: str, out: pd.DataFrame) -> None:
        bad = out[out["code"] != "ok"]
        if len(bad):
            self.add(name, len(bad), f"{bad.iloc[0]['code']}: {bad.iloc[0]['message']}")


def stamp(day_number, second=0) -> np.ndarray:
    """Timestamps (datetime64[s]) from day numbers and seconds of the day."""
    return (np.asarray(day_number, dtype=np.int64) * 86400 + np.asarray(second, dtype=np.int64)).astype("datetime64[s]")


def as_datetime(day_number: int, second: int = 0) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(days=int(day_number), seconds=int(second))


class ErrorBook:
    """The injected billing errors (the future ``sim_truth_billing_errors``), as growing columns."""

    COLUMNS = ("customer_id", "subscription_id", "period", "kind", "charge_id", "invoice_id",
               "amount_cents", "credit_cents", "detected_by", "detected_on", "contact_id",
               "credit_note_id")

    def __init__(self):
        self.parts: list[pd.DataFrame] = []
        self.df = pd.DataFrame({c: pd.Series(dtype="Int64") for c in self.COLUMNS})

    def _sync(self):
        if self.parts:
            self.df = pd.concat([self.df, *self.parts], ignore_index=True)
            self.parts = []

    def add(self, period: int, customer_id, subscription_id, kind, charge_id, amount, credit) -> None:
        n = len(customer_id)
        if n == 0:
            return
        self.parts.append(pd.DataFrame({
            "customer_id": customer_id, "subscription_id": subscription_id, "period": period,
            "kind": kind, "charge_id": charge_id, "invoice_id": pd.array([None] * n, dtype="Int64"),
            "amount_cents": amount, "credit_cents": credit,
            "detected_by": pd.array([None] * n, dtype="string"),
            "detected_on": pd.array([None] * n, dtype="Int64"),
            "contact_id": pd.array([None] * n, dtype="Int64"),
            "credit_note_id": pd.array([None] * n, dtype="Int64")}))

    def set_invoices(self, con: duckdb.DuckDBPyConnection, first_invoice: int, last_invoice: int) -> None:
        """Attach the invoice of each error billed by the run that made invoices first..last."""
        self._sync()
        if not self.df["invoice_id"].isna().any():
            return
        got = con.execute("""
            SELECT l.charge_id, l.invoice_id FROM invoice_lines l
            WHERE l.invoice_id BETWEEN ? AND ? AND l.kind = 'charge'
        """, [first_invoice, last_invoice]).df()
        if len(got):
            m = self.df["charge_id"].map(pd.Series(got["invoice_id"].to_numpy(), index=got["charge_id"].to_numpy()))
            self.df["invoice_id"] = self.df["invoice_id"].fillna(m.astype("Int64"))

    def open_for(self, customer_ids: np.ndarray, *, before_period: int) -> pd.Index:
        """Rows of the uncorrected errors of these customers on periods before ``before_period``."""
        self._sync()
        d = self.df
        mask = d["detected_by"].isna() & (d["period"] < before_period) & d["customer_id"].isin(customer_ids)
        return d.index[mask.to_numpy(dtype=bool)]

    def correct(self, con: duckdb.DuckDBPyConnection, rows: pd.Index, *, complaint: np.ndarray, day: int,
                at: dt.datetime, checks: Checks, contact_of: pd.Series, agent_of: pd.Series) -> None:
        """Issue the credit notes (reason billing_error) that correct these errors.

        Errors of the customers in ``complaint`` were reported at a contact (``contact_of``, handled
        by ``agent_of``); the others were found by the periodic audit.
        """
        if len(rows) == 0:
            return
        d = self.df
        by_complaint = d.loc[rows, "customer_id"].isin(complaint).to_numpy()
        d.loc[rows, "detected_by"] = np.where(by_complaint, "complaint", "audit")
        d.loc[rows, "detected_on"] = day
        d.loc[rows, "contact_id"] = d.loc[rows, "customer_id"].map(contact_of).astype("Int64").to_numpy()
        sel = d.loc[rows]
        sel = sel[sel["credit_cents"] > 0]
        if sel.empty:
            return
        complained = sel["detected_by"].to_numpy() == "complaint"
        frame = pd.DataFrame({
            "invoice_id": sel["invoice_id"].astype("int64").to_numpy(),
            "amount_cents": sel["credit_cents"].astype("int64").to_numpy(),
            "reason": "billing_error",
            "note": np.where(complained, "billing error reported by the customer",
                             "billing error found by the periodic audit"),
            "description": np.where(sel["kind"] == "duplicate", "Duplicate plan charge refunded",
                                    "Charge not owed refunded"),
            "contact_id": sel["contact_id"].to_numpy(),
            "issued_by": sel["customer_id"].map(agent_of).astype("Int64").to_numpy(),
        })
        res = issue_credit_notes(con, frame, at=at)
        if not res.ok:
            checks.add("credit_notes_refused", len(frame), res.message)
            return
        d.loc[sel.index, "credit_note_id"] = np.asarray(res["credit_note_ids"], dtype=np.int64)

    def frame(self, period_starts: list) -> pd.DataFrame:
        """The ``sim_truth_billing_errors`` table."""
        self._sync()
        d = self.df.reset_index(drop=True)
        return pd.DataFrame({
            "error_id": np.arange(1, len(d) + 1, dtype=np.int64),
            "customer_id": d["customer_id"].astype("int64"),
            "subscription_id": d["subscription_id"].astype("int64"),
            "period_start": pd.to_datetime([period_starts[int(p)] for p in d["period"]]),
            "kind": d["kind"].astype(str),
            "charge_id": d["charge_id"].astype("int64"),
            "invoice_id": d["invoice_id"].astype("Int64"),
            "amount_cents": d["amount_cents"].astype("int64"),
            "credit_cents": d["credit_cents"].astype("int64"),
            "detected_by": d["detected_by"].astype("string"),
            "detected_on": pd.to_datetime(d["detected_on"].astype("float").to_numpy(), unit="D"),
            "contact_id": d["contact_id"].astype("Int64"),
            "credit_note_id": d["credit_note_id"].astype("Int64"),
        })


def write_contacts(con, df: pd.DataFrame, checks: Checks) -> np.ndarray:
    """Record the month's contacts (rows already in contact-time order); returns their ids."""
    if df.empty:
        return np.zeros(0, dtype=np.int64)
    out = record_contacts(con, df, at=pd.Timestamp(df["contacted_at"].max()).to_pydatetime())
    checks.check_codes("contacts_refused", out)
    return out["contact_id"].astype("Int64").to_numpy(dtype=np.int64, na_value=0)


def write_grants(con, df: pd.DataFrame, checks: Checks) -> pd.DataFrame:
    """Grant the month's offers (agent choices and holdout arms)."""
    if df.empty:
        return df
    out = grant_offers(con, df, at=pd.Timestamp(df["granted_at"].max()).to_pydatetime())
    checks.check_codes("grants_refused", out)
    return out


def write_payments(con, df: pd.DataFrame, checks: Checks) -> None:
    if df.empty:
        return
    res = record_payments(con, df, at=pd.Timestamp(df["received_at"].max()).to_pydatetime())
    if not res.ok:
        checks.add("payments_refused", len(df), res.message)


def write_plan_changes(con, df: pd.DataFrame, at: dt.datetime, checks: Checks) -> None:
    if df.empty:
        return
    checks.check_codes("plan_changes_refused", change_plans(con, df, at=at))


def write_cancellations(con, df: pd.DataFrame, at: dt.datetime, checks: Checks) -> None:
    if df.empty:
        return
    checks.check_codes("cancellations_refused", cancel_subscriptions(con, df, at=at))


def write_usage(con, df: pd.DataFrame) -> None:
    """Bulk-load the period's metered usage (no use case: metered data arrives like an import)."""
    tables.append(con, "usage_records", df)


def write_charges(con, df: pd.DataFrame, at: dt.datetime, checks: Checks) -> np.ndarray:
    """Inject the period's billing errors as one-off charges; returns their charge ids."""
    if df.empty:
        return np.zeros(0, dtype=np.int64)
    res = add_charges(con, df, at=at)
    if not res.ok:
        checks.add("charges_refused", len(df), res.message)
        return np.zeros(len(df), dtype=np.int64)
    return np.asarray(res["charge_ids"], dtype=np.int64)


def period_subscriptions(con, period_start: dt.date, period_end: dt.date) -> pd.DataFrame:
    """Per customer, the first and the last subscription serving in the period (index customer_id;
    they differ in the month of a plan change)."""
    got = con.execute("""
        SELECT customer_id, arg_min(subscription_id, start_date) AS first_id,
               arg_max(subscription_id, start_date) AS last_id
        FROM subscriptions
        WHERE start_date <= ? AND (end_date IS NULL OR end_date >= ?)
        GROUP BY customer_id
    """, [period_end, period_start]).df()
    return got.set_index("customer_id")


def run_invoices(con, run_id: int) -> pd.DataFrame:
    """Per customer invoiced by the run: its total (checked against the simulator's own invoices) and
    its newest invoice (the bill a contact is about). Index customer_id."""
    return con.execute("""
        SELECT customer_id, sum(total_cents) AS total, min(invoice_id) AS first_invoice_id,
               max(invoice_id) AS invoice_id
        FROM invoices WHERE run_id = ? GROUP BY customer_id
    """, [run_id]).df().set_index("customer_id")
