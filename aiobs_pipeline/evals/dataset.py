"""Eval datasets from bad production answers: finding cases, redacting, deduplicating and versioning them.

A response becomes an eval case when users gave it negative explicit feedback (a thumbs-down, a low rating),
reported it as a hallucination, edited it, or the trust score rated it high risk (each trigger is a setting).
A case holds what is needed to re-run and judge it: the input messages, the question (last user message),
the retrieved context, the bad output, the reasons, the user's correction when an edit exists, a `reference`
answer a reviewer may fill in, tags (feature, prompt name and version, model) and where it came from.

Every text is PII-redacted (`redact.Redactor`) before a case exists. Cases are merged into the latest version
of the dataset: the same response again updates its case (new reasons, a late correction); a question that
is a near-duplicate (rapidfuzz token_sort_ratio >= `dedupe_threshold`) of a case of the same feature is
skipped, so the earliest answer represents it. A new version is written only when the merged cases differ
byte for byte from the latest version's:

    <datasets_dir>/<name>/v0001/cases.jsonl     one case per line, in the order cases were added
    <datasets_dir>/<name>/v0001/manifest.json   counts, redactions, source partitions, content hash

Versions are immutable. Writers take a lock file and publish a version with an atomic rename, so two runs
(two days materialised in parallel) never overwrite each other. `export_version` copies a version into the
repository's `evals/datasets/` for review; nothing else writes into the checkout.
"""

from __future__ import annotations

import fcntl
import filecmp
import hashlib
import json
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process, utils

from aiobs_pipeline.evals.redact import Redactor
from aiobs_pipeline.evals.settings import DatasetSettings, EvalSettings
from aiobs_pipeline.feedback import join_to_responses
from aiobs_pipeline.hallucination import with_trace_documents

CASE_SCHEMA_VERSION = 1
CASES_FILE = "cases.jsonl"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
VERSION_RE = re.compile(r"^v(\d{4,})$")
PUBLISH_ATTEMPTS = 5
OUTCOMES = ("added", "updated", "unchanged", "duplicate")

OUTCOME_COLUMNS: dict[str, str] = {
    "day": "datetime64[ns]", "case_id": "object", "span_id": "object", "trace_id": "object", "feature": "object",
    "prompt_name": "object", "prompt_version": "object", "model": "object", "reasons": "object",
    "trust_score": "float64", "has_correction": "bool", "outcome": "object", "duplicate_of": "object",
    "dataset_version": "object",
}


class DatasetError(ValueError):
    """A dataset file or version is missing or invalid; the message names the file, line or version."""


@dataclass
class Candidates:
    """Eval cases found in one batch of spans and feedback, already redacted."""

    cases: list[dict[str, Any]]
    redactions: Counter[str] = field(default_factory=Counter)
    responses_flagged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class Dataset:
    """One loaded dataset version (or a bare JSONL file)."""

    path: Path
    cases: list[dict[str, Any]]
    manifest: dict[str, Any]

    @property
    def version(self) -> str | None:
        """The version label from the manifest, when there is one."""
        return self.manifest.get("version")

    @property
    def label(self) -> str:
        """`name/version`, or the file path for a bare JSONL file."""
        if self.manifest.get("dataset") and self.version:
            return f"{self.manifest['dataset']}/{self.version}"
        return str(self.path)


@dataclass
class BuildResult:
    """What merging one batch of candidates did: the version now current and each candidate's outcome."""

    version: str | None
    path: Path | None
    created: bool
    manifest: dict[str, Any]
    outcomes: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------------------
# Finding cases.


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value)
    return text if text.strip() else None


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _messages(value: Any) -> list[dict[str, Any]]:
    parsed = _json(value)
    if not isinstance(parsed, list):
        return []
    out = []
    for message in parsed:
        if isinstance(message, dict) and isinstance(message.get("role"), str):
            out.append({"role": message["role"], "content": _message_text(message.get("content"))})
    return out


def _documents(value: Any) -> list[dict[str, Any]]:
    parsed = _json(value)
    if not isinstance(parsed, list):
        return []
    docs = []
    for position, doc in enumerate(parsed, start=1):
        if not isinstance(doc, dict):
            continue
        doc_id = doc.get("id") or doc.get("doc_id") or doc.get("document_id")
        text = doc.get("text") or doc.get("content") or doc.get("page_content")
        if not isinstance(text, str) or not text.strip():
            continue
        entry: dict[str, Any] = {"id": str(doc_id) if doc_id is not None else str(position), "text": text}
        if isinstance(doc.get("title"), str):
            entry["title"] = doc["title"]
        rank = doc.get("rank")
        entry["rank"] = rank if isinstance(rank, int) and not isinstance(rank, bool) else position
        docs.append(entry)
    return docs


def case_id_for(span_id: str) -> str:
    """The stable id of the case a response becomes."""
    return "case-" + hashlib.sha256(span_id.encode()).hexdigest()[:12]


def _feedback_signals(feedback: pd.DataFrame | None, spans: pd.DataFrame,
                      settings: DatasetSettings) -> tuple[dict[str, dict[str, Any]], int]:
    """Per response span id: reasons, comments and the latest correction from its feedback events."""
    signals: dict[str, dict[str, Any]] = {}
    if feedback is None or feedback.empty:
        return signals, 0
    joined = join_to_responses(feedback, spans)
    unmatched = int((~joined["response_found"]).sum())
    joined = joined[joined["response_found"]].copy()
    joined["timestamp"] = pd.to_datetime(joined["timestamp"], utc=True)
    joined = joined.sort_values(["timestamp", "event_id"], kind="stable")
    for event in joined.itertuples(index=False):
        kind = event.event_type
        reason = None
        if kind == "thumbs_down" and settings.thumbs_down:
            reason = f"thumbs_down:{event.reason}" if _text(event.reason) else "thumbs_down"
        elif kind == "rating" and settings.low_rating_at_most is not None:
            value = pd.to_numeric(pd.Series([event.value]), errors="coerce").iloc[0]
            if pd.notna(value) and value <= settings.low_rating_at_most:
                reason = f"low_rating:{value:g}"
        elif kind == "hallucination_report" and settings.hallucination_reports:
            reason = "hallucination_report"
        elif kind == "edited" and settings.edits:
            reason = "edited"
        entry = signals.setdefault(event.response_span_id, {"reasons": [], "comments": [], "correction": None})
        if kind == "edited" and _text(event.edited_text):
            entry["correction"] = event.edited_text  # the latest edit wins: events are in time order
        if reason is not None:
            entry["reasons"].append(reason)
            comment = _text(event.comment)
            if comment and comment not in entry["comments"]:
                entry["comments"].append(comment)
    return signals, unmatched


def find_candidates(spans: pd.DataFrame, feedback: pd.DataFrame | None, scores: pd.DataFrame | None,
                    settings: EvalSettings | None = None) -> Candidates:
    """Eval cases from a batch of canonical spans, their feedback events and hallucination scores.

    `spans` must hold the responses the feedback and scores refer to (and their traces' retrieval spans,
    whose documents become the context). Everything returned is already redacted.
    """
    settings = settings or EvalSettings()
    ds = settings.dataset
    redactor = Redactor(settings.redaction)
    out = Candidates(cases=[])
    if spans is None or spans.empty:
        return out
    responses = with_trace_documents(spans).drop_duplicates("span_id").set_index("span_id", drop=False)
    signals, unmatched = _feedback_signals(feedback, spans, ds)
    if unmatched:
        out.skipped["feedback_for_responses_outside_the_batch"] = unmatched
    trust: dict[str, float] = {}
    if scores is not None and not scores.empty:
        for row in scores[["span_id", "trust_score", "risk_level"]].itertuples(index=False):
            if pd.notna(row.trust_score):
                trust[row.span_id] = float(row.trust_score)
            if ds.high_risk and row.risk_level == "high":
                entry = signals.setdefault(row.span_id, {"reasons": [], "comments": [], "correction": None})
                entry["reasons"].append("high_hallucination_risk")
    flagged = {span_id: s for span_id, s in signals.items() if s["reasons"]}
    out.responses_flagged = len(flagged)
    for span_id, signal in flagged.items():
        if span_id not in responses.index:
            out.skipped["flagged_span_is_not_an_llm_span"] += 1
            continue
        row = responses.loc[span_id]
        case = _case(row, signal, trust.get(span_id))
        if case is None:
            out.skipped["response_without_question"] += 1
            continue
        case, counts = _redacted(case, redactor)
        out.redactions.update(counts)
        out.cases.append(case)
    out.cases.sort(key=lambda c: (c["source"]["start_time"] or "", c["source"]["span_id"]))
    return out


def _iso(value: Any) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat()


def _case(row: pd.Series, signal: dict[str, Any], trust_score: float | None) -> dict[str, Any] | None:
    messages = _messages(row.get("input_messages"))
    users = [m for m in messages if m["role"] == "user" and m["content"].strip()]
    if not users:
        return None
    span_id = str(row["span_id"])
    hour = _iso(row.get("export_hour"))
    return {
        "case_id": case_id_for(span_id),
        "question": users[-1]["content"],
        "input_messages": messages,
        "context": _documents(row.get("documents")),
        "bad_output": _text(row.get("output_text")) or "",
        "reasons": sorted(set(signal["reasons"])),
        "comments": list(signal["comments"]),
        "correction": _text(signal["correction"]),
        "reference": None,
        "trust_score": None if trust_score is None else round(trust_score, 4),
        "tags": {name: _text(row.get(name)) for name in ("feature", "prompt_name", "prompt_version", "model")},
        "source": {"span_id": span_id, "trace_id": _text(row.get("trace_id")),
                   "start_time": _iso(row.get("start_time")), "export_hour": hour,
                   "day": hour[:10] if hour else None},
        "case_schema_version": CASE_SCHEMA_VERSION,
    }


def _redacted(case: dict[str, Any], redactor: Redactor) -> tuple[dict[str, Any], Counter[str]]:
    counts: Counter[str] = Counter()
    out = dict(case)
    for key in ("question", "input_messages", "context", "bad_output", "comments", "correction"):
        if out.get(key) is None:
            continue
        if key == "context":
            docs = []
            for doc in out["context"]:
                text, found = redactor.redact_value(doc["text"])
                counts.update(found)
                docs.append({**doc, "text": text})
            out["context"] = docs
            continue
        value, found = redactor.redact_value(out[key])
        counts.update(found)
        out[key] = value
    return out, counts


# ---------------------------------------------------------------------------------------------------------
# Merging and versioning.


def _merge_same(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    merged["reasons"] = sorted(set(old.get("reasons") or []) | set(new.get("reasons") or []))
    merged["comments"] = list(dict.fromkeys([*(old.get("comments") or []), *(new.get("comments") or [])]))
    merged["correction"] = new.get("correction") or old.get("correction")
    if new.get("trust_score") is not None:
        merged["trust_score"] = new["trust_score"]
    return merged


def merge_cases(existing: Sequence[dict[str, Any]], candidates: Iterable[dict[str, Any]],
                threshold: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Existing cases plus candidates: same response -> merged, near-duplicate question -> skipped.

    Returns the merged case list (existing order, new cases appended) and one outcome per candidate
    (`added`, `updated`, `unchanged` or `duplicate` with `duplicate_of`).
    """
    cases: dict[str, dict[str, Any]] = {c["case_id"]: c for c in existing}
    by_feature: dict[str, tuple[list[str], list[str]]] = {}
    for case in cases.values():
        questions, ids = by_feature.setdefault(_feature(case), ([], []))
        questions.append(utils.default_process(case.get("question") or ""))
        ids.append(case["case_id"])
    outcomes = []
    for candidate in candidates:
        case_id = candidate["case_id"]
        outcome: dict[str, Any] = {"case_id": case_id, "duplicate_of": None}
        if case_id in cases:
            merged = _merge_same(cases[case_id], candidate)
            outcome["outcome"] = "unchanged" if merged == cases[case_id] else "updated"
            cases[case_id] = merged
        else:
            questions, ids = by_feature.setdefault(_feature(candidate), ([], []))
            query = utils.default_process(candidate.get("question") or "")
            match = process.extractOne(query, questions, scorer=fuzz.token_sort_ratio, processor=None,
                                       score_cutoff=threshold) if questions else None
            if match is not None:
                outcome["outcome"] = "duplicate"
                outcome["duplicate_of"] = ids[match[2]]
            else:
                outcome["outcome"] = "added"
                cases[case_id] = candidate
                questions.append(query)
                ids.append(case_id)
        outcomes.append(outcome)
    return list(cases.values()), outcomes


def _feature(case: dict[str, Any]) -> str:
    return (case.get("tags") or {}).get("feature") or ""


def cases_bytes(cases: Sequence[dict[str, Any]]) -> bytes:
    """The JSONL file content of a case list: one canonical JSON object per line."""
    return b"".join(json.dumps(c, sort_keys=True, ensure_ascii=False).encode() + b"\n" for c in cases)


def version_label(number: int) -> str:
    """`v0001` for 1."""
    return f"v{number:04d}"


def list_versions(dataset_root: Path) -> list[str]:
    """The published versions of a dataset folder, oldest first."""
    if not dataset_root.is_dir():
        return []
    found = [(int(m.group(1)), p.name) for p in dataset_root.iterdir()
             if p.is_dir() and (m := VERSION_RE.match(p.name)) and (p / MANIFEST_FILE).is_file()]
    return [name for _, name in sorted(found)]


def latest_version(dataset_root: Path) -> str | None:
    """The newest published version of a dataset folder, or None."""
    versions = list_versions(dataset_root)
    return versions[-1] if versions else None


@contextmanager
def _locked(dataset_root: Path) -> Iterator[None]:
    dataset_root.mkdir(parents=True, exist_ok=True)
    with open(dataset_root / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def case_counts(cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of a dataset version's cases by reason, feature, prompt and model, as its manifest records them."""
    tags = [c.get("tags") or {} for c in cases]
    reasons = Counter(r.split(":", 1)[0] for c in cases for r in c.get("reasons") or [])
    return {
        "cases": len(cases),
        "with_context": sum(1 for c in cases if c.get("context")),
        "with_correction": sum(1 for c in cases if c.get("correction")),
        "with_reference": sum(1 for c in cases if c.get("reference")),
        "by_reason": dict(sorted(reasons.items())),
        "by_feature": dict(sorted(Counter(t.get("feature") or "(none)" for t in tags).items())),
        "by_prompt": dict(sorted(Counter(f"{t.get('prompt_name') or '(none)'}@{t.get('prompt_version') or '(none)'}"
                                         for t in tags).items())),
        "by_model": dict(sorted(Counter(t.get("model") or "(none)" for t in tags).items())),
    }


def build_version(dataset_root: Path, candidates: Candidates, settings: DatasetSettings,
                  source_partitions: Sequence[str] = (), now: datetime | None = None) -> BuildResult:
    """Merge candidates into the latest version; publish a new version only when the cases changed."""
    for _ in range(PUBLISH_ATTEMPTS):
        with _locked(dataset_root):
            latest = latest_version(dataset_root)
            previous = load_dataset(dataset_root / latest) if latest else None
            existing = previous.cases if previous else []
            cases, outcomes = merge_cases(existing, candidates.cases, settings.dedupe_threshold)
            content = cases_bytes(cases)
            if previous is not None and content == cases_bytes(existing):
                return BuildResult(latest, dataset_root / latest, False, previous.manifest, outcomes)
            if previous is None and not cases:
                return BuildResult(None, None, False, {}, outcomes)
            number = int(VERSION_RE.match(latest).group(1)) + 1 if latest else 1
            manifest = _manifest(dataset_root.name, version_label(number), latest, cases, content, outcomes,
                                 candidates, settings, source_partitions,
                                 previous.manifest if previous else {}, now)
            target = dataset_root / version_label(number)
            if _publish(dataset_root, target, content, manifest):
                return BuildResult(target.name, target, True, manifest, outcomes)
        # Another writer without the lock (a different machine on a shared folder) took the number: retry.
    raise DatasetError(f"could not publish a new version of {dataset_root} after {PUBLISH_ATTEMPTS} attempts: "
                       "another writer keeps taking the next version number")


def _manifest(name: str, version: str, previous: str | None, cases: list[dict[str, Any]], content: bytes,
              outcomes: list[dict[str, Any]], candidates: Candidates, settings: DatasetSettings,
              source_partitions: Sequence[str], previous_manifest: dict[str, Any],
              now: datetime | None) -> dict[str, Any]:
    built = Counter(o["outcome"] for o in outcomes)
    partitions = sorted(set(previous_manifest.get("source_partitions") or []) | set(source_partitions))
    return {
        "dataset": name,
        "version": version,
        "previous_version": previous,
        "created_at": (now or datetime.now(UTC)).isoformat(),
        "case_schema_version": CASE_SCHEMA_VERSION,
        "content_sha256": hashlib.sha256(content).hexdigest(),
        "counts": case_counts(cases),
        "build": {
            "partitions": sorted(set(source_partitions)),
            "responses_flagged": candidates.responses_flagged,
            "candidates": len(candidates.cases),
            **{outcome: built.get(outcome, 0) for outcome in OUTCOMES},
            "skipped": dict(sorted(candidates.skipped.items())),
            "redactions": dict(sorted(candidates.redactions.items())),
        },
        "source_partitions": partitions,
        "settings": settings.model_dump(mode="json"),
    }


def _publish(dataset_root: Path, target: Path, content: bytes, manifest: dict[str, Any]) -> bool:
    staging = dataset_root / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        (staging / CASES_FILE).write_bytes(content)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        try:
            os.rename(staging, target)  # atomic; fails when the version already exists
        except OSError:
            if target.exists():
                return False
            raise
        return True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def outcomes_frame(candidates: Candidates, result: BuildResult) -> pd.DataFrame:
    """One row per candidate case: its tags, reasons and what merging did with it (the warehouse table)."""
    by_id = {c["case_id"]: c for c in candidates.cases}
    rows = []
    for outcome in result.outcomes:
        case = by_id[outcome["case_id"]]
        tags, source = case.get("tags") or {}, case.get("source") or {}
        rows.append({
            "day": pd.Timestamp(source["day"]) if source.get("day") else pd.NaT,
            "case_id": case["case_id"], "span_id": source.get("span_id"), "trace_id": source.get("trace_id"),
            **{k: tags.get(k) for k in ("feature", "prompt_name", "prompt_version", "model")},
            "reasons": json.dumps(case.get("reasons") or []),
            "trust_score": case.get("trust_score"), "has_correction": bool(case.get("correction")),
            "outcome": outcome["outcome"], "duplicate_of": outcome["duplicate_of"],
            "dataset_version": result.version,
        })
    frame = pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))
    return frame.astype(OUTCOME_COLUMNS)


# ---------------------------------------------------------------------------------------------------------
# Reading and exporting.


def _read_cases(path: Path) -> list[dict[str, Any]]:
    cases = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"dataset file {path}: cannot be read ({exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"dataset file {path}, line {number}: not valid JSON ({exc})") from None
        if not isinstance(case, dict):
            raise DatasetError(f"dataset file {path}, line {number}: a case must be a JSON object")
        for name in ("case_id", "question"):
            if not isinstance(case.get(name), str) or not case[name].strip():
                raise DatasetError(f"dataset file {path}, line {number}: field {name!r} is missing or empty")
        cases.append(case)
    return cases


def load_dataset(path: Path) -> Dataset:
    """A dataset from a version folder, a dataset folder (its latest version) or a bare cases JSONL file."""
    if path.is_file():
        manifest_path = path.parent / MANIFEST_FILE
        manifest = json.loads(manifest_path.read_text()) if path.name == CASES_FILE and manifest_path.is_file() else {}
        return Dataset(path, _read_cases(path), manifest)
    if not path.is_dir():
        raise DatasetError(f"dataset {path} does not exist (give a version folder such as "
                           f"evals/datasets/<name>/v0001, a dataset folder or a cases JSONL file)")
    if not (path / CASES_FILE).is_file():
        latest = latest_version(path)
        if latest is None:
            raise DatasetError(f"dataset {path} has neither {CASES_FILE} nor any version folder (v0001, ...)")
        path = path / latest
    manifest_path = path / MANIFEST_FILE
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DatasetError(f"dataset manifest {manifest_path}: not valid JSON ({exc})") from None
    return Dataset(path, _read_cases(path / CASES_FILE), manifest)


def export_version(dataset_root: Path, version: str, export_dir: Path, force: bool = False) -> tuple[Path, str]:
    """Copy a published version into `export_dir/<name>/<version>`; returns the target and `copied`,
    `replaced` or `unchanged`. An existing different copy is kept unless `force`."""
    if version == "latest":
        found = latest_version(dataset_root)
        if found is None:
            raise DatasetError(f"dataset {dataset_root} has no versions yet (materialise eval_dataset first)")
        version = found
    source = dataset_root / version
    if not VERSION_RE.match(version) or not (source / MANIFEST_FILE).is_file():
        known = ", ".join(list_versions(dataset_root)) or "none"
        raise DatasetError(f"dataset {dataset_root} has no version {version!r} (versions: {known})")
    target = export_dir / dataset_root.name / version
    files = (CASES_FILE, MANIFEST_FILE)
    if target.exists():
        same = all((target / f).is_file() and filecmp.cmp(source / f, target / f, shallow=False) for f in files)
        if same:
            return target, "unchanged"
        if not force:
            raise DatasetError(f"{target} already exists and differs from {source}; pass --force to replace it")
        shutil.rmtree(target)
        status = "replaced"
    else:
        status = "copied"
    target.mkdir(parents=True)
    for name in files:
        shutil.copy2(source / name, target / name)
    return target, status
