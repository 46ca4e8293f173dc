"""billing/render_invoice.py: one context per edge case; customer-supplied text is always escaped."""
from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest

from billing.add_charge import add_charge
from billing.issue_credit_note import issue_credit_note
from billing.manage_catalogue import set_plan_price
from billing.pricing import add_months
from billing.record_payment import record_payment
from billing.render_invoice import render_invoice_html
from billing.run_billing import run_billing
from tests.billing.helpers import add_customer, new_db

DEC, JAN, FEB = dt.date(2023, 12, 1), dt.date(2024, 1, 1), dt.date(2024, 2, 1)
AT = dt.datetime(2024, 2, 10, 9, 0)
SCRIPT = "<script>alert(1)</script>"
QUOTES = "\"&'"


def bill(con, *periods):
    for period in periods:
        assert run_billing(con, period, as_of=add_months(period, 1)).ok


class _Collector(HTMLParser):
    """Tags and text of a document, as a browser would parse them."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parsed(doc: str) -> _Collector:
    c = _Collector()
    c.feed(doc)
    return c


def hostile_world():
    con = new_db()
    cid = add_customer(con, start=DEC, name=f"{SCRIPT} {QUOTES}", email=f"x{QUOTES}<b>@example.org",
                       postcode="<img src=x onerror=alert(2)>")
    assert add_charge(con, subscription_id=1, period_start=FEB, description=f"Fee {SCRIPT} {QUOTES}",
                      amount_cents=250, at=AT).ok
    bill(con, JAN, FEB)
    assert issue_credit_note(con, invoice_id=2, amount_cents=120, reason="billing_error", at=AT,
                             note=f"note {SCRIPT}", lines=None).ok
    return con, cid


def test_unknown_invoice_renders_nothing():
    assert render_invoice_html(new_db(), 3) is None


def test_customer_text_is_escaped_everywhere():
    con, _ = hostile_world()
    doc = render_invoice_html(con, 2)
    assert SCRIPT not in doc and "<img" not in doc and "<b>@" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &quot;&amp;&#x27;" in doc       # the name
    assert "Fee &lt;script&gt;" in doc and "note &lt;script&gt;" in doc
    c = parsed(doc)
    assert "script" not in c.tags and "img" not in c.tags
    text = "".join(c.text)
    assert f"{SCRIPT} {QUOTES}" in text                                          # shown as typed


def test_document_is_standalone_and_printable():
    con, _ = hostile_world()
    doc = render_invoice_html(con, 2)
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert "<style>" in doc and "@media print" in doc
    assert not re.search(r"(src|href)\s*=\s*\"?(https?:)?//", doc)            # nothing fetched
    assert '<meta charset="utf-8">' in doc


def test_shows_number_lines_totals_and_tax():
    con, _ = hostile_world()
    doc = render_invoice_html(con, 2)
    assert "Invoice INV-00000002" in doc and "<title>Invoice INV-00000002</title>" in doc
    # February: 19.99 plan + 2.50 fee = 22.49, 20 % tax 4.498 -> 4.50, total 26.99.
    for text in ("€19.99", "€2.50", "Tax (20.00%)", "€4.50", "€26.99", "2024-02-01 to 2024-02-29", "2024-03-15"):
        assert text in doc


def test_shows_credit_notes_issued_against_it_and_the_balance():
    con, cid = hostile_world()
    assert record_payment(con, customer_id=cid, amount_cents=2399 + 1000, received_at=AT, method="card").ok
    doc = render_invoice_html(con, 2)
    assert "CN-00000001" in doc and "billing error" in doc
    assert "-€1.20" in doc                                      # credit note total
    assert "-€10.00" in doc                                     # paid: what reaches February after January
    assert "€15.79" in doc                                      # 26.99 - 1.20 - 10.00


def test_discounts_and_credits_applied_appear_in_the_totals():
    from tests.billing.helpers import grant
    con = new_db()
    cid = add_customer(con, start=DEC)
    grant(con, grant_id=1, customer_id=cid, offer_code="pct20x3", first_period=JAN)
    grant(con, grant_id=2, customer_id=cid, offer_code="credit50", first_period=JAN)
    bill(con, JAN)
    doc = render_invoice_html(con, 1)
    assert "Discounts" in doc and "-€4.00" in doc and "Credits applied" in doc


def test_paid_invoice_is_marked_paid():
    con = new_db()
    cid = add_customer(con, start=DEC)
    bill(con, JAN)
    assert record_payment(con, customer_id=cid, amount_cents=2399, received_at=AT, method="card").ok
    assert '<span class="status">paid</span>' in render_invoice_html(con, 1)


@pytest.mark.parametrize("explanation", [True, False])
def test_explanation_of_changes_is_included_on_request(explanation):
    con = new_db()
    add_customer(con, start=DEC)
    assert set_plan_price(con, plan_id=1, effective_from=FEB, monthly_price_cents=2299).ok
    bill(con, JAN, FEB)
    doc = render_invoice_html(con, 2, explanation=explanation)
    assert ("What changed since your last invoice" in doc) is explanation
    assert ("price rose from €19.99 to €22.99" in doc) is explanation
    assert ("(+€3.00)" in doc) is explanation


def test_first_invoice_explains_itself():
    con = new_db()
    add_customer(con, start=JAN)
    bill(con, JAN)
    doc = render_invoice_html(con, 1)
    assert "About this invoice" in doc and "First invoice" in doc
