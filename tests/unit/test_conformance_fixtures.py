"""The recorded conformance fixtures are whole and self-consistent (what the readers are tested against
elsewhere): every recorder target has its folder, requirements and manifest; the manifest's expected values
agree with each other; the files are OTLP/JSON with hex ids; captured content really is in them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.record import common
from tests.conformance.record.__main__ import FIXTURES, RECORD, TARGETS, collect

FOLDERS = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
HEX = {"traceId": re.compile(r"[0-9a-f]{32}"), "spanId": re.compile(r"[0-9a-f]{16}"),
       "parentSpanId": re.compile(r"[0-9a-f]{16}")}


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def items(request: dict[str, Any]) -> list[dict[str, Any]]:
    if "resourceSpans" in request:
        return [s for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    return [r for rl in request["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]


def test_every_target_has_a_folder_and_requirements() -> None:
    assert sorted(t.name for t in TARGETS) == [p.name for p in FOLDERS], "a folder without a target, or vice versa"
    for target in TARGETS:
        assert (RECORD / "requirements" / f"{target.requirements}.txt").is_file()
        assert (RECORD / f"{target.script}.py").is_file()


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_manifest_values_come_from_one_consistent_recording(folder: Path) -> None:
    m = manifest(folder)
    assert m["name"] == folder.name and m["versions"] and m["installed"] and m["settings"]
    assert set(m["captures"]) >= {"content", "ttft", "user_session", "logs"}
    calls = {c["kind"]: c for c in m["calls"]}
    assert list(calls) == ["chat", "stream", "embeddings"]
    for call in m["calls"]:
        response = call["response"]
        assert response["total_tokens"] == response["input_tokens"] + response["output_tokens"]
        assert call["client_started_unix_nano"] < call["client_ended_unix_nano"]
    chat, stream, embed = calls["chat"]["response"], calls["stream"]["response"], calls["embeddings"]["response"]
    assert chat["model"] == stream["model"] == common.MODEL and embed["model"] == common.EMBEDDING_MODEL
    # The same prompt twice: the same deterministic answer, a prompt-cache hit the second time.
    assert stream["output_text"] == chat["output_text"] and stream["output_tokens"] == chat["output_tokens"]
    assert chat["cached_tokens"] == 0 < stream["cached_tokens"] <= stream["input_tokens"]
    assert chat["reasoning_tokens"] == stream["reasoning_tokens"] > 0
    assert stream["chunks"] > 3 and calls["stream"]["client_first_content_unix_nano"]
    assert calls["chat"]["request_user"] == common.REQUEST_USER and calls["stream"]["request_user"] is None
    how = m["captures"]["user_session"]
    explicit = how in ("explicit", "baggage", "association_properties")
    assert [(c["user_id"], c["session_id"]) for c in m["calls"]] == (
        [common.USERS[k] for k in ("chat", "stream", "embeddings")] if explicit else [(None, None)] * 3)
    expected = [(c["expected"]["user_id"], c["expected"]["session_id"]) for c in m["calls"]]
    if explicit:  # the explicit user beats the request's `user` the chat call also sent
        assert expected == [common.USERS[k] for k in ("chat", "stream", "embeddings")]
    elif how == "request_user":
        assert expected == [(common.REQUEST_USER, None), (None, None), (None, None)]
    else:
        assert how == "none" and expected == [(None, None)] * 3


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_files_are_otlp_json_with_hex_ids_and_hold_the_captured_content(folder: Path) -> None:
    m = manifest(folder)
    names = [m["files"]["spans"]] + ([m["files"]["logs"]] if m["files"]["logs"] else [])
    assert sorted(p.name for p in folder.glob("*.jsonl")) == sorted(names)
    found = 0
    for name in names:
        for line in (folder / name).read_bytes().splitlines():
            for item in items(json.loads(line)):
                found += 1
                for key, pattern in HEX.items():
                    assert key not in item or pattern.fullmatch(item[key]), (name, key, item.get(key))
    assert found >= 3
    text = "".join((folder / name).read_text() for name in names)
    answer_start = m["calls"][0]["response"]["output_text"][:30]
    assert (answer_start in text) == m["captures"]["content"], "content captured exactly when the manifest says"


def test_collect_splits_span_and_log_files(tmp_path: Path) -> None:
    landing, out = tmp_path / "landing", tmp_path / "out"
    (landing / "2026/12/08/01").mkdir(parents=True)
    out.mkdir()
    (landing / "2026/12/08/01/rec-host-1.jsonl").write_text('{"resourceSpans": []}\n')
    (landing / "2026/12/08/01/rec-logs-host-1.jsonl").write_text('{"resourceLogs": []}\n{"resourceLogs": []}\n')
    assert collect(landing, out) == {common.SPANS_FILE: 1, common.LOGS_FILE: 2}
    (landing / "2026/12/08/01/rec-logs-host-1.jsonl").unlink()
    assert collect(landing, out) == {common.SPANS_FILE: 1} and not (out / common.LOGS_FILE).exists()
