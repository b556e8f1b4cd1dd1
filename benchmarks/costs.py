"""Speed of pricing and hourly aggregation: price_spans + hourly_costs vs a plain DuckDB GROUP BY.

Run: python -m benchmarks.costs [--spans 1000000] [--seed 7]

Builds N canonical spans in memory (vectorised), as traces of 8 spans: a chain root with an embedding call,
a vector search and a rerank call (both per-call priced), an llm span wrapping an instrumented llm call (a
rollup parent and its billable child), a tool call and a second llm call. Models mix flat, tiered
(claude-sonnet-4-5, gemini-1.5-pro), time-of-day (deepseek-chat) and dated (o3) genai-prices entries, an
Azure deployment name mapped by model_aliases, a pricing override and an unknown model. Prompts vary from
hundreds to 300k tokens so tiers are crossed; a few spans start in earlier hours.

The baseline is DuckDB over the same DataFrame: a join to a flat per-model price table and one GROUP BY at
the hourly_costs grain. It does less (no tiers, dated prices, rollups or per-call prices), so it is the
floor to compare against, not an equivalent. Target: 1M spans priced and aggregated in < 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import duckdb
import numpy as np
import pandas as pd

from aiobs_pipeline.costs.aggregate import hourly_costs
from aiobs_pipeline.costs.pricing import price_spans
from aiobs_pipeline.costs.settings import CostSettings
from aiobs_pipeline.schema import SPAN_COLUMNS, conform

HOUR = pd.Timestamp("2025-06-02T14:00:00Z")
SPANS_PER_TRACE = 8
# (provider, request model, response model, flat input / output USD per MTok for the DuckDB baseline)
MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 0.15, 0.6),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06", 2.5, 10.0),
    ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022", 3.0, 15.0),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5", 3.0, 15.0),
    ("google", "gemini-1.5-pro", "gemini-1.5-pro", 1.25, 5.0),
    ("deepseek", "deepseek-chat", "deepseek-chat", 0.27, 1.1),
    ("openai", "o3", "o3-2025-04-16", 2.0, 8.0),
    ("azure", "prod-chat-eu", None, 2.5, 10.0),
    ("acme", "acme-llm-v2", None, 1.0, 1.0),
    ("openai", "ft:gpt-4o-mini:acme:support", None, 0.3, 1.2),
)
SETTINGS = CostSettings(
    model_aliases={"prod-chat-eu": "gpt-4o"},
    pricing_overrides=[{"model": "ft:gpt-4o-mini:acme:support", "provider": "openai",
                        "input_usd_per_mtok": 0.3, "cached_input_usd_per_mtok": 0.15, "output_usd_per_mtok": 1.2}],
    per_call_prices=[{"name": "vector_search", "usd_per_call": 0.0004}, {"kind": "rerank", "usd_per_call": 0.002}],
)
FEATURES = np.array(["chat", "search", "summarise", "support_bot", "code_assist", "email_draft", None], dtype=object)
ENDPOINTS = np.array(["/v1/chat", "/v1/search", "/v1/summarise", "/v1/support", "/v1/code", "/v1/email"],
                     dtype=object)


def synthetic_spans(n: int, seed: int = 7, hour: pd.Timestamp = HOUR) -> pd.DataFrame:
    """n canonical spans (rounded up to whole traces) for one export hour, built without Python loops."""
    rng = np.random.default_rng(seed)
    traces = -(-n // SPANS_PER_TRACE)
    n = traces * SPANS_PER_TRACE
    trace_no = np.repeat(np.arange(traces), SPANS_PER_TRACE)
    position = np.tile(np.arange(SPANS_PER_TRACE), traces)
    trace_ids = np.char.add("t", np.arange(traces).astype(str)).astype(object)
    trace_id = trace_ids[trace_no]
    span_id = np.char.add(np.char.add(trace_id.astype(str), "-"), position.astype(str)).astype(object)
    root_id = np.char.add(trace_ids.astype(str), "-0").astype(object)[trace_no]
    child_parent = np.char.add(trace_ids.astype(str), "-4").astype(object)[trace_no]
    parent = np.where(position == 0, None, np.where(position == 5, child_parent, root_id))

    names = np.array(["rag_pipeline", "embed_query", "vector_search", "rerank", "llm", "openai.chat",
                      "lookup_order", "llm_followup"], dtype=object)
    kinds = np.array(["chain", "embedding", "retrieval", "rerank", "llm", "llm", "tool", "llm"], dtype=object)

    trace_start = hour + pd.to_timedelta(rng.integers(0, 3_500_000, traces), unit="ms")
    late = rng.random(traces) < 0.01  # a few traces started in the previous hours and arrived late
    trace_start = trace_start - pd.to_timedelta(np.where(late, rng.integers(1, 6, traces), 0), unit="h")
    offset_ms = position * 300 + rng.integers(0, 200, n)
    start = pd.DatetimeIndex(trace_start)[trace_no] + pd.to_timedelta(offset_ms, unit="ms")
    latency = rng.gamma(2.0, 150.0, n) + np.where(np.isin(position, (4, 5, 7)), 900.0, 0.0)

    model_no = rng.integers(0, len(MODELS), traces)[trace_no]
    model_no = np.where(position == 7, (model_no + 1) % len(MODELS), model_no)
    is_llm = np.isin(position, (4, 5, 7))
    is_embedding = position == 1
    provider = np.array([m[0] for m in MODELS], dtype=object)[model_no]
    request_model = np.array([m[1] for m in MODELS], dtype=object)[model_no]
    response_model = np.array([m[2] for m in MODELS], dtype=object)[model_no]
    provider = np.where(is_embedding, "openai", np.where(is_llm, provider, None))
    request_model = np.where(is_embedding, "text-embedding-3-small", np.where(is_llm, request_model, None))
    response_model = np.where(is_llm, response_model, None)

    prompt = np.exp(rng.normal(7.5, 1.2, n)).astype(np.int64)  # median ~1.8k, tail past 300k
    prompt = np.where(rng.random(n) < 0.003, rng.integers(200_000, 400_000, n), prompt)
    output = np.where(is_llm, rng.integers(20, 1500, n), 0)
    cached = np.where(rng.random(n) < 0.3, (prompt * rng.random(n) * 0.8).astype(np.int64), 0)
    reasoning = np.where(np.isin(model_no, (6,)) & is_llm, (output * 0.5).astype(np.int64), 0)
    has_tokens = is_llm | is_embedding
    status = np.where(rng.random(n) < 0.02, "error", "ok").astype(object)
    users = np.char.add("user-", rng.integers(0, 5000, traces).astype(str)).astype(object)[trace_no]

    def tokens(values: np.ndarray) -> pd.Series:
        return pd.Series(pd.array(np.where(has_tokens, values, 0), dtype="Int64")).where(has_tokens)

    frame = pd.DataFrame({
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent,
        "name": names[position], "kind": kinds[position],
        "start_time": start, "end_time": start + pd.to_timedelta(latency, unit="ms"), "latency_ms": latency,
        "status": status, "provider": provider, "request_model": request_model,
        "response_model": response_model,
        "model": np.where(pd.isna(response_model), request_model, response_model),
        "input_tokens": tokens(prompt), "output_tokens": tokens(output),
        "total_tokens": tokens(prompt + output), "cached_input_tokens": tokens(cached),
        "reasoning_tokens": tokens(reasoning),
        "reported_cost_usd": np.where(is_llm & (rng.random(n) < 0.5), prompt * 2.5e-6 + output * 1e-5, np.nan),
        "user_id": np.where(rng.random(n) < 0.02, None, users),
        "feature": FEATURES[rng.integers(0, len(FEATURES), traces)][trace_no],
        "endpoint": ENDPOINTS[rng.integers(0, len(ENDPOINTS), traces)][trace_no],
        "prompt_version": np.char.add("v", rng.integers(1, 6, traces).astype(str)).astype(object)[trace_no],
        "environment": "production", "app": "helpdesk",
        "source_format": "native", "source_file": "bench.jsonl", "source_line": np.arange(1, n + 1),
        "export_hour": hour, "schema_version": 1,
    })
    return conform(frame, SPAN_COLUMNS)


DUCKDB_QUERY = """
SELECT date_trunc('hour', s.export_hour) AS hour,
       coalesce(s.user_id, '(none)') AS user_id, coalesce(s.feature, '(none)') AS feature,
       coalesce(s.endpoint, '(none)') AS endpoint, coalesce(s.model, '(none)') AS model,
       coalesce(s.prompt_version, '(none)') AS prompt_version,
       sum((s.input_tokens * p.input_rate + s.output_tokens * p.output_rate) / 1e6) AS cost_usd,
       sum(s.input_tokens) AS input_tokens, sum(s.output_tokens) AS output_tokens,
       sum(s.cached_input_tokens) AS cached_input_tokens, sum(s.reasoning_tokens) AS reasoning_tokens,
       count(*) AS calls, count(*) FILTER (WHERE s.status = 'error') AS errors,
       count(*) FILTER (WHERE p.model IS NULL) AS unpriced_calls
FROM spans s LEFT JOIN prices p ON p.model = s.request_model
WHERE s.kind IN ('llm', 'embedding')
GROUP BY ALL
"""


def run(n: int, seed: int) -> dict[str, float]:
    """Build the spans, time both paths and return the figures."""
    started = time.perf_counter()
    spans = synthetic_spans(n, seed)
    build_s = time.perf_counter() - started

    started = time.perf_counter()
    priced = price_spans(spans, SETTINGS)
    price_s = time.perf_counter() - started
    started = time.perf_counter()
    hourly = hourly_costs(priced)
    aggregate_s = time.perf_counter() - started

    prices = pd.DataFrame({"model": [m[1] for m in MODELS] + ["text-embedding-3-small"],
                           "input_rate": [m[3] for m in MODELS] + [0.02],
                           "output_rate": [m[4] for m in MODELS] + [0.0]})
    con = duckdb.connect()
    con.register("spans", spans)
    con.register("prices", prices)
    started = time.perf_counter()
    baseline = con.execute(DUCKDB_QUERY).df()
    duckdb_s = time.perf_counter() - started
    con.close()

    ours_s = price_s + aggregate_s
    rows = len(spans)
    print(f"spans: {rows:,} built in {build_s:.1f}s; billable calls {int(priced['billable'].sum()):,}; "
          f"hourly rows {len(hourly):,} (DuckDB {len(baseline):,})")
    print(f"price_spans:  {price_s:6.2f}s  {rows / price_s:12,.0f} rows/s")
    print(f"hourly_costs: {aggregate_s:6.2f}s  {rows / aggregate_s:12,.0f} rows/s")
    print(f"ours total:   {ours_s:6.2f}s  {rows / ours_s:12,.0f} rows/s")
    print(f"DuckDB:       {duckdb_s:6.2f}s  {rows / duckdb_s:12,.0f} rows/s")
    print(f"ratio (ours / DuckDB time): {ours_s / duckdb_s:.1f}x; target < 10 s for 1M spans: "
          f"{'met' if ours_s < 10 * rows / 1_000_000 else 'MISSED'}")
    print("cost status:", priced["cost_status"].value_counts().to_dict())
    return {"rows": rows, "price_s": price_s, "aggregate_s": aggregate_s, "duckdb_s": duckdb_s}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans to generate (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    run(args.spans, args.seed)


if __name__ == "__main__":
    main()
