"""Landing and feedback roots in a real S3-compatible store (SeaweedFS), end to end through Dagster.

The objects are uploaded with pyarrow's S3 client; aiobs reads them through its own object-store root
(`paths.landing_root = "s3://bucket/landing"`, fsspec + s3fs) with the credentials in the standard AWS_*
variables, exactly as a deployment would. Covered: aiobs' default layout and the OpenTelemetry Collector's
`year=/month=/day=/hour=/minute=` layout with plain and gzipped OTLP/JSON, and OTLP logs beside spans there;
Langfuse's blob-storage export (objects named after their window's end, scores as feedback); LangSmith's bulk
export (day folders of Parquet, each run read in exactly one hour); the feedback root; the audit accounting for
every object; idempotence; the landing sensor's run key following the objects; a truncated gzip object and a
`.parquet` object that is not Parquet quarantined with their keys; and credentials absent from every table, log
line and error.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, build_sensor_context, instance_for_test, materialize, serialize_value

from aiobs_pipeline.definitions import defs
from aiobs_pipeline.defs.feedback import ingest_feedback_hours
from aiobs_pipeline.defs.ingest import ingest_export_hours, landing_sensor
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.warehouse import read_table, warehouse_io_manager
from tests.seaweedfs import SeaweedS3

pytestmark = pytest.mark.s3

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# A real OTLP/JSON export request (12 spans: 4 LLM calls, 3 tools, 5 chains); see tests/fixtures/otlp/SOURCES.md.
OTLP = FIXTURES / "otlp" / "pydantic_ai_tools.otlp.jsonl"
OTLP_SPANS = 12
HOUR = datetime(2026, 10, 3, 5, tzinfo=UTC)
COLLECTOR = "year=%Y/month=%m/day=%d/hour=%H/minute=%M"
# Langfuse blob-storage export of one project (see tests/fixtures/langfuse_blob/SOURCES.md): every object is
# named after the end of its window; the fixtures' window ends at 14:00, so it is export hour 13:00.
LANGFUSE = FIXTURES / "langfuse_blob"
LANGFUSE_PROJECT = "exports/lf-prod/proj-7"  # {prefix}{projectId}
LANGFUSE_WINDOW = "2026-12-07T14-00-00"
LANGFUSE_HOUR = datetime(2026, 12, 7, 13, tzinfo=UTC)
# LangSmith bulk export (tests/fixtures/langsmith_bulk/make_fixtures.py): one day's runs, starting at 09:15
# (3 runs), 10:05 (2) and 14:30 (2 good ones and 4 that each break one row rule).
LANGSMITH = FIXTURES / "langsmith_bulk"
LANGSMITH_DAY = "exports/ls-dest-1/resource=runs/year=2026/month=12/day=7"
CONFORMANCE = FIXTURES / "conformance"


def native_span(hour: datetime, label: str, i: int) -> dict[str, Any]:
    start = hour + timedelta(minutes=i % 60, seconds=7)
    return {
        "span_id": f"{label}-{hour:%H}-{i}", "trace_id": f"{label}-{hour:%H}-t{i // 2}", "name": "chat_completion",
        "start_time": start.isoformat(), "end_time": (start + timedelta(seconds=1)).isoformat(),
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {i}"}],
        "response": f"answer {i}", "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        "metadata": {"user_id": f"u{i % 3}", "feature": "chat"},
    }


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def otlp_copy(tag: int) -> bytes:
    """The OTLP fixture with every trace and span id changed (same length, still hex), so that several
    copies can land in one hour without being duplicates of each other."""
    text = OTLP.read_text()
    return re.sub(r'"(traceId|spanId|parentSpanId)": "([0-9a-f])([0-9a-f]*)"',
                  lambda m: f'"{m[1]}": "{(int(m[2], 16) + tag) % 16:x}{m[3]}"', text).encode()


def feedback_event(span_id: str, i: int, when: datetime) -> dict[str, Any]:
    return {"event_id": f"fb-{i}", "span_id": span_id, "trace_id": f"t-{i}", "user_id": f"u{i % 3}",
            "event_type": "thumbs_down" if i % 2 else "thumbs_up", "timestamp": when.isoformat(), "source": "app"}


@dataclass
class StoreProject:
    """A project whose landing and feedback roots are prefixes of a bucket on the test server."""

    server: SeaweedS3
    bucket: str
    root: Path
    # The roots' prefixes in the bucket (both may be one export's prefix, as with Langfuse).
    landing: str = "landing"
    feedback: str = "feedback"

    @property
    def landing_url(self) -> str:
        return self.server.url(self.landing, bucket=self.bucket)

    @property
    def feedback_url(self) -> str:
        return self.server.url(self.feedback, bucket=self.bucket)

    @property
    def duckdb_path(self) -> str:
        return str(self.root / "warehouse.duckdb")

    def put(self, key: str, data: bytes) -> str:
        """Upload one object under the bucket; return its key."""
        self.server.put(key, data, bucket=self.bucket)
        return key

    def put_file(self, key: str, path: Path) -> str:
        """Upload one local file as an object under the bucket; return its key relative to the landing root."""
        self.put(key, path.read_bytes())
        return key.removeprefix(f"{self.landing}/")

    def settings(self) -> AiobsSettings:
        return AiobsSettings(landing_root=self.landing_url, feedback_root=self.feedback_url,
                             reports_dir=str(self.root / "reports"))

    def resources(self) -> dict[str, Any]:
        return {"aiobs": self.settings(),
                "warehouse": warehouse_io_manager("duckdb", duckdb_path=self.duckdb_path, schema="aiobs")}

    def read(self, table: str) -> pd.DataFrame:
        return read_table("duckdb", duckdb_path=self.duckdb_path, schema="aiobs", table=table)

    def run(self, instance: DagsterInstance, first: datetime, last: datetime, assets: list | None = None,
            **options: Any) -> Any:
        return materialize(assets or [ingest_export_hours], resources=self.resources(), instance=instance,
                           tags={"dagster/asset_partition_range_start": f"{first:%Y-%m-%d-%H:%M}",
                                 "dagster/asset_partition_range_end": f"{last:%Y-%m-%d-%H:%M}"}, **options)


def snapshot(store: StoreProject, tables: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """The tables, each sorted by its identifying columns, so that two runs' tables compare equal."""
    frames = {}
    for table in tables:
        frame = store.read(table)
        order = [c for c in ("export_hour", "source_file", "source_line", "span_id", "event_id", "reason", "detail")
                 if c in frame]
        frames[table] = frame.sort_values(order).reset_index(drop=True)
    return frames


def assert_same_tables(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> None:
    for table, frame in before.items():
        pd.testing.assert_frame_equal(frame, after[table], obj=table)


def _forget_s3_clients() -> None:
    """fsspec keeps one s3fs instance per set of arguments, with the credentials it found first."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def store(seaweedfs: SeaweedS3, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreProject]:
    """A store project with the server's credentials in the standard AWS variables (and nothing else)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",
                 "AIOBS_INGEST__LANDING_LAYOUT", "AIOBS_INGEST__FEEDBACK_LAYOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    # No shared or home configuration may supply credentials instead of the environment.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    _forget_s3_clients()
    yield StoreProject(seaweedfs, s3_bucket, tmp_path)
    _forget_s3_clients()


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as inst:
        yield inst


def test_default_layout_spans_and_feedback_every_object_audited_and_idempotent(
        store: StoreProject, instance: DagsterInstance) -> None:
    h5, h6 = HOUR, HOUR + timedelta(hours=1)
    native5 = [native_span(h5, "n", i) for i in range(5)]
    keys = {
        h5: [store.put("landing/2026/10/03/05/app.jsonl", jsonl(native5)),
             store.put("landing/2026/10/03/05/otlp.jsonl", otlp_copy(0))],
        h6: [store.put("landing/2026/10/03/06/app.jsonl.gz", gzip.compress(jsonl(
                 [native_span(h6, "n", i) for i in range(4)]))),
             store.put("landing/2026/10/03/06/otlp.json.gz", gzip.compress(otlp_copy(0)))],
    }
    # Not landing files (name) or not in the run's hours: never read.
    store.put("landing/2026/10/03/05/README.txt", b"not an export")
    store.put("landing/2026/10/03/07/app.jsonl", jsonl([native_span(h6 + timedelta(hours=1), "n", 0)]))
    feedback_key = store.put("feedback/2026/10/03/05/app.jsonl", jsonl(
        [feedback_event(s["span_id"], i, h5 + timedelta(minutes=30)) for i, s in enumerate(native5[:3])]))

    result = store.run(instance, h5, h6, [ingest_export_hours, ingest_feedback_hours])
    assert result.success
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == {
        "spans_valid": True, "feedback_valid": True}

    spans, audit = store.read("spans"), store.read("ingest_audit")
    assert len(spans) == 5 + OTLP_SPANS + 4 + OTLP_SPANS and store.read("quarantined_spans").empty
    assert spans.groupby("source_format").size().to_dict() == {"native": 9, "otlp": 2 * OTLP_SPANS}
    # Every object of the two hours is accounted for, by its key under the root, in its own hour.
    assert sorted(audit["source_file"]) == sorted(k.removeprefix("landing/") for ks in keys.values() for k in ks)
    for hour, hour_keys in keys.items():
        rows = audit[audit["export_hour"] == pd.Timestamp(hour)]
        assert sorted(rows["source_file"]) == sorted(k.removeprefix("landing/") for k in hour_keys)
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert audit["spans_written"].sum() == len(spans) and audit["file_error"].isna().all()
    assert set(spans["source_file"]) == set(audit["source_file"])

    events, fb_audit = store.read("feedback_events"), store.read("feedback_audit")
    assert sorted(events["span_id"]) == sorted(s["span_id"] for s in native5[:3])
    assert list(fb_audit["source_file"]) == [feedback_key.removeprefix("feedback/")]
    assert int(fb_audit["events_written"].sum()) == 3

    # The same objects give the same tables.
    tables = ("spans", "ingest_audit", "feedback_events", "feedback_audit")
    before = snapshot(store, tables)
    assert store.run(instance, h5, h6, [ingest_export_hours, ingest_feedback_hours]).success
    assert_same_tables(before, snapshot(store, tables))


def test_collector_layout_reads_every_minute_of_the_hour_plain_and_gzip(
        store: StoreProject, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOBS_INGEST__LANDING_LAYOUT", COLLECTOR)
    base = "landing/year=2026/month=10/day=03"
    # What the Collector's awss3 exporter writes with the otlp_json marshaler, with and without gzip.
    read = [store.put(f"{base}/hour=05/minute=05/traces_1.json", otlp_copy(1)),
            store.put(f"{base}/hour=05/minute=40/traces_2.json.gz", gzip.compress(otlp_copy(2)))]
    store.put(f"{base}/hour=06/minute=00/traces_3.json", otlp_copy(3))  # the next hour's

    assert store.run(instance, HOUR, HOUR).success
    spans, audit = store.read("spans"), store.read("ingest_audit")
    assert len(spans) == 2 * OTLP_SPANS and set(spans["source_format"]) == {"otlp"}
    assert sorted(audit["source_file"]) == sorted(k.removeprefix("landing/") for k in read)
    assert (audit["spans_found"] == audit["spans_written"]).all() and store.read("quarantined_spans").empty
    assert spans["span_id"].is_unique and (spans["export_hour"] == pd.Timestamp(HOUR)).all()


def test_langfuse_blob_export_window_ends_spans_scores_every_object_audited_and_idempotent(
        store: StoreProject, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both roots are the export's prefix: spans from the observation and trace tables, feedback from scores.
    store.landing = store.feedback = LANGFUSE_PROJECT
    monkeypatch.setenv("AIOBS_INGEST__LANDING_LAYOUT", "langfuse")
    monkeypatch.setenv("AIOBS_INGEST__FEEDBACK_LAYOUT", "langfuse-scores")
    base, window = LANGFUSE_PROJECT, LANGFUSE_WINDOW
    read = [store.put_file(f"{base}/observations_v2/{window}.csv", LANGFUSE / f"observations_v2/{window}.csv"),
            store.put_file(f"{base}/observations/{window}.jsonl", LANGFUSE / f"observations/{window}.jsonl"),
            store.put_file(f"{base}/traces/{window}.jsonl", LANGFUSE / f"traces/{window}.jsonl")]
    scores = store.put_file(f"{base}/scores/{window}.csv", LANGFUSE / f"scores/{window}.csv")
    # Windows ending at 13:00:00 (export hour 12) and 15:00:00 (export hour 14) are other hours'; the run
    # manifest is no table of spans or scores.
    gz = LANGFUSE / f"observations_v2/{window}.jsonl.gz"
    store.put_file(f"{base}/observations_v2/2026-12-07T13-00-00.jsonl.gz", gz)
    store.put_file(f"{base}/observations_v2/2026-12-07T15-00-00.jsonl.gz", gz)
    store.put_file(f"{base}/manifests/{window}.json", LANGFUSE / f"manifests/{window}.json")

    def materialize_hour() -> Any:
        result = store.run(instance, LANGFUSE_HOUR, LANGFUSE_HOUR, [ingest_export_hours, ingest_feedback_hours])
        assert result.success
        return result

    checks = {c.check_name: c.passed for c in materialize_hour().get_asset_check_evaluations()}
    # spans_valid warns only on token coverage: the rate-limited ERROR generation o-2006 reports no usage.
    assert checks == {"spans_valid": False, "feedback_valid": True}

    spans = store.read("spans").set_index("span_id")
    assert sorted(spans.index) == ["o-2001", "o-2002", "o-2003", "o-2004", "o-2005", "o-2006", "o-2007",
                                   "o-4001", "o-4002", "o-4003", "t-3002"]
    assert set(spans["source_format"]) == {"langfuse_blob"}
    assert (spans["export_hour"] == pd.Timestamp(LANGFUSE_HOUR)).all()
    v2 = spans[spans["source_file"] == read[0]]
    assert v2["kind"].to_dict() == {"o-2001": "chain", "o-2002": "llm", "o-2003": "embedding", "o-2004": "tool",
                                    "o-2005": "chain", "o-2006": "llm", "o-2007": "llm"}
    gen = spans.loc["o-2002"]
    assert (gen["input_tokens"], gen["cached_input_tokens"], gen["output_tokens"]) == (100, 60, 20)
    joined = spans.loc["o-4002"]  # a legacy observation joined with its trace row from the traces table
    assert (joined["source_file"], joined["user_id"], joined["session_id"], joined["total_tokens"]) == (
        read[1], "user-43", "sess-9", 30)

    quarantine = store.read("quarantined_spans")
    assert quarantine.groupby("source_file")["reason"].apply(sorted).to_dict() == {
        read[0]: ["invalid_type", "invalid_type", "invalid_type", "missing_required_field",
                  "missing_required_field"],
        read[1]: ["missing_required_field"], read[2]: ["missing_required_field"]}
    audit = store.read("ingest_audit")
    assert sorted(audit["source_file"]) == sorted(read)
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert audit["spans_written"].sum() == len(spans) and audit["file_error"].isna().all()
    assert audit["spans_quarantined"].sum() == len(quarantine)

    events, fb_audit = store.read("feedback_events"), store.read("feedback_audit")
    assert sorted(events["event_id"]) == ["s-5001", "s-5002", "s-5003", "s-5004", "s-5011"]
    assert set(events["source_format"]) == {"langfuse_blob"}
    assert list(fb_audit["source_file"]) == [scores.removeprefix(f"{base}/")]
    assert int(fb_audit["events_found"].iloc[0]) == int(
        fb_audit["events_written"].iloc[0] + fb_audit["events_quarantined"].iloc[0]) == 11

    # The same objects give the same tables.
    tables = ("spans", "quarantined_spans", "ingest_audit", "feedback_events", "quarantined_feedback",
              "feedback_audit")
    before = snapshot(store, tables)
    materialize_hour()
    assert_same_tables(before, snapshot(store, tables))


def test_langsmith_bulk_day_folder_each_run_in_exactly_one_hour_in_any_order(
        store: StoreProject, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOBS_INGEST__LANDING_LAYOUT", "langsmith-bulk")
    day = f"landing/{LANGSMITH_DAY}"
    runs = store.put_file(f"{day}/part-00000.parquet", LANGSMITH / "runs_v1.parquet")
    fake = store.put_file(f"{day}/part-00001.parquet", LANGSMITH / "not_parquet.parquet")
    # The next day's folder (unpadded day=8) is not read for hours of the 7th.
    store.put_file("landing/exports/ls-dest-1/resource=runs/year=2026/month=12/day=8/part-00000.parquet",
                   LANGSMITH / "runs_v2_beta.parquet")
    file_runs = pq.read_table(LANGSMITH / "runs_v1.parquet", columns=["id", "name", "start_time"]).to_pandas()
    good = file_runs[file_runs["id"].notna() & ~file_runs["name"].str.startswith("bad_")]

    # The afternoon first, then the day's first eleven hours in one run: backfill order does not matter.
    afternoon, midnight = datetime(2026, 12, 7, 14, tzinfo=UTC), datetime(2026, 12, 7, 0, tzinfo=UTC)
    morning = [midnight + timedelta(hours=h) for h in range(11)]
    runs_done = [store.run(instance, afternoon, afternoon), store.run(instance, morning[0], morning[-1])]
    assert all(r.success for r in runs_done)

    spans = store.read("spans")
    assert spans["span_id"].is_unique and set(spans["source_format"]) == {"langsmith_bulk"}
    assert sorted(spans["span_id"]) == sorted(good["id"])
    assert set(spans["source_file"]) == {runs.removeprefix("landing/")}
    for _, run in good.iterrows():  # each run in the hour its start time falls in
        hour = pd.Timestamp(run["start_time"]).tz_localize(UTC).floor("h")
        assert (spans.loc[spans["span_id"] == run["id"], "export_hour"] == hour).all(), run["id"]

    # Each bad run once, in its own hour; the object that is no Parquet once, in the day's first hour.
    quarantine = store.read("quarantined_spans")
    assert sorted(quarantine["reason"]) == ["end_before_start", "invalid_type", "missing_required_field",
                                            "negative_value", "unreadable_file"]
    unreadable = quarantine[quarantine["reason"] == "unreadable_file"]
    assert list(unreadable["source_file"]) == [fake.removeprefix("landing/")]
    assert fake.removeprefix("landing/") in unreadable["detail"].iloc[0]
    assert list(unreadable["export_hour"]) == [pd.Timestamp(midnight)]
    # ... and reported once, by the hour that holds its unreadable_file record.
    messages = [e.message for r in runs_done for e in instance.all_logs(r.run_id)]
    assert sum("could not be read at all" in m for m in messages) == 1
    assert (quarantine.loc[quarantine["reason"] != "unreadable_file", "export_hour"]
            == pd.Timestamp(afternoon)).all()

    audit = store.read("ingest_audit")
    assert set(audit["export_hour"]) == {pd.Timestamp(h) for h in [*morning, afternoon]}
    assert set(audit["source_file"]) == {runs.removeprefix("landing/"), fake.removeprefix("landing/")}
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert audit["spans_written"].sum() == len(spans) and audit["spans_quarantined"].sum() == len(quarantine)


@pytest.mark.parametrize("fixture", ["openllmetry-events", "otel-official-events"])
def test_otlp_logs_beside_spans_in_the_collector_layout_are_joined(
        store: StoreProject, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch, fixture: str) -> None:
    monkeypatch.setenv("AIOBS_INGEST__LANDING_LAYOUT", "collector")
    folder = CONFORMANCE / fixture
    first_start = min(int(n) for n in re.findall(r'"startTimeUnixNano": ?"(\d+)"',
                                                  (folder / "spans.otlp.jsonl").read_text()))
    when = datetime.fromtimestamp(first_start / 1e9, UTC)
    hour = when.replace(minute=0, second=0, microsecond=0)
    prefix = f"landing/{when:year=%Y/month=%m/day=%d/hour=%H/minute=%M}"
    # What two awss3 exporters (a traces and a logs pipeline) write in the same minute folder.
    keys = [store.put_file(f"{prefix}/traces_1.json", folder / "spans.otlp.jsonl"),
            store.put(f"{prefix}/logs_1.json.gz", gzip.compress((folder / "logs.otlp.jsonl").read_bytes()))
            .removeprefix("landing/")]

    assert store.run(instance, hour, hour).success
    spans, audit = store.read("spans"), store.read("ingest_audit").set_index("source_file")
    assert store.read("quarantined_spans").empty
    assert sorted(audit.index) == sorted(keys)
    logs = audit.loc[keys[1]]
    # Every log record found is a GenAI event joined into a span of the hour, or a plain log (ignored).
    assert logs["source_format"] == "otlp_logs" and logs["events_joined"] > 0 and logs["spans_written"] == 0
    assert logs["spans_found"] == logs["events_joined"] + logs["records_ignored"]
    assert audit.loc[keys[0], "spans_written"] == len(spans) and audit["file_error"].isna().all()
    llm = spans[spans["kind"] == "llm"]
    assert len(llm) and (spans["export_hour"] == pd.Timestamp(hour)).all()
    for column in ("input_messages", "output_messages"):
        assert llm[column].notna().all() and (llm[column].astype(str) != "[]").all(), column


def test_a_truncated_gzip_object_is_quarantined_with_its_key(store: StoreProject, instance: DagsterInstance) -> None:
    whole = gzip.compress(jsonl([native_span(HOUR, "z", i) for i in range(200)]))
    bad = store.put("landing/2026/10/03/05/broken.jsonl.gz", whole[: len(whole) // 2])
    good = store.put("landing/2026/10/03/05/good.jsonl", jsonl([native_span(HOUR, "g", i) for i in range(3)]))

    assert store.run(instance, HOUR, HOUR).success
    quarantine, audit = store.read("quarantined_spans"), store.read("ingest_audit")
    damaged = quarantine[quarantine["reason"] == "corrupt_gzip"]
    assert list(damaged["source_file"]) == [bad.removeprefix("landing/")]
    assert bad.removeprefix("landing/") in damaged["detail"].iloc[0]
    row = audit.set_index("source_file").loc[bad.removeprefix("landing/")]
    assert row["file_error"] and row["spans_found"] == row["spans_written"] + row["spans_quarantined"]
    spans = store.read("spans")
    assert (spans["source_file"] == good.removeprefix("landing/")).sum() == 3
    # The records before the damage are kept: a truncated object loses only its tail.
    assert 0 < (spans["source_file"] == bad.removeprefix("landing/")).sum() < 200


def test_the_landing_sensor_run_key_follows_the_objects(store: StoreProject, instance: DagsterInstance) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    key = f"landing/{hour:%Y/%m/%d/%H}/app.jsonl"
    resources = {"aiobs": store.settings()}

    def tick() -> list:
        with build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
            return landing_sensor.evaluate_tick(context).run_requests

    assert tick() == []
    store.put(key, jsonl([native_span(hour, "s", 0)]))
    first = tick()
    assert [r.partition_key for r in first] == [f"{hour:%Y-%m-%d-%H:%M}"]
    assert tick()[0].run_key == first[0].run_key  # unchanged objects: same key, no new run
    store.put(key, jsonl([native_span(hour, "s", 0)]))  # rewritten with the same bytes
    assert tick()[0].run_key == first[0].run_key
    store.put(key, jsonl([native_span(hour, "s", 0), native_span(hour, "s", 1)]))  # changed object
    changed = tick()
    assert changed[0].run_key != first[0].run_key and changed[0].partition_key == first[0].partition_key
    store.put(f"landing/{hour:%Y/%m/%d/%H}/more.jsonl", jsonl([native_span(hour, "s", 2)]))  # a new object
    assert tick()[0].run_key not in (first[0].run_key, changed[0].run_key)


def _scan_warehouse(path: str, secrets: list[str]) -> list[str]:
    """Every (table, column) of the warehouse file whose text holds one of the secrets."""
    hits = []
    con = duckdb.connect(path, read_only=True)
    try:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        assert tables, "the warehouse has no tables"
        for schema, table in tables:
            columns = [c[0] for c in con.execute(f'DESCRIBE "{schema}"."{table}"').fetchall()]
            for column in columns:
                for secret in secrets:
                    found = con.execute(
                        f'SELECT count(*) FROM "{schema}"."{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                        [f"%{secret}%"]).fetchone()[0]
                    if found:
                        hits.append(f"{schema}.{table}.{column}")
    finally:
        con.close()
    return hits


def test_credentials_never_reach_tables_logs_or_errors(
        store: StoreProject, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level("INFO")
    server = store.server
    secrets = [server.access_key, server.secret_key]
    store.put("landing/2026/10/03/05/app.jsonl", jsonl([native_span(HOUR, "c", i) for i in range(3)]))
    whole = gzip.compress(jsonl([native_span(HOUR, "d", i) for i in range(50)]))
    store.put("landing/2026/10/03/05/broken.jsonl.gz", whole[:40])
    store.put("feedback/2026/10/03/05/app.jsonl", jsonl([feedback_event("c-05-0", 0, HOUR)]) + b"{oops\n")
    good = store.run(instance, HOUR, HOUR, [ingest_export_hours, ingest_feedback_hours])
    assert good.success and len(store.read("quarantined_spans")) and len(store.read("quarantined_feedback"))

    # The same run with a wrong secret: refused by the server, and the failure names what it could not read.
    wrong = "WRONG" + server.secret_key[::-1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    _forget_s3_clients()
    failed = store.run(instance, HOUR, HOUR, raise_on_error=False)
    assert not failed.success
    errors = [e.event_specific_data.error for e in failed.get_step_failure_events()]
    message = "\n".join(e.to_string() for e in errors)
    assert store.landing_url in message or "landing/2026/10/03/05" in message, message
    secrets.append(wrong)

    assert _scan_warehouse(store.duckdb_path, secrets) == []
    texts = {"captured log records": "\n".join(r.getMessage() for r in caplog.records),
             "stdout and stderr": "".join(capfd.readouterr()), "failure messages": message}
    for run in (good, failed):
        texts[f"event log of run {run.run_id}"] = "\n".join(serialize_value(e) for e in instance.all_logs(run.run_id))
        texts[f"run config of run {run.run_id}"] = json.dumps(instance.get_run_by_id(run.run_id).run_config)
    assert all(len(text) for name, text in texts.items() if name.startswith("event log")), "no events captured"
    leaks = [(name, i) for name, text in texts.items() for i, secret in enumerate(secrets) if secret in text]
    assert leaks == [], f"credentials found in: {leaks}"
