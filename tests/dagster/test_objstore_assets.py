"""The ingest and feedback assets and the landing sensor on object-store roots (fsspec's memory://), with
the Collector's minute layout set through AIOBS_INGEST__LANDING_LAYOUT."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import fsspec
import pytest
from dagster import build_sensor_context, materialize

from aiobs_pipeline.definitions import defs
from aiobs_pipeline.defs.feedback import ingest_feedback_hours
from aiobs_pipeline.defs.ingest import ingest_export_hours, landing_sensor
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.ingest import storage
from tests.dagster.conftest import Project, range_tags

HOUR = datetime(2026, 11, 3, 9, tzinfo=UTC)


@pytest.fixture
def bucket(monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("AIOBS_INGEST__LANDING_LAYOUT", "collector")
    name = f"dag-{uuid.uuid4().hex[:10]}"
    yield name
    memory = fsspec.filesystem("memory")
    if memory.exists(f"/{name}"):
        memory.rm(f"/{name}", recursive=True)


def put(bucket: str, key: str, lines: list[dict]) -> None:
    fsspec.filesystem("memory").pipe(f"/{bucket}/{key}", b"".join(json.dumps(x).encode() + b"\n" for x in lines))


def span(start: datetime, i: int) -> dict:
    return {"span_id": f"s{start:%H}-{i}", "trace_id": f"t{i}", "name": "chat_completion",
            "start_time": start.isoformat(), "end_time": (start + timedelta(seconds=2)).isoformat(),
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "response": "hello",
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            "metadata": {"user_id": f"u{i % 2}"}}


def feedback(start: datetime, i: int) -> dict:
    return {"event_id": f"e{start:%H}-{i}", "span_id": f"s{start:%H}-{i}", "trace_id": f"t{i}", "user_id": "u0",
            "event_type": "thumbs_up", "timestamp": (start + timedelta(minutes=5)).isoformat(), "source": "app"}


def collector_key(when: datetime, name: str) -> str:
    return f"year={when:%Y}/month={when:%m}/day={when:%d}/hour={when:%H}/minute={when:%M}/{name}"


def resources(project: Project, bucket: str) -> dict:
    out = project.resources()
    out["aiobs"] = AiobsSettings(landing_root=f"memory://{bucket}/landing", feedback_root=f"memory://{bucket}/fb",
                                 reports_dir=str(project.root / "reports"))
    return out


def test_ingest_and_feedback_assets_read_an_object_store(project: Project, instance, bucket: str) -> None:
    for hour in (HOUR, HOUR + timedelta(hours=1)):
        for minute in (0, 25, 50):
            when = hour + timedelta(minutes=minute)
            put(bucket, "landing/" + collector_key(when, f"traces_{minute}.json"),
                [span(when + timedelta(seconds=i), minute * 10 + i) for i in range(4)])
        put(bucket, "fb/" + collector_key(hour, "feedback.jsonl"), [feedback(hour, i) for i in range(3)])
    tags = range_tags(f"{HOUR:%Y-%m-%d-%H:%M}", f"{HOUR + timedelta(hours=1):%Y-%m-%d-%H:%M}")
    for _ in range(2):  # a second run over the same objects gives the same tables
        result = materialize([ingest_export_hours, ingest_feedback_hours], resources=resources(project, bucket),
                             instance=instance, tags=tags)
        assert result.success
        spans, audit = project.read("spans"), project.read("ingest_audit")
        assert len(spans) == 24 and spans["span_id"].is_unique
        assert len(audit) == 6 and audit["source_file"].str.startswith("year=2026/month=11/day=03/hour=").all()
        assert (audit["spans_found"] == audit["spans_written"]).all()
        events = project.read("feedback_events")
        assert len(events) == 6
        assert set(project.read("feedback_audit")["source_file"]) == {
            collector_key(HOUR, "feedback.jsonl"), collector_key(HOUR + timedelta(hours=1), "feedback.jsonl")}


def test_landing_sensor_on_an_object_store(instance, bucket: str, monkeypatch) -> None:
    listings: list[str] = []
    real_list = storage.Store.list

    def counting_list(self, prefix: str = "", name_prefix: str = ""):
        listings.append(f"{self}/{prefix}")
        return real_list(self, prefix, name_prefix)

    monkeypatch.setattr(storage.Store, "list", counting_list)
    aiobs = {"aiobs": AiobsSettings(landing_root=f"memory://{bucket}/landing", feedback_root=f"memory://{bucket}/fb")}

    def tick():
        listings.clear()
        with build_sensor_context(instance=instance, resources=aiobs, definitions=defs) as context:
            return landing_sensor.evaluate_tick(context)

    assert "no landing files" in tick().skip_message
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=3), now - timedelta(hours=2)]
    for hour in hours:
        put(bucket, "landing/" + collector_key(hour + timedelta(minutes=10), "t.json"), [span(hour, 1)])
    put(bucket, "landing/" + collector_key(now + timedelta(minutes=1), "open.json"), [span(now, 1)])
    first = tick().run_requests
    # One listing per root for the whole lookback, not one per hour.
    assert len(listings) == 2
    assert [r.partition_key for r in first] == [f"{h:%Y-%m-%d-%H:%M}" for h in hours]  # not the open hour
    assert [r.run_key for r in tick().run_requests] == [r.run_key for r in first]

    # A rewritten object re-runs its hour, and so does feedback landing for it; the other hour stays.
    put(bucket, "landing/" + collector_key(hours[0] + timedelta(minutes=10), "t.json"), [span(hours[0], 2)])
    second = tick().run_requests
    assert second[0].run_key != first[0].run_key and second[1].run_key == first[1].run_key
    put(bucket, "fb/" + collector_key(hours[1], "fb.jsonl"), [feedback(hours[1], 1)])
    third = tick().run_requests
    assert third[0].run_key == second[0].run_key and third[1].run_key != second[1].run_key


def test_a_store_that_keeps_failing_fails_the_run_naming_the_key_and_no_secret(project: Project, instance,
                                                                              bucket: str, monkeypatch) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    key = collector_key(HOUR + timedelta(minutes=7), "traces_1.json")
    put(bucket, "landing/" + key, [span(HOUR, 1)])

    class Throttled:
        """The memory filesystem, whose reads answer like S3 under throttling, quoting a secret."""

        def __init__(self) -> None:
            self.inner = fsspec.filesystem("memory")

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

        def cat_file(self, *args: object, **kwargs: object) -> bytes:
            raise OSError(f"503 SlowDown: Please reduce your request rate (signed with {secret})")

    real_init = storage.Store.__init__

    def init(self, root, retry=None, filesystem=None):
        real_init(self, root, retry=storage.RetryPolicy(3, 0, 0),
                  filesystem=Throttled() if str(root).startswith("memory://") else filesystem)

    monkeypatch.setattr(storage.Store, "__init__", init)
    result = materialize([ingest_export_hours], resources=resources(project, bucket), instance=instance,
                         partition_key=f"{HOUR:%Y-%m-%d-%H:%M}", raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.error.to_string()  # with its cause, the StorageError
    assert f"memory://{bucket}/landing/{key}" in message and "failed after 3 attempts" in message
    logged = " ".join(str(e.message) + str(e.dagster_event) for e in instance.all_logs(result.run_id))
    assert secret not in logged and secret not in message
    assert "***" in message
