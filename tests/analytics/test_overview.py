"""analytics/overview.py: headline KPIs with the change on last month; the app's business date."""
from __future__ import annotations

import datetime as dt

import pytest

from analytics.overview import (HEADLINE, Kpi, business_date, data_as_of, has_customers, overview,
                                reference_month)
from billing.cancel_subscription import cancel_subscription
from billing.record_contact import record_contact
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, grant, new_db

AS_OF = dt.date(2024, 3, 1)


@pytest.fixture(scope="module")
def world():
    """A (Basic) and B (Plus) from January, C (Basic) from 10 February; B leaves end of February;
    A has 20 % off from February; one contact in January, two in February."""
    con = new_db()
    a = add_customer(con, start=dt.date(2024, 1, 1), name="A")
    b = add_customer(con, start=dt.date(2024, 1, 1), name="B", plan_id=2)
    add_customer(con, start=dt.date(2024, 2, 10), name="C")
    grant(con, grant_id=1, customer_id=a, offer_code="pct20x3", first_period=dt.date(2024, 2, 1))
    assert cancel_subscription(con, customer_id=b, end_date=dt.date(2024, 2, 29),
                               at=dt.datetime(2024, 2, 20)).ok
    for day, wait in ((dt.datetime(2024, 1, 15, 10), 600), (dt.datetime(2024, 2, 3, 10), 60),
                      (dt.datetime(2024, 2, 20, 10), 180)):
        assert record_contact(con, customer_id=a, channel="phone", reason="bill_not_understood",
                              resolution="resolved", at=day, wait_seconds=wait).ok
    assert run_billing(con, dt.date(2024, 1, 1), as_of=dt.date(2024, 2, 1)).ok
    assert run_billing(con, dt.date(2024, 2, 1), as_of=AS_OF).ok
    return con


def test_reference_month_is_the_last_complete_month():
    assert reference_month(dt.date(2024, 3, 1)) == dt.date(2024, 2, 1)
    assert reference_month(dt.date(2024, 3, 15)) == dt.date(2024, 2, 1)
    assert reference_month(dt.date(2024, 2, 29)) == dt.date(2024, 2, 1)
    assert reference_month(dt.date(2024, 1, 1)) == dt.date(2023, 12, 1)


def test_headline_kpis_by_hand(world):
    ov = overview(world, as_of=AS_OF)
    assert ov.month == dt.date(2024, 2, 1) and ov.previous_month == dt.date(2024, 1, 1)
    assert [k.key for k in ov.kpis] == [h[0] for h in HEADLINE]
    customers = ov.kpi("customers")
    assert (customers.value, customers.previous, customers.change) == (2, 2, 0)
    mrr = ov.kpi("mrr")
    # January: 1999 + 3100; February: A 1999 - 400 (20 %) + C 1999 (B has left)
    assert (mrr.value, mrr.previous) == (1599 + 1999, 1999 + 3100)
    assert mrr.change == -1501 and mrr.relative_change == pytest.approx(-1501 / 5099)
    churn = ov.kpi("logo_churn")
    assert churn.value == pytest.approx(0.5) and churn.previous is None and churn.change is None
    contacts = ov.kpi("contacts")
    assert (contacts.value, contacts.previous) == (2, 1) and not contacts.is_good
    wait = ov.kpi("mean_wait")
    assert (wait.value, wait.previous) == (pytest.approx(2.0), pytest.approx(10.0)) and wait.is_good
    spend = ov.kpi("discount_spend")
    assert (spend.value, spend.previous) == (400, 0)
    assert ov.has_invoices and ov.has_contacts and ov.currency == "EUR"


def test_trends_end_with_the_reference_month(world):
    ov = overview(world, as_of=AS_OF, months=24)
    assert [d.date() for d in ov.trends["month"]] == [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    assert ov.trends["mrr_cents"].tolist() == [5099, 3598]
    assert ov.trends["discount_spend_cents"].tolist() == [0, 400]


def test_formatting_of_each_unit():
    assert Kpi("m", "MRR", 123456, 100000, "cents", "up").format() == "€1,234.56"
    assert Kpi("m", "MRR", 123456, 100000, "cents", "up").change_text == "+€234.56 (+23.5%)"
    rate = Kpi("c", "Churn", 0.031, 0.025, "rate", "down")
    assert rate.format() == "3.1%" and rate.change_text == "+0.6 pp" and rate.is_good is False
    assert Kpi("w", "Wait", 4.25, None, "minutes", "down").format() == "4.2 min"
    assert Kpi("w", "Wait", None, 3, "minutes", "down").format() == "-"
    assert Kpi("n", "Customers", 1000, 1000, "count", "up").is_good is None
    assert Kpi("n", "Customers", 990, 1000, "count", "up").change_text == "-10 (-1.0%)"


def test_business_date_and_data_as_of(world):
    assert data_as_of(world) == AS_OF            # the February run issued invoices on 1 March
    # not a simulated world: the app works on the calendar date
    assert business_date(world, today=dt.date(2030, 5, 5)) == dt.date(2030, 5, 5)
    world.execute("CREATE TABLE sim_world (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    try:
        assert business_date(world, today=dt.date(2030, 5, 5)) == AS_OF
    finally:
        world.execute("DROP TABLE sim_world")


def test_an_empty_database():
    con = new_db()
    assert not has_customers(con) and data_as_of(con) is None
    assert overview(con, as_of=AS_OF) is None
    assert business_date(con, today=AS_OF) == AS_OF


def test_customers_without_invoices_or_contacts():
    """An imported database: customers and subscriptions only."""
    con = new_db()
    add_customer(con, start=dt.date(2023, 6, 1))
    add_customer(con, start=dt.date(2023, 12, 5))
    ov = overview(con, as_of=dt.date(2024, 1, 10))
    assert not ov.has_invoices and not ov.has_contacts
    assert ov.kpi("customers").value == 2 and ov.kpi("customers").previous == 1
    assert ov.kpi("mean_wait").value is None and ov.kpi("discount_spend").value == 0
    assert ov.kpi("mrr").value == 2 * 1999


def test_the_first_month_has_no_previous():
    con = new_db()
    add_customer(con, start=dt.date(2024, 1, 1))
    ov = overview(con, as_of=dt.date(2024, 1, 20))
    assert ov.month == dt.date(2024, 1, 1) and len(ov.trends) == 1
    assert ov.kpi("customers").previous is None and ov.kpi("customers").change_text is None


def test_filter_options(world):
    from analytics.overview import filter_options
    opts = filter_options(world)
    assert opts["segment"] == ["consumer"] and opts["region"] == ["north"] and opts["channel"] == ["web"]
    assert opts["plan"] == [(1, "Basic"), (2, "Plus")] and opts["attributes"] == []
    world.execute("INSERT INTO customer_attributes VALUES (1, 'contract', 'One year'), (2, 'contract', 'Two year'), "
                  "(1, 'internet', 'DSL')")
    try:
        assert filter_options(world)["attributes"] == ["contract", "internet"]
    finally:
        world.execute("DELETE FROM customer_attributes")
