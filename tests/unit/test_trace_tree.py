"""Trace tree: rendering, nesting, orphans, totals (root wall clock, billable cost only), JSON."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aiobs_pipeline.costs.pricing import price_spans
from aiobs_pipeline.costs.settings import CostSettings
from aiobs_pipeline.costs.trace_tree import build_tree, format_usd, render_tree, tree_to_dict
from aiobs_pipeline.schema import SPAN_COLUMNS, conform

T0 = pd.Timestamp("2025-03-01T10:00:00Z")
BASE = {"trace_id": "abc123", "status": "ok", "source_format": "native", "source_file": "f.jsonl",
        "source_line": 1, "export_hour": T0.floor("h"), "schema_version": 1}


def span(span_id: str, name: str, kind: str, start_ms: float, latency_ms: float, **extra: object) -> dict:
    return {**BASE, "span_id": span_id, "name": name, "kind": kind,
            "start_time": T0 + pd.Timedelta(milliseconds=start_ms),
            "end_time": T0 + pd.Timedelta(milliseconds=start_ms + latency_ms), "latency_ms": latency_ms, **extra}


def priced(*rows: dict, settings: CostSettings | None = None) -> pd.DataFrame:
    frame = conform(pd.DataFrame(list(rows)), SPAN_COLUMNS)
    return price_spans(frame, settings or CostSettings())


def with_costs(frame: pd.DataFrame, costs: dict[str, float]) -> pd.DataFrame:
    """Set exact costs (the example in the brief uses round numbers no real price list gives)."""
    frame = frame.copy()
    for span_id, cost in costs.items():
        frame.loc[frame["span_id"] == span_id, ["cost_usd", "billable", "cost_status"]] = [cost, True, "priced"]
    return frame


def test_flat_trace_renders_like_the_brief() -> None:
    frame = with_costs(priced(
        span("1", "embedding", "embedding", 0, 50),
        span("2", "vector_search", "retrieval", 50, 120),
        span("3", "reranking", "rerank", 170, 80),
        span("4", "llm_generation", "llm", 250, 2000),
    ), {"1": 0.0001, "2": 0.002, "3": 0.01, "4": 0.06})
    assert render_tree(build_tree(frame)) == "\n".join([
        "Trace: abc123",
        "├─ embedding [embedding] (50ms, $0.0001)",
        "├─ vector_search [retrieval] (120ms, $0.002)",
        "├─ reranking [rerank] (80ms, $0.01)",
        "└─ llm_generation [llm] (2000ms, $0.06)",
        "Total: 2250ms, $0.0721",
    ])


def test_deep_trace_nests_with_continuation_lines_and_totals_count_once() -> None:
    settings = CostSettings(per_call_prices=[{"name": "vector_search", "usd_per_call": 0.002}])
    gpt4o = {"provider": "openai", "response_model": "gpt-4o"}
    frame = priced(
        span("root", "rag_pipeline", "chain", 0, 3000),
        span("ret", "retrieve", "chain", 10, 200, parent_span_id="root"),
        span("vs", "vector_search", "retrieval", 20, 150, parent_span_id="ret"),
        span("gen", "generate", "llm", 300, 2600, parent_span_id="root", input_tokens=2000, output_tokens=200,
             **gpt4o),
        span("call", "openai.chat", "llm", 310, 2500, parent_span_id="gen", input_tokens=2000,
             output_tokens=200, **gpt4o),
        span("bad", "mystery_call", "llm", 2900, 20, parent_span_id="root", provider="openai",
             response_model="gpt-4-mystery", input_tokens=10, output_tokens=5, status="error",
             error_message="upstream 502"),
        settings=settings,
    )
    tree = build_tree(frame)
    call_cost = (2000 * 2.5 + 200 * 10) / 1e6
    assert render_tree(tree) == "\n".join([
        "Trace: abc123",
        f"└─ rag_pipeline [chain] (3000ms, Σ {format_usd(0.002 + call_cost)})",
        "   ├─ retrieve [chain] (200ms, Σ $0.002)",
        "   │  └─ vector_search [retrieval] (150ms, $0.002)",
        f"   ├─ generate [llm] (2600ms, rollup, Σ {format_usd(call_cost)})",
        f"   │  └─ openai.chat [llm] (2500ms, {format_usd(call_cost)})",
        "   └─ mystery_call [llm] (20ms, unpriced) ERROR: upstream 502",
        f"Total: 3000ms, {format_usd(0.002 + call_cost)} (+1 unpriced call)",
    ])
    assert tree.total_latency_ms == 3000  # the root's wall clock, not the sum of its children
    assert tree.total_cost_usd == pytest.approx(0.002 + call_cost)  # the rollup parent is not counted


def test_orphans_and_cycles_hang_at_the_top_level() -> None:
    frame = priced(
        span("root", "handler", "chain", 0, 100),
        span("late", "tool_call", "tool", 50, 10, parent_span_id="from-another-hour"),
        span("a", "loop_a", "chain", 60, 5, parent_span_id="b"),
        span("b", "loop_b", "chain", 61, 5, parent_span_id="a"),
    )
    text = render_tree(build_tree(frame))
    assert "├─ tool_call [tool] (10ms) ⚠ orphan (parent from-another-hour missing)" in text
    assert "└─ loop_a [chain] (5ms) ⚠ orphan (parent cycle)\n   └─ loop_b [chain] (5ms)" in text
    assert text.endswith("Total: 100ms, $0")  # first start to last end: several top-level spans


def test_unknown_latency_and_tiny_costs_are_formatted() -> None:
    frame = with_costs(priced({**span("1", "embed", "embedding", 0, 0), "latency_ms": None, "end_time": None}),
                       {"1": 0.0000153})
    assert render_tree(build_tree(frame)).splitlines()[1] == "└─ embed [embedding] (?ms, $0.000015)"
    assert [format_usd(v) for v in (0, 0.06, 0.0721, 1234.5, 0.00001234)] == [
        "$0", "$0.06", "$0.0721", "$1234.5", "$0.000012"]


def test_tree_to_dict_is_json_and_mirrors_the_tree() -> None:
    frame = with_costs(priced(span("p", "parent", "chain", 0, 100), span("c", "child", "llm", 5, 90,
                                                                            parent_span_id="p")), {"c": 0.5})
    data = json.loads(json.dumps(tree_to_dict(build_tree(frame))))
    assert (data["trace_id"], data["total_latency_ms"], data["total_cost_usd"]) == ("abc123", 100.0, 0.5)
    child = data["children"][0]["children"][0]
    assert child["span_id"] == "c" and child["cost_usd"] == 0.5 and child["billable"] is True
    assert child["start_time"] == "2025-03-01T10:00:00.005000+00:00" and child["children"] == []


def test_build_tree_needs_exactly_one_trace() -> None:
    frame = priced(span("1", "a", "chain", 0, 1), {**span("2", "b", "chain", 0, 1), "trace_id": "other"})
    with pytest.raises(ValueError, match="exactly one trace"):
        build_tree(frame)
