"""One trace as a tree of spans with latency and cost, for `aiobs trace show` (text) and `--json`.

    Trace: abc123
    ├─ embedding [embedding] (50ms, $0.0001)
    ├─ vector_search [retrieval] (120ms, $0.002)
    ├─ reranking [rerank] (80ms, $0.01)
    └─ llm_generation [llm] (2000ms, $0.06)
    Total: 2250ms, $0.0721

Cost per span: a billable span shows its own cost (or "unpriced"); a span that is not billable shows the sum
of the billable spans below it as "Σ $x" when there is any (a rollup parent is marked "rollup"), so the total
is never counted twice. Total latency is the root span's wall-clock time when the trace has exactly one root,
else first start to last end; total cost is the sum of billable spans only. Spans whose parent is missing
(or whose parents form a cycle) are attached at the top level and marked as orphans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aiobs_pipeline.costs.pricing import parent_rows


@dataclass
class TraceNode:
    """A span (or, at the top, the trace itself) with its children ordered by start time."""

    span_id: str | None
    name: str
    kind: str | None = None
    status: str | None = None
    start_time: pd.Timestamp | None = None
    end_time: pd.Timestamp | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    cost_status: str | None = None
    billable: bool = False
    model: str | None = None
    error_message: str | None = None
    orphan: str | None = None  # why the span hangs at the top level: "parent <id> missing" or "parent cycle"
    children: list[TraceNode] = field(default_factory=list)
    # Set on the trace node only.
    trace_id: str | None = None
    total_latency_ms: float | None = None
    total_cost_usd: float | None = None
    unpriced_calls: int = 0

    def subtree_cost(self) -> float:
        """Sum of the billable, priced spans at and below this node."""
        own = self.cost_usd if (self.billable and self.cost_usd is not None) else 0.0
        return own + sum(child.subtree_cost() for child in self.children)

    def walk(self) -> list[TraceNode]:
        """This node and all nodes below it, depth first."""
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


def _value(row: pd.Series, column: str) -> Any:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if value is pd.NA:
        return None
    return value


def _latency(row: pd.Series) -> float | None:
    latency = _value(row, "latency_ms")
    if latency is not None:
        return float(latency)
    start, end = _value(row, "start_time"), _value(row, "end_time")
    if start is not None and end is not None:
        return (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds() * 1000
    return None


def build_tree(spans: pd.DataFrame) -> TraceNode:
    """Build the tree of one trace from its priced spans (price_spans output; unpriced spans work too)."""
    trace_ids = spans["trace_id"].dropna().unique()
    if len(trace_ids) != 1:
        raise ValueError(f"build_tree needs the spans of exactly one trace, got trace ids {list(trace_ids)[:5]}")
    frame = spans.sort_values(["start_time", "name"], kind="stable").reset_index(drop=True)
    parents = parent_rows(frame["trace_id"], frame["span_id"], frame["parent_span_id"])

    nodes: list[TraceNode] = []
    for _, row in frame.iterrows():
        cost = _value(row, "cost_usd")
        nodes.append(TraceNode(
            span_id=_value(row, "span_id"), name=str(_value(row, "name") or "(unnamed)"),
            kind=_value(row, "kind"), status=_value(row, "status"), start_time=_value(row, "start_time"),
            end_time=_value(row, "end_time"), latency_ms=_latency(row),
            cost_usd=None if cost is None else float(cost), cost_status=_value(row, "cost_status"),
            billable=bool(_value(row, "billable") or False), model=_value(row, "model"),
            error_message=_value(row, "error_message"),
        ))

    root = TraceNode(span_id=None, name=str(trace_ids[0]), trace_id=str(trace_ids[0]))
    reachable = np.zeros(len(nodes), dtype=bool)
    children: dict[int, list[int]] = {}
    for index, parent in enumerate(parents):
        children.setdefault(int(parent), []).append(index)
    tops = list(children.get(-1, []))
    for index in tops:
        parent_id = _value(frame.iloc[index], "parent_span_id")
        if parent_id is not None and parent_id != nodes[index].span_id:
            nodes[index].orphan = f"parent {parent_id} missing"

    def attach(start: int) -> None:
        reachable[start] = True
        stack = [start]
        while stack:
            index = stack.pop()
            for child in children.get(index, []):
                if not reachable[child]:
                    reachable[child] = True
                    nodes[index].children.append(nodes[child])
                    stack.append(child)

    for index in tops:
        attach(index)
    # Spans whose parent chain loops never reach a root: hang each loop at the top rather than lose it.
    for index in range(len(nodes)):
        if not reachable[index]:
            nodes[index].orphan = "parent cycle"
            tops.append(index)
            attach(index)
    root.children = [nodes[i] for i in sorted(tops)]

    billable = [n for n in nodes if n.billable]
    root.total_cost_usd = sum(n.cost_usd for n in billable if n.cost_usd is not None)
    root.unpriced_calls = sum(1 for n in billable if n.cost_usd is None)
    true_roots = [nodes[i] for i in children.get(-1, []) if nodes[i].orphan is None]
    if len(true_roots) == 1 and not any(n.orphan for n in root.children) and true_roots[0].latency_ms is not None:
        root.total_latency_ms = true_roots[0].latency_ms
    else:
        root.total_latency_ms = _wall_clock(frame)
    return root


def _wall_clock(frame: pd.DataFrame) -> float | None:
    """First start to last end over all spans (end = start + latency where the end is missing)."""
    starts = frame["start_time"]
    ends = frame["end_time"].fillna(starts + pd.to_timedelta(frame["latency_ms"], unit="ms"))
    if starts.isna().all() or ends.isna().all():
        return None
    return (ends.max() - starts.min()).total_seconds() * 1000


def format_usd(value: float) -> str:
    """Dollars with 4 decimals, more for tiny amounts, trailing zeros dropped: $0.06, $0.0721, $0.000015."""
    if value == 0:
        return "$0"
    decimals = max(4, min(10, -math.floor(math.log10(abs(value))) + 1))
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return f"${text}"


def format_ms(value: float | None) -> str:
    """Milliseconds without decimals, or '?ms' when unknown."""
    return "?ms" if value is None else f"{value:.0f}ms"


def _cost_label(node: TraceNode) -> str | None:
    if node.billable:
        return "unpriced" if node.cost_usd is None else format_usd(node.cost_usd)
    below = node.subtree_cost()
    if node.cost_status == "rollup":
        return f"rollup, Σ {format_usd(below)}"
    return f"Σ {format_usd(below)}" if below > 0 else None


def _line(node: TraceNode) -> str:
    parts = [format_ms(node.latency_ms)]
    cost = _cost_label(node)
    if cost:
        parts.append(cost)
    text = f"{node.name} [{node.kind or '?'}] ({', '.join(parts)})"
    if node.status == "error":
        text += " ERROR" + (f": {node.error_message[:80]}" if node.error_message else "")
    if node.orphan:
        text += f" ⚠ orphan ({node.orphan})"
    return text


def render_tree(node: TraceNode) -> str:
    """The tree as text with box-drawing branches, one span per line, and a Total line."""
    lines = [f"Trace: {node.trace_id or node.name}"]

    def add(children: list[TraceNode], prefix: str) -> None:
        for position, child in enumerate(children):
            last = position == len(children) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_line(child)}")
            add(child.children, prefix + ("   " if last else "│  "))

    add(node.children, "")
    total = f"Total: {format_ms(node.total_latency_ms)}, {format_usd(node.total_cost_usd or 0.0)}"
    if node.unpriced_calls:
        total += f" (+{node.unpriced_calls} unpriced call{'s' if node.unpriced_calls > 1 else ''})"
    lines.append(total)
    return "\n".join(lines)


def _json_value(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def tree_to_dict(node: TraceNode) -> dict[str, Any]:
    """The tree as JSON-serialisable dicts (timestamps as ISO-8601 strings)."""
    out: dict[str, Any] = {}
    if node.span_id is None:
        out.update({"trace_id": node.trace_id, "total_latency_ms": node.total_latency_ms,
                    "total_cost_usd": node.total_cost_usd, "unpriced_calls": node.unpriced_calls})
    else:
        for key in ("span_id", "name", "kind", "status", "start_time", "end_time", "latency_ms", "cost_usd",
                    "cost_status", "billable", "model", "error_message", "orphan"):
            out[key] = _json_value(getattr(node, key))
    out["children"] = [tree_to_dict(child) for child in node.children]
    return out
