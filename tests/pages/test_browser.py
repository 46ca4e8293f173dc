"""One real-browser run: `streamlit run app.py` on a small prebuilt world, driven by Debian's headless
chromium through Playwright. An agent signs in and completes the desk flow; every page of every role
is screenshotted into test-artifacts/ (git-ignored). Never downloads a browser."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from data.db import connect
from pages._ui import PAGES, ROLE_PAGES
from tests.pages.worlds import DEMO_PASSWORDS, ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed "
                                 "(apt-get install chromium); the browser test never downloads one")]



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(fresh_world, tmp_path):
    port = _free_port()
    env = {**os.environ, "RETENTION_DB": str(fresh_world), "PYTHONPATH": str(ROOT),
           "RETENTION_MODELS": str(tmp_path / "models")}
    env.pop("RETENTION_TODAY", None)
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start: " + (tmp_path / "streamlit.log").read_text()[-2000:])
        yield url, fresh_world, stop
    finally:
        stop()
        log.close()


def _caller(db) -> tuple[str, str, int]:
    con = connect(db)
    try:
        return con.execute("""
            SELECT c.account_number, c.postcode,
                   (SELECT total_cents FROM invoices i WHERE i.customer_id = c.customer_id
                    ORDER BY issued_on DESC, invoice_id DESC LIMIT 1)
            FROM customers c
            WHERE c.churned_on IS NULL AND c.postcode IS NOT NULL AND c.signup_date <= DATE '2023-03-01'
              AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.customer_id = c.customer_id AND s.end_date IS NULL)
              AND NOT EXISTS (SELECT 1 FROM offer_grants g WHERE g.customer_id = c.customer_id)
              AND (SELECT count(*) FROM invoices i WHERE i.customer_id = c.customer_id) >= 3
            ORDER BY c.customer_id LIMIT 1""").fetchall()[0]
    finally:
        con.close()


def _wait_idle(page) -> None:
    """Wait until Streamlit has finished the script run (the status widget disappears)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def _sign_in(page, url, login) -> None:
    page.goto(url)
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password", exact=True).fill(DEMO_PASSWORDS[login])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)
    _wait_idle(page)


def _shot(page, name) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']").first.inner_text()


def test_an_agent_completes_the_desk_flow_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright
    url, db, stop = server
    account, postcode, last_total = _caller(db)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_label("Login").wait_for(timeout=60_000)
            _shot(page, "sign-in")
            _sign_in(page, url, "agent")
            _no_exception(page)
            _shot(page, "agent-overview")

            page.get_by_role("link", name="Agent desk").click()
            page.get_by_role("heading", name="Agent desk").wait_for()
            page.get_by_label("Find the caller: name, email, phone or account number").fill(account)
            page.get_by_role("button", name="Search").click()
            page.get_by_role("button", name="Take this call").click()
            _wait_idle(page)
            _shot(page, "agent-desk-verify")
            page.get_by_label("Postcode").fill(postcode)
            page.get_by_label("Last invoice amount").fill(f"{last_total / 100:.2f}")
            page.get_by_role("button", name="Verify").click()
            page.get_by_text("Identity verified").wait_for(timeout=60_000)
            _wait_idle(page)
            _no_exception(page)
            page.get_by_role("heading", name="Latest bill explained").wait_for(timeout=60_000)
            _wait_idle(page)
            _shot(page, "agent-desk-account")

            page.get_by_role("button", name="Record the call").click()
            page.get_by_text(re.compile(r"Call recorded \(contact \d+\)")).wait_for(timeout=60_000)
            _wait_idle(page)
            offer = page.get_by_role("combobox", name="Offer")
            offer.click()
            page.get_by_role("option", name=re.compile("10% off")).click()
            _wait_idle(page)
            page.get_by_text(re.compile("The customer accepts")).click()
            _wait_idle(page)
            page.get_by_role("button", name="Grant the offer").click()
            page.get_by_text(re.compile("the next invoice shows it")).wait_for(timeout=60_000)
            _no_exception(page)
            _shot(page, "agent-desk-granted")
        finally:
            browser.close()
    stop()  # the server holds the database file; the grant is checked once it has let go
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM offer_grants g JOIN customers c USING (customer_id) "
                           "WHERE c.account_number = ? AND g.assignment = 'agent'", [account]).fetchall()[0][0] == 1
    finally:
        con.close()


def test_every_page_of_every_role_renders_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright
    url, _, _ = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for role in ("admin", "leader", "analyst"):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                _sign_in(page, url, role)
                for key in ROLE_PAGES[role]:
                    spec = PAGES[key]
                    if key != "overview":
                        page.get_by_role("link", name=spec.title).click()
                        page.get_by_role("heading", name=spec.title).wait_for(timeout=60_000)
                        _wait_idle(page)
                    _no_exception(page)
                    _shot(page, f"{role}-{spec.url_path}")
                page.close()
        finally:
            browser.close()
