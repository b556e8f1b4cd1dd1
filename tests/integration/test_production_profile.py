"""The production profile (deploy/dagster.postgres.yaml) loads as a real instance on PostgreSQL and runs the
pipeline: storage, queued run coordinator, run retries, run monitoring, pool limits, all addresses and secrets
from environment variables. Needs PostgreSQL (skips with the reason otherwise, fails in CI)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, materialize

from aiobs_pipeline.defs.costs import priced_spans
from aiobs_pipeline.defs.ingest import ingest_export_hours
from tests.dagster.conftest import Project, range_tags
from tests.dagster.test_ingest_assets import land, native_span

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "deploy" / "dagster.postgres.yaml"
HOUR = datetime(2026, 10, 3, 5, tzinfo=UTC)

pytestmark = pytest.mark.postgres


@pytest.fixture
def instance_database(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for Dagster's own storage, dropped afterwards."""
    name = f"aiobs_instance_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres_url, connect_timeout=3)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield name
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def production_instance(tmp_path: Path, postgres_url: str, instance_database: str,
                        monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """The instance deploy/dagster.postgres.yaml describes, pointed at the test server through DAGSTER_PG_*."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROFILE, home / "dagster.yaml")
    url = urlsplit(postgres_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", instance_database)
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_profile_is_a_postgres_instance_with_queue_retries_and_monitoring(production_instance) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator  # noqa: PLC0415
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage  # noqa: PLC0415

    assert isinstance(production_instance.run_storage, PostgresRunStorage)
    assert isinstance(production_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(production_instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(production_instance.run_coordinator, QueuedRunCoordinator)
    queue = production_instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == 8
    assert [limit["key"] for limit in queue.tag_concurrency_limits] == ["dagster/backfill"]
    assert production_instance.run_retries_enabled and production_instance.run_retries_max_retries == 2
    assert production_instance.run_monitoring_enabled


def test_pool_limits_are_per_instance_and_the_llm_pool_is_lower(production_instance) -> None:
    # dagster.yaml holds the default; the LLM pool's own limit is set once per instance (docs/deploy.md).
    assert production_instance.get_concurrency_config().pool_config.default_pool_limit == 4
    production_instance.event_log_storage.set_concurrency_slots("aiobs_llm", 2)
    assert production_instance.event_log_storage.get_concurrency_info("aiobs_llm").slot_count == 2


def test_pipeline_runs_on_the_profile_with_the_postgres_warehouse(
    production_instance, tmp_path: Path, postgres_url: str, postgres_schema: str
) -> None:
    project = Project(tmp_path, "postgres", str(tmp_path / "unused.duckdb"), postgres_url, postgres_schema)
    hours = [HOUR, HOUR + timedelta(hours=1)]
    for hour in hours:
        land(project, hour, "native.jsonl", [native_span(hour, i) for i in range(6)] + ["{broken"])
    result = materialize(
        [ingest_export_hours, priced_spans], instance=production_instance,
        resources=project.resources(),
        tags=range_tags(f"{hours[0]:%Y-%m-%d-%H:%M}", f"{hours[-1]:%Y-%m-%d-%H:%M}"),
    )
    assert result.success
    runs = production_instance.get_runs()
    assert [run.status for run in runs] == [DagsterRunStatus.SUCCESS]
    spans = project.read("spans")
    assert len(spans) == 12
    assert len(project.read("quarantined_spans")) == 2
    priced = project.read("priced_spans")
    assert len(priced) == 12 and priced["cost_usd"].notna().all()
    # The run's events are in PostgreSQL, not in a local SQLite file.
    materialized = production_instance.get_latest_materialization_event(AssetKey("spans"))
    assert materialized is not None
    assert not list((tmp_path / "dagster_home").glob("**/*.db"))
