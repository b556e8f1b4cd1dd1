"""The single Dagster entry point: merges each domain's definitions and binds the shared resources.

The warehouse (DuckDB file or PostgreSQL) is chosen here from settings, so assets never open connections.
"""

from __future__ import annotations

from dagster import Definitions

from aiobs_pipeline.defs import alerting, costs, evals, feedback, hallucination, ingest, reporting
from aiobs_pipeline.defs.jobs import daily_job, monthly_job, scheduled_jobs
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.settings import Settings, get_settings
from aiobs_pipeline.warehouse import warehouse_for


def build_resources(settings: Settings) -> dict[str, object]:
    """Resources every domain uses: settings and the warehouse IO manager."""
    return {"aiobs": AiobsSettings(), "warehouse": warehouse_for(settings)}


DOMAINS = (ingest.defs, costs.defs, feedback.defs, hallucination.defs, alerting.defs, reporting.defs, evals.defs,
           Definitions(jobs=[daily_job, monthly_job], schedules=scheduled_jobs))

defs = Definitions.merge(*DOMAINS, Definitions(resources=build_resources(get_settings())))
