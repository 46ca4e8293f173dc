"""Monthly subscription metrics against values computed by hand from the tiny world.

The story of each customer is in ``tests/analytics/fixtures.py``; the expected numbers below are
worked out from it by hand (months January to June 2024).
"""
from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from analytics import metrics
from data.db import connect
from tests.analytics.fixtures import AS_OF, FIRST, LAST, build_tiny_world

D = dt.date
MONTHS = [D(2024, m, 1) for m in range(1, 7)]
NAN = float("nan")


@pytest.fixture(scope="module")
def con():
    c = build_tiny_world()
    yield c
    c.close()


def col(df: pd.DataFrame, name: str) -> list:
    return df[name].tolist()


def same(actual: list, expected: list) -> bool:
    """Equal lists where NaN equals NaN and floats compare to 1e-9."""
    if len(actual) != len(expected):
        return False
    for a, e in zip(actual, expected):
        if isinstance(e, float) and math.isnan(e):
            if not (isinstance(a, float) and math.isnan(a)):
                return False
        elif abs(a - e) > 1e-9:
            return False
    return True


def test_one_row_per_month_of_the_window(con):
    df = metrics.monthly_metrics(con, FIRST, LAST)
    assert col(df, "month") == MONTHS
    assert df["month"].is_unique


def test_customer_counts_by_hand(con):
    df = metrics.subscription_metrics(con, FIRST, LAST)
    # Jan: C1 C2 C4 C5 sign up. Feb: C3 signs up, C4 leaves on 29 Feb (involuntary).
    # Mar: C7 comes and goes, C2 leaves on 10 Mar. May: C4 is back. Jun: C6 signs up.
    assert col(df, "customers_start") == [0, 4, 4, 3, 3, 4]
    assert col(df, "customers_end") == [4, 4, 3, 3, 4, 5]
    assert col(df, "active_customers") == [4, 5, 5, 3, 4, 5]
    assert col(df, "new_customers") == [4, 1, 1, 0, 0, 1]
    assert col(df, "reactivated_customers") == [0, 0, 0, 0, 1, 0]
    assert col(df, "churned_customers") == [0, 1, 2, 0, 0, 0]
    assert col(df, "churned_voluntary") == [0, 0, 2, 0, 0, 0]
    assert col(df, "churned_involuntary") == [0, 1, 0, 0, 0, 0]
    assert col(df, "switched_in") == [0] * 6 and col(df, "switched_out") == [0] * 6


def test_mrr_and_movements_by_hand(con):
    df = metrics.subscription_metrics(con, FIRST, LAST)
    # Jan 1000 (C1) + 1000 (C2) + 1000 (C4) + 2000 (C5); Feb +2000 C3 -1000 C4;
    # Mar -1000 C2, C5 25 % off -500; Apr C1 price rise +200, C3 plus -> basic -800;
    # May C4 back +1200, C5 discount ends +500; Jun C6 +2000.
    assert col(df, "mrr_cents") == [5000, 6000, 4500, 3900, 5600, 7600]
    assert col(df, "mrr_start_cents") == [0, 5000, 6000, 4500, 3900, 5600]
    assert col(df, "mrr_new_cents") == [5000, 2000, 0, 0, 0, 2000]
    assert col(df, "mrr_expansion_cents") == [0, 0, 0, 200, 500, 0]
    assert col(df, "mrr_contraction_cents") == [0, 0, 500, 800, 0, 0]
    assert col(df, "mrr_churn_cents") == [0, 1000, 1000, 0, 0, 0]
    assert col(df, "mrr_reactivation_cents") == [0, 0, 0, 0, 1200, 0]


def test_mid_month_churn_counts_in_the_month_of_the_last_day_served(con):
    # C2 served until 10 March: churned in March, its 1000 of MRR lost in March (not February).
    df = metrics.subscription_metrics(con, FIRST, LAST, region="south").set_index("month")
    assert df.loc[D(2024, 3, 1), "churned_voluntary"] == 1
    assert df.loc[D(2024, 3, 1), "mrr_churn_cents"] == 1000
    assert df.loc[D(2024, 2, 1), "mrr_churn_cents"] == 0


def test_plan_change_is_not_churn_but_contraction(con):
    df = metrics.subscription_metrics(con, FIRST, LAST, segment="business").set_index("month")
    apr = df.loc[D(2024, 4, 1)]
    assert apr["churned_customers"] == 0 and apr["customers_end"] == 2
    assert apr["mrr_contraction_cents"] == 800          # C3: 2000 plus -> 1200 basic
    assert col(df.reset_index(), "mrr_cents") == [2000, 4000, 3500, 2700, 3200, 3200]


def test_reactivation_after_a_gap(con):
    df = metrics.subscription_metrics(con, FIRST, LAST, channel="partner")  # only C4
    assert col(df, "customers_end") == [1, 0, 0, 0, 1, 1]
    assert col(df, "new_customers") == [1, 0, 0, 0, 0, 0]
    assert col(df, "churned_involuntary") == [0, 1, 0, 0, 0, 0]
    assert col(df, "reactivated_customers") == [0, 0, 0, 0, 1, 0]
    assert col(df, "mrr_reactivation_cents") == [0, 0, 0, 0, 1200, 0]   # back at the April price
    assert col(df, "active_customers") == [1, 1, 0, 0, 1, 1]


def test_discount_added_is_contraction_and_ending_is_expansion(con):
    # south: C2 (churns in March), C5 (25 % off March and April), C6 (new in June)
    df = metrics.subscription_metrics(con, FIRST, LAST, region="south")
    assert col(df, "mrr_cents") == [3000, 3000, 1500, 1500, 2000, 4000]
    assert col(df, "mrr_contraction_cents") == [0, 0, 500, 0, 0, 0]
    assert col(df, "mrr_expansion_cents") == [0, 0, 0, 0, 500, 0]
    assert col(df, "mrr_churn_cents") == [0, 0, 1000, 0, 0, 0]
    assert col(df, "mrr_new_cents") == [3000, 0, 0, 0, 0, 2000]


def test_plan_filter_counts_a_move_off_the_plan_as_switched_out(con):
    df = metrics.subscription_metrics(con, FIRST, LAST, plan="plus")   # C3 until 15 Apr, C5, C6
    assert col(df, "customers_end") == [1, 2, 2, 1, 1, 2]
    assert col(df, "switched_out") == [0, 0, 0, 1, 0, 0]
    assert col(df, "churned_customers") == [0] * 6
    assert col(df, "mrr_cents") == [2000, 4000, 3500, 1500, 2000, 4000]
    assert col(df, "mrr_contraction_cents") == [0, 0, 500, 2000, 0, 0]
    by_id = metrics.subscription_metrics(con, FIRST, LAST, plan=2)
    pd.testing.assert_frame_equal(df, by_id)


@pytest.mark.parametrize("filters", [{}, {"segment": "consumer"}, {"region": "north"}, {"plan": "basic"},
                                     {"plan": "plus"}, {"channel": "web"}, {"segment": "business", "plan": 1}])
def test_movements_add_up_to_the_change_in_mrr_and_customers(con, filters):
    df = metrics.subscription_metrics(con, FIRST, LAST, **filters)
    mrr = (df.mrr_start_cents + df.mrr_new_cents + df.mrr_reactivation_cents + df.mrr_expansion_cents
           - df.mrr_contraction_cents - df.mrr_churn_cents)
    assert (mrr == df.mrr_cents).all()
    logos = (df.customers_start + df.new_customers + df.reactivated_customers + df.switched_in
             - df.churned_customers - df.switched_out)
    assert (logos == df.customers_end).all()


def test_rates_by_hand(con):
    df = metrics.monthly_metrics(con, FIRST, LAST)
    assert same(col(df, "logo_churn_rate"), [NAN, 1 / 4, 2 / 4, 0.0, 0.0, 0.0])
    assert same(col(df, "revenue_churn_rate"), [NAN, 1000 / 5000, 1500 / 6000, 800 / 4500, 0.0, 0.0])
    assert same(col(df, "net_revenue_retention"),
                [NAN, 4000 / 5000, 4500 / 6000, 3900 / 4500, 4400 / 3900, 1.0])
    assert same(col(df, "arpu_cents"), [1250.0, 1500.0, 1500.0, 1300.0, 1400.0, 1520.0])


def test_billing_metrics_by_hand(con):
    df = metrics.billing_metrics(con, FIRST, LAST)
    assert col(df, "invoices") == [4, 5, 5, 4, 4, 0]            # June is not billed yet
    # Jan: 1000 + 300 usage + 548 + 1000 + 1419; Mar: 1000 + 323 + 2000 + 2000 + 677
    assert col(df, "gross_billed_cents") == [4267, 7000, 6000, 4800, 5523, 0]
    assert col(df, "discount_cents") == [0, 0, 500, 500, 0, 0]
    assert col(df, "credit_cents") == [0, 0, 300, 0, 0, 0]
    assert col(df, "billed_revenue_cents") == [4267, 7000, 5500, 4300, 5523, 0]
    assert same(col(df, "discount_share"), [0.0, 0.0, 800 / 6000, 500 / 4800, 0.0, NAN])


def test_care_metrics_by_hand(con):
    df = metrics.monthly_metrics(con, FIRST, LAST)
    assert col(df, "contacts") == [0, 2, 2, 1, 0, 0]           # the July contact is after as_of
    assert col(df, "complaints") == [0, 1, 2, 1, 0, 0]
    # Feb waits 600 s and 300 s; Mar 120 s and 900 s; Apr 1200 s
    assert same(col(df, "mean_wait_minutes"), [NAN, 7.5, 8.5, 20.0, NAN, NAN])
    assert same(col(df, "p90_wait_minutes"), [NAN, (300 + 0.9 * 300) / 60, (120 + 0.9 * 780) / 60, 20.0, NAN, NAN])
    assert same(col(df, "contact_rate"), [0.0, 2 / 5, 2 / 5, 1 / 3, 0.0, 0.0])


def test_care_metrics_under_a_plan_filter_count_contacts_made_on_the_plan(con):
    df = metrics.care_metrics(con, FIRST, LAST, plan="plus")
    assert col(df, "contacts") == [0, 1, 0, 0, 0, 0]            # C5 on 18 Feb


def test_customer_mrr_matches_full_month_invoices(con):
    # May: C1, C3, C5 are billed a full month; their plan line minus discount is their MRR
    mrr = metrics.customer_mrr(con, D(2024, 5, 1)).set_index("customer_id")["mrr_cents"].to_dict()
    assert mrr == {1: 1200, 3: 1200, 4: 1200, 5: 2000}
    billed = con.execute("""
        select i.customer_id, sum(l.amount_cents) from invoices i join invoice_lines l using (invoice_id)
        where i.period_start = DATE '2024-05-01' and l.kind in ('plan', 'discount')
          and i.invoice_id not in (select invoice_id from invoice_lines where kind = 'proration')
        group by 1""").fetchall()
    assert {c: v for c, v in billed} == {c: mrr[c] for c in (1, 3, 5)}
    assert metrics.customer_mrr(con, D(2024, 3, 1))["mrr_cents"].sum() == 4500


def test_as_of_hides_what_was_not_known_yet(con):
    df = metrics.monthly_metrics(con, FIRST, D(2024, 3, 1), as_of=D(2024, 3, 5)).set_index("month")
    mar = df.loc[D(2024, 3, 1)]
    assert mar["churned_customers"] == 0                        # C2 leaves on 10 Mar: not known
    assert mar["new_customers"] == 1                            # C7 started on 5 Mar
    assert mar["customers_end"] == 5
    assert mar["mrr_cents"] == 1000 + 1000 + 2000 + 1500 + 1000
    assert mar["invoices"] == 0                                 # March invoices are issued 1 Apr
    assert df.loc[D(2024, 2, 1), "invoices"] == 5


def test_filters_are_bound_parameters_not_sql(con):
    df = metrics.monthly_metrics(con, FIRST, LAST, segment="consumer' or '1'='1")
    assert (df["customers_end"] == 0).all() and (df["mrr_cents"] == 0).all()
    assert (df["contacts"] == 0).all() and (df["invoices"] == 0).all()


def test_unknown_plan_code_is_a_clear_error(con):
    with pytest.raises(ValueError, match="unknown plan code"):
        metrics.monthly_metrics(con, FIRST, LAST, plan="platinum")


def test_window_must_not_run_backwards(con):
    with pytest.raises(ValueError, match="before"):
        metrics.monthly_metrics(con, LAST, FIRST)


def test_empty_database_gives_zeros_and_missing_rates():
    c = connect(":memory:")
    try:
        df = metrics.monthly_metrics(c, FIRST, LAST)
    finally:
        c.close()
    assert len(df) == 6
    assert (df["customers_end"] == 0).all() and (df["mrr_cents"] == 0).all()
    assert df["logo_churn_rate"].isna().all() and df["arpu_cents"].isna().all()


def test_window_inside_the_history_opens_with_the_right_balances(con):
    df = metrics.subscription_metrics(con, D(2024, 4, 1), LAST)
    assert col(df, "customers_start") == [3, 3, 4]
    assert col(df, "mrr_start_cents") == [4500, 3900, 5600]
    assert col(df, "mrr_expansion_cents") == [200, 500, 0]


# ---------------------------------------------------------------------------------------------
# Edge cases on a second small world (basic 1000, 1200 from April; plus 2000):
#   E1 signs up 1 Mar on basic and moves to plus on 15 Mar (a plan change in the first month)
#   E2 basic from 1 Jan, moves to plus from 1 Apr (the old plan ends on the last day of March)
#   E3 plus from 1 Jan; a free month and a 25 % discount both cover March, the 25 % also April
#   E4 basic from 1 Jan; 50 % off in April, the month basic rises from 1000 to 1200
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def edges():
    from tests.analytics.fixtures import customer, insert, sub
    c = connect(":memory:")
    insert(c, "plans", [dict(plan_id=1, code="basic", name="Basic", rank=1),
                        dict(plan_id=2, code="plus", name="Plus", rank=2)])
    insert(c, "plan_prices", [
        dict(plan_id=1, effective_from=D(2023, 1, 1), monthly_price_cents=1000, usage_allowance_units=0,
             overage_price_cents=0),
        dict(plan_id=1, effective_from=D(2024, 4, 1), monthly_price_cents=1200, usage_allowance_units=0,
             overage_price_cents=0),
        dict(plan_id=2, effective_from=D(2023, 1, 1), monthly_price_cents=2000, usage_allowance_units=0,
             overage_price_cents=0)])
    insert(c, "customers", [customer(11, "consumer", "north", "web", D(2024, 3, 1)),
                            customer(12, "consumer", "north", "web", D(2024, 1, 1)),
                            customer(13, "consumer", "north", "web", D(2024, 1, 1)),
                            customer(14, "consumer", "north", "web", D(2024, 1, 1))])
    insert(c, "subscriptions", [sub(201, 11, 1, D(2024, 3, 1), D(2024, 3, 14), "plan_change"),
                                sub(202, 11, 2, D(2024, 3, 15), prev=201),
                                sub(203, 12, 1, D(2024, 1, 1), D(2024, 3, 31), "plan_change"),
                                sub(204, 12, 2, D(2024, 4, 1), prev=203),
                                sub(205, 13, 2, D(2024, 1, 1)),
                                sub(206, 14, 1, D(2024, 1, 1))])
    grant = dict(offer_id=1, granted_by=None, assignment="agent")
    insert(c, "offer_grants", [
        dict(grant, grant_id=1, customer_id=13, granted_at=dt.datetime(2024, 2, 10), kind="free_months",
             percent_off=None, cycles=1, first_period=D(2024, 3, 1)),
        dict(grant, grant_id=2, customer_id=13, granted_at=dt.datetime(2024, 2, 11), kind="percent_off",
             percent_off=25, cycles=2, first_period=D(2024, 3, 1)),
        dict(grant, grant_id=3, customer_id=14, granted_at=dt.datetime(2024, 3, 20), kind="percent_off",
             percent_off=50, cycles=1, first_period=D(2024, 4, 1))])
    yield c
    c.close()


def test_edge_cases_by_hand(edges):
    df = metrics.subscription_metrics(edges, FIRST, LAST)
    assert col(df, "mrr_cents") == [4000, 4000, 4000, 6100, 7200, 7200]
    assert col(df, "customers_end") == [3, 3, 4, 4, 4, 4]
    assert col(df, "new_customers") == [3, 0, 1, 0, 0, 0]
    # E1 is new in March at the plus price it ends the month on, not new at 0 plus an expansion
    assert col(df, "mrr_new_cents") == [4000, 0, 2000, 0, 0, 0]
    # April: E2 +1000 (plus from April), E3 +1500 (free month over); E4 -400 net (1000 -> 600)
    # May: E3 +500 (discount over), E4 +600
    assert col(df, "mrr_expansion_cents") == [0, 0, 0, 2500, 1100, 0]
    # March: E3's free month and 25 % together take the whole price, no more
    assert col(df, "mrr_contraction_cents") == [0, 0, 2000, 400, 0, 0]
    assert col(df, "mrr_churn_cents") == [0] * 6 and col(df, "churned_customers") == [0] * 6


def test_edge_cases_per_customer(edges):
    mar = metrics.customer_mrr(edges, D(2024, 3, 1)).set_index("customer_id")["mrr_cents"].to_dict()
    assert mar == {11: 2000, 12: 1000, 13: 0, 14: 1000}       # a customer on a free month has 0 MRR
    apr = metrics.customer_mrr(edges, D(2024, 4, 1)).set_index("customer_id")["mrr_cents"].to_dict()
    assert apr == {11: 2000, 12: 2000, 13: 1500, 14: 600}


def test_edge_cases_under_a_plan_filter(edges):
    df = metrics.subscription_metrics(edges, FIRST, LAST, plan="plus")
    assert col(df, "mrr_cents") == [2000, 2000, 2000, 5500, 6000, 6000]
    assert col(df, "switched_in") == [0, 0, 1, 1, 0, 0]       # E1 and E2 moved onto plus
    assert col(df, "customers_end") == [1, 1, 2, 3, 3, 3]
    mrr = (df.mrr_start_cents + df.mrr_new_cents + df.mrr_reactivation_cents + df.mrr_expansion_cents
           - df.mrr_contraction_cents - df.mrr_churn_cents)
    assert (mrr == df.mrr_cents).all()
