"""Forgetting a user as plain functions: landing files of every format from a generator run (shared lines
keep the other users' spans), a corrupt line left in place and reported, feedback files, eval datasets,
the alert store, and the warehouse on DuckDB and PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import pytest

from aiobs_pipeline.alerting.rules import Observation
from aiobs_pipeline.alerting.state import AlertStore
from aiobs_pipeline.feedback.settings import FeedbackSettings
from aiobs_pipeline.generate import generate
from aiobs_pipeline.governance import forget
from aiobs_pipeline.governance.forget import (
    REDACTED,
    ForgetError,
    UserKeys,
    _Matcher,
    _may_mention,
    collect_landing_keys,
    escaped_spellings,
    forget_in_alert_store,
    forget_in_datasets,
    forget_in_feedback_landing,
    forget_in_landing,
    forget_in_warehouse,
    forget_user,
    user_sha256,
)
from aiobs_pipeline.governance.store import open_warehouse
from aiobs_pipeline.ingest.partition import read_file
from aiobs_pipeline.settings import load_settings

START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _users(root: Path) -> dict[str, Counter]:
    """Spans per user, per format, as the ingest readers see the files."""
    out: dict[str, Counter] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "_ground_truth.json"):
        rows = read_file(path, str(path.relative_to(root)), fast_path=False).rows
        if rows is None or rows.empty:
            continue
        fmt = path.name.split("-")[0]
        out.setdefault(fmt, Counter()).update(rows["user_id"].dropna())
    return out


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    generate(root / "landing", START, START + timedelta(hours=3), seed=21, scale=0.6, incidents=[],
             feedback_root=root / "feedback")
    return root


def _copy(src: Path, dst: Path) -> Path:
    for path in src.rglob("*"):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return dst


def _shared_otlp_user(root: Path) -> str:
    """A user whose spans share an OTLP request line with another user's spans."""
    for path in sorted(root.rglob("otlp-*")):
        for line in _bytes(path).splitlines():
            users = {a["value"]["stringValue"] for rs in orjson.loads(line)["resourceSpans"]
                     for ss in rs["scopeSpans"] for s in ss["spans"] for a in s["attributes"] if a["key"] == "user.id"}
            if len(users) >= 2:
                return sorted(users)[0]
    raise AssertionError("the generator wrote no OTLP line shared by two users")


def test_every_landing_format_loses_only_the_user(landing: Path, tmp_path: Path) -> None:
    root = _copy(landing / "landing", tmp_path / "landing")
    before = _users(root)
    assert set(before) == {"native", "otlp", "openinference", "langfuse", "langsmith"}
    # One user per format (the OTLP one shares a request line with someone else), all forgotten in turn.
    chosen = {_shared_otlp_user(root)} | {max(before[fmt], key=lambda u: (before[fmt][u], u))
                                          for fmt in ("native", "openinference", "langfuse", "langsmith")}
    native = sorted(root.rglob("native-*"))[0]
    native_lines = _bytes(native).splitlines(keepends=True)
    for user in sorted(chosen):
        keys = UserKeys(user)
        collect_landing_keys([root], keys)
        assert keys.spans and keys.traces
        items = forget_in_landing(root, keys, dry_run=False)
        assert items and all(i.action in ("rewrote_file", "deleted_file") for i in items), items
        for path in root.rglob("*"):
            if path.is_file():
                assert user.encode() not in _bytes(path), f"{path} still names {user}"
    after = _users(root)
    for fmt, counts in before.items():
        expected = Counter({u: n for u, n in counts.items() if u not in chosen})
        assert after.get(fmt, Counter()) == expected, fmt
    # Other users' native lines are kept byte for byte, in order (inside the gzip stream when compressed).
    kept = [line for line in native_lines if not any(u.encode() in line for u in chosen)]
    assert _bytes(native).splitlines(keepends=True) == kept


def test_dry_run_changes_nothing_and_counts_the_same(landing: Path, tmp_path: Path) -> None:
    root = _copy(landing / "landing", tmp_path / "landing")
    user = _shared_otlp_user(root)
    snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    keys = UserKeys(user)
    collect_landing_keys([root], keys)
    dry = forget_in_landing(root, keys, dry_run=True)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == snapshot
    real = forget_in_landing(root, keys, dry_run=False)
    assert [(i.location, i.count) for i in dry] == [(i.location, i.count) for i in real]
    shared = [i for i in real if "elements of shared records" in i.detail]
    assert shared, "the OTLP line shared with another user is rewritten, not dropped"


def test_corrupt_line_is_left_in_place_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    folder = root / "2026/03/02/09"
    folder.mkdir(parents=True)
    good = {"span_id": "s1", "trace_id": "t1", "name": "chat", "kind": "llm", "status": "ok",
            "start_time": "2026-03-02T09:00:00Z", "metadata": {"user_id": "alice"}}
    other = {**good, "span_id": "s2", "trace_id": "t2", "metadata": {"user_id": "bob"}}
    corrupt = b'{"span_id": "s3", "metadata": {"user_id": "alice"'
    unrelated = b"not json at all"
    (folder / "native.jsonl").write_bytes(orjson.dumps(good) + b"\n" + corrupt + b"\r\n" + orjson.dumps(other)
                                          + b"\n" + unrelated + b"\n")
    keys = UserKeys("alice")
    collect_landing_keys([root], keys)
    items = forget_in_landing(root, keys, dry_run=False)
    text = (folder / "native.jsonl").read_bytes()
    assert text == corrupt + b"\r\n" + orjson.dumps(other) + b"\n" + unrelated + b"\n"
    left = [i for i in items if i.action == "left_in_place"]
    assert len(left) == 1 and "line 2" in left[0].detail and "contains the user id" in left[0].detail
    assert any(i.action == "unreadable_kept" and "line 4" in i.detail for i in items)
    assert any(i.action == "rewrote_file" and i.count == 1 for i in items)


def test_corrupt_line_naming_an_escaped_user_id_is_reported_as_theirs(tmp_path: Path) -> None:
    folder = tmp_path / "landing/2026/03/02/09"
    folder.mkdir(parents=True)
    good = {"span_id": "s1", "trace_id": "t1", "name": "chat", "start_time": "2026-03-02T09:00:00Z",
            "metadata": {"user_id": "josé"}}
    corrupt = b'{"span_id": "s3", "metadata": {"user_id": "jos\\u00e9"'
    other = b'{"span_id": "s4", "metadata": {"user_id": "jos\\u00e9_2"'
    (folder / "native.jsonl").write_bytes(json.dumps(good).encode() + b"\n" + corrupt + b"\n" + other + b"\n")
    keys = UserKeys("josé")
    collect_landing_keys([tmp_path / "landing"], keys)
    items = forget_in_landing(tmp_path / "landing", keys, dry_run=False)
    assert [(i.action, i.detail.split(" is ")[0]) for i in items if i.action != "rewrote_file"] == [
        ("left_in_place", "line 2"), ("unreadable_kept", "line 3")]
    assert (folder / "native.jsonl").read_bytes() == corrupt + b"\n" + other + b"\n"


def test_a_file_holding_only_the_user_is_deleted(tmp_path: Path) -> None:
    folder = tmp_path / "landing/2026/03/02/09"
    folder.mkdir(parents=True)
    record = [{"name": "ChatCompletion", "context": {"trace_id": "ab" * 16, "span_id": "cd" * 8},
               "span_kind": "LLM", "start_time": "2026-03-02T09:00:00+00:00", "end_time": "2026-03-02T09:00:01+00:00",
               "status_code": "OK", "attributes": {"openinference.span.kind": "LLM", "user.id": "carol"}}]
    path = folder / "openinference.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps(record)))
    keys = UserKeys("carol")
    collect_landing_keys([tmp_path / "landing"], keys)
    items = forget_in_landing(tmp_path / "landing", keys, dry_run=False)
    assert [i.action for i in items] == ["deleted_file"] and not path.exists()


def _otlp_line(trace: bytes, span: bytes, user: str | None, parent: bytes | None = None) -> bytes:
    """One OTLP/JSON request of one span whose ids are base64, as protobuf's generic JSON mapping writes them."""
    attributes = [{"key": "user.id", "value": {"stringValue": user}}] if user else []
    span_json = {"traceId": base64.b64encode(trace).decode(), "spanId": base64.b64encode(span).decode(),
                 "name": "retrieve", "kind": 1, "startTimeUnixNano": "1772442000000000000",
                 "endTimeUnixNano": "1772442001000000000", "attributes": attributes, "status": {}}
    if parent:
        span_json["parentSpanId"] = base64.b64encode(parent).decode()
    return orjson.dumps({"resourceSpans": [{"resource": {"attributes": []},
                                            "scopeSpans": [{"scope": {}, "spans": [span_json]}]}]}) + b"\n"


def test_untagged_child_spans_with_base64_ids_are_found_in_other_files(tmp_path: Path) -> None:
    # The user's span is in one hour's file; an untagged child of its trace, written with base64 ids (so its
    # file holds neither the user id nor the trace id in hex), is in the next hour's file with someone else's.
    root = tmp_path / "landing"
    trace, other_trace = bytes(range(16)), bytes(range(100, 116))
    first, later = root / "2026/03/02/09", root / "2026/03/02/10"
    first.mkdir(parents=True)
    later.mkdir(parents=True)
    (first / "otlp.jsonl").write_bytes(_otlp_line(trace, b"\x01" * 8, "dave"))
    child = _otlp_line(trace, b"\x3f\xff\xfe" + b"\x00" * 5, None, parent=b"\x01" * 8)  # base64 holds a '/'
    erin = _otlp_line(other_trace, b"\x02" * 8, "erin")
    (later / "otlp.jsonl").write_bytes(child + erin)
    keys = UserKeys("dave")
    collect_landing_keys([root], keys)
    assert keys.traces == {trace.hex()}
    items = forget_in_landing(root, keys, dry_run=False)
    assert not (first / "otlp.jsonl").exists()
    assert (later / "otlp.jsonl").read_bytes() == erin
    assert sorted(i.action for i in items) == ["deleted_file", "rewrote_file"]
    rows = read_file(later / "otlp.jsonl", "otlp.jsonl", fast_path=False).rows
    assert list(rows["user_id"]) == ["erin"]


@pytest.mark.parametrize("user", ["josé", "a/b", "x<y>&z", 'say "hi"'])
def test_user_ids_a_writer_escapes_are_found(tmp_path: Path, user: str) -> None:
    # json.dumps writes josé as jos\u00e9, and other writers escape /, < and &: a byte search for the id
    # would skip the file, so such ids have every file read.
    folder = tmp_path / "landing/2026/03/02/09"
    folder.mkdir(parents=True)
    mine = {"span_id": "s1", "trace_id": "t1", "name": "chat", "start_time": "2026-03-02T09:00:00Z",
            "metadata": {"user_id": user}}
    other = {**mine, "span_id": "s2", "trace_id": "t2", "metadata": {"user_id": "bob"}}
    escaped = json.dumps(mine).replace("/", "\\/").replace("<", "\\u003c").replace(">", "\\u003e")
    escaped = escaped.replace("&", "\\u0026")
    assert user not in escaped
    path = folder / "native.jsonl"
    path.write_text(escaped + "\n" + json.dumps(other) + "\n", encoding="utf-8")
    keys = UserKeys(user)
    collect_landing_keys([tmp_path / "landing"], keys)
    assert keys.spans == {"s1"} and keys.traces == {"t1"}
    items = forget_in_landing(tmp_path / "landing", keys, dry_run=False)
    assert [i.action for i in items] == ["rewrote_file"]
    assert path.read_text(encoding="utf-8") == json.dumps(other) + "\n"


def test_files_that_cannot_concern_the_user_are_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "landing/2026/03/02/09"
    folder.mkdir(parents=True)
    line = {"span_id": "s2", "trace_id": "t2", "name": "chat", "start_time": "2026-03-02T09:00:00Z",
            "metadata": {"user_id": "bob"}}
    (folder / "native.jsonl").write_bytes(orjson.dumps(line) + b"\n")
    keys = UserKeys("alice", traces={"ab" * 16}, spans={"cd" * 8})

    def unexpected_read(path: Path, rel: str) -> None:
        raise AssertionError(f"{rel} was parsed although it cannot concern the user")

    monkeypatch.setattr(forget, "_span_rows", unexpected_read)
    assert forget_in_landing(tmp_path / "landing", keys, dry_run=False) == []
    assert not _may_mention(orjson.dumps(line), keys)
    # The user's ids in any spelling the readers accept make a file a candidate.
    for spelling in ("alice", "AB" * 16, "aB" * 16, "Cd" * 8, base64.b64encode(bytes.fromhex("cd" * 8)).decode()):
        assert _may_mention(orjson.dumps({**line, "parent_span_id": spelling}), keys), spelling
    slash = UserKeys("alice", spans={"3fff" + "00" * 6})
    assert base64.b64encode(bytes.fromhex("3fff" + "00" * 6)) == b"P/8AAAAAAAA="
    assert _may_mention(b'{"spanId":"P\\/8AAAAAAAA="}', slash)
    assert not _may_mention(b'{"spanId":"P8AAAAAAAAA="}', slash)
    # An id a writer may escape cannot be searched for: every file is a candidate.
    assert _may_mention(orjson.dumps(line), UserKeys("jos\u00e9"))


def test_matcher_prunes_only_the_users_elements() -> None:
    matcher = _Matcher("alice", remove_ids={"a1", "a2"}, keep_ids={"b1"})
    record = {"post": [{"id": "a1", "extra": {"metadata": {"user_id": "alice"}}},
                       {"id": "b1", "parent_run_id": "a1"}],
              "patch": [{"id": "A2", "outputs": {}}]}
    pruned, removed = matcher.prune(record)
    assert removed == 2
    assert pruned == {"post": [{"id": "b1", "parent_run_id": "a1"}], "patch": []}
    assert matcher.prune({"id": "b1", "user": "bob"}) == ({"id": "b1", "user": "bob"}, 0)
    gone, count = matcher.prune({"metadata": '{"user_id": "alice", "x": 1}'})
    assert count == 1 and gone is not None and gone is not pruned


def test_feedback_files_lose_the_users_events(landing: Path, tmp_path: Path) -> None:
    root = _copy(landing / "feedback", tmp_path / "feedback")
    events = [orjson.loads(line) for p in sorted(root.rglob("*.jsonl")) for line in p.read_bytes().splitlines()]
    counts = Counter(e["user_id"] for e in events)
    user = max(counts, key=lambda u: (counts[u], u))
    # A page of a Langfuse-style API export mixing the user with someone else.
    other = next(e for e in events if e["user_id"] != user)
    page = {"data": [{"id": "lf-1", "traceId": "t-x", "name": "user_feedback", "value": 1, "dataType": "BOOLEAN",
                      "timestamp": "2026-03-02T09:30:00Z", "source": "API", "comment": None,
                      "metadata": {"user_id": user}},
                     {"id": "lf-2", "traceId": "t-y", "name": "user_feedback", "value": 0, "dataType": "BOOLEAN",
                      "timestamp": "2026-03-02T09:31:00Z", "source": "API", "metadata": {"user_id": other["user_id"]}}],
            "meta": {"page": 1}}
    page_file = root / "2026/03/02/09/langfuse-page.json"
    page_file.parent.mkdir(parents=True, exist_ok=True)
    page_file.write_bytes(orjson.dumps(page))
    keys = UserKeys(user)
    items = forget_in_feedback_landing(root, keys, FeedbackSettings(), dry_run=False)
    assert items
    for path in root.rglob("*"):
        if path.is_file():
            assert user.encode() not in path.read_bytes()
    left = [orjson.loads(line) for p in sorted(root.rglob("feedback.jsonl")) for line in p.read_bytes().splitlines()]
    assert Counter(e["user_id"] for e in left) == Counter({u: n for u, n in counts.items() if u != user})
    assert [d["id"] for d in orjson.loads(page_file.read_bytes())["data"]] == ["lf-2"]


def test_datasets_lose_the_users_cases(tmp_path: Path) -> None:
    version = tmp_path / "datasets/bad-answers/v0001"
    version.mkdir(parents=True)
    cases = [{"case_id": "c1", "question": "q1", "source": {"span_id": "s-alice", "trace_id": "t1"}},
             {"case_id": "c2", "question": "q2", "source": {"span_id": "s-bob", "trace_id": "t2"}}]
    content = "".join(json.dumps(c, sort_keys=True) + "\n" for c in cases).encode()
    (version / "cases.jsonl").write_bytes(content)
    (version / "manifest.json").write_text(json.dumps({"content_sha256": hashlib.sha256(content).hexdigest()}))
    keys = UserKeys("alice", traces={"t1"}, spans={"s-alice"})
    assert forget_in_datasets([tmp_path / "datasets"], keys, dry_run=True)[0].count == 1
    assert (version / "cases.jsonl").read_bytes() == content
    items = forget_in_datasets([tmp_path / "datasets", tmp_path / "absent"], keys, dry_run=False)
    assert [(i.store, i.count) for i in items] == [("datasets", 1)]
    kept = (version / "cases.jsonl").read_bytes()
    assert [json.loads(line)["case_id"] for line in kept.splitlines()] == ["c2"]
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["content_sha256"] == hashlib.sha256(kept).hexdigest() and manifest["counts"]["cases"] == 1
    assert manifest["forgotten_cases"] == 1


def test_datasets_lose_cases_naming_an_escaped_user_id(tmp_path: Path) -> None:
    # A case whose text names the user, written by json.dumps (josé as jos\u00e9): found in its strings.
    version = tmp_path / "datasets/bad-answers/v0001"
    version.mkdir(parents=True)
    cases = [{"case_id": "c1", "question": "what did josé order?", "source": {"span_id": "s9", "trace_id": "t9"}},
             {"case_id": "c2", "question": "q2", "source": {"span_id": "s-bob", "trace_id": "t2"}}]
    content = "".join(json.dumps(c) + "\n" for c in cases).encode()
    assert "josé".encode() not in content
    (version / "cases.jsonl").write_bytes(content)
    (version / "manifest.json").write_text(json.dumps({"content_sha256": hashlib.sha256(content).hexdigest()}))
    items = forget_in_datasets([tmp_path / "datasets"], UserKeys("josé"), dry_run=False)
    assert [(i.store, i.count) for i in items] == [("datasets", 1)]
    assert [json.loads(line)["case_id"] for line in (version / "cases.jsonl").read_bytes().splitlines()] == ["c2"]


def _settings(tmp_path: Path, **warehouse: object):
    return load_settings(None, base_dir=tmp_path,
                         paths={"landing_root": tmp_path / "landing", "feedback_root": tmp_path / "feedback",
                                "reports_dir": tmp_path / "reports", "datasets_dir": tmp_path / "datasets"},
                         warehouse={"duckdb_path": tmp_path / "warehouse.duckdb", **warehouse},
                         alerts={"state_path": tmp_path / "alerts.sqlite"},
                         evals={"export_dir": tmp_path / "evals"})


def test_alert_store_forgets_the_users_alerts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert forget_in_alert_store(settings, UserKeys("alice"), dry_run=False) == []  # no store: nothing made
    assert not (tmp_path / "alerts.sqlite").exists()
    hour = pd.Timestamp("2026-03-02T09:00Z")
    with AlertStore.from_settings(settings) as store:
        store.apply([Observation("budget", "user", "alice", "firing", hour, "warning", 6.0, 5.0, "alice over"),
                     Observation("error_rate", "total", "all", "firing", hour, "critical", 0.2, 0.05,
                                 "errors: top user alice", details={"top_users": ["alice", "bob"]})], now=hour)
        store.silence("budget:user:alice", hour + pd.Timedelta(days=2), by="ops", now=hour)
    items = forget_in_alert_store(settings, UserKeys("alice"), dry_run=False)
    assert {(i.location, i.action) for i in items} >= {("alert_state", "deleted_rows"),
                                                        ("alert_silences", "deleted_rows"),
                                                        ("alert_state", "redacted_rows")}
    with AlertStore.from_settings(settings) as store:
        alerts = store.list_alerts()
        assert [a.key for a in alerts] == ["error_rate:total:all"]
        assert "alice" not in alerts[0].summary and REDACTED in alerts[0].summary
        assert all("alice" not in (e.get("detail") or "") and "alice" not in e["key"] for e in store.events_for())


def _warehouse_rows(session) -> None:
    hour = pd.Timestamp("2026-03-02T09:00Z")
    spans = pd.DataFrame({
        "trace_id": ["t1", "t1", "t2", "t3"], "span_id": ["a-root", "a-child", "b-root", "c-root"],
        "name": ["chat"] * 4, "kind": ["llm", "retrieval", "llm", "llm"], "start_time": [hour] * 4,
        "status": ["ok"] * 4, "user_id": ["alice", None, "bob", "alice_2"], "output_text": ["x"] * 4,
        "source_format": ["native"] * 4, "source_file": ["f"] * 4, "source_line": [1, 2, 3, 4],
        "export_hour": [hour] * 4, "schema_version": [1] * 4})
    session.append("spans", spans)
    session.append("confidence_scores", spans[["export_hour", "trace_id", "span_id"]].assign(confidence_score=0.5))
    session.append("consistency_checks", pd.DataFrame({"export_hour": [hour], "trace_id": ["t1"],
                                                       "span_id": ["a-root"], "llm_span_ids": ['["own-1"]']}))
    session.append("llm_check_spans", spans.iloc[:1].assign(span_id="own-1", trace_id="own-t", user_id=None))
    session.append("hourly_costs", pd.DataFrame({"hour": [hour] * 3, "user_id": ["alice", "bob", "(none)"],
                                                 "cost_usd": [1.0, 2.0, 0.5]}))
    session.append("budget_breaches", pd.DataFrame({"hour": [hour] * 2, "scope": ["user", "total"],
                                                    "subject": ["alice", "all"], "spend_usd": [6.0, 9.0]}))
    session.append("cost_summary", pd.DataFrame({"day": [pd.Timestamp("2026-03-02")],
                                                 "top_spenders": ['[{"user_id":"alice","usd":1.0},'
                                                                  '{"user_id":"bob","usd":2.0}]']}),
                   json_columns=["top_spenders"])
    session.append("quarantined_spans", pd.DataFrame({
        "export_hour": [hour] * 2, "source_file": ["f"] * 2, "reason": ["invalid_json"] * 2, "detail": ["d"] * 2,
        "raw": ['{"user_id": "alice", "span_id": "z"', '{"user_id": "alice_2"'], "schema_version": [1] * 2}))
    session.append("feedback_events", pd.DataFrame({
        "event_id": ["e1", "e2", "e3"], "span_id": ["a-root", "b-root", "b-root"], "trace_id": ["t1", "t2", "t2"],
        "user_id": ["alice", "bob", "bob"], "event_type": ["thumbs_up"] * 3, "timestamp": [hour] * 3,
        "comment": [None, "alice was rude", None], "source_format": ["native"] * 3, "source_file": ["f"] * 3,
        "source_line": [1, 2, 3], "export_hour": [hour] * 3, "schema_version": [1] * 3}))


def _check_forgotten(session) -> None:
    assert session.query(f"SELECT span_id FROM {session.name('spans')} ORDER BY span_id") == [
        ("b-root",), ("c-root",)]
    assert session.query(f"SELECT span_id FROM {session.name('confidence_scores')} ORDER BY span_id") == [
        ("b-root",), ("c-root",)]
    assert session.query(f"SELECT count(*) FROM {session.name('llm_check_spans')}") == [(0,)]
    assert session.query(f"SELECT user_id FROM {session.name('hourly_costs')} ORDER BY user_id") == [
        ("(none)",), ("bob",)]
    assert session.query(f"SELECT subject FROM {session.name('budget_breaches')}") == [("all",)]
    (summary,) = session.query(f"SELECT CAST(top_spenders AS VARCHAR) FROM {session.name('cost_summary')}")[0]
    assert "alice" not in summary.replace(REDACTED, "") and REDACTED in summary and "bob" in summary
    assert session.query(f"SELECT raw FROM {session.name('quarantined_spans')}") == [('{"user_id": "alice_2"',)]
    assert session.query(f"SELECT event_id FROM {session.name('feedback_events')} ORDER BY event_id") == [("e2",), ("e3",)]


def _forget_in(session) -> list:
    keys = UserKeys("alice")
    from aiobs_pipeline.governance.forget import collect_warehouse_keys

    collect_warehouse_keys(session, keys)
    assert keys.traces == {"t1"} and keys.spans == {"a-root", "a-child"}
    return forget_in_warehouse(session, keys, dry_run=False)


def test_warehouse_forget_on_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs") as session:
        _warehouse_rows(session)
    settings = _settings(tmp_path)
    dry, _ = forget_user(settings, "alice", dry_run=True)
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs", read_only=True) as session:
        assert session.query('SELECT count(*) FROM "aiobs"."spans"') == [(4,)]
    report, audit = forget_user(settings, "alice")
    assert [(i.location, i.count) for i in dry.items] == [(i.location, i.count) for i in report.items]
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs") as session:
        _check_forgotten(session)
        rows = session.query('SELECT user_sha256, store, location, action, "count" FROM "aiobs"."forget_audit"')
    assert {r[0] for r in rows} == {user_sha256("alice")}
    assert ("warehouse", "spans", "deleted_rows", 2) in {r[1:] for r in rows}
    assert ("warehouse", "feedback_events.comment", "mentions_left", 1) in {r[1:] for r in rows}
    assert audit is not None and "alice" not in audit.read_text().replace(user_sha256("alice"), "")
    again, _ = forget_user(settings, "alice")
    assert again.removed == 0


@pytest.mark.postgres
def _forget_escaped_ids(session) -> list[str]:
    hour = pd.Timestamp("2026-03-02T09:00Z")
    raws = ['{"user_id": "jos\\u00e9", "span_id": "z"', '{"user_id": "jos\\u00E9_2"', '{"user_id": "josé"',
            '{"user_id": "a\\/b<c"', '{"user_id": "bob"']
    session.append("quarantined_spans", pd.DataFrame({
        "export_hour": [hour] * len(raws), "source_file": ["f"] * len(raws), "reason": ["invalid_json"] * len(raws),
        "detail": ["d"] * len(raws), "raw": raws, "schema_version": [1] * len(raws)}))
    forget_in_warehouse(session, UserKeys("josé"), dry_run=False)
    forget_in_warehouse(session, UserKeys("a/b<c"), dry_run=False)
    return sorted(row[0] for row in session.query(f"SELECT raw FROM {session.name('quarantined_spans')}"))


def test_warehouse_forget_finds_quarantined_records_naming_an_escaped_user_id(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs") as session:
        assert _forget_escaped_ids(session) == ['{"user_id": "bob"', '{"user_id": "jos\\u00E9_2"']


def test_warehouse_forget_of_escaped_user_ids_on_postgres(postgres_url: str, postgres_schema: str) -> None:
    with open_warehouse("postgres", postgres_url=postgres_url, schema=postgres_schema) as session:
        assert _forget_escaped_ids(session) == ['{"user_id": "bob"', '{"user_id": "jos\\u00E9_2"']


def test_escaped_spellings_of_a_user_id() -> None:
    assert escaped_spellings("alice") == set()
    assert escaped_spellings("josé") == {"jos\\u00e9", "jos\\u00E9"}
    assert escaped_spellings("a/b<c") == {"a\\/b<c", "a/b\\u003cc", "a\\/b\\u003cc"}
    assert escaped_spellings('say "hi"') == {'say \\"hi\\"'}
    matcher = _Matcher("josé", remove_ids=set(), keep_ids=set())
    assert matcher.prune({"metadata": '{"user_id": "jos\\u00e9", "x": 1}'})[1] == 1
    assert matcher.prune({"metadata": '{"user_id": "jos\\u00e9_2", "x": 1}'})[1] == 0


def test_warehouse_forget_on_postgres(postgres_url: str, postgres_schema: str) -> None:
    with open_warehouse("postgres", postgres_url=postgres_url, schema=postgres_schema) as session:
        _warehouse_rows(session)
    with open_warehouse("postgres", postgres_url=postgres_url, schema=postgres_schema) as session:
        items = _forget_in(session)
    assert {(i.location, i.action) for i in items} >= {("spans", "deleted_rows"), ("cost_summary.top_spenders",
                                                                                   "redacted_rows")}
    with open_warehouse("postgres", postgres_url=postgres_url, schema=postgres_schema) as session:
        _check_forgotten(session)


def test_empty_user_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ForgetError, match="empty"):
        forget_user(_settings(tmp_path), "  ")


def test_parquet_landing_files_are_left_in_place_and_reported(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "landing/2026/12/07/10"
    folder.mkdir(parents=True)
    path = folder / "runs.parquet"
    shutil.copy(Path(__file__).parents[1] / "fixtures/langsmith_bulk/runs_v1.parquet", path)
    before = path.read_bytes()
    keys = UserKeys("user-7")
    collect_landing_keys([tmp_path / "landing"], keys)  # zstd-compressed: found by reading the rows
    assert keys.traces == {"b2000000-0000-4000-8000-000000000001"}
    items = forget_in_landing(tmp_path / "landing", keys, dry_run=False)
    assert [(i.location, i.action, i.count, i.unit) for i in items] == [
        ("2026/12/07/10/runs.parquet", "left_in_place", 2, "spans")]
    assert "does not rewrite Parquet" in items[0].detail and path.read_bytes() == before
    assert forget_in_landing(tmp_path / "landing", UserKeys("nobody"), dry_run=False) == []
