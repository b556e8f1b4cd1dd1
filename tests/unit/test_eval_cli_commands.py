"""`aiobs eval` argument and configuration errors exit 2 with a message naming the problem, before any call;
`eval export` uses the configured folders. (The commands against a live server: tests/integration.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from aiobs_pipeline.evals.cli import main
from aiobs_pipeline.evals.dataset import Candidates, build_version, case_id_for
from aiobs_pipeline.evals.settings import DatasetSettings

PROMPTS = Path(__file__).resolve().parents[2] / "evals" / "prompts"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder whose settings file keeps datasets under var/ (the defaults)."""
    (tmp_path / "aiobs.toml").write_text('[llm]\nbase_url = "http://127.0.0.1:9/v1"\n')
    monkeypatch.setenv("AIOBS_CONFIG", str(tmp_path / "aiobs.toml"))
    case = {"case_id": case_id_for("s1"), "question": "When are invoices generated?", "context": [],
            "tags": {"feature": "search", "prompt_name": "answer-with-sources", "prompt_version": "3"}}
    build_version(tmp_path / "var" / "datasets" / "bad-answers", Candidates(cases=[case]), DatasetSettings())
    return tmp_path


def _run(*args: str) -> int:
    return main(["eval", *args])


def _run_args(project: Path, *extra: str) -> list[str]:
    return ["run", "--prompt", "answer-with-sources", "--version", "2", "--prompts-dir", str(PROMPTS),
            "--dataset", str(project / "var" / "datasets" / "bad-answers"), *extra]


@pytest.mark.parametrize(("change", "message"), [
    (("--version", "9"), "no prompt answer-with-sources@9"),
    (("--prompt", "support-answer", "--version", "7"), "has no case of prompt 'support-answer'"),
    (("--dataset", "nowhere"), "dataset nowhere does not exist"),
    (("--base-url", "ftp://example.com"), "invalid LLM settings (--base-url or [llm]): base_url"),
    (("--prompts-dir", "missing"), "prompts folder missing does not exist"),
])
def test_run_usage_errors(project: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, ...],
                          message: str) -> None:
    assert _run(*_run_args(project, *change)) == 2
    assert message in capsys.readouterr().err


def test_compare_rejects_bad_tolerances(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["compare", "--prompt", "answer-with-sources", "--baseline", "2", "--candidate", "3", "--prompts-dir",
            str(PROMPTS), "--dataset", str(project / "var" / "datasets" / "bad-answers")]
    assert _run(*base, "--tolerance", "accuracy=0.1") == 2
    assert "METRIC one of success_rate" in capsys.readouterr().err
    assert _run(*base, "--tolerance", "grounding=lots") == 2
    assert "'lots' is not a number" in capsys.readouterr().err
    assert _run(*base, "--tolerance", "grounding=2") == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_invalid_settings_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "aiobs.toml").write_text('[llm]\ntimeout_s = -1\n')
    assert _run(*_run_args(project)) == 2
    assert "llm.timeout_s" in capsys.readouterr().err


def test_export_uses_the_configured_folders(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("export", "latest") == 0
    assert (project / "evals" / "datasets" / "bad-answers" / "v0001" / "cases.jsonl").is_file()
    assert capsys.readouterr().out.startswith("copied: ")
    assert _run("export", "v0002") == 2
    assert "no version 'v0002' (versions: v0001)" in capsys.readouterr().err
