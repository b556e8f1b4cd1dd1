"""Pricing: genai-prices equality, exact model resolution, overrides, per-call prices, rollups, mismatches."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from genai_prices import Usage, calc_price
from pydantic import ValidationError

from aiobs_pipeline.costs.pricing import PRICED_COLUMNS, genai_prices_version, price_spans, pricing_summary
from aiobs_pipeline.costs.settings import CostSettings
from aiobs_pipeline.schema import SPAN_COLUMNS, conform

HOUR = pd.Timestamp("2025-03-01T10:00:00Z")
BASE = {
    "trace_id": "t1", "kind": "llm", "start_time": HOUR + pd.Timedelta(minutes=5), "status": "ok",
    "source_format": "native", "source_file": "f.jsonl", "source_line": 1, "export_hour": HOUR,
    "schema_version": 1,
}


def spans(*rows: dict) -> pd.DataFrame:
    """Canonical spans from partial rows (span ids default to s0, s1, ...)."""
    full = [{**BASE, "span_id": f"s{i}", "name": "chat", **row} for i, row in enumerate(rows)]
    return conform(pd.DataFrame(full), SPAN_COLUMNS)


def priced_one(settings: CostSettings | None = None, **row: object) -> pd.Series:
    return price_spans(spans(row), settings or CostSettings()).iloc[0]


# ---------------------------------------------------------------- equality with genai-prices, row by row

SAMPLE_MODELS = (
    ("openai", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o3"),  # dated price cut on 2025-06-10
    ("openai", "text-embedding-3-small"),
    ("anthropic", "claude-3-5-sonnet-20241022"),  # cache reads and writes
    ("anthropic", "claude-sonnet-4-5"),  # tiered above 200k input tokens
    ("google", "gemini-1.5-pro"),  # tiered above 128k input tokens
    ("deepseek", "deepseek-chat"),  # time-of-day prices
    ("perplexity", "sonar"),  # per-request price
    ("perplexity", "sonar-deep-research"),  # own reasoning-token rate
    ("azure", "gpt-4o"),
)


def sample_spans(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    model = rng.integers(0, len(SAMPLE_MODELS), n)
    prompt = np.exp(rng.normal(8.5, 2.0, n)).astype(np.int64) + 1
    prompt = np.where(rng.random(n) < 0.25, rng.integers(100_000, 400_000, n), prompt)
    output = rng.integers(0, 4000, n)
    cached = np.where(rng.random(n) < 0.5, (prompt * rng.random(n) * 0.6).astype(np.int64), 0)
    write = np.where(rng.random(n) < 0.3, ((prompt - cached) * rng.random(n) * 0.5).astype(np.int64), 0)
    reasoning = np.where(rng.random(n) < 0.4, (output * rng.random(n)).astype(np.int64), 0)
    start = pd.Timestamp("2025-01-01T00:00:00Z") + pd.to_timedelta(rng.integers(0, 365 * 86_400, n), unit="s")
    rows = [{
        "span_id": f"s{i}", "provider": SAMPLE_MODELS[m][0], "response_model": SAMPLE_MODELS[m][1],
        "kind": "embedding" if SAMPLE_MODELS[m][1].startswith("text-embedding") else "llm",
        "start_time": start[i], "input_tokens": int(prompt[i]), "output_tokens": int(output[i]),
        "cached_input_tokens": int(cached[i]), "cache_write_tokens": int(write[i]),
        "reasoning_tokens": int(reasoning[i]),
    } for i, m in enumerate(model)]
    return spans(*rows)


def test_vectorised_prices_equal_calc_price_row_by_row() -> None:
    frame = sample_spans()
    priced = price_spans(frame, CostSettings())
    assert (priced["cost_status"] == "priced").all()
    assert (priced["price_source"] == "genai-prices").all()
    tiered = 0
    for _, row in priced.iterrows():
        usage = Usage(input_tokens=int(row.input_tokens), output_tokens=int(row.output_tokens),
                      cache_read_tokens=int(row.cached_input_tokens), cache_write_tokens=int(row.cache_write_tokens),
                      output_reasoning_tokens=int(row.reasoning_tokens))
        expected = calc_price(usage, row.response_model, provider_id=row.provider,
                              genai_request_timestamp=row.start_time.to_pydatetime())
        assert row.cost_usd == pytest.approx(float(expected.total_price), rel=1e-9, abs=1e-15), row.span_id
        assert row.input_cost_usd == pytest.approx(float(expected.input_price), rel=1e-9, abs=1e-15)
        assert row.output_cost_usd == pytest.approx(float(expected.output_price), rel=1e-9, abs=1e-15)
        assert row.priced_model == expected.model.id
        tiered += row.input_tokens > 200_000
    assert tiered > 20  # the sample really crosses tier thresholds


def test_tier_threshold_uses_each_requests_input_tokens() -> None:
    below = priced_one(provider="anthropic", response_model="claude-sonnet-4-5", input_tokens=200_000,
                       output_tokens=1000)
    above = priced_one(provider="anthropic", response_model="claude-sonnet-4-5", input_tokens=200_001,
                       output_tokens=1000)
    assert below.input_cost_usd == pytest.approx(200_000 * 3 / 1e6)
    assert above.input_cost_usd == pytest.approx(200_001 * 6 / 1e6)  # the whole request at the tier rate
    assert above.output_cost_usd == pytest.approx(1000 * 22.5 / 1e6)


def test_dated_and_time_of_day_prices_follow_the_start_time() -> None:
    before = priced_one(provider="openai", response_model="o3", input_tokens=1_000_000, output_tokens=0,
                        start_time=pd.Timestamp("2025-06-09T23:59:59Z"))
    after = priced_one(provider="openai", response_model="o3", input_tokens=1_000_000, output_tokens=0,
                       start_time=pd.Timestamp("2025-06-10T00:00:00Z"))
    assert (before.cost_usd, after.cost_usd) == (pytest.approx(10.0), pytest.approx(2.0))
    peak = priced_one(provider="deepseek", response_model="deepseek-chat", input_tokens=1_000_000,
                      output_tokens=0, start_time=pd.Timestamp("2025-03-01T12:00:00Z"))
    off_peak = priced_one(provider="deepseek", response_model="deepseek-chat", input_tokens=1_000_000,
                          output_tokens=0, start_time=pd.Timestamp("2025-03-01T20:00:00Z"))
    assert (peak.cost_usd, off_peak.cost_usd) == (pytest.approx(0.27), pytest.approx(0.135))


def test_cached_tokens_are_part_of_input_and_get_their_own_rate() -> None:
    row = priced_one(provider="openai", response_model="gpt-4o", input_tokens=1000, cached_input_tokens=200,
                     output_tokens=500, reasoning_tokens=100)
    assert row.input_cost_usd == pytest.approx((800 * 2.5 + 200 * 1.25) / 1e6)
    assert row.output_cost_usd == pytest.approx(500 * 10 / 1e6)  # reasoning at the output rate
    assert row.cost_usd == pytest.approx(row.input_cost_usd + row.output_cost_usd)


# ---------------------------------------------------------------- exact model resolution, never guessed

@pytest.mark.parametrize("model", ["gpt-4-mystery", "gpt-4o-turbo-deluxe", "made-up-model", "gpt4"])
def test_unknown_models_are_flagged_not_priced_as_a_neighbour(model: str) -> None:
    row = priced_one(provider="openai", response_model=model, input_tokens=1000, output_tokens=100,
                     reported_cost_usd=0.1)
    assert row.cost_status == "unpriced_model"
    assert pd.isna(row.cost_usd) and row.price_source is None and row.billable
    assert not row.cost_mismatch and pd.isna(row.reported_cost_diff)


def test_real_gpt4_is_still_priced() -> None:
    row = priced_one(provider="openai", response_model="gpt-4", input_tokens=1000, output_tokens=100)
    assert row.priced_model == "gpt-4" and row.cost_usd == pytest.approx((1000 * 30 + 100 * 60) / 1e6)


@pytest.mark.parametrize(("provider", "model"), [
    ("openai", "gpt-4o-2024-08-06"),  # dated snapshot
    ("openai", "GPT-4o"),
    (None, "openai/gpt-4o"),  # provider-qualified, no provider
    ("azure", "openai/gpt-4o"),
    ("my-gateway", "gpt-4o"),  # a provider genai-prices does not list: inferred from the model
    (None, "gpt-4o"),
])
def test_odd_spellings_resolve_to_the_right_model(provider: str | None, model: str) -> None:
    row = priced_one(provider=provider, response_model=model, input_tokens=1_000_000, output_tokens=0)
    assert row.cost_status == "priced" and row.priced_model == "gpt-4o"
    assert row.cost_usd == pytest.approx(2.5)


def test_unknown_provider_with_unknown_model_is_flagged() -> None:
    row = priced_one(provider="my-gateway", response_model="house-model-7", input_tokens=10, output_tokens=10)
    assert row.cost_status == "unpriced_model"


def test_azure_deployment_name_is_priced_through_model_aliases() -> None:
    without = priced_one(provider="azure", request_model="prod-chat-eu", input_tokens=1_000_000, output_tokens=0)
    assert without.cost_status == "unpriced_model"
    settings = CostSettings(model_aliases={"Prod-Chat-EU": "azure/gpt-4o-mini"})
    row = priced_one(settings, provider="azure", request_model="prod-chat-eu", input_tokens=1_000_000,
                     output_tokens=0)
    assert (row.priced_provider, row.priced_model, row.cost_usd) == ("azure", "gpt-4o-mini", pytest.approx(0.15))


def test_response_model_wins_over_request_model() -> None:
    row = priced_one(provider="openai", request_model="gpt-4o", response_model="gpt-4o-mini-2024-07-18",
                     input_tokens=1_000_000, output_tokens=0)
    assert row.priced_model == "gpt-4o-mini"


def test_span_without_any_model_name() -> None:
    row = priced_one(provider="openai", response_model="  ", input_tokens=10, output_tokens=10)
    assert row.cost_status == "missing_model" and row.billable and pd.isna(row.cost_usd)


# ---------------------------------------------------------------- overrides and per-call prices

def test_override_wins_from_its_effective_date() -> None:
    settings = CostSettings(pricing_overrides=[{
        "model": "gpt-4o", "provider": "openai", "input_usd_per_mtok": 1.0, "cached_input_usd_per_mtok": 0.1,
        "output_usd_per_mtok": 4.0, "effective_from": "2025-03-01"}])
    frame = spans(
        {"provider": "openai", "response_model": "gpt-4o-2024-08-06", "input_tokens": 1_000_000,
         "cached_input_tokens": 500_000, "output_tokens": 1_000_000, "start_time": pd.Timestamp("2025-03-01T00:00Z")},
        {"provider": "openai", "response_model": "gpt-4o-2024-08-06", "input_tokens": 1_000_000,
         "cached_input_tokens": 500_000, "output_tokens": 1_000_000, "start_time": pd.Timestamp("2025-02-28T23:59Z")},
        {"provider": "azure", "response_model": "gpt-4o", "input_tokens": 1_000_000, "output_tokens": 0},
    )
    out = price_spans(frame, settings)
    assert out.loc[0, "price_source"] == "override"
    assert out.loc[0, "cost_usd"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.1 + 4.0)
    assert out.loc[1, "price_source"] == "genai-prices"  # before the override applies
    assert out.loc[1, "cost_usd"] == pytest.approx(0.5 * 2.5 + 0.5 * 1.25 + 10.0)
    assert out.loc[2, "price_source"] == "genai-prices"  # the override is for openai only


def test_override_prices_a_model_the_library_does_not_know() -> None:
    settings = CostSettings(pricing_overrides=[
        {"model": "acme-llm", "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0},
        {"model": "acme-llm", "input_usd_per_mtok": 0.5, "output_usd_per_mtok": 1.0,
         "effective_from": date(2025, 3, 1)},
    ])
    row = priced_one(settings, provider="acme", request_model="ACME-LLM", input_tokens=1_000_000,
                     output_tokens=1_000_000, cached_input_tokens=10)
    assert row.cost_usd == pytest.approx(1.5)  # the later entry; cached tokens at the input rate
    assert (row.price_source, row.priced_model) == ("override", "acme-llm")


def test_per_call_prices_by_name_and_kind() -> None:
    settings = CostSettings(per_call_prices=[
        {"name": "vector_search", "usd_per_call": 0.002},
        {"kind": "rerank", "usd_per_call": 0.01},
        {"kind": "retrieval", "usd_per_call": 0.001},
        {"name": "bm25", "usd_per_call": 0.5, "effective_from": "2030-01-01"},
    ])
    frame = spans({"name": "vector_search", "kind": "retrieval"}, {"name": "cohere_rerank", "kind": "rerank"},
                  {"name": "bm25", "kind": "retrieval"}, {"name": "lookup", "kind": "tool"})
    out = price_spans(frame, settings)
    assert out["cost_usd"].tolist()[:3] == [0.002, 0.01, 0.001]  # name wins; bm25's price not yet in force
    assert out["price_source"].tolist()[:3] == ["per_call"] * 3
    assert out["billable"].tolist() == [True, True, True, False]
    assert out.loc[3, "cost_status"] == "not_billable"


# ---------------------------------------------------------------- tokens

@pytest.mark.parametrize(("row", "status"), [
    ({"input_tokens": 100}, "missing_tokens"),  # llm without output tokens
    ({"output_tokens": 100}, "missing_tokens"),
    ({"input_tokens": -5, "output_tokens": 10}, "invalid_tokens"),
    ({"input_tokens": 100, "output_tokens": 10, "cached_input_tokens": 101}, "invalid_tokens"),
    ({"input_tokens": 100, "output_tokens": 10, "reasoning_tokens": 11}, "invalid_tokens"),
    ({"input_tokens": 100, "output_tokens": 10, "cached_input_tokens": 60, "cache_write_tokens": 50},
     "invalid_tokens"),
])
def test_missing_or_inconsistent_tokens_are_never_guessed(row: dict, status: str) -> None:
    out = priced_one(provider="anthropic", response_model="claude-3-5-sonnet-20241022", **row)
    assert out.cost_status == status and pd.isna(out.cost_usd) and out.billable


def test_embedding_without_output_tokens_is_priced() -> None:
    row = priced_one(kind="embedding", provider="openai", request_model="text-embedding-3-small",
                     input_tokens=1_000_000)
    assert row.cost_status == "priced" and row.cost_usd == pytest.approx(0.02)


# ---------------------------------------------------------------- count each cost once

def test_rollup_parents_are_not_billable() -> None:
    frame = spans(
        {"span_id": "root", "kind": "chain", "name": "agent", "input_tokens": 3000, "output_tokens": 300},
        {"span_id": "wrap", "parent_span_id": "root", "provider": "openai", "response_model": "gpt-4o",
         "input_tokens": 3000, "output_tokens": 300, "reported_cost_usd": 0.0105},
        {"span_id": "step", "parent_span_id": "wrap", "kind": "chain"},
        {"span_id": "call1", "parent_span_id": "step", "provider": "openai", "response_model": "gpt-4o",
         "input_tokens": 1000, "output_tokens": 100},
        {"span_id": "call2", "parent_span_id": "wrap", "provider": "openai", "response_model": "gpt-4o",
         "input_tokens": 2000, "output_tokens": 200},
        # Same span id in another trace: a leaf there, whatever happens in trace t1.
        {"trace_id": "t2", "span_id": "wrap", "provider": "openai", "response_model": "gpt-4o",
         "input_tokens": 10, "output_tokens": 1},
    )
    out = price_spans(frame, CostSettings()).set_index(["trace_id", "span_id"])
    assert out.loc[("t1", "wrap"), "cost_status"] == "rollup"
    assert out["billable"].to_dict() == {
        ("t1", "root"): False, ("t1", "wrap"): False, ("t1", "step"): False,
        ("t1", "call1"): True, ("t1", "call2"): True, ("t2", "wrap"): True}
    t1 = out.loc["t1"]
    assert t1.loc[t1["billable"], "cost_usd"].sum() == pytest.approx((3000 * 2.5 + 300 * 10) / 1e6)


def test_parent_cycles_and_missing_parents_do_not_hang_or_crash() -> None:
    frame = spans(
        {"span_id": "a", "parent_span_id": "b", "kind": "chain"},
        {"span_id": "b", "parent_span_id": "a", "kind": "chain"},
        {"span_id": "c", "parent_span_id": "a", "provider": "openai", "response_model": "gpt-4o",
         "input_tokens": 1, "output_tokens": 1},
        {"span_id": "d", "parent_span_id": "gone", "provider": "openai", "response_model": "gpt-4o",
         "input_tokens": 1, "output_tokens": 1},
        {"span_id": "e", "parent_span_id": "e", "provider": "openai", "response_model": "gpt-4o",
         "input_tokens": 1, "output_tokens": 1},
    )
    out = price_spans(frame, CostSettings())
    assert out["billable"].tolist() == [False, False, True, True, True]


# ---------------------------------------------------------------- reported cost, output shape, summary

def test_reported_cost_disagreement_is_flagged_over_tolerance() -> None:
    ours = (1000 * 2.5 + 100 * 10) / 1e6
    frame = spans(*[{"provider": "openai", "response_model": "gpt-4o", "input_tokens": 1000,
                     "output_tokens": 100, "reported_cost_usd": reported}
                    for reported in (ours, ours * 1.04, ours * 1.2, 0.0)])
    out = price_spans(frame, CostSettings())
    assert out["cost_mismatch"].tolist() == [False, False, True, True]
    assert out.loc[2, "reported_cost_diff"] == pytest.approx((ours - ours * 1.2) / (ours * 1.2))
    assert out.loc[3, "reported_cost_diff"] == pytest.approx(1.0)


def test_output_columns_dtypes_and_input_untouched() -> None:
    frame = sample_spans(20)
    before = frame.copy()
    out = price_spans(frame, CostSettings())
    pd.testing.assert_frame_equal(frame, before)
    assert list(out.columns) == list(frame.columns) + list(PRICED_COLUMNS)
    assert {c: str(out[c].dtype) for c in PRICED_COLUMNS} == PRICED_COLUMNS
    assert (out["genai_prices_version"] == genai_prices_version()).all()
    empty = price_spans(frame.iloc[0:0], CostSettings())
    assert list(empty.columns) == list(out.columns) and empty.empty


def test_pricing_summary_reports_unpriced_share() -> None:
    frame = spans(*([{"provider": "openai", "response_model": "gpt-4o", "input_tokens": 1, "output_tokens": 1}] * 18
                    + [{"provider": "openai", "response_model": "gpt-4-mystery", "input_tokens": 1,
                        "output_tokens": 1}] * 2))
    summary = pricing_summary(price_spans(frame, CostSettings()), CostSettings())
    assert summary["unpriced_share"] == pytest.approx(0.1) and summary["unpriced_share_warning"] is True
    assert summary["unpriced_models"] == [{"model": "gpt-4-mystery", "cost_status": "unpriced_model", "calls": 2}]
    assert summary["billable_calls"] == 20 and summary["priced_calls"] == 18


def test_library_price_data_is_the_bundled_snapshot() -> None:
    from genai_prices import data_snapshot

    assert data_snapshot.get_snapshot().from_auto_update is False
    assert isinstance(calc_price(Usage(input_tokens=1), "gpt-4o").total_price, Decimal)


# ---------------------------------------------------------------- settings validation

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"budget_timezone": "Mars/Olympus"}, "budget_timezone 'Mars/Olympus'"),
    ({"spike_warning_ratio": 4.0}, "spike_warning_ratio"),
    ({"per_call_prices": [{"name": "x", "kind": "tool", "usd_per_call": 1}]}, "exactly one of name or kind"),
    ({"per_call_prices": [{"kind": "vector", "usd_per_call": 1}]}, "per_call_prices[].kind 'vector'"),
    ({"pricing_overrides": [{"model": "m", "input_usd_per_mtok": -1}]}, "pricing_overrides[].input_usd_per_mtok"),
    ({"user_budget_overrides": {"u1": 0}}, "user_budget_overrides['u1']"),
    ({"model_aliases": {"A": "x", "a": "y"}}, "model_aliases has 'a' twice"),
    ({"unknown_setting": 1}, "unknown_setting"),
])
def test_settings_validation_names_the_setting(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        CostSettings(**kwargs)
    assert message in str(excinfo.value)


def test_user_budget_override() -> None:
    settings = CostSettings(user_budget_overrides={"vip": 50.0})
    assert (settings.user_budget("vip"), settings.user_budget("other")) == (50.0, 5.0)


def test_settings_load_from_toml_tables() -> None:
    import tomllib

    text = """
[costs]
model_aliases = { "Prod-Chat-EU" = "azure/gpt-4o" }
per_call_prices = [{ name = "vector_search", usd_per_call = 0.0004 }, { kind = "rerank", usd_per_call = 0.002 }]
budget_timezone = "Europe/Paris"

[[costs.pricing_overrides]]
model = "ft:gpt-4o-mini:acme:support"
provider = "openai"
input_usd_per_mtok = 0.30
output_usd_per_mtok = 1.20
effective_from = 2025-01-01
"""
    settings = CostSettings(**tomllib.loads(text)["costs"])
    assert settings.model_aliases == {"prod-chat-eu": "azure/gpt-4o"}
    assert settings.pricing_overrides[0].effective_from == date(2025, 1, 1)
    assert [p.kind for p in settings.per_call_prices] == [None, "rerank"]
