"""The HTML dashboards and the monthly report open in a real browser from disk: headless Debian chromium driven
by Playwright, no console errors, no request other than file://, SVG charts drawn. Screenshots go to
test-artifacts/ (gitignored) for a person to look at.

Skips with the reason when Playwright or chromium is missing; fails instead when AIOBS_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aiobs_pipeline.reporting import html
from aiobs_pipeline.reporting.business import business_dashboard
from aiobs_pipeline.reporting.monthly import monthly_report, render_html, render_markdown
from aiobs_pipeline.reporting.settings import ReportingSettings
from aiobs_pipeline.reporting.technical import technical_dashboard
from tests.conftest import _service_unavailable
from tests.unit.test_reporting_business import cost_tables
from tests.unit.test_reporting_technical import priced_calls

CHROMIUM = os.environ.get("AIOBS_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def playwright_or_skip():
    """The sync Playwright entry point, or a skip (a failure under AIOBS_REQUIRE_SERVICES=1) naming what is missing."""
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        _service_unavailable("playwright is not installed (pip install playwright; never 'playwright install': "
                             "the browser is Debian's chromium)")
    if not Path(CHROMIUM).is_file():
        _service_unavailable(f"chromium not found at {CHROMIUM} (apt-get install chromium, or set AIOBS_CHROMIUM)")
    return sync_playwright


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A technical and a business dashboard and a monthly report of two days of synthetic traffic."""
    rng = np.random.default_rng(7)
    days = ["2026-09-30", "2026-10-01"]
    spans = pd.concat([priced_calls(day, 60, hour=hour, prefix=f"{hour}-", error_every=13,
                                    latency=lambda i: float(rng.gamma(2.0, 400.0)),
                                    model=lambda i: ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"][i % 3],
                                    endpoint=lambda i: ["/chat", "/search"][i % 2],
                                    feature=lambda i: ["support", "search", "chat"][i % 3],
                                    prompt_version=lambda i: ["v1", "v2"][i % 2],
                                    time_to_first_token_ms=lambda i: float(rng.gamma(2.0, 80.0)))
                       for day in days for hour in (9, 15)], ignore_index=True)
    hallucination = spans[["export_hour", "span_id"]].assign(trust_score=rng.uniform(0.3, 1.0, len(spans)))
    hallucination["risk_level"] = np.where(hallucination["trust_score"] < 0.5, "high", "low")
    feedback = pd.DataFrame({"span_id": spans["span_id"], "response_hour": spans["export_hour"],
                             "satisfaction": rng.uniform(0.4, 1.0, len(spans))})
    settings = ReportingSettings()
    daily, summary = cost_tables(spans, days)
    business = pd.concat([business_dashboard(d, daily, summary, spans, settings, hallucination, feedback)
                          for d in days])
    technical = pd.concat([technical_dashboard(spans, d, settings, hallucination, feedback) for d in days])
    folder = tmp_path_factory.mktemp("reports")
    report = monthly_report("2026-10-01", business, technical, daily, settings)
    html.write_text(folder / "2026-10.md", render_markdown(report))
    return {
        "technical-2026-10-01": html.write_text(
            html.dashboard_path(folder, settings, "technical", days[1]),
            html.technical_page(technical[technical["day"] == pd.Timestamp(days[1])], days[1])),
        "business-2026-10-01": html.write_text(
            html.dashboard_path(folder, settings, "business", days[1]),
            html.business_page(business[business["day"] == pd.Timestamp(days[1])], days[1], settings)),
        "monthly-2026-10": html.write_text(folder / "2026-10.html", render_html(report)),
    }


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module (launching costs about two seconds)."""
    sync_playwright = playwright_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.mark.parametrize(("name", "charts"), [
    ("technical-2026-10-01", 6), ("business-2026-10-01", 3), ("monthly-2026-10", 3)])
def test_page_opens_offline_with_charts(browser, pages: dict[str, Path], name: str, charts: int) -> None:
    path = pages[name]
    assert path.stat().st_size < 300_000, "a dashboard file should stay small (inline SVG, no library)"
    errors: list[str] = []
    requests: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        # Anything but the file itself would be a network request: refuse it (and the test fails below).
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                   else route.abort())
        page.goto(path.as_uri(), wait_until="load")
        drawn = page.locator("figure svg")
        assert drawn.count() == charts, f"{name}: {drawn.count()} charts drawn, expected {charts}"
        for index in range(charts):
            box = drawn.nth(index).bounding_box()
            assert box and box["width"] > 200 and box["height"] > 80, f"{name}: chart {index} has no size"
        assert page.locator("figure svg path, figure svg rect").count() > 20
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        page.close()
    assert errors == [], f"{name}: console errors {errors}"
    assert requests and all(url.startswith("file://") for url in requests), f"{name}: requests {requests}"
