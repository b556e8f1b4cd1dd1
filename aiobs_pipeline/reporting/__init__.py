"""Reporting: the technical and business dashboard tables, their static HTML pages with inline SVG charts,
and the monthly stakeholder report (Markdown and HTML), in plain stakeholder language.

Pure functions over DataFrames (no Dagster): `technical.technical_dashboard`, `business.business_dashboard`,
`monthly.monthly_report`; `html` and `charts` render pages, `phrasing` turns figures into true sentences.
Optional inputs (hallucination_scores, satisfaction_scores) are `DataFrame | None`: without them their
figures are reported as not available, never invented.
"""

from aiobs_pipeline.reporting.business import business_dashboard
from aiobs_pipeline.reporting.monthly import MonthlyReport, monthly_report, render_html, render_markdown
from aiobs_pipeline.reporting.settings import ReportingSettings, SupportImpactSettings
from aiobs_pipeline.reporting.technical import technical_dashboard

__all__ = [
    "MonthlyReport",
    "ReportingSettings",
    "SupportImpactSettings",
    "business_dashboard",
    "monthly_report",
    "render_html",
    "render_markdown",
    "technical_dashboard",
]
