"""Static HTML dashboards: the technical and business dashboard tables of a day as one self-contained page each.

Pages are rendered with Jinja2 from templates/ (autoescaped), with inline CSS and inline SVG charts and no
script, so a file opens from disk in any browser without a server or network. This module renders and writes
files; the figures come from technical.py and business.py, the words from phrasing.py.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from aiobs_pipeline.reporting import charts, phrasing
from aiobs_pipeline.reporting.business import FEATURE_SPECS, metric_specs
from aiobs_pipeline.reporting.metrics import ALL, improved
from aiobs_pipeline.reporting.settings import ReportingSettings
from aiobs_pipeline.reporting.technical import DIMENSIONS, TECHNICAL_METRICS, pivot

TEMPLATES = Path(__file__).parent / "templates"
DIMENSION_TITLES = {"model": "By model", "endpoint": "By endpoint", "prompt_version": "By prompt version"}
TABLE_METRICS: tuple[str, ...] = (
    "calls", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p95_ms", "tokens_per_call",
    "cached_input_share", "cost_per_call_usd", "quality_score", "satisfaction",
)
METRIC_HEADERS = {
    "calls": "calls", "error_rate": "error rate", "latency_p50_ms": "p50", "latency_p95_ms": "p95",
    "latency_p99_ms": "p99", "ttft_p95_ms": "TTFT p95", "tokens_per_call": "tokens/call",
    "cached_input_share": "cached input", "cost_per_call_usd": "cost/call", "quality_score": "quality",
    "satisfaction": "satisfaction",
}
SAMPLE_NOUNS = {
    "ttft_p95_ms": "streamed calls", "quality_score": "scored responses", "satisfaction": "responses with feedback",
    "response_cache_hit_rate": "calls with a cache flag", "cached_input_share": "calls with input tokens",
    "prompt_cache_hit_rate": "calls reporting cached tokens", "cost_usd": "priced calls",
}
BUSINESS_CARDS: tuple[str, ...] = (
    "user_satisfaction", "cost_per_user_usd", "quality_score", "answer_accuracy", "monthly_cost_projection_usd",
    "cost_usd", "calls", "active_users", "cost_per_call_usd",
)


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment over templates/: HTML templates autoescaped, Markdown ones not."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html.j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["value"] = lambda v, unit: phrasing.value_text(v, unit)
    return env


def render(template: str, **context: Any) -> str:
    """Render one template with the given context."""
    return environment().get_template(template).render(**context)


def write_text(path: Path, text: str) -> Path:
    """Write a file atomically (a reader never sees half a page), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def dashboard_path(reports_dir: Path, settings: ReportingSettings, kind: str, day: date | pd.Timestamp) -> Path:
    """Where a day's dashboard goes: <reports_dir>/<dashboards_dir>/<kind>-YYYY-MM-DD.html."""
    folder = settings.dashboards_dir if settings.dashboards_dir.is_absolute() else reports_dir / settings.dashboards_dir
    return folder / f"{kind}-{pd.Timestamp(day):%Y-%m-%d}.html"


def chart_markup(chart: charts.Chart) -> dict[str, Any]:
    """A chart as template context, its SVG marked safe (vl-convert escapes the text it draws)."""
    return {"title": chart.title, "svg": Markup(chart.svg) if chart.svg else None,
            "empty_message": chart.empty_message, "caption": chart.caption}


def _overall(technical: pd.DataFrame) -> dict[str, pd.Series]:
    rows = technical[technical["dimension"] == ALL]
    return {row["metric"]: row for _, row in rows.iterrows()}


def generated_at() -> str:
    """When a page was rendered, for its footer."""
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def technical_page(technical: pd.DataFrame, day: date | pd.Timestamp) -> str:
    """The technical dashboard of one day as a self-contained HTML page."""
    overall = _overall(technical)

    def card(metric: str, label: str) -> dict[str, str]:
        """One overview card: the overall figure, and its sample or why it is missing."""
        row = overall.get(metric)
        if row is None:
            return {"label": label, "value": "n/a", "detail": "not computed"}
        unit = TECHNICAL_METRICS[metric][0]
        detail = row["note"] or f"from {phrasing.count(row['sample_size'])} {SAMPLE_NOUNS.get(metric, 'calls')}"
        return {"label": label, "value": phrasing.value_text(row["value"], unit), "detail": detail}

    cards = [card("calls", "Model calls"), card("error_rate", "Error rate"),
             card("latency_p50_ms", "Latency p50"), card("latency_p95_ms", "Latency p95"),
             card("latency_p99_ms", "Latency p99"), card("ttft_p95_ms", "Time to first token p95"),
             card("tokens_per_call", "Tokens per call"), card("cached_input_share", "Cached input tokens"),
             card("prompt_cache_hit_rate", "Prompt cache hit rate"),
             card("response_cache_hit_rate", "Response cache hit rate"), card("cost_usd", "Cost"),
             card("quality_score", "Quality score"), card("satisfaction", "Satisfaction")]

    latency = technical[technical["metric"].isin(["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"])
                        & (technical["dimension"] == "model")].assign(
        percentile=lambda f: f["metric"].str.extract(r"_(p\d+)_")[0])
    hourly = pivot(technical, "hour", ["calls", "errors", "latency_p95_ms"])
    hourly["hour"] = hourly["dimension_value"].str[-5:]
    calls_errors = hourly.melt(id_vars=["hour"], value_vars=["calls", "errors"], var_name="series",
                               value_name="count")
    tokens = technical[technical["metric"].isin(["input_tokens", "output_tokens"])
                       & (technical["dimension"] == "model")].assign(
        kind=lambda f: f["metric"].str.replace("_tokens", " tokens"))
    by_endpoint = pivot(technical, "endpoint", ["error_rate"])
    by_prompt = pivot(technical, "prompt_version", ["latency_p95_ms"])
    chart_list = [
        charts.grouped_bar_chart(latency, "dimension_value", "percentile", "value", "Latency by model",
                                 "milliseconds", "ms", "No model calls with a latency this day."),
        charts.line_chart(calls_errors, "hour", "count", "Calls and errors per hour (UTC)", "calls",
                          series="series", empty_message="No model calls this day."),
        charts.line_chart(hourly, "hour", "latency_p95_ms", "Latency p95 per hour (UTC)", "milliseconds",
                          unit="ms", empty_message="No model calls with a latency this day."),
        charts.stacked_bar_chart(tokens, "dimension_value", "kind", "value", "Tokens by model", "tokens",
                                 empty_message="No calls reported token counts this day."),
        charts.bar_chart(by_endpoint, "dimension_value", "error_rate", "Error rate by endpoint", "error rate",
                         "ratio", "No model calls this day."),
        charts.bar_chart(by_prompt, "dimension_value", "latency_p95_ms", "Latency p95 by prompt version",
                         "milliseconds", "ms", "No model calls with a latency this day."),
    ]
    tables = []
    for dimension in DIMENSIONS:
        table = pivot(technical, dimension, TABLE_METRICS)
        rows = [[str(r["dimension_value"]), *[phrasing.value_text(r[m], TECHNICAL_METRICS[m][0])
                                              for m in TABLE_METRICS]] for _, r in table.iterrows()]
        tables.append({"title": DIMENSION_TITLES[dimension],
                       "headers": [dimension.replace("_", " "), *[METRIC_HEADERS[m] for m in TABLE_METRICS]],
                       "rows": rows})
    notes = sorted({f"{m.replace('_', ' ')}: {row['note']}" for m, row in overall.items()
                    if row["note"] and pd.isna(row["value"])})
    return render("technical.html.j2", day=f"{pd.Timestamp(day):%Y-%m-%d}", cards=cards,
                  charts=[chart_markup(c) for c in chart_list], tables=tables, notes=notes, generated=generated_at())


def _business_card(row: pd.Series, flat_band: float) -> dict[str, Any]:
    better = improved(row, flat_band)
    unit = str(row["unit"])
    previous = row["previous_value"]
    return {
        "label": row["label"], "value": phrasing.value_text(row["value"], unit),
        "change": phrasing.change_phrase(row.to_dict()),
        "tone": "good" if better else ("bad" if better is False else "neutral"),
        "status": phrasing.status_phrase(str(row["target_status"]), row["target"], unit),
        "status_tone": {"below": "bad", "meeting": "good", "exceeding": "good"}.get(str(row["target_status"]), ""),
        "previous": "" if pd.isna(previous) else f"previous day {phrasing.value_text(previous, unit)}",
        "note": row["note"],
    }


def business_page(business: pd.DataFrame, day: date | pd.Timestamp, settings: ReportingSettings) -> str:
    """The business dashboard of one day as a self-contained HTML page (the brief's stakeholder box)."""
    overall = {row["metric"]: row for _, row in business[business["dimension"] == ALL].iterrows()}
    cards = [_business_card(overall[m], settings.flat_band) for m in BUSINESS_CARDS if m in overall]
    support = {m: _business_card(overall[m], settings.flat_band)
               for m in ("conversations", "tickets_deflected", "estimated_savings_usd") if m in overall}
    trend = business[business["metric"] == "daily_cost_usd"][["dimension_value", "value"]].rename(
        columns={"dimension_value": "day", "value": "cost_usd"})
    trend["day"] = trend["day"].str[5:]
    features = business[business["dimension"] == "feature"]
    feature_calls = features[features["metric"] == "feature_calls"]
    feature_cost = features[features["metric"] == "feature_cost_usd"]
    chart_list = [
        charts.line_chart(trend, "day", "cost_usd", f"Cost trend, last {settings.cost_trend_days} days",
                          "USD per day", unit="usd", empty_message="No computed days in the trend window.",
                          caption="Days whose costs were not computed are left out of the line."),
        charts.bar_chart(feature_calls, "dimension_value", "value", "Feature usage (requests)", "requests",
                         empty_message="No requests this day."),
        charts.bar_chart(feature_cost, "dimension_value", "value", "Cost by feature", "USD", "usd",
                         empty_message="No spend this day."),
    ]
    feature_rows = []
    labels = {s.name: s for s in FEATURE_SPECS}
    for feature, group in features.groupby("dimension_value", sort=True):
        cells = {}
        for _, row in group.iterrows():
            spec = labels[row["metric"]]
            cells[spec.name] = f"{phrasing.value_text(row['value'], spec.unit)} ({phrasing.change_phrase(row.to_dict())})"
        feature_rows.append([feature, *[cells.get(s.name, "n/a") for s in FEATURE_SPECS]])
    specs = metric_specs(settings)
    targets = [f"{s.label}: {phrasing.value_text(s.target, s.unit)}" for s in specs.values() if s.target is not None]
    return render("business.html.j2", day=f"{pd.Timestamp(day):%Y-%m-%d}", cards=cards, support=support,
                  assumptions=settings.support.describe(), charts=[chart_markup(c) for c in chart_list],
                  feature_headers=["feature", *[s.label.replace(" by feature", "") for s in FEATURE_SPECS]],
                  feature_rows=feature_rows, targets=targets, flat_band=phrasing.percent(settings.flat_band, 0),
                  generated=generated_at())
