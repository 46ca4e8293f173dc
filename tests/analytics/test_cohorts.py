"""Cohort retention matrix against values worked out by hand from the tiny world."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from analytics.cohorts import cohort_retention, cohort_table, last_complete_month
from data.db import connect
from tests.analytics.fixtures import AS_OF, build_tiny_world

D = dt.date


@pytest.fixture(scope="module")
def con():
    c = build_tiny_world()
    yield c
    c.close()


def rows(df: pd.DataFrame, cohort: dt.date) -> pd.DataFrame:
    return df[df["cohort"] == cohort].reset_index(drop=True)


def test_grain_is_one_row_per_cohort_and_month_since_signup(con):
    df = cohort_table(con, AS_OF)
    assert not df.duplicated(["cohort", "months_since_signup"]).any()
    # cohorts Jan (6 months to June), Feb (5), Mar (4), Jun (1); no signups in Apr and May
    assert df.groupby("cohort").size().to_dict() == {D(2024, 1, 1): 6, D(2024, 2, 1): 5,
                                                     D(2024, 3, 1): 4, D(2024, 6, 1): 1}
    assert (df["month"] == [D(2024, c.month + k, 1) for c, k in zip(df["cohort"], df["months_since_signup"])]).all()


def test_january_cohort_by_customers_by_hand(con):
    jan = rows(cohort_table(con, AS_OF), D(2024, 1, 1))
    # C1 C2 C4 C5; C4 gone at the end of Feb and back in May; C2 gone in March
    assert jan["cohort_customers"].tolist() == [4] * 6
    assert jan["customers"].tolist() == [4, 3, 2, 2, 3, 3]
    assert jan["customer_retention"].tolist() == [1.0, 0.75, 0.5, 0.5, 0.75, 0.75]


def test_january_cohort_by_revenue_by_hand(con):
    jan = rows(cohort_table(con, AS_OF), D(2024, 1, 1))
    # 5000 at the end of Jan; Feb 1000 + 1000 + 2000; Mar 1000 + 1500 (discount); Apr 1200 + 1500;
    # May 1200 + 1200 (C4 back) + 2000
    assert jan["mrr_cents"].tolist() == [5000, 4000, 2500, 2700, 4400, 4400]
    assert jan["cohort_mrr_cents"].tolist() == [5000] * 6
    assert jan["revenue_retention"].tolist() == pytest.approx([1.0, 0.8, 0.5, 0.54, 0.88, 0.88])


def test_plan_change_lowers_revenue_but_not_customer_retention(con):
    feb = rows(cohort_table(con, AS_OF), D(2024, 2, 1))          # C3: plus, then basic from April
    assert feb["customer_retention"].tolist() == [1.0] * 5
    assert feb["revenue_retention"].tolist() == pytest.approx([1.0, 1.0, 0.6, 0.6, 0.6])


def test_customer_gone_within_the_signup_month_is_not_retained_at_month_zero(con):
    mar = rows(cohort_table(con, AS_OF), D(2024, 3, 1))          # C7, 5 to 25 March
    assert mar["customers"].tolist() == [0, 0, 0, 0]
    assert mar["revenue_retention"].isna().all()                 # no MRR to retain


def test_matrix_is_a_pivot_of_the_table(con):
    m = cohort_retention(con, AS_OF)
    assert list(m.index) == ["2024-01", "2024-02", "2024-03", "2024-06"]
    assert list(m.columns) == [0, 1, 2, 3, 4, 5]
    assert m.loc["2024-01"].tolist() == [1.0, 0.75, 0.5, 0.5, 0.75, 0.75]
    assert m.loc["2024-06", 0] == 1.0 and m.loc["2024-06", 1:].isna().all()
    rev = cohort_retention(con, AS_OF, value="revenue_retention")
    assert rev.loc["2024-02", 2] == pytest.approx(0.6)


def test_plan_filter_picks_customers_by_signup_plan(con):
    df = cohort_table(con, AS_OF, plan="plus")                   # C5 (Jan), C3 (Feb), C6 (Jun)
    assert sorted(df.groupby("cohort")["cohort_customers"].first().items()) == [
        (D(2024, 1, 1), 1), (D(2024, 2, 1), 1), (D(2024, 6, 1), 1)]
    # C3 still counts after moving to basic: the cohort is defined by the signup plan
    assert rows(df, D(2024, 2, 1))["mrr_cents"].tolist() == [2000, 2000, 1200, 1200, 1200]


def test_segment_filter_and_cohort_bounds(con):
    df = cohort_table(con, AS_OF, segment="consumer", first_cohort=D(2024, 1, 15), last_cohort=D(2024, 2, 1))
    assert df["cohort"].unique().tolist() == [D(2024, 1, 1)]     # C1 C2 C4 (C5 is business)
    assert rows(df, D(2024, 1, 1))["customers"].tolist() == [3, 2, 1, 1, 2, 2]


def test_only_complete_months_are_shown(con):
    df = cohort_table(con, D(2024, 6, 15))
    assert df["month"].max() == D(2024, 5, 1)
    assert last_complete_month(D(2024, 6, 30)) == D(2024, 6, 1)
    assert last_complete_month(D(2024, 6, 29)) == D(2024, 5, 1)


def test_unknown_value_is_refused(con):
    with pytest.raises(ValueError, match="value must be one of"):
        cohort_retention(con, AS_OF, value="ltv")


def test_empty_database_gives_an_empty_table():
    c = connect(":memory:")
    try:
        assert cohort_table(c, AS_OF).empty
        assert cohort_retention(c, AS_OF).empty
    finally:
        c.close()
