"""`generate`: write a window of hourly landing files, feedback files and the incidents' ground truth.

Owns the run: validating arguments, generating hours (in worker processes when asked; each hour is
independent), writing hour folders, placing feedback events in the hour folder of their own timestamp,
optional injected bad records, and `_ground_truth.json` at the landing root (outside every hour folder, so
the pipeline never reads it). Everything written is a function of (seed, window, scale, incidents, formats,
inject_bad_records): the same arguments give byte-identical files.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from aiobs_pipeline.generate.feedback import NEGATIVE_TYPES, feedback_for_hour
from aiobs_pipeline.generate.scenario import (
    FEATURES,
    INCIDENT_DEFAULTS,
    INCIDENT_DESCRIPTIONS,
    MODELS,
    IncidentSpec,
    build_users,
    default_incidents,
)
from aiobs_pipeline.generate.traces import FORMATS, NS, Trace, build_hour
from aiobs_pipeline.generate.writers import encode_hour, hour_stamp, is_generated_name, native_span

GROUND_TRUTH_FILE = "_ground_truth.json"
FEEDBACK_FILE = "feedback.jsonl"
BAD_RECORDS_HOUR = 12  # UTC hour of each day that receives the injected bad records, when asked for
HOUR = timedelta(hours=1)


@dataclass
class GenerationSummary:
    """What a generation run wrote: files, spans per format, feedback, and the incidents' ground truth."""

    landing_root: Path
    feedback_root: Path | None
    start: datetime
    end: datetime
    seed: int
    scale: float
    files_written: list[Path]
    spans_by_format: dict[str, int]
    traces_by_format: dict[str, int]
    feedback_events: int
    late_spans: int
    incidents: list[dict[str, Any]]
    bad_records: list[dict[str, Any]]
    ground_truth_path: Path
    elapsed_seconds: float = 0.0

    @property
    def total_spans(self) -> int:
        """Spans written over all formats."""
        return sum(self.spans_by_format.values())

    @property
    def landing_files(self) -> int:
        """Landing files written (feedback files not counted)."""
        root = self.landing_root.resolve()
        return sum(1 for p in self.files_written if p.resolve().is_relative_to(root))

    def lines(self) -> list[str]:
        """A short human-readable report of the run (what the CLI prints)."""
        formats = ", ".join(f"{f} {n}" for f, n in self.spans_by_format.items())
        out = [
            f"window {_iso(self.start)} .. {_iso(self.end)} (seed {self.seed}, scale {self.scale:g})",
            f"{self.total_spans} spans in {self.landing_files} files under {self.landing_root}: {formats}",
            f"{self.late_spans} late spans; {self.feedback_events} feedback events"
            + (f" under {self.feedback_root}" if self.feedback_root is not None else " (feedback not written)"),
        ]
        for record in self.incidents:
            out.append(f"incident {record['kind']}: {record['start']} .. {record['end']}, "
                       f"{len(record['span_ids'])} affected responses")
        if self.bad_records:
            out.append(f"{len(self.bad_records)} deliberately bad records (see {self.ground_truth_path.name})")
        out.append(f"ground truth: {self.ground_truth_path}; took {self.elapsed_seconds:.1f} s")
        return out

    def describe(self) -> str:
        """The report of `lines()` as one text block."""
        return "\n".join(self.lines())


@dataclass
class _HourOutput:
    """What one hour's generation reports back to the run (workers return this, not the traces)."""

    hour: datetime
    files: list[str]
    spans_by_format: dict[str, int]
    traces_by_format: dict[str, int]
    late_spans: int
    feedback: list[dict[str, Any]]
    bad_records: list[dict[str, Any]]
    llm_spans: int = 0
    llm_errors: int = 0
    streamed_llm: int = 0
    spend_usd: float = 0.0
    spend_by_user: dict[str, float] = field(default_factory=dict)
    incident_spans: dict[str, list[str]] = field(default_factory=dict)
    incident_spend: dict[str, float] = field(default_factory=dict)
    incident_llm: dict[str, int] = field(default_factory=dict)
    degraded_citations_invalid: int = 0


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _utc_hour(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    return _as_utc(value).replace(minute=0, second=0, microsecond=0)


def hour_folder(root: Path, hour: datetime) -> Path:
    """ROOT/YYYY/MM/DD/HH for the UTC hour (the landing layout the pipeline reads)."""
    return Path(root) / f"{hour:%Y}" / f"{hour:%m}" / f"{hour:%d}" / f"{hour:%H}"


def _trace_spend(trace: Trace) -> float:
    return sum(s.cost_usd or 0.0 for s in trace.spans)


def _bad_records(hour: datetime, traces: list[Trace]) -> tuple[bytes, list[dict[str, Any]]]:
    """A native file of deliberately broken records, and the quarantine reason each must get."""
    stamp = f"{hour:%Y%m%d%H}"
    base = {"trace_id": f"bad-trace-{stamp}", "name": "chat_completion", "kind": "llm",
            "start_time": f"{hour:%Y-%m-%dT%H}:10:00.000000Z", "end_time": f"{hour:%Y-%m-%dT%H}:10:01.500000Z",
            "model": "gpt-4o-mini", "provider": "openai", "status": "ok",
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
            "metadata": {"user_id": "user_007", "feature": "chat", "endpoint": "/v1/chat"}}
    records: list[tuple[bytes, str]] = [
        (orjson.dumps({**base, "span_id": f"bad-{stamp}-1",
                       "usage": {"prompt_tokens": -5, "completion_tokens": 30, "total_tokens": 25}}),
         "negative_value"),
        (b'{"span_id": "bad-' + stamp.encode() + b'-2", "trace_id": "bad-trace", "name": "chat_comp', "invalid_json"),
        (orjson.dumps({**base, "span_id": f"bad-{stamp}-3", "start_time": f"{hour:%Y-%m-%dT%H}:10:05.000000Z"}),
         "end_before_start"),
        (orjson.dumps({**base, "span_id": f"bad-{stamp}-4", "start_time": None}), "missing_required_field"),
        (orjson.dumps({**base, "span_id": f"bad-{stamp}-5", "kind": "agentic"}), "invalid_kind"),
        (orjson.dumps({**base, "span_id": f"bad-{stamp}-6", "latency_ms": 1e12}), "absurd_value"),
        (b"[1, 2, 3]", "invalid_type"),
    ]
    native = [t for t in traces if t.fmt == "native"]
    if native:
        # A re-sent span: same id as one already in this hour's native file, which sorts (and is read) first.
        records.append((orjson.dumps(native_span(native[0], native[0].spans[0])), "duplicate_span_id"))
    data = b"".join(line + b"\n" for line, _ in records)
    name = f"zz-injected-bad-records-{hour_stamp(hour)}.jsonl"
    expected = [{"file": name, "line": i, "expected_reason": reason} for i, (_, reason) in enumerate(records, 1)]
    return data, expected


def _generate_hour(args: tuple) -> _HourOutput:
    """Generate, encode and write one hour (runs in a worker process when the run is parallel)."""
    (landing_root, seed, hour, scale, incidents, formats, inject_bad, want_feedback) = args
    users = build_users(seed)
    built = build_hour(seed, hour, scale, users, incidents, formats)
    files = encode_hour(built, formats)
    bad: list[dict[str, Any]] = []
    if inject_bad and hour.hour == BAD_RECORDS_HOUR:
        data, bad = _bad_records(hour, built.traces)
        files[bad[0]["file"]] = data
    folder = hour_folder(landing_root, hour)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file() and is_generated_name(old.name) and old.name not in files:
            old.unlink()
    written = []
    for name in sorted(files):
        (folder / name).write_bytes(files[name])
        written.append(str(folder / name))
    for record in bad:
        record["file"] = str((folder / record["file"]).relative_to(landing_root))
    out = _HourOutput(hour, written, {f: 0 for f in formats}, {f: 0 for f in formats},
                      built.late_spans, feedback_for_hour(seed, hour, built.traces) if want_feedback else [], bad)
    spend_by_user: dict[str, float] = defaultdict(float)
    for trace in built.traces:
        out.spans_by_format[trace.fmt] += len(trace.spans)
        out.traces_by_format[trace.fmt] += 1
        spend = _trace_spend(trace)
        spend_by_user[trace.user_id] += spend
        out.spend_usd += spend
        for span in trace.spans:
            if span.kind == "llm":
                out.llm_spans += 1
                out.llm_errors += span.status == "error"
                out.streamed_llm += span.stream
        label = trace.incident or trace.degraded
        if label is None:
            continue
        response = trace.response
        if trace.incident == "error_burst":
            out.incident_spans.setdefault("error_burst", []).append(response.span_id)
        elif trace.incident == "infinite_loop":
            out.incident_spans.setdefault("infinite_loop", []).append(response.span_id)
            out.incident_spend["infinite_loop"] = out.incident_spend.get("infinite_loop", 0.0) + spend
        if trace.degraded and response is not None and response.status == "ok":
            out.incident_spans.setdefault(trace.degraded, []).append(response.span_id)
            if trace.degraded == "bad_prompt_version":
                retrieved = set(trace.retrieved_ids)
                out.degraded_citations_invalid += sum(1 for c in trace.citations if c not in retrieved)
    for kind in ("error_burst", "bad_prompt_version", "model_change", "infinite_loop"):
        out.incident_llm[kind] = sum(
            1 for t in built.traces for s in t.spans
            if s.kind == "llm" and any(i.kind == kind and i.start <= datetime.fromtimestamp(s.start_ns // NS, UTC)
                                       < i.end and _feature_matches(i, t) for i in incidents))
    out.spend_by_user = {u: round(v, 8) for u, v in sorted(spend_by_user.items())}
    out.spend_usd = round(out.spend_usd, 8)
    return out


def _feature_matches(spec: IncidentSpec, trace: Trace) -> bool:
    feature = spec.param("feature")
    return spec.kind == "error_burst" or feature is None or feature == trace.feature


def _write_feedback(feedback_root: Path, events: list[dict[str, Any]]) -> list[Path]:
    by_hour: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_hour[event["timestamp"][:13]].append(event)
    written = []
    for key in sorted(by_hour):
        hour = datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        folder = hour_folder(feedback_root, hour)
        folder.mkdir(parents=True, exist_ok=True)
        rows = sorted(by_hour[key], key=lambda e: (e["timestamp"], e["event_id"]))
        path = folder / FEEDBACK_FILE
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in rows))
        written.append(path)
    return written


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ground_truth(start: datetime, end: datetime, seed: int, scale: float, formats: tuple[str, ...],
                  incidents: list[IncidentSpec], outputs: list[_HourOutput], feedback: list[dict[str, Any]],
                  bad: list[dict[str, Any]]) -> dict[str, Any]:
    """The ground-truth document: incident windows, what detectors should find, and the clean baseline."""
    incident_hours = {o.hour for o in outputs for i in incidents if i.active(o.hour)}
    incident_days = {h.date() for h in incident_hours}
    clean = [o for o in outputs if o.hour.date() not in incident_days]
    same_hour_baseline: dict[int, list[float]] = defaultdict(list)
    user_day: dict[tuple[str, Any], float] = defaultdict(float)
    for o in outputs:
        for user, spend in o.spend_by_user.items():
            user_day[(user, o.hour.date())] += spend
    for o in clean:
        same_hour_baseline[o.hour.hour].append(o.spend_usd)
    clean_user_max = max((v for (u, d), v in user_day.items() if d not in incident_days), default=0.0)
    baseline = {
        "days": sorted({o.hour.date().isoformat() for o in clean}),
        "max_hourly_spend_usd": round(max((o.spend_usd for o in clean), default=0.0), 6),
        "mean_hourly_spend_usd": round(sum(o.spend_usd for o in clean) / len(clean), 6) if clean else 0.0,
        "max_hourly_error_rate": round(max((o.llm_errors / o.llm_spans for o in clean if o.llm_spans),
                                           default=0.0), 4),
        "error_rate": round(sum(o.llm_errors for o in clean) / max(sum(o.llm_spans for o in clean), 1), 4),
        "max_user_daily_spend_usd": round(clean_user_max, 6),
    }
    by_event_span: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in feedback:
        by_event_span[event["span_id"]].append(event)
    records = []
    for spec in incidents:
        hours = [o for o in outputs if spec.active(o.hour)]
        record: dict[str, Any] = {
            "kind": spec.kind,
            "start": _iso(spec.start),
            "end": _iso(spec.end),
            "description": INCIDENT_DESCRIPTIONS[spec.kind],
            "params": {k: spec.param(k) for k in sorted(set(spec.params) | set(INCIDENT_DEFAULTS[spec.kind]))},
        }
        spans = sorted(s for o in hours for s in o.incident_spans.get(spec.kind, []))
        if spec.kind == "infinite_loop":
            user = spec.param("user_id")
            days = sorted({o.hour.date() for o in hours})
            hourly = []
            for o in hours:
                same = same_hour_baseline.get(o.hour.hour, [])
                base = max(same) if same else None
                hourly.append({"hour": _iso(o.hour), "loop_calls": len(o.incident_spans.get(spec.kind, [])),
                               "loop_spend_usd": round(o.incident_spend.get(spec.kind, 0.0), 6),
                               "hour_spend_usd": round(o.spend_usd, 6),
                               "baseline_same_hour_max_usd": round(base, 6) if base is not None else None,
                               "ratio_to_baseline": round(o.spend_usd / base, 2) if base else None})
            record["stats"] = {
                "user_id": user,
                "calls": len(spans),
                "spend_usd": round(sum(o.incident_spend.get(spec.kind, 0.0) for o in hours), 6),
                "user_daily_spend_usd": {d.isoformat(): round(user_day[(user, d)], 6) for d in days},
                "hours": hourly,
            }
            record["expected_detections"] = [
                f"budget_breach: user {user} above the 5 USD/day user budget on {', '.join(d.isoformat() for d in days)}",
                "cost_anomalies: hourly spend at least 3x the same-hour baseline in every loop hour",
            ]
        elif spec.kind == "error_burst":
            llm = sum(o.incident_llm.get(spec.kind, 0) for o in hours)
            record["stats"] = {"llm_spans": llm, "error_spans": len(spans),
                               "error_rate": round(len(spans) / llm, 4) if llm else None}
            record["expected_detections"] = ["error rate above 5% (critical) in the burst window"]
        else:
            feature = spec.param("feature")
            record["stats"] = {"feature": feature, "responses": len(spans),
                               "llm_spans_in_window": sum(o.incident_llm.get(spec.kind, 0) for o in hours)}
            if spec.kind == "bad_prompt_version":
                record["stats"]["prompt_version_before"] = FEATURES[feature].prompt_version
                record["stats"]["invalid_citations"] = sum(o.degraded_citations_invalid for o in hours)
                record["expected_detections"] = [
                    f"citation_checks: answers of {feature} prompt {FEATURES[feature].prompt_name} "
                    f"v{spec.param('prompt_version')} cite document ids that were not retrieved",
                    "prompt_version_scorecard: the new version scores below the previous one"]
            else:
                before = [m for m, _ in FEATURES[feature].models]
                record["stats"]["models_before"] = before
                record["stats"]["model_after"] = MODELS[spec.param("model")].name
                record["expected_detections"] = [
                    f"quality drop for feature {feature} after the model change (grounding, confidence, hedging)"]
        record["span_ids"] = spans
        if spec.kind in ("bad_prompt_version", "model_change"):
            wave = [e for s in spans for e in by_event_span.get(s, []) if e["event_type"] in NEGATIVE_TYPES]
            record["feedback_wave"] = {
                "negative_events": len(wave),
                "by_type": dict(sorted(Counter(e["event_type"] for e in wave).items())),
                "first": min((e["timestamp"] for e in wave), default=None),
                "last": max((e["timestamp"] for e in wave), default=None),
            }
        records.append(record)
    return {
        "generator": "aiobs generate",
        "seed": seed,
        "scale": scale,
        "window": {"start": _iso(start), "end": _iso(end)},
        "formats": list(formats),
        "incident_days": sorted(d.isoformat() for d in incident_days),
        "baseline": baseline,
        "incidents": records,
        "totals": {
            "spans": sum(sum(o.spans_by_format.values()) for o in outputs),
            "traces": sum(sum(o.traces_by_format.values()) for o in outputs),
            "llm_spans": sum(o.llm_spans for o in outputs),
            "llm_errors": sum(o.llm_errors for o in outputs),
            # Calls made with stream=true; those that succeeded carry a time to first token in every format.
            "streamed_llm_spans": sum(o.streamed_llm for o in outputs),
            "spend_usd": round(sum(o.spend_usd for o in outputs), 6),
            "late_spans": sum(o.late_spans for o in outputs),
            "feedback_events": len(feedback),
        },
        "bad_records": bad,
    }


def generate(
    landing_root: Path,
    start: datetime,
    end: datetime,
    seed: int = 7,
    scale: float = 1.0,
    incidents: Sequence[IncidentSpec] | None = None,
    formats: Sequence[str] = FORMATS,
    feedback_root: Path | None = None,
    inject_bad_records: bool = False,
    workers: int = 1,
) -> GenerationSummary:
    """Write hourly landing files for [start, end) with injected incidents; return what was written.

    `incidents=None` places the default demo incidents on the last day of the window; pass [] for none.
    `workers > 1` generates hours in parallel processes (same bytes as a sequential run).
    """
    began = time.perf_counter()
    start_h = _utc_hour(start, "start")
    end_h = _utc_hour(end, "end")
    if _as_utc(end) > end_h:
        end_h += HOUR  # a partial last hour is generated whole
    if end_h <= start_h:
        raise ValueError(f"end {end.isoformat()} must be at least one hour after start {start.isoformat()}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown or no formats {unknown or list(formats)}; known formats: {', '.join(FORMATS)}")
    chosen = tuple(f for f in FORMATS if f in formats)
    specs = list(default_incidents(start_h, end_h) if incidents is None else incidents)
    landing_root = Path(landing_root)
    landing_root.mkdir(parents=True, exist_ok=True)
    hours = []
    h = start_h
    while h < end_h:
        hours.append(h)
        h += HOUR
    tasks = [(landing_root, seed, hour, scale, specs, chosen, inject_bad_records, feedback_root is not None)
             for hour in hours]
    if workers > 1 and len(hours) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, os.cpu_count() or 1)) as pool:
            outputs = list(pool.map(_generate_hour, tasks, chunksize=max(1, len(tasks) // (workers * 4))))
    else:
        outputs = [_generate_hour(task) for task in tasks]
    files = [Path(p) for o in outputs for p in o.files]
    feedback = [e for o in outputs for e in o.feedback]
    if feedback_root is not None:
        files += _write_feedback(Path(feedback_root), feedback)
    bad = [b for o in outputs for b in o.bad_records]
    truth = _ground_truth(start_h, end_h, seed, scale, chosen, specs, outputs, feedback, bad)
    truth_path = landing_root / GROUND_TRUTH_FILE
    truth_path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
    spans: Counter[str] = Counter()
    traces: Counter[str] = Counter()
    for o in outputs:
        spans.update(o.spans_by_format)
        traces.update(o.traces_by_format)
    return GenerationSummary(
        landing_root=landing_root,
        feedback_root=Path(feedback_root) if feedback_root is not None else None,
        start=start_h,
        end=end_h,
        seed=seed,
        scale=scale,
        files_written=files,
        spans_by_format={f: spans[f] for f in chosen},
        traces_by_format={f: traces[f] for f in chosen},
        feedback_events=len(feedback),
        late_spans=sum(o.late_spans for o in outputs),
        incidents=truth["incidents"],
        bad_records=bad,
        ground_truth_path=truth_path,
        elapsed_seconds=round(time.perf_counter() - began, 3),
    )
