"""HaluEval benchmark for the no-LLM hallucination detectors (grounding + confidence -> trust score).

    python -m evals.benchmarks.halueval --data PATH --task qa|dialogue|summarization|general [--json]
        [--no-length] [--split all|tune|holdout] [--tune] [--limit N]

Layouts (RUCAIBox/HaluEval): qa rows {knowledge, question, right_answer, hallucinated_answer}; dialogue rows
{knowledge, dialogue_history, right_response, hallucinated_response}; summarization rows {document,
right_summary, hallucinated_summary}; general rows {ID, user_query, chatgpt_response, hallucination yes/no}.
Each qa/dialogue/summarization row gives two labelled examples. The knowledge / document plays the retrieved
document, the question / dialogue history the input messages, and each output is scored on its own,
exactly as a production span would be: it is never compared with its pair. `general` rows have no
context, so only the confidence detector can speak; the harness reports its ROC-AUC there.

Score: the trust score of `aiobs_pipeline.hallucination.scoring` over the signals the detectors give
(grounding and confidence here; citations when an output cites). An output with no signal is not
flagged. Hallucinated = positive class; predicted when trust < the committed threshold in
`HallucinationSettings.halueval_thresholds` (key `task`, or `task:no-length`). The harness never tunes on
the rows it scores: `--tune` prints suggested thresholds from the first 60% of the file (how the committed
defaults were derived); `--split holdout` scores only the remaining 40%.

`--no-length` turns off the length-sensitive parts of the grounding detector (the verbatim alignment
feature; min aggregation if configured) and uses the `:no-length` threshold. Every report also shows the
ROC-AUC of output length alone and a length-matched ROC-AUC (pairs compared only within output-length
deciles), so a detector that wins by length is visible as such.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiobs_pipeline.hallucination.citations import check_citations
from aiobs_pipeline.hallucination.confidence import score_confidence
from aiobs_pipeline.hallucination.grounding import build_context, score_grounding
from aiobs_pipeline.hallucination.scoring import combine_signals
from aiobs_pipeline.hallucination.settings import GroundingSettings, HallucinationSettings

TASKS: dict[str, dict[str, Any]] = {
    "qa": {"context": "knowledge", "input": "question", "outputs": ("right_answer", "hallucinated_answer")},
    "dialogue": {"context": "knowledge", "input": "dialogue_history",
                 "outputs": ("right_response", "hallucinated_response")},
    "summarization": {"context": "document", "input": None, "outputs": ("right_summary", "hallucinated_summary")},
    "general": {"context": None, "input": "user_query", "outputs": ("chatgpt_response",)},
}
TUNE_SHARE = 0.6
_TURN = re.compile(r"\[(Human|Assistant|User|System)\]\s*:\s*", re.I)


class DataError(Exception):
    """The data file cannot be read as the task's layout; the message names the file, line and field."""


@dataclass
class Example:
    """One scored output: label 1 = hallucinated."""

    row: int
    label: int
    length: int
    trust: float | None
    grounding: float | None
    confidence: float | None
    citations: float | None


def read_rows(path: Path, task: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL (or JSON array) file, each checked to have the task's fields."""
    spec = TASKS[task]
    needed = [f for f in (spec["context"], spec["input"], *spec["outputs"]) if f]
    if task == "general":
        needed.append("hallucination")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    rows: list[dict[str, Any]] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError as exc:
            raise DataError(f"{path}: not a valid JSON array: {exc}") from exc
        numbered = list(enumerate(items, start=1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except ValueError as exc:
                raise DataError(f"{path}: line {number} is not valid JSON: {exc}") from exc
    for number, item in numbered:
        if not isinstance(item, dict):
            raise DataError(f"{path}: record {number} is not a JSON object")
        missing = [f for f in needed if not isinstance(item.get(f), str)]
        if missing:
            raise DataError(f"{path}: record {number} lacks text field(s) {', '.join(missing)} of the "
                            f"{task} layout")
        if task == "general" and item["hallucination"].strip().lower() not in ("yes", "no"):
            raise DataError(f"{path}: record {number} field hallucination must be yes or no, "
                            f"got {item['hallucination']!r}")
        rows.append(item)
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def dialogue_messages(history: str) -> list[dict[str, str]]:
    """'[Human]: hi [Assistant]: hello' as chat messages."""
    parts = _TURN.split(history)
    messages = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for role, content in zip(parts[1::2], parts[2::2], strict=False):
        if content.strip():
            messages.append({"role": "assistant" if role.lower() == "assistant" else "user",
                             "content": content.strip()})
    return messages


def split_rows(rows: list[dict[str, Any]], split: str) -> list[tuple[int, dict[str, Any]]]:
    """(row number, row) for the first 60% ('tune'), the rest ('holdout') or all rows."""
    cut = int(len(rows) * TUNE_SHARE)
    numbered = list(enumerate(rows, start=1))
    if split == "tune":
        return numbered[:cut]
    if split == "holdout":
        return numbered[cut:]
    return numbered


def benchmark_settings(settings: HallucinationSettings, no_length: bool) -> GroundingSettings:
    """The grounding settings the benchmark runs with (length-sensitive parts off with --no-length)."""
    if not no_length:
        return settings.grounding
    update: dict[str, Any] = {"alignment_weight": 0.0, "aggregate": "mean"}
    if settings.grounding.coverage_weight <= 0:
        update["coverage_weight"] = 1.0  # coverage is the only support evidence left
    return settings.grounding.model_copy(update=update)


def score_examples(rows: list[tuple[int, dict[str, Any]]], task: str, settings: HallucinationSettings,
                   no_length: bool = False) -> Iterator[Example]:
    """Run the detectors on every output of every row, each output on its own."""
    spec = TASKS[task]
    grounding_settings = benchmark_settings(settings, no_length)
    for number, row in rows:
        documents = [{"id": "knowledge", "text": row[spec["context"]], "rank": 1}] if spec["context"] else None
        messages: list[dict[str, str]] | None = None
        if task == "dialogue":
            messages = dialogue_messages(row["dialogue_history"])
        elif spec["input"]:
            messages = [{"role": "user", "content": row[spec["input"]]}]
        context = build_context(documents, messages) if documents else None
        labels = (0, 1) if task != "general" else (int(row["hallucination"].strip().lower() == "yes"),)
        for field, label in zip(spec["outputs"], labels, strict=True):
            output = row[field]
            grounding = score_grounding(output, context, grounding_settings).score if context else None
            confidence = score_confidence(output, settings.confidence).score
            # Without retrieval (general) a URL is not a citation of a retrieved document.
            citations = check_citations(output, documents, settings.citations).score if documents else None
            trust = combine_signals({"grounding": grounding, "confidence": confidence, "citations": citations},
                                    settings.risk).trust_score
            yield Example(number, label, len(output.split()), trust, grounding, confidence, citations)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC-AUC by the rank (Mann-Whitney U) formula, ties averaged; None when a class is missing."""
    from scipy.stats import rankdata

    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def length_matched_auc(scores: np.ndarray, labels: np.ndarray, lengths: np.ndarray, bins: int = 10) -> float | None:
    """ROC-AUC counting only pairs of outputs in the same output-length decile (pooled over deciles)."""
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, max(len(edges) - 2, 0))
    concordant = pairs = 0.0
    for b in np.unique(which):
        mask = which == b
        auc = roc_auc(scores[mask], labels[mask])
        if auc is None:
            continue
        n_pairs = float(labels[mask].sum() * (~labels[mask].astype(bool)).sum())
        concordant += auc * n_pairs
        pairs += n_pairs
    return concordant / pairs if pairs else None


def hallucination_scores(values: list[float | None]) -> np.ndarray:
    """Trust-like values as hallucination scores (1 - value; an output without a value scores 0)."""
    return np.array([0.0 if v is None else 1.0 - v for v in values], dtype="float64")


def classification(trust: list[float | None], labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of 'hallucinated when trust < threshold' (no score = not flagged)."""
    predicted = np.array([t is not None and t < threshold for t in trust])
    actual = labels.astype(bool)
    tp = int((predicted & actual).sum())
    fp = int((predicted & ~actual).sum())
    fn = int((~predicted & actual).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float((predicted == actual).mean()), "precision": precision, "recall": recall, "f1": f1}


def best_threshold(trust: list[float | None], labels: np.ndarray) -> float:
    """The threshold maximising accuracy (midpoint between neighbouring distinct scores)."""
    values = np.unique([t for t in trust if t is not None])
    if values.size == 0:
        return 0.5
    candidates = np.concatenate(([values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]))
    best, best_accuracy = 0.5, -1.0
    for threshold in candidates:
        accuracy = classification(trust, labels, float(threshold))["accuracy"]
        if accuracy > best_accuracy:
            best, best_accuracy = float(threshold), accuracy
    return round(best, 4)


def threshold_key(task: str, no_length: bool) -> str:
    """Key of a task's committed threshold in HallucinationSettings.halueval_thresholds."""
    return f"{task}:no-length" if no_length else task


def evaluate(path: Path, task: str, settings: HallucinationSettings | None = None, *, no_length: bool = False,
             split: str = "all", limit: int | None = None) -> dict[str, Any]:
    """Score one file and return the report (n, accuracy, roc_auc, precision, recall, f1, threshold, ...)."""
    settings = settings or HallucinationSettings()
    started = time.perf_counter()
    rows = split_rows(read_rows(path, task, limit), split)
    examples = list(score_examples(rows, task, settings, no_length))
    labels = np.array([e.label for e in examples])
    lengths = np.array([e.length for e in examples], dtype="float64")
    trust = [e.trust for e in examples]
    scores = hallucination_scores(trust)
    key = threshold_key(task, no_length)
    threshold = settings.halueval_thresholds.get(key, settings.halueval_thresholds.get(task, 0.5))
    report: dict[str, Any] = {
        "task": task, "file": str(path), "split": split, "no_length": no_length, "n": len(examples),
        "n_rows": len(rows), "n_scored": sum(t is not None for t in trust), "threshold": threshold,
        **classification(trust, labels, threshold),
        "roc_auc": roc_auc(scores, labels),
        "length_matched_roc_auc": length_matched_auc(scores, labels, lengths),
        "length_only_roc_auc": roc_auc(lengths, labels),
    }
    for signal in ("grounding", "confidence", "citations"):
        values = [getattr(e, signal) for e in examples]
        report[f"n_{signal}"] = sum(v is not None for v in values)
        report[f"{signal}_roc_auc"] = roc_auc(hallucination_scores(values), labels) if any(
            v is not None for v in values) else None
    confidence_rows = [(e.confidence, e.label) for e in examples if e.confidence is not None]
    report["confidence_roc_auc_stated_only"] = roc_auc(
        np.array([1 - c for c, _ in confidence_rows]), np.array([y for _, y in confidence_rows])) \
        if confidence_rows else None
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def tune(path: Path, task: str, settings: HallucinationSettings | None = None, *,
         limit: int | None = None) -> dict[str, Any]:
    """Suggested thresholds (with and without length-sensitive features) from the first 60% of the file."""
    settings = settings or HallucinationSettings()
    rows = split_rows(read_rows(path, task, limit), "tune")
    suggestion: dict[str, Any] = {"task": task, "file": str(path), "tuned_on_rows": len(rows)}
    for no_length in (False, True):
        examples = list(score_examples(rows, task, settings, no_length))
        labels = np.array([e.label for e in examples])
        trust = [e.trust for e in examples]
        threshold = best_threshold(trust, labels)
        suggestion[threshold_key(task, no_length)] = threshold
        suggestion[f"{threshold_key(task, no_length)} accuracy"] = round(
            classification(trust, labels, threshold)["accuracy"], 4)
    return suggestion


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render(report: dict[str, Any]) -> str:
    """A short human-readable report."""
    lines = [f"HaluEval {report['task']} ({report['file']}, split={report['split']}"
             f"{', no length features' if report['no_length'] else ''}): {report['n']} outputs from "
             f"{report['n_rows']} rows, {report['n_scored']} scored, {report['seconds']} s"]
    lines.append(f"  threshold {_fmt(report['threshold'])}: accuracy {report['accuracy']:.1%}, precision "
                 f"{_fmt(report['precision'])}, recall {_fmt(report['recall'])}, F1 {_fmt(report['f1'])}")
    lines.append(f"  ROC-AUC {_fmt(report['roc_auc'])} (length-matched {_fmt(report['length_matched_roc_auc'])}; "
                 f"output length alone {_fmt(report['length_only_roc_auc'])})")
    signals = ", ".join(f"{s} {_fmt(report[f'{s}_roc_auc'])} (n={report[f'n_{s}']})"
                        for s in ("grounding", "confidence", "citations"))
    lines.append(f"  per-signal ROC-AUC: {signals}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m evals.benchmarks.halueval", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="a HaluEval JSONL file of the task's layout")
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--json", action="store_true", help="print one JSON object per task")
    parser.add_argument("--no-length", action="store_true", help="turn off length-sensitive features")
    parser.add_argument("--split", choices=("all", "tune", "holdout"), default="all",
                        help="rows to score: all, the first 60%% (tune) or the last 40%% (holdout)")
    parser.add_argument("--tune", action="store_true", help="print thresholds suggested by the first 60%%")
    parser.add_argument("--limit", type=int, default=None, help="read at most this many rows")
    args = parser.parse_args(argv)
    try:
        if args.tune:
            print(json.dumps(tune(args.data, args.task, limit=args.limit)))
            return 0
        report = evaluate(args.data, args.task, no_length=args.no_length, split=args.split, limit=args.limit)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
