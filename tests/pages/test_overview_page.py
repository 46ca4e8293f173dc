"""The Overview page: headline KPIs with the change on last month and the trend charts, every role."""
from __future__ import annotations

import pytest

from analytics.overview import business_date, overview
from data.db import connect
from pages._ui import PAGES, ROLE_PAGES
from tests.pages.worlds import chart_titles, charts, downloads, open_page, texts, values

ROLES = sorted(r for r, pages in ROLE_PAGES.items() if "overview" in pages)


def _expected(db):
    con = connect(db)
    try:
        import datetime as dt
        return overview(con, as_of=business_date(con, today=dt.date.today()))
    finally:
        con.close()


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_the_kpis_and_trends(world, app, role):
    at = app(world, role)
    open_page(at, PAGES["overview"].path)
    ov = _expected(world)
    shown = {m.label: (m.value, m.delta) for m in at.metric}
    assert sorted(shown) == sorted(k.label for k in ov.kpis)
    for k in ov.kpis:
        assert shown[k.label][0] == k.format()
        assert (shown[k.label][1] or None) == k.change_text
    assert f"{ov.month:%B %Y} against {ov.previous_month:%B %Y}" in texts(at)
    assert chart_titles(at) == ["MRR and ARPU", "Care contacts", "Churn rates",
                                "Discount spend (discounts and credits)"]
    assert downloads(at)


def test_the_mrr_chart_plots_the_metric(world, app):
    at = app(world, "analyst")
    ov = _expected(world)
    mrr = charts(at)[0]["data"][0]
    assert values(mrr["y"]) == pytest.approx((ov.trends["mrr_cents"] / 100).tolist())
    assert len(mrr["x"]) == len(ov.trends)


def test_an_imported_file_without_bills_or_contacts(imported, app):
    at = app(imported, "leader")
    page = texts(at)
    assert "no invoices" in page and "no care contacts" in page
    assert len(at.metric) == 8 and len(charts(at)) == 4
