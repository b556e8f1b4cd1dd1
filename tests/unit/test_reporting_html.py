"""Dashboard pages: self-contained (no script, no remote reference), escaped, and honest on empty days."""

from __future__ import annotations

import re

import pandas as pd

from aiobs_pipeline.reporting import charts, html
from aiobs_pipeline.reporting.business import business_dashboard
from aiobs_pipeline.reporting.settings import ReportingSettings
from aiobs_pipeline.reporting.technical import technical_dashboard
from tests.unit.test_reporting_business import cost_tables
from tests.unit.test_reporting_technical import priced_calls

SVG_NAMESPACES = re.compile(r'xmlns(:xlink)?="http://www\.w3\.org/[^"]+"')


def remote_references(page: str) -> list[str]:
    return re.findall(r"(?:https?:)?//[\w.-]+\.\w+", SVG_NAMESPACES.sub("", page))


def test_technical_page_is_self_contained_and_escapes_names() -> None:
    spans = priced_calls("2026-10-01", 12, model=lambda i: "<b>evil</b>" if i % 2 else "gpt-4o",
                         time_to_first_token_ms=lambda i: 40.0 * i)
    page = html.technical_page(technical_dashboard(spans, "2026-10-01"), "2026-10-01")
    assert page.count("<figure>") == 6 and page.count("<svg") == 6
    assert "<script" not in page and remote_references(page) == []
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "inline SVGs share one id space"
    assert len(page) < 300_000


def test_empty_day_pages_say_there_is_nothing_to_chart() -> None:
    page = html.technical_page(technical_dashboard(priced_calls("2026-10-01", 0), "2026-10-01"), "2026-10-01")
    # Only the hourly calls chart is drawn (a true line of zeros); the others say why they are empty.
    assert page.count("<svg") == 1 and page.count('<div class="empty">') == 5
    assert "No model calls this day." in page  # the tables say so too

    spans = priced_calls("2026-09-30", 3)
    daily, summary = cost_tables(spans, ["2026-09-30"])
    settings = ReportingSettings()
    business = business_dashboard("2026-10-01", daily, summary, spans, settings)
    page = html.business_page(business, "2026-10-01", settings)
    assert "no cost_summary row for this day" in page and "n/a" in page
    assert "Assumptions: assumes 10% of answered conversations" in page


def test_charts_without_data_are_not_drawn() -> None:
    empty = pd.DataFrame({"x": ["a"], "y": [float("nan")]})
    chart = charts.line_chart(empty, "x", "y", "Title", "y", empty_message="Nothing.")
    assert chart.svg is None and chart.empty_message == "Nothing."
    drawn = charts.bar_chart(pd.DataFrame({"x": ["a", "b"], "y": [1.0, 2.0]}), "x", "y", "Bars", "y")
    assert drawn.svg and drawn.svg.startswith('<svg role="img" aria-label="Bars"')
