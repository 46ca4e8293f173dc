"""analytics/fairness.py: billing errors, price rises, ended discounts and what peers pay."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from analytics.fairness import MIN_PEERS, TENURE_BANDS, fairness_check, tenure_band
from billing.add_charge import add_charges
from billing.issue_credit_note import issue_credit_note
from billing.manage_catalogue import set_plan_price
from billing.record_contact import record_contact
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, grant, new_db

AT = dt.datetime(2024, 7, 2, 9, 0)
AS_OF = dt.date(2024, 7, 2)


def _bill(con, months):
    for m in months:
        period = dt.date(2024, m, 1)
        nxt = dt.date(2024, m + 1, 1)
        assert run_billing(con, period, as_of=nxt).ok


@pytest.fixture(scope="module")
def world():
    """Customer 'me' on Basic since 2023-03 (15-16 months), 8 peers in the same band, 3 in another."""
    con = new_db()
    me = add_customer(con, start=dt.date(2023, 3, 1), name="Me")
    peers = [add_customer(con, start=dt.date(2023, 2 + i % 4, 1 + i), name=f"Peer {i}") for i in range(8)]
    newbies = [add_customer(con, start=dt.date(2024, 3, 1), name=f"New {i}") for i in range(3)]
    plus = add_customer(con, start=dt.date(2023, 3, 1), name="On Plus", plan_id=2)
    # a price rise of Basic from 2024-05, a 20 % discount for me covering 2024-02..2024-04
    assert set_plan_price(con, plan_id=1, effective_from=dt.date(2024, 5, 1), monthly_price_cents=2299).ok
    grant(con, grant_id=1, customer_id=me, offer_code="pct20x3", first_period=dt.date(2024, 2, 1))
    # a charge billed twice on my 2024-06 bill
    subs = con.execute("SELECT subscription_id FROM subscriptions WHERE customer_id = ?", [me]).fetchall()[0][0]
    assert add_charges(con, pd.DataFrame({"subscription_id": [subs, subs],
                                          "period_start": [dt.date(2024, 6, 1)] * 2,
                                          "description": ["Paper bill fee"] * 2,
                                          "amount_cents": [250, 250]}), at=AT).ok
    _bill(con, range(1, 7))
    return con, me, peers, newbies, plus


def test_a_customer_with_every_concern(world):
    con, me, *_ = world
    check = fairness_check(con, me, as_of=AS_OF)
    assert check.window_start == dt.date(2024, 2, 1)
    assert [d.month for d in pd.to_datetime(check.invoices["period_start"])] == [6, 5, 4, 3, 2]
    assert check.invoices["number"].iloc[0].startswith("INV-") and check.invoices["plan_name"].iloc[0] == "Basic"
    assert check.invoices["discount_cents"].tolist()[2:] == [400, 400, 400]
    dup = check.billing_errors
    assert dup["source"].tolist() == ["duplicate_line"]
    assert dup["amount_cents"].iloc[0] == 250 and "Paper bill fee" in dup["detail"].iloc[0]
    assert dup["number"].iloc[0].startswith("INV-")
    rise = check.price_rises
    assert rise[["effective_from", "old_price_cents", "new_price_cents"]].values.tolist() == \
        [[pd.Timestamp("2024-05-01"), 1999, 2299]]
    assert rise["change_pct"].iloc[0] == pytest.approx(15.0)
    ended = check.ended_discounts
    assert ended["grant_id"].tolist() == [1]
    assert pd.Timestamp(ended["last_period"].iloc[0]).date() == dt.date(2024, 4, 1)
    assert check.concerns >= 3
    text = " ".join(check.findings)
    assert "Possible billing error" in text and "Price rise" in text and "2024-05 bill is the first" in text


def test_peers_on_the_same_plan_and_band_for_the_latest_period(world):
    con, me, peers, newbies, plus = world
    p = fairness_check(con, me, as_of=AS_OF).peers
    assert p.plan_name == "Basic" and p.period_start == dt.date(2024, 6, 1)
    assert p.tenure_band == "12-23 months" and p.n_peers == len(peers)
    totals = sorted(int(r[0]) for r in con.execute(
        "SELECT total_cents FROM invoices WHERE period_start = DATE '2024-06-01' AND customer_id IN "
        f"({','.join(map(str, peers))})").fetchall())
    s = pd.Series(totals)
    assert p.median_cents == round(s.quantile(0.5)) and p.p25_cents == round(s.quantile(0.25))
    mine = con.execute("SELECT total_cents FROM invoices WHERE customer_id = ? AND period_start = DATE "
                       "'2024-06-01'", [me]).fetchall()[0][0]
    assert p.customer_cents == mine and mine > max(totals)
    assert p.share_paying_less == 1.0 and p.pays_above_peers


def test_too_few_peers_gives_no_quartiles(world):
    con, _, _, newbies, plus = world
    p = fairness_check(con, newbies[0], as_of=AS_OF).peers
    assert p.tenure_band == "under 6 months" and p.n_peers == 2 < MIN_PEERS
    assert p.median_cents is None and not p.enough_peers and not p.pays_above_peers
    assert any("Too few peers" in f for f in fairness_check(con, plus, as_of=AS_OF).findings)


def test_a_clean_account_has_no_concerns(world):
    con, _, peers, *_ = world
    check = fairness_check(con, peers[0], as_of=AS_OF)
    assert check.billing_errors.empty and check.ended_discounts.empty
    assert check.findings[0].startswith("No billing errors")
    assert not check.peers.pays_above_peers


def test_as_of_limits_what_is_seen(world):
    con, me, *_ = world
    early = fairness_check(con, me, as_of=dt.date(2024, 4, 15))
    assert early.price_rises.empty          # the rise takes effect in May
    assert early.ended_discounts.empty      # the discount still covers April
    assert early.billing_errors.empty       # the June bill is not issued yet
    assert early.peers.period_start == dt.date(2024, 3, 1)


def test_corrected_and_reported_errors():
    con = new_db()
    cid = add_customer(con, start=dt.date(2024, 1, 1))
    _bill(con, [1, 2])
    inv = con.execute("SELECT max(invoice_id) FROM invoices WHERE customer_id = ?", [cid]).fetchall()[0][0]
    assert issue_credit_note(con, invoice_id=inv, reason="billing_error", amount_cents=500, at=AT).ok
    assert record_contact(con, customer_id=cid, channel="phone", reason="billing_error", resolution="unresolved",
                          at=dt.datetime(2024, 3, 3, 10), invoice_id=inv).ok
    check = fairness_check(con, cid, as_of=dt.date(2024, 3, 10))
    assert sorted(check.billing_errors["source"]) == ["credit_note", "reported"]
    assert "(unresolved)" in " ".join(check.billing_errors["detail"])


def test_the_plan_charged_again_as_a_fee_is_a_possible_error():
    con = new_db()
    cid = add_customer(con, start=dt.date(2024, 1, 1))
    sub = con.execute("SELECT subscription_id FROM subscriptions WHERE customer_id = ?", [cid]).fetchall()[0][0]
    assert add_charges(con, pd.DataFrame({"subscription_id": [sub], "period_start": [dt.date(2024, 2, 1)],
                                          "description": ["Basic"], "amount_cents": [1999]}), at=AT).ok
    _bill(con, [1, 2])
    errors = fairness_check(con, cid, as_of=dt.date(2024, 3, 2)).billing_errors
    assert errors["source"].tolist() == ["duplicate_line"] and errors["amount_cents"].tolist() == [1999]
    assert "charged again" in errors["detail"].iloc[0]


def test_an_imported_customer_without_invoices():
    con = new_db()
    cid = add_customer(con, start=dt.date(2020, 1, 1))
    check = fairness_check(con, cid, as_of=AS_OF)
    assert check.peers is None and check.concerns == 0 and check.invoices.empty
    assert any("No invoice yet" in f for f in check.findings)
    assert list(check.billing_errors.columns)[:2] == ["invoice_id", "number"]


def test_unknown_customer():
    assert fairness_check(new_db(), 42, as_of=AS_OF) is None


@pytest.mark.parametrize("months,label", [(0, "under 6 months"), (5, "under 6 months"), (6, "6-11 months"),
                                          (23, "12-23 months"), (24, "2-4 years"), (600, "5 years or more")])
def test_tenure_bands(months, label):
    assert tenure_band(months) == label
    assert [b[0] for b in TENURE_BANDS].count(label) == 1
