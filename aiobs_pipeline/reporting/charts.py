"""Charts for the HTML dashboards and reports: Altair specs rendered to SVG by vl-convert, inlined in the page.

Why this pair: Altair describes a chart in a few lines of Vega-Lite, and vl-convert renders Vega-Lite to SVG
in-process (an embedded JavaScript engine, no browser, no network), so a dashboard is static HTML with inline
SVG: a few kilobytes per chart, no script, no CDN, opens from disk. Plotly or Bokeh would inline about 3-4 MB
of JavaScript into every file (or load it from a CDN); matplotlib's SVG draws text as paths (larger files,
text not selectable) and is not installed.

Every chart here takes the dashboard tables' long frames (or a small frame) and returns a `Chart` whose svg is
None when there is nothing to draw, so the page can say so instead of drawing an empty axis.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

VEGA_LITE_VERSION = "6.4"
WIDTH, HEIGHT = 520, 220
PALETTE = ["#3b6fb6", "#e08a2e", "#4b9c5a", "#c2473f", "#7d5ba6", "#8a6d3b", "#4aa3a2", "#999999"]
_ids = itertools.count(1)
_ID_ATTR = re.compile(r'\bid="([^"]+)"')


@dataclass(frozen=True)
class Chart:
    """A titled chart: inline SVG markup, or None with a message saying why there is nothing to draw."""

    title: str
    svg: str | None
    empty_message: str = "No data to chart."
    caption: str = ""


def _config(chart: Any) -> Any:
    return (chart.configure_view(strokeWidth=0)
            .configure_axis(labelFontSize=11, titleFontSize=11, gridColor="#e6e6e6")
            .configure_legend(labelFontSize=11, titleFontSize=11, orient="bottom")
            .configure_title(fontSize=13, anchor="start"))


def render_svg(chart: Any, title: str) -> str:
    """Render an Altair chart (or a Vega-Lite dict) to standalone SVG markup safe to inline next to others.

    Element ids get a per-chart prefix: several inline SVGs in one page share one id space, and Vega's
    clip-path ids ("clip1") would otherwise collide.
    """
    import vl_convert  # noqa: PLC0415 (a 30 MB native module: load it only when a chart is drawn)

    spec = chart if isinstance(chart, dict) else _config(chart).to_dict()
    svg = vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION)
    prefix = f"c{next(_ids)}-"
    for name in set(_ID_ATTR.findall(svg)):
        svg = svg.replace(f'id="{name}"', f'id="{prefix}{name}"').replace(f"url(#{name})", f"url(#{prefix}{name})")
    label = (title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;"))
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)


def _alt() -> Any:
    import altair as alt  # noqa: PLC0415 (0.3 s import: keep it off the Dagster definitions load path)

    return alt


def _axis_format(unit: str) -> dict[str, str]:
    return {"ratio": {"format": ".0%"}, "usd": {"format": "$,.2f"}, "ms": {"format": ",.0f"}}.get(unit, {"format": ",.0f"})


def bar_chart(frame: pd.DataFrame, category: str, value: str, title: str, value_title: str, unit: str = "count",
              empty_message: str = "No data to chart.", caption: str = "") -> Chart:
    """Horizontal bars, one per category, largest first."""
    data = frame[[category, value]].dropna()
    if data.empty:
        return Chart(title, None, empty_message, caption)
    alt = _alt()
    chart = alt.Chart(data.astype({category: str})).mark_bar(color=PALETTE[0]).encode(
        y=alt.Y(f"{category}:N", sort="-x", title=None),
        x=alt.X(f"{value}:Q", title=value_title, axis=alt.Axis(**_axis_format(unit))),
        tooltip=[category, value],
    ).properties(width=WIDTH - 120, height=min(HEIGHT, 24 * len(data) + 20), title=title)
    return Chart(title, render_svg(chart, title), empty_message, caption)


def grouped_bar_chart(frame: pd.DataFrame, category: str, series: str, value: str, title: str, value_title: str,
                      unit: str = "count", empty_message: str = "No data to chart.", caption: str = "") -> Chart:
    """Bars per category, one bar per series side by side (e.g. p50 / p95 / p99 per model)."""
    data = frame[[category, series, value]].dropna()
    if data.empty:
        return Chart(title, None, empty_message, caption)
    alt = _alt()
    order = list(dict.fromkeys(data[series]))
    chart = alt.Chart(data.astype({category: str, series: str})).mark_bar().encode(
        y=alt.Y(f"{category}:N", title=None),
        yOffset=alt.YOffset(f"{series}:N", sort=order),
        x=alt.X(f"{value}:Q", title=value_title, axis=alt.Axis(**_axis_format(unit))),
        color=alt.Color(f"{series}:N", sort=order, title=None, scale=alt.Scale(range=PALETTE)),
        tooltip=[category, series, value],
    ).properties(width=WIDTH - 120, height=min(2 * HEIGHT, 12 * len(data) + 30), title=title)
    return Chart(title, render_svg(chart, title), empty_message, caption)


def line_chart(frame: pd.DataFrame, x: str, y: str, title: str, y_title: str, series: str | None = None,
               unit: str = "count", empty_message: str = "No data to chart.", caption: str = "") -> Chart:
    """A line over ordered x labels (days or hours as text, so no time zone is applied), one per series."""
    columns = [x, y, *([series] if series else [])]
    data = frame[columns]
    if data[y].notna().sum() == 0:
        return Chart(title, None, empty_message, caption)
    alt = _alt()
    encoding: dict[str, Any] = {
        "x": alt.X(f"{x}:O", title=None, sort=None, axis=alt.Axis(labelAngle=-45)),
        "y": alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(**_axis_format(unit))),
        "tooltip": columns,
    }
    if series:
        encoding["color"] = alt.Color(f"{series}:N", title=None, scale=alt.Scale(range=PALETTE))
    else:
        encoding["color"] = alt.value(PALETTE[0])
    chart = alt.Chart(data.astype({x: str})).mark_line(point=True).encode(**encoding).properties(
        width=WIDTH, height=HEIGHT, title=title)
    return Chart(title, render_svg(chart, title), empty_message, caption)


def stacked_bar_chart(frame: pd.DataFrame, category: str, series: str, value: str, title: str, value_title: str,
                      unit: str = "count", empty_message: str = "No data to chart.", caption: str = "") -> Chart:
    """Bars per category split into stacked series (e.g. input / output tokens per model)."""
    data = frame[[category, series, value]].dropna()
    if data.empty or float(data[value].abs().sum()) == 0:
        return Chart(title, None, empty_message, caption)
    alt = _alt()
    order = list(dict.fromkeys(data[series]))
    chart = alt.Chart(data.astype({category: str, series: str})).mark_bar().encode(
        y=alt.Y(f"{category}:N", title=None),
        x=alt.X(f"sum({value}):Q", title=value_title, axis=alt.Axis(**_axis_format(unit))),
        color=alt.Color(f"{series}:N", sort=order, title=None, scale=alt.Scale(range=PALETTE)),
        order=alt.Order("series_order:Q"),
        tooltip=[category, series, value],
    ).transform_calculate(series_order=f"indexof({json.dumps(order)}, datum[{json.dumps(series)}])").properties(
        width=WIDTH - 120, height=min(HEIGHT, 28 * data[category].nunique() + 20), title=title)
    return Chart(title, render_svg(chart, title), empty_message, caption)
