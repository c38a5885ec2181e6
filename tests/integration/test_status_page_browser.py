"""The status page in a real headless browser (Chromium, driven by Playwright).

A daemon polls the fake API through a story (margin ratio and equity drift), then the
pages are served from its store behind RISKWATCH_HTTP_TOKEN and opened in Chromium: the
overview lists the alerts, each account chart has its series and the rules' level lines,
no console error, and a browser without the token gets 401.

Chromium comes from the machine's packages (`apt install chromium`); `.ci/run` installs
it and sets RISKWATCH_REQUIRE_BROWSER=1, so there these tests never skip. Set
RISKWATCH_SCREENSHOT=docs/status-page.png to write the README's screenshot.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskwatch.service.daemon import Daemon
from riskwatch.service.http import Health, WebServer
from riskwatch.service.status import StatusPages
from riskwatch.service.telemetry import Telemetry
from riskwatch.store import open_store
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import Clock, cached_with_ratio, drive, settings_for

TOKEN = "page-token-0123456789"
CHART_RULES = """
rules:
  - name: desk-margin
    scope: account
    metric: maint_margin_ratio
    levels: {warning: 0.5, critical: 0.8}
  - name: desk-buffer
    scope: account
    metric: liquidation_buffer
    when: below
    levels: {warning: 0.3, critical: 0.1}
  - name: desk-equity
    scope: account
    metric: equity
    when: below
    levels: {warning: 4500}
  - name: desk-leverage
    scope: account
    metric: effective_leverage
    levels: {warning: 5}
"""
# read at import, before the autouse fixture clears RISKWATCH_* from each test's environment
REQUIRE_BROWSER = bool(os.environ.get("RISKWATCH_REQUIRE_BROWSER"))
SCREENSHOT = os.environ.get("RISKWATCH_SCREENSHOT")
STEP = 3 * 3600  # seconds between the story's polls: the charts span most of a day
STORY = [("0.2", "5000"), ("0.4", "4900"), ("0.6", "4600"), ("0.85", "4400"),
         ("0.6", "4700"), ("0.3", "5000")]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser_path() -> str:
    """The system Chromium; a skip only where the machine has none and CI is not asking."""
    path = _chromium()
    if path is None:
        if REQUIRE_BROWSER:
            pytest.fail("Chromium is required here (apt install chromium)")
        pytest.skip("no Chromium on this machine (apt install chromium); CI installs it")
    return path


@pytest.fixture
def site(tread: FakeTread, slack: FakeSlack, tmp_path: Path) -> Iterator[str]:
    """The pages over a store the daemon filled by polling the story, behind TOKEN."""
    settings = settings_for(tread, slack, tmp_path, rules=CHART_RULES, poll_interval="15s")
    clock = Clock(tread)
    clock.advance(-STEP * len(STORY))

    async def story(daemon: Daemon) -> None:
        for ratio, equity in STORY:
            payload: dict[str, Any] = copy.deepcopy(cached_with_ratio(ratio))
            payload["balances"][0]["equity"] = equity
            tread.set_cached(payload)
            await daemon.tick_once()
            clock.advance(STEP)

    daemon = drive(settings, clock, story)
    pages = StatusPages(lambda: open_store(settings.state),
                        lambda: daemon.rule_source.rules, clock)
    web = WebServer("127.0.0.1:0", Health(lambda: (True, ""), lambda: []), Telemetry(),
                    pages=pages, token=TOKEN)
    try:
        yield web.url
    finally:
        web.close()


def test_pages_load_with_charts_and_levels_and_no_console_error(
        browser_path: str, site: str) -> None:
    """Overview and account page render in Chromium: the overview links every account with
    history, every chart has a series and labelled level lines, an unknown account is a
    404, and nothing is logged to the console."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path,
                                             args=["--no-sandbox"])
        context = browser.new_context(http_credentials={"username": "desk",
                                                        "password": TOKEN},
                                      viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        opened = page.goto(f"{site}/")
        assert opened is not None and opened.status == 200
        assert page.locator("h1").inner_text() == "riskwatch"
        rows = page.locator("table").first.locator("tbody tr")
        assert rows.count() >= 1
        assert page.locator(".accounts a").all_inner_texts() == ["desk-1"]
        page.locator(".accounts a[href='/accounts/desk-1']").click()
        page.wait_for_url(f"{site}/accounts/desk-1")
        figures = page.locator("figure")
        assert figures.count() == 8  # four metrics, over 24 hours and over 7 days
        for index in range(figures.count()):
            figure = figures.nth(index)
            metric = figure.get_attribute("data-metric")
            assert figure.locator("polyline.series").count() == 1, metric
            assert figure.locator("line.level").count() >= 1, metric
            labels = figure.locator("text.level-label").all_text_contents()
            assert labels and all(label.split()[0] in ("warning", "critical")
                                  for label in labels), metric
            points = figure.locator("polyline.series").get_attribute("points") or ""
            assert len(points.split()) == len(STORY), metric
        if SCREENSHOT:
            page.screenshot(path=SCREENSHOT, full_page=True)
        assert context.request.get(f"{site}/accounts/nosuch").status == 404
        browser.close()
    assert errors == []


def test_the_token_is_enforced_in_the_browser(browser_path: str, site: str) -> None:
    """Without the token every page answers 401, and with a wrong one (asked through the
    browser's own request context: Chromium will not show a page it cannot log in to)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path,
                                             args=["--no-sandbox"])
        bare = browser.new_context()
        for path in ("/", "/accounts/desk-1", "/api/v1/alerts"):
            assert bare.request.get(f"{site}{path}").status == 401, path
        wrong = browser.new_context(http_credentials={"username": "desk",
                                                      "password": "wrong-token-000000"})
        for path in ("/", "/accounts/desk-1", "/api/v1/alerts"):
            assert wrong.request.get(f"{site}{path}").status == 401, path
        browser.close()
