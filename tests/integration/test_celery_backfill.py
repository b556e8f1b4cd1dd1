"""A 24-partition backfill on two Celery workers equals a single-process run of the same partitions; and the
`execution` settings pick the executor.

Two `dagster-celery worker start` processes (separate process groups, ended in teardown) listen on the broker;
the Dagster instance is a fresh PostgreSQL database; the warehouse is PostgreSQL. The job `ingest_costs_job`
runs over 24 hourly partitions of generated exports (every format, bad records injected) as two runs of 12
partitions on the Celery executor, then as one in-process run into a second schema; the four tables must match.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, RunsFilter, in_process_executor, multiprocess_executor
from pydantic import ValidationError

from aiobs_pipeline.execution import BACKEND_ENV, BROKER_ENV, ExecutionSettings, celery_config, executor_for
from aiobs_pipeline.generate import generate
from aiobs_pipeline.settings import SettingsError, load_settings
from aiobs_pipeline.warehouse import read_table
from benchmarks.backfill import (
    INSTANCE_URL_ENV,
    MODE_TAG,
    BackfillEnv,
    broker_error,
    celery_workers,
    drop_schema,
    partition_keys,
    run_ranges,
    split_ranges,
    temporary_database,
    write_instance_config,
)
from tests.conftest import _service_unavailable

START = datetime(2026, 10, 1, tzinfo=UTC)
HOURS = 24
TABLES = ("spans", "quarantined_spans", "priced_spans", "hourly_costs")
# Nothing in these tables depends on the run that wrote it (no run ids or load times), so every column is
# compared; a future run-specific column belongs here.
RUN_SPECIFIC_COLUMNS: frozenset[str] = frozenset()


def _broker_reachable() -> None:
    problem = broker_error()
    if problem:
        _service_unavailable(f"{problem}; start RabbitMQ or set {BROKER_ENV}")


@pytest.fixture
def schemas(postgres_url: str) -> Iterator[dict[str, str]]:
    """Two fresh warehouse schemas, one per way of running, dropped afterwards."""
    names = {mode: f"aiobs_test_{mode}_{uuid.uuid4().hex[:8]}" for mode in ("celery", "single")}
    yield names
    for name in names.values():
        drop_schema(postgres_url, name)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a canonical order (by every column's text), without run-specific columns."""
    frame = frame.drop(columns=[c for c in frame.columns if c in RUN_SPECIFIC_COLUMNS])
    order = frame.astype(str).sort_values(list(frame.columns)).index
    return frame.loc[order].reset_index(drop=True)


def _celery_workers_used(instance: DagsterInstance) -> set[str]:
    """Names of the Celery workers that reported executing a step of the Celery runs."""
    names = set()
    for run in instance.get_runs(RunsFilter(tags={MODE_TAG: "celery"})):
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is not None and event.event_type_value == "ENGINE_EVENT" and event.engine_event_data:
                worker = event.engine_event_data.metadata.get("Celery worker")
                if worker is not None:
                    names.add(worker.value)
    return names


@pytest.mark.slow
@pytest.mark.postgres
def test_celery_backfill_of_24_partitions_equals_a_single_process_run(
    tmp_path: Path, postgres_url: str, schemas: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _broker_reachable()
    landing = tmp_path / "landing"
    summary = generate(landing, START, START + timedelta(hours=HOURS), scale=0.3, incidents=[],
                       inject_bad_records=True)
    assert summary.total_spans > 0
    keys = partition_keys(START, HOURS)
    home = tmp_path / "dagster_home"
    write_instance_config(home)
    with temporary_database(postgres_url, prefix="aiobs_test_instance") as instance_url:
        envs = {mode: BackfillEnv(home, instance_url, landing, postgres_url, schema)
                for mode, schema in schemas.items()}
        with celery_workers(envs["celery"], 2, tmp_path / "celery-logs") as pids:
            assert len(set(pids)) == 2
            run_ranges(envs["celery"], "celery", split_ranges(keys, HOURS // 2), concurrent_runs=2)
        run_ranges(envs["single"], "in_process", [(keys[0], keys[-1])], concurrent_runs=1, mode="single")

        monkeypatch.setenv(INSTANCE_URL_ENV, envs["celery"].env("celery")[INSTANCE_URL_ENV])
        with DagsterInstance.from_config(str(home)) as instance:
            assert len(instance.get_runs(RunsFilter(tags={MODE_TAG: "celery"}))) == 2
            # Both workers took steps: the backfill really was spread over the two processes.
            assert len(_celery_workers_used(instance)) == 2

    for table in TABLES:
        frames = {mode: read_table("postgres", duckdb_path="", postgres_url=postgres_url, schema=schema,
                                   table=table) for mode, schema in schemas.items()}
        assert len(frames["single"]) > 0, f"{table} is empty"
        pd.testing.assert_frame_equal(_sorted(frames["celery"]), _sorted(frames["single"]), obj=table)
    spans = read_table("postgres", duckdb_path="", postgres_url=postgres_url, schema=schemas["celery"],
                       table="spans", columns=["export_hour"])
    assert spans["export_hour"].nunique() == HOURS


def test_default_executor_is_multiprocess_and_settings_pick_the_others() -> None:
    assert executor_for(ExecutionSettings()) is multiprocess_executor
    assert executor_for(ExecutionSettings(executor="in_process")) is in_process_executor
    limited = executor_for(ExecutionSettings(max_concurrent=3))
    assert limited.name == "multiprocess" and limited is not multiprocess_executor
    celery = executor_for(ExecutionSettings(executor="celery"))
    assert celery.name == "celery"


def test_celery_urls_from_the_environment_stay_env_references(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "pyamqp://aiobs:s3cret@rabbit:5672//"
    monkeypatch.setenv(BROKER_ENV, secret)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    settings = load_settings(None, execution={"executor": "celery"})
    assert settings.execution.celery_broker.get_secret_value() == secret
    assert "s3cret" not in repr(settings.execution)
    # The run configuration names the variable, so the password never lands in Dagster's run storage.
    assert celery_config(settings.execution) == {"broker": {"env": BROKER_ENV}, "backend": "rpc://"}
    assert executor_for(settings).name == "celery"


def test_a_queue_of_its_own_goes_to_the_executor_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployments sharing a broker keep their steps apart by queue; the default adds nothing to the config."""
    monkeypatch.delenv(BROKER_ENV, raising=False)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert "config_source" not in celery_config(ExecutionSettings())
    monkeypatch.setenv("AIOBS_EXECUTION__CELERY_QUEUE", "aiobs-staging")
    execution = load_settings(None, execution={"executor": "celery"}).execution
    assert celery_config(execution)["config_source"] == {"task_default_queue": "aiobs-staging"}
    with pytest.raises(ValidationError, match="celery_queue"):
        ExecutionSettings(celery_queue="two words")


def test_executor_is_chosen_from_aiobs_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOBS_EXECUTION__EXECUTOR", "in_process")
    monkeypatch.setenv("AIOBS_EXECUTION__MAX_CONCURRENT", "2")
    execution = load_settings(None).execution
    assert (execution.executor, execution.max_concurrent) == ("in_process", 2)


def test_bad_execution_settings_name_the_setting_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOBS_EXECUTION__EXECUTOR", "dask")
    with pytest.raises(SettingsError, match="execution.executor"):
        load_settings(None)
    with pytest.raises(ValidationError, match="execution.celery_broker") as caught:
        ExecutionSettings(celery_broker="http://user:hunter2@broker:5672//")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValidationError, match="max_concurrent"):
        ExecutionSettings(max_concurrent=0)


def test_definitions_hand_the_configured_executor_to_every_job() -> None:
    from aiobs_pipeline.definitions import defs

    job = defs.resolve_job_def("ingest_costs_job")
    assert job.executor_def.name == executor_for(load_settings(None)).name
    assert set(job.graph.node_dict) == {"ingest_export_hours", "priced_spans", "hourly_costs"}
