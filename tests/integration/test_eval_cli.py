"""`aiobs eval compare / run / export` end to end: the command run as a subprocess against the local LLM server
as a real process, on a dataset version written by the dataset builder.

The command is the `aiobs` console script when aiobs_pipeline/cli.py registers the `eval` command, else the
module entry point `python -m aiobs_pipeline.evals.cli` that registers the same parser (`add_parser`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiobs_pipeline.evals.dataset import Candidates, build_version, case_id_for
from aiobs_pipeline.evals.settings import DatasetSettings
from aiobs_pipeline.generate.scenario import DOCS_BY_TOPIC, TOPICS
from tests.integration.llm_fixtures import llm_server

__all__ = ["llm_server"]

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "evals" / "prompts"


def eval_command() -> list[str]:
    """The console script when it knows `eval`, else the module entry point."""
    from aiobs_pipeline.cli import build_parser  # noqa: PLC0415

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["eval", "export", "latest"])
        wired = True
    except SystemExit:  # argparse: invalid choice 'eval'
        wired = False
    script = Path(sys.executable).parent / "aiobs"
    if wired and script.exists():
        return [str(script), "eval"]
    return [sys.executable, "-m", "aiobs_pipeline.evals.cli", "eval"]


def _cases() -> list[dict]:
    """One search case per knowledge-base topic: its first question, three of its articles as context."""
    cases = []
    for t, topic in enumerate(TOPICS):
        question, _ = topic.questions[0]
        docs = DOCS_BY_TOPIC[t][:3]
        span_id = f"span-{t:03d}"
        cases.append({
            "case_id": case_id_for(span_id), "question": question,
            "input_messages": [{"role": "user", "content": question}],
            "context": [{"id": d.doc_id, "text": d.text, "rank": i + 1} for i, d in enumerate(docs)],
            "bad_output": f"{topic.wrong_facts[0]} [kb-{(t + 1) * 100 + 42:04d}]",
            "reasons": ["hallucination_report"], "comments": [], "correction": None, "reference": None,
            "trust_score": 0.2,
            "tags": {"feature": "search", "prompt_name": "answer-with-sources", "prompt_version": "3",
                     "model": "gpt-4o-mini"},
            "source": {"span_id": span_id, "trace_id": f"trace-{t}", "start_time": None, "export_hour": None,
                       "day": None},
            "case_schema_version": 1,
        })
    return cases


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with settings, a dataset version and a prompts folder holding an equal version 5."""
    root = tmp_path_factory.mktemp("evalcli")
    (root / "aiobs.toml").write_text(
        '[paths]\ndatasets_dir = "datasets"\nreports_dir = "reports"\n\n'
        '[llm]\ncache_dir = "llm_cache"\ntimeout_s = 5.0\nmax_attempts = 1\n')
    result = build_version(root / "datasets" / "bad-answers", Candidates(cases=_cases()), DatasetSettings(),
                           ["2026-10-05"])
    assert result.version == "v0001"
    prompts = root / "prompts"
    shutil.copytree(PROMPTS, prompts)
    # Version 5 only rewords the system message; the local server answers from the user message, so its
    # answers equal version 2's: a comparison that must pass.
    text = (prompts / "answer-with-sources.v2.toml").read_text()
    (prompts / "answer-with-sources.v5.toml").write_text(
        text.replace('version = "2"', 'version = "5"').replace("Answer the question", "Reply to the question"))
    return root


def _run(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOBS_CONFIG": str(workspace / "aiobs.toml")}
    return subprocess.run([*eval_command(), *args], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=120)


def _compare(workspace: Path, server_url: str, candidate: str, report: Path) -> subprocess.CompletedProcess[str]:
    return _run(workspace, "compare", "--prompt", "answer-with-sources", "--baseline", "2", "--candidate", candidate,
                "--dataset", str(workspace / "datasets" / "bad-answers" / "v0001"), "--prompts-dir",
                str(workspace / "prompts"), "--base-url", server_url, "--report", str(report))


def test_worse_prompt_version_fails_the_gate(workspace: Path, llm_server) -> None:
    report = workspace / "reports" / "worse.md"
    result = _compare(workspace, llm_server.base_url, "3", report)
    assert result.returncode == 1, result.stdout + result.stderr
    text = report.read_text()
    assert "**Result: FAIL**" in text
    regressed = [line.split("|")[1].strip() for line in text.splitlines() if "**REGRESSED**" in line]
    assert {"grounding", "citation_validity"} <= set(regressed)
    worse = text.split("## Cases that got worse", 1)[1]
    assert sum(case_id_for(f"span-{t:03d}") in worse for t in range(len(TOPICS))) >= len(TOPICS) // 2
    assert "report: " in result.stdout


def test_equal_prompt_version_passes_the_gate(workspace: Path, llm_server) -> None:
    report = workspace / "reports" / "equal.md"
    result = _compare(workspace, llm_server.base_url, "5", report)
    assert result.returncode == 0, result.stdout + result.stderr
    text = report.read_text()
    assert "**Result: PASS**" in text and "REGRESSED" not in text
    assert "## Cases that got worse (0)" in text


def test_unreachable_endpoint_is_an_error_not_a_pass(workspace: Path) -> None:
    report = workspace / "reports" / "down.md"
    # Port 9 (discard) on loopback: nothing listens, so every call fails with a connection error.
    result = _compare(workspace, "http://127.0.0.1:9/v1", "5", report)
    assert result.returncode == 3, result.stdout + result.stderr
    text = report.read_text()
    assert "**Result: ERROR**" in text and "connection_error" in text
    assert f"Failed calls ({len(TOPICS)} baseline, {len(TOPICS)} candidate)" in text


def test_run_writes_scored_results(workspace: Path, llm_server) -> None:
    out = workspace / "reports" / "run-v2"
    result = _run(workspace, "run", "--prompt", "answer-with-sources", "--version", "v2", "--dataset",
                  str(workspace / "datasets" / "bad-answers"), "--prompts-dir", str(workspace / "prompts"),
                  "--base-url", llm_server.base_url, "--judge", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(TOPICS) and all(r["status"] == "ok" for r in rows)
    assert all(r["metrics"]["grounding"] > 0.8 for r in rows)
    assert all(r["metrics"]["judge_score"] is not None for r in rows)
    assert "| grounding |" in (out / "summary.md").read_text()
