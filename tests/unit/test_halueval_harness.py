"""HaluEval harness: end to end on the fixture through `python -m`, metric helpers, and the real files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aiobs_pipeline.hallucination.settings import HallucinationSettings
from evals.benchmarks.halueval import (
    DataError,
    best_threshold,
    classification,
    dialogue_messages,
    evaluate,
    length_matched_auc,
    read_rows,
    roc_auc,
    split_rows,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "halueval"
REAL = Path("/work/shared/datasets/halueval")
FIXTURE_ROWS = {"qa": 120, "dialogue": 120, "summarization": 30, "general": 60}
METRICS = ("accuracy", "roc_auc", "precision", "recall", "f1")


def run_harness(*args: str) -> subprocess.CompletedProcess[str]:
    """The harness as a user runs it."""
    return subprocess.run([sys.executable, "-m", "evals.benchmarks.halueval", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("task", ["qa", "dialogue", "summarization", "general"])
def test_fixture_end_to_end_json(task: str) -> None:
    done = run_harness("--data", str(FIXTURES / f"{task}.jsonl"), "--task", task, "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    rows = FIXTURE_ROWS[task]
    assert report["task"] == task
    assert report["n"] == (rows if task == "general" else 2 * rows)
    for metric in METRICS:
        assert 0 <= report[metric] <= 1, metric
    assert report["threshold"] == HallucinationSettings().halueval_thresholds[task]
    assert 0 <= report["length_only_roc_auc"] <= 1


def test_fixture_qa_separates_and_no_length_costs_auc() -> None:
    full = evaluate(FIXTURES / "qa.jsonl", "qa")
    plain = evaluate(FIXTURES / "qa.jsonl", "qa", no_length=True)
    # Verbatim alignment separates HotpotQA's extracted answers from generated sentences (a wording
    # artefact, see docs/hallucination.md); coverage alone still beats chance clearly.
    assert full["roc_auc"] > 0.95
    assert 0.7 < plain["roc_auc"] < full["roc_auc"]
    assert plain["no_length"] is True
    assert plain["threshold"] == HallucinationSettings().halueval_thresholds["qa:no-length"]


def test_text_report_and_tune_mode() -> None:
    text = run_harness("--data", str(FIXTURES / "summarization.jsonl"), "--task", "summarization")
    assert text.returncode == 0
    assert "accuracy" in text.stdout and "ROC-AUC" in text.stdout and "length alone" in text.stdout
    tuned = run_harness("--data", str(FIXTURES / "dialogue.jsonl"), "--task", "dialogue", "--tune")
    suggestion = json.loads(tuned.stdout)
    assert suggestion["tuned_on_rows"] == 72  # the first 60% of 120 rows
    assert 0 <= suggestion["dialogue"] <= 1 and 0 <= suggestion["dialogue:no-length"] <= 1


def test_bad_file_names_the_line_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"knowledge": "k", "question": "q", "right_answer": "a", "hallucinated_answer": "b"}\n'
                   '{"knowledge": "k", "question": "q", "right_answer": "a"}\n')
    done = run_harness("--data", str(bad), "--task", "qa")
    assert done.returncode == 2
    assert "record 2" in done.stderr and "hallucinated_answer" in done.stderr


def test_read_rows_errors(tmp_path: Path) -> None:
    broken = tmp_path / "d.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(DataError, match="line 1 is not valid JSON"):
        read_rows(broken, "dialogue")
    general = tmp_path / "g.jsonl"
    general.write_text('{"ID": "1", "user_query": "q", "chatgpt_response": "r", "hallucination": "maybe"}\n')
    with pytest.raises(DataError, match="yes or no"):
        read_rows(general, "general")
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"document": "d", "right_summary": "r", "hallucinated_summary": "h"}]))
    assert len(read_rows(array, "summarization")) == 1


def test_split_is_first_sixty_percent_then_the_rest() -> None:
    rows = [{"i": i} for i in range(10)]
    assert [n for n, _ in split_rows(rows, "tune")] == list(range(1, 7))
    assert [n for n, _ in split_rows(rows, "holdout")] == list(range(7, 11))
    assert len(split_rows(rows, "all")) == 10


def test_roc_auc_rank_formula() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == 0.75
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5  # ties count half
    assert roc_auc(np.array([0.1, 0.2]), np.array([1, 1])) is None


def test_length_matched_auc_ignores_length_separation() -> None:
    # Long outputs are all hallucinated: length alone is perfect, within-length ranking is random.
    lengths = np.array([1, 1, 1, 1, 9, 9, 9, 9, 5, 5, 5, 5], dtype=float)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1])
    scores = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0.2, 0.8, 0.9, 0.3])
    assert roc_auc(lengths, labels) > 0.8
    assert length_matched_auc(scores, labels, lengths) == 0.5


def test_classification_and_threshold_choice() -> None:
    trust = [0.9, 0.8, 0.3, None, 0.2]
    labels = np.array([0, 0, 1, 1, 1])
    result = classification(trust, labels, 0.5)
    assert result["accuracy"] == 0.8 and result["precision"] == 1.0 and result["recall"] == pytest.approx(2 / 3)
    assert 0.3 < best_threshold(trust, labels) < 0.8


def test_dialogue_history_becomes_messages() -> None:
    history = "[Human]: Do you like Iron Man [Assistant]: Sure do! [Human]: Who starred in it? "
    assert dialogue_messages(history) == [
        {"role": "user", "content": "Do you like Iron Man"},
        {"role": "assistant", "content": "Sure do!"},
        {"role": "user", "content": "Who starred in it?"},
    ]


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason=f"HaluEval development files not present at {REAL} "
                                                "(shared data folder; absent on a fresh clone)")
def test_real_files_holdout_figures_hold() -> None:
    # Floors a little under the figures in docs/hallucination.md, so a regression in a detector shows.
    floors = {"qa": 0.99, "dialogue": 0.54, "summarization": 0.71}
    for task, floor in floors.items():
        report = evaluate(REAL / f"{task}_dev.jsonl", task, split="holdout")
        assert report["accuracy"] >= floor, (task, report["accuracy"])
    plain = evaluate(REAL / "qa_dev.jsonl", "qa", split="holdout", no_length=True)
    assert plain["accuracy"] >= 0.86
    plain = evaluate(REAL / "summarization_dev.jsonl", "summarization", split="holdout", no_length=True)
    assert plain["accuracy"] >= 0.69
    general = evaluate(REAL / "general_dev.jsonl", "general")
    assert general["n_confidence"] > 100 and general["confidence_roc_auc"] is not None


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "qa_dev.jsonl").is_file(), reason=f"{REAL}/qa_dev.jsonl not present")
def test_full_qa_file_scores_well_under_a_minute() -> None:
    started = time.perf_counter()
    report = evaluate(REAL / "qa_dev.jsonl", "qa")
    assert report["n"] == 10_000
    assert time.perf_counter() - started < 30
