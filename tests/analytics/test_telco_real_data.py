"""Retention analytics on real public data: the IBM Telco churn file (../shared/data/real).

The churn rate by contract and the Kaplan-Meier curves that analytics/ computes from the imported
database must equal direct counts from the file itself (tenure in months, Churn = Yes as the event).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.survival import lifetimes, survival_by
from data.db import connect
from data.importers import import_telco

TELCO = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
SNAPSHOT = dt.date(2024, 6, 30)

pytestmark = pytest.mark.skipif(not TELCO.exists(), reason=f"real data not found at {TELCO}")


@pytest.fixture(scope="module")
def telco():
    con = connect(":memory:")
    report = import_telco(con, TELCO, snapshot=SNAPSHOT, at=dt.datetime(2024, 7, 1))
    assert report.ok, report.message
    raw = pd.read_csv(TELCO)
    return con, raw


def direct_km(raw: pd.DataFrame) -> pd.DataFrame:
    """Kaplan-Meier by counting the file: S(t) = prod over event times s <= t of (1 - d_s / n_s)."""
    rows = []
    for contract, g in raw.groupby("Contract"):
        event = (g["Churn"] == "Yes").to_numpy()
        tenure = g["tenure"].to_numpy()
        s = 1.0
        for t in np.unique(tenure[event]):
            n = int((tenure >= t).sum())
            d = int(((tenure == t) & event).sum())
            s *= 1 - d / n
            rows.append((contract, int(t), n, d, s))
    return pd.DataFrame(rows, columns=["group", "time", "at_risk", "observed", "survival"])


def test_churn_rate_by_contract_equals_the_file(telco):
    con, raw = telco
    result = survival_by(con, "contract", as_of=SNAPSHOT)
    got = result.medians.set_index("group")
    direct = raw.groupby("Contract").agg(customers=("customerID", "size"),
                                        churned=("Churn", lambda s: int((s == "Yes").sum())))
    assert sorted(got.index) == sorted(direct.index) == ["Month-to-month", "One year", "Two year"]
    for contract, row in direct.iterrows():
        assert int(got.loc[contract, "customers"]) == row["customers"]
        assert int(got.loc[contract, "churned"]) == row["churned"]
    rate = got["churned"] / got["customers"]
    assert rate["Month-to-month"] == pytest.approx(1655 / 3875)
    assert rate["Two year"] == pytest.approx(48 / 1695)


def test_lifetimes_equal_the_file_tenure(telco):
    con, raw = telco
    lives = lifetimes(con, SNAPSHOT)
    merged = lives.merge(con.execute("SELECT customer_id, account_number FROM customers").df(), on="customer_id")
    merged = merged.merge(raw[["customerID", "tenure", "Churn"]], left_on="account_number", right_on="customerID")
    assert len(merged) == 7043
    assert (merged["duration_months"].to_numpy() == merged["tenure"].to_numpy()).all()
    assert (merged["event"].astype(bool).to_numpy() == (merged["Churn"] == "Yes").to_numpy()).all()


def test_kaplan_meier_by_contract_equals_direct_counts_from_the_file(telco):
    con, raw = telco
    curves = survival_by(con, "contract", as_of=SNAPSHOT).curves
    direct = direct_km(raw)
    merged = direct.merge(curves, on=["group", "time"], suffixes=("_file", "_app"))
    assert len(merged) == len(direct)                    # every event time of the file is on the curve
    assert (merged["at_risk_file"] == merged["at_risk_app"]).all()
    assert (merged["observed_file"] == merged["observed_app"]).all()
    assert np.allclose(merged["survival_file"], merged["survival_app"], atol=1e-12)


def test_log_rank_separates_the_contracts(telco):
    con, _ = telco
    result = survival_by(con, "contract", as_of=SNAPSHOT)
    assert result.logrank is not None and result.logrank["p_value"] < 1e-10
    assert len(result.pairwise) == 3
