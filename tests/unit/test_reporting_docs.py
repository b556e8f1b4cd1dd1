"""docs/reports.md stays true to the code: every metric, table column and setting is documented."""

from __future__ import annotations

from pathlib import Path

from aiobs_pipeline.reporting import business, monthly
from aiobs_pipeline.reporting.metrics import COLUMN_DESCRIPTIONS
from aiobs_pipeline.reporting.settings import ReportingSettings, SupportImpactSettings
from aiobs_pipeline.reporting.technical import TECHNICAL_METRICS

DOC = Path(__file__).resolve().parents[2] / "docs" / "reports.md"


def test_reports_doc_names_every_metric_column_and_setting() -> None:
    text = DOC.read_text()
    settings = ReportingSettings()
    names = [*TECHNICAL_METRICS, *business.metric_specs(settings), *(s.name for s in business.FEATURE_SPECS),
             business.TREND_SPEC.name, *monthly.metric_specs(settings), *COLUMN_DESCRIPTIONS]
    names += [f for f in ReportingSettings.model_fields if f != "support"]
    names += [f"support.{f}" for f in SupportImpactSettings.model_fields]
    missing = sorted({n for n in names if f"`{n}`" not in text})
    assert not missing, f"docs/reports.md does not mention: {missing}"
