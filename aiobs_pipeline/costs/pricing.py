"""Price every span, counting each cost once: genai-prices for model calls, overrides, per-call prices.

Rules, first match wins for a span:

1. `per_call_prices`: a span whose name (else kind) has a price effective on its start day costs that price
   per call (`price_source = "per_call"`, billable).
2. Spans that are not model calls (kind not llm/embedding) cost nothing here (`not_billable`).
3. A model span with a model-span descendant in the same trace is a rollup: LangSmith, OpenInference and
   Langfuse parents often carry their children's tokens and cost, so pricing it too would count the call
   twice (`rollup`, not billable). Every other model span made the call and is billable.
4. The model is the response model, else the request model (else the canonical `model`), mapped through
   `model_aliases`. A `pricing_overrides` entry matching it (by name or by the genai-prices model id it
   resolves to, optionally one provider) and effective on the start day wins (`override`); otherwise
   genai-prices prices it with the span's provider and start time, so dated and time-of-day prices apply
   (`genai-prices`). Lookups are exact: a name the library cannot resolve is `unpriced_model`, never priced
   as a similar model. A provider-qualified name (`openai/gpt-4o`) is retried as provider + model when the
   qualifier is a provider genai-prices knows; a provider genai-prices does not know (a gateway name) lets
   the library infer the provider from the model name alone.
5. Token counts follow the canonical schema: input tokens include cached reads and cache writes, output
   tokens include reasoning tokens, exactly the convention of genai-prices' unit tree (input_tokens is the
   ancestor of cache_read_tokens / cache_write_tokens; output_tokens of output_reasoning_tokens). Cached
   reads, cache writes and reasoning get their own rate where the price has one, otherwise they are charged
   inside their parent at the parent's rate, as the library does. Missing counts are `missing_tokens`;
   negative counts, or parts larger than their total, are `invalid_tokens`; neither is guessed.

Pricing is vectorised: the library resolves each distinct (provider, model) once, its price periods
(`ConditionalPrice` start dates and times of day) are evaluated over the start-time column, and the per-token
rates, including tiered prices whose tier depends on each request's input tokens, are applied with numpy.
tests/unit/test_costs_pricing.py checks the result against `genai_prices.calc_price` called row by row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import genai_prices
import numpy as np
import pandas as pd
from genai_prices import data_snapshot
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from aiobs_pipeline.costs.settings import CostSettings, PerCallPrice, PriceOverride
from aiobs_pipeline.schema import SPAN_COLUMN_NAMES, SPAN_CONTENT_COLUMNS

# The span columns priced_spans carries (and loads from spans): all but the message content, which no cost or
# report reader looks at and which would otherwise be copied a second time (it stays in spans).
PRICED_SPAN_INPUT_COLUMNS: tuple[str, ...] = tuple(c for c in SPAN_COLUMN_NAMES if c not in SPAN_CONTENT_COLUMNS)

MODEL_KINDS = ("llm", "embedding")
NS_PER_DAY = 86_400 * 10**9

COST_STATUSES: dict[str, str] = {
    "priced": "cost computed (genai-prices, an override or a per-call price)",
    "unpriced_model": "neither pricing_overrides nor genai-prices know the model (or the library has no "
                      "token or request price for it)",
    "missing_model": "a model span with no request or response model name",
    "missing_tokens": "a model span without input tokens (or, for llm spans, output tokens)",
    "invalid_tokens": "negative token counts, or cached/reasoning tokens larger than their total",
    "rollup": "a model span whose descendants made the calls; its cost is counted on them",
    "not_billable": "not a model call and no per-call price configured",
}
PRICE_SOURCES = ("genai-prices", "override", "per_call")

# Columns price_spans adds to the spans frame, with their pandas dtypes and meanings.
PRICED_COLUMNS: dict[str, str] = {
    "cost_usd": "float64",
    "input_cost_usd": "float64",
    "output_cost_usd": "float64",
    "cost_status": "object",
    "price_source": "object",
    "priced_provider": "object",
    "priced_model": "object",
    "genai_prices_version": "object",
    "billable": "bool",
    "cost_mismatch": "bool",
    "reported_cost_diff": "float64",
}
PRICED_COLUMN_DESCRIPTIONS: dict[str, str] = {
    "cost_usd": "Our cost of the call in USD; null unless cost_status is priced.",
    "input_cost_usd": "Part of cost_usd for input tokens (cached reads and cache writes included).",
    "output_cost_usd": "Part of cost_usd for output tokens (reasoning included).",
    "cost_status": "One of " + ", ".join(COST_STATUSES) + ".",
    "price_source": "genai-prices, override or per_call; null when not priced.",
    "priced_provider": "Provider the price was taken for (genai-prices provider id, or the override's).",
    "priced_model": "Model the price was taken for (genai-prices model id, override model, or span name).",
    "genai_prices_version": "genai-prices version (and data snapshot) in use when the row was priced.",
    "billable": "True for the spans that made a call (leaf model spans, per-call priced spans); sums use "
                "only these, so rolled-up parents are not counted twice.",
    "cost_mismatch": "True when reported_cost_usd and cost_usd differ by more than reported_cost_tolerance.",
    "reported_cost_diff": "(cost_usd - reported_cost_usd) / max(cost_usd, reported_cost_usd); null when "
                          "either is missing.",
}


def genai_prices_version() -> str:
    """The genai-prices version, plus the data timestamp if someone replaced the bundled snapshot."""
    snapshot = data_snapshot.get_snapshot()
    version = str(genai_prices.__version__)
    if snapshot.from_auto_update:
        version += f"+data-{snapshot.timestamp:%Y%m%dT%H%M%S}"
    return version


@dataclass(frozen=True)
class Rates:
    """USD prices of one price period: tokens per million (flat or tiered on input tokens), requests per 1000."""

    input: Decimal | TieredPrices | float | None = None
    cache_read: Decimal | TieredPrices | float | None = None
    cache_write: Decimal | TieredPrices | float | None = None
    output: Decimal | TieredPrices | float | None = None
    reasoning: Decimal | TieredPrices | float | None = None
    requests: Decimal | TieredPrices | float | None = None

    @classmethod
    def from_model_price(cls, price: ModelPrice) -> Rates:
        """The rates of a genai-prices ModelPrice that apply to canonical token counts."""
        return cls(
            input=getattr(price, "input_mtok", None),
            cache_read=getattr(price, "cache_read_mtok", None),
            cache_write=getattr(price, "cache_write_mtok", None),
            output=getattr(price, "output_mtok", None),
            reasoning=getattr(price, "output_reasoning_mtok", None),
            requests=getattr(price, "requests_kcount", None),
        )

    @classmethod
    def from_override(cls, override: PriceOverride) -> Rates:
        """The rates of a pricing_overrides entry (reasoning tokens are charged as output)."""
        return cls(
            input=override.input_usd_per_mtok,
            cache_read=override.cached_input_usd_per_mtok,
            cache_write=override.cache_write_usd_per_mtok,
            output=override.output_usd_per_mtok,
        )

    @property
    def prices_calls(self) -> bool:
        """Whether these rates can price a token-counted call at all."""
        return self.input is not None or self.output is not None or self.requests is not None


def _rate(price: Decimal | TieredPrices | float | None, input_tokens: np.ndarray) -> np.ndarray | float:
    """Per-unit price for each row; a tier applies to all units once input tokens exceed its start."""
    if price is None:
        return 0.0
    if isinstance(price, TieredPrices):
        rate = np.full(len(input_tokens), float(price.base))
        for tier in price.tiers:  # ascending (TieredPrices sorts them): the highest tier passed wins
            rate = np.where(input_tokens > tier.start, float(tier.price), rate)
        return rate
    return float(price)


def apply_rates(
    rates: Rates, input_tokens: np.ndarray, cached: np.ndarray, cache_write: np.ndarray,
    output_tokens: np.ndarray, reasoning: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (input cost, output cost, total cost) in USD per row, genai-prices' leaf-unit arithmetic."""
    input_leaf = input_tokens.copy()
    if rates.cache_read is not None:
        input_leaf -= cached
    if rates.cache_write is not None:
        input_leaf -= cache_write
    output_leaf = output_tokens - reasoning if rates.reasoning is not None else output_tokens
    input_cost = (input_leaf * _rate(rates.input, input_tokens)
                  + cached * _rate(rates.cache_read, input_tokens)
                  + cache_write * _rate(rates.cache_write, input_tokens)) / 1_000_000
    output_cost = (output_leaf * _rate(rates.output, input_tokens)
                   + reasoning * _rate(rates.reasoning, input_tokens)) / 1_000_000
    total = input_cost + output_cost + np.asarray(_rate(rates.requests, input_tokens)) / 1_000
    return np.asarray(input_cost, dtype="float64"), np.asarray(output_cost, dtype="float64"), total


def _time_of_day_ns(value: time) -> int:
    """Nanoseconds after UTC midnight of a (possibly zoned) time of day, as genai-prices compares them."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    as_utc = datetime.combine(date(1970, 1, 1), value).astimezone(UTC)
    return ((as_utc.hour * 60 + as_utc.minute) * 60 + as_utc.second) * 10**9 + as_utc.microsecond * 1000


def _constraint_active(constraint: object, ts_ns: np.ndarray) -> np.ndarray:
    """Vectorised `constraint.active(timestamp)` over UTC nanosecond timestamps."""
    if constraint is None:
        return np.ones(len(ts_ns), dtype=bool)
    if isinstance(constraint, StartDateConstraint):
        start_ns = pd.Timestamp(constraint.start_date, tz="UTC").value
        return ts_ns >= start_ns
    if isinstance(constraint, TimeOfDateConstraint):
        tod = np.mod(ts_ns, NS_PER_DAY)
        start, end = _time_of_day_ns(constraint.start_time), _time_of_day_ns(constraint.end_time)
        if end < start:
            return (tod >= start) | (tod < end)
        return (tod >= start) & (tod < end)
    raise TypeError(f"genai-prices constraint {type(constraint).__name__} is not supported")


def library_periods(model: ModelInfo, ts_ns: np.ndarray) -> tuple[np.ndarray, list[ModelPrice]]:
    """Index of the price period in force at each timestamp, as `ModelInfo.get_prices` picks it."""
    if isinstance(model.prices, ModelPrice):
        return np.zeros(len(ts_ns), dtype=np.int64), [model.prices]
    chosen = np.full(len(ts_ns), -1, dtype=np.int64)
    # The last active conditional price wins; when none is active the first one applies.
    for index in range(len(model.prices) - 1, -1, -1):
        active = _constraint_active(model.prices[index].constraint, ts_ns)
        chosen = np.where((chosen < 0) & active, index, chosen)
    chosen[chosen < 0] = 0
    return chosen, [conditional.prices for conditional in model.prices]


@dataclass
class _Resolution:
    """How one distinct (provider, model name) is priced: dated overrides, then the library."""

    overrides: list[tuple[np.datetime64, Rates, PriceOverride]] = field(default_factory=list)
    provider: Provider | None = None
    model: ModelInfo | None = None


class _Resolver:
    """Resolves (provider, model name) pairs once per pricing run."""

    def __init__(self, settings: CostSettings) -> None:
        self.snapshot = data_snapshot.get_snapshot()
        self.aliases = settings.model_aliases
        self.overrides = sorted(settings.pricing_overrides, key=lambda o: o.effective_from)
        self._known_providers: dict[str, bool] = {}

    def _provider_known(self, provider_id: str) -> bool:
        key = provider_id.lower()
        if key not in self._known_providers:
            self._known_providers[key] = data_snapshot.find_provider_by_id(self.snapshot.providers, key) is not None
        return self._known_providers[key]

    def _library(self, model_ref: str, provider_id: str | None) -> tuple[Provider, ModelInfo] | None:
        try:
            return self.snapshot.find_provider_model(model_ref, None, provider_id, None)
        except LookupError:
            return None

    def resolve(self, provider: str | None, name: str) -> _Resolution:
        """Find the overrides and the genai-prices model for a span's provider and model name."""
        target = self.aliases.get(name.lower(), name)
        qualifier, _, bare = target.partition("/") if "/" in target else (None, "", target)
        qualified = qualifier is not None and bool(qualifier) and self._provider_known(qualifier)

        attempts: list[tuple[str | None, str]] = [(provider, target)]
        if qualified:
            attempts.append((qualifier, bare))
        if provider is not None and not self._provider_known(provider):
            # A gateway or provider the library does not list: let it infer the provider from the model.
            attempts.append((None, target))
        found = None
        for provider_id, ref in attempts:
            if ref and (found := self._library(ref, provider_id)) is not None:
                break

        resolution = _Resolution()
        if found is not None:
            resolution.provider, resolution.model = found
        names = {target.lower(), bare.lower()}
        if resolution.model is not None:
            names.add(resolution.model.id.lower())
        providers = {p.lower() for p in (provider, qualifier) if p}
        if resolution.provider is not None:
            providers.add(resolution.provider.id)
        for override in self.overrides:
            if override.model.lower() not in names:
                continue
            if override.provider is not None and override.provider.lower() not in providers:
                continue
            resolution.overrides.append((np.datetime64(override.effective_from, "D"),
                                         Rates.from_override(override), override))
        return resolution


def _as_float(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def clean_names(series: pd.Series) -> np.ndarray:
    """Object array of stripped strings with blanks and nulls as None (work done once per distinct value)."""
    codes, uniques = pd.factorize(series.astype("object"))
    cleaned = [str(u).strip() or None for u in uniques]
    return np.array([*cleaned, None], dtype=object)[codes]  # code -1 (null) picks the trailing None


def has_model_descendant(trace_ids: pd.Series, span_ids: pd.Series, parent_ids: pd.Series,
                         is_model: np.ndarray) -> np.ndarray:
    """Mark every span that has an llm/embedding span below it in the same trace (cycle-safe, vectorised)."""
    n = len(span_ids)
    marked = np.zeros(n, dtype=bool)
    if n == 0 or not is_model.any():
        return marked
    parent_row = parent_rows(trace_ids, span_ids, parent_ids)
    frontier = parent_row[is_model & (parent_row >= 0)]
    while frontier.size:
        frontier = np.unique(frontier)
        new = frontier[~marked[frontier]]
        marked[new] = True  # only newly marked spans propagate, so a parent cycle ends the walk
        nxt = parent_row[new]
        frontier = nxt[nxt >= 0]
    return marked


def parent_rows(trace_ids: pd.Series, span_ids: pd.Series, parent_ids: pd.Series) -> np.ndarray:
    """Row position of each span's parent in the same trace, -1 when it has none or the parent is absent."""
    n = len(span_ids)
    id_codes, id_uniques = pd.factorize(pd.concat([span_ids, parent_ids], ignore_index=True).astype("object"))
    trace_codes, _ = pd.factorize(trace_ids.astype("object"))
    width = np.int64(len(id_uniques) + 1)
    span_codes, parent_codes = id_codes[:n].astype(np.int64), id_codes[n:].astype(np.int64)
    span_keys = trace_codes.astype(np.int64) * width + span_codes
    parent_keys = np.where(parent_codes >= 0, trace_codes.astype(np.int64) * width + parent_codes, -1)
    order = np.argsort(span_keys, kind="stable")  # stable: with duplicate ids the first row wins
    sorted_keys = span_keys[order]
    pos = np.clip(np.searchsorted(sorted_keys, parent_keys), 0, max(n - 1, 0))
    found = (parent_keys >= 0) & (sorted_keys[pos] == parent_keys) & (span_codes >= 0)
    result = np.where(found, order[pos], -1)
    result[result == np.arange(n)] = -1  # a span that names itself as parent is a root, not a cycle
    return result


def _group_rows(codes: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    """Yield (code, row positions) for each non-negative code."""
    valid = np.flatnonzero(codes >= 0)
    if not valid.size:
        return
    order = valid[np.argsort(codes[valid], kind="stable")]
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for start, end in zip(starts, ends, strict=True):
        yield int(sorted_codes[start]), order[start:end]


def _per_call(spans: pd.Series, entries: list[PerCallPrice], attr: str, days: np.ndarray,
              price: np.ndarray, label: np.ndarray) -> None:
    """Fill per-call prices (and the span name or kind they were found by) in place, latest date winning."""
    grouped: dict[str, list[PerCallPrice]] = defaultdict(list)
    for entry in entries:
        key = getattr(entry, attr)
        if key is not None:
            grouped[key].append(entry)
    values = spans.to_numpy(dtype=object)
    for key, items in grouped.items():
        rows = np.flatnonzero(values == key)
        if not rows.size:
            continue
        items.sort(key=lambda e: e.effective_from)
        dates = np.array([np.datetime64(e.effective_from, "D") for e in items])
        pos = np.searchsorted(dates, days[rows], side="right") - 1
        ok = pos >= 0
        price[rows[ok]] = np.array([e.usd_per_call for e in items])[pos[ok]]
        label[rows[ok]] = key


def price_spans(spans: pd.DataFrame, settings: CostSettings) -> pd.DataFrame:
    """Return the spans with cost columns (PRICED_COLUMNS) added; the input frame is not modified."""
    n = len(spans)
    kind = spans["kind"].to_numpy(dtype=object)
    is_model = np.isin(kind, MODEL_KINDS)
    ts = spans["start_time"]
    if ts.isna().any():
        ts = ts.fillna(spans["export_hour"])
    ts_ns = ts.to_numpy(dtype="datetime64[ns]").view("int64")
    days = ts.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")

    cost = np.full(n, np.nan)
    input_cost = np.full(n, np.nan)
    output_cost = np.full(n, np.nan)
    status = np.full(n, "not_billable", dtype=object)
    source = np.full(n, None, dtype=object)
    priced_provider = np.full(n, None, dtype=object)
    priced_model = np.full(n, None, dtype=object)

    # 1. per-call prices: kind first, then name, so a name entry wins where both apply.
    call_price = np.full(n, np.nan)
    call_label = np.full(n, None, dtype=object)
    _per_call(spans["kind"], settings.per_call_prices, "kind", days, call_price, call_label)
    _per_call(spans["name"], settings.per_call_prices, "name", days, call_price, call_label)
    per_call = ~np.isnan(call_price)
    cost[per_call] = call_price[per_call]
    status[per_call] = "priced"
    source[per_call] = "per_call"
    priced_model[per_call] = call_label[per_call]

    # 2-3. model spans: rollups are not billable.
    rollup = is_model & ~per_call & has_model_descendant(
        spans["trace_id"], spans["span_id"], spans["parent_span_id"], is_model)
    status[rollup] = "rollup"
    to_price = is_model & ~per_call & ~rollup
    billable = per_call | to_price

    if to_price.any():
        _price_model_spans(spans, settings, np.flatnonzero(to_price), kind, ts_ns, days,
                           cost, input_cost, output_cost, status, source, priced_provider, priced_model)

    priced = status == "priced"
    version = np.full(n, None, dtype=object)
    version[priced] = genai_prices_version()

    reported = _as_float(spans["reported_cost_usd"])
    comparable = ~np.isnan(cost) & ~np.isnan(reported)
    diff = np.full(n, np.nan)
    larger = np.maximum(np.abs(cost), np.abs(reported))
    with np.errstate(invalid="ignore", divide="ignore"):
        diff[comparable] = np.where(larger[comparable] > 0,
                                    (cost[comparable] - reported[comparable]) / larger[comparable], 0.0)
    mismatch = comparable & (np.abs(np.nan_to_num(diff)) > settings.reported_cost_tolerance)

    out = spans.copy(deep=False)
    new_columns: dict[str, Any] = {
        "cost_usd": cost, "input_cost_usd": input_cost, "output_cost_usd": output_cost,
        "cost_status": status, "price_source": source, "priced_provider": priced_provider,
        "priced_model": priced_model, "genai_prices_version": version, "billable": billable,
        "cost_mismatch": mismatch, "reported_cost_diff": diff,
    }
    for name, values in new_columns.items():
        out[name] = pd.Series(values, index=spans.index, dtype=PRICED_COLUMNS[name])
    return out


def _price_model_spans(
    spans: pd.DataFrame, settings: CostSettings, rows: np.ndarray, kind: np.ndarray, ts_ns: np.ndarray,
    days: np.ndarray, cost: np.ndarray, input_cost: np.ndarray, output_cost: np.ndarray, status: np.ndarray,
    source: np.ndarray, priced_provider: np.ndarray, priced_model: np.ndarray,
) -> None:
    """Price the billable model spans at `rows` in place."""
    sub = spans[["response_model", "request_model", "model", "provider", "input_tokens", "output_tokens",
                 "cached_input_tokens", "cache_write_tokens", "reasoning_tokens"]].iloc[rows]
    names = clean_names(sub["response_model"])
    for fallback in ("request_model", "model"):
        names = np.where(pd.isna(names), clean_names(sub[fallback]), names)
    providers = clean_names(sub["provider"])

    input_tokens = _as_float(sub["input_tokens"])
    output_tokens = _as_float(sub["output_tokens"])
    cached = _as_float(sub["cached_input_tokens"])
    cache_write = _as_float(sub["cache_write_tokens"])
    reasoning = _as_float(sub["reasoning_tokens"])
    # Embedding calls have no output; a missing output count there means zero, not unknown.
    output_tokens = np.where(np.isnan(output_tokens) & (kind[rows] == "embedding"), 0.0, output_tokens)
    missing = np.isnan(input_tokens) | np.isnan(output_tokens)
    cached, cache_write, reasoning = (np.nan_to_num(a) for a in (cached, cache_write, reasoning))
    invalid = ~missing & (
        (input_tokens < 0) | (output_tokens < 0) | (cached < 0) | (cache_write < 0) | (reasoning < 0)
        | (cached + cache_write > input_tokens) | (reasoning > output_tokens)
    )

    no_name = pd.isna(names)
    provider_codes, provider_values = pd.factorize(providers)
    name_codes, name_values = pd.factorize(names)
    # One integer per distinct (provider, name); -1 (no name) is left out of the groups.
    combo = np.where(no_name, -1, provider_codes.astype(np.int64) + 1 + (len(provider_values) + 2)
                     * name_codes.astype(np.int64))

    status[rows[no_name]] = "missing_model"
    resolver = _Resolver(settings)
    for _, local in _group_rows(combo):
        first = local[0]
        provider = None if provider_codes[first] < 0 else str(provider_values[provider_codes[first]])
        resolution = resolver.resolve(provider, str(name_values[name_codes[first]]))
        _price_group(resolution, provider, rows, local, ts_ns, days, missing, invalid,
                     (input_tokens, cached, cache_write, output_tokens, reasoning),
                     cost, input_cost, output_cost, status, source, priced_provider, priced_model)


def _price_group(
    resolution: _Resolution, provider: str | None, rows: np.ndarray, local: np.ndarray, ts_ns: np.ndarray,
    days: np.ndarray, missing: np.ndarray, invalid: np.ndarray, tokens: tuple[np.ndarray, ...],
    cost: np.ndarray, input_cost: np.ndarray, output_cost: np.ndarray, status: np.ndarray,
    source: np.ndarray, priced_provider: np.ndarray, priced_model: np.ndarray,
) -> None:
    """Price one (provider, model) group: `local` indexes the token arrays, rows[local] the frame."""
    target = rows[local]
    remaining = np.ones(len(local), dtype=bool)  # rows no override covers

    def assign(mask: np.ndarray, rates: Rates, src: str, prov: str | None, model: str) -> None:
        where_local, where_row = local[mask], target[mask]
        status[where_row] = np.where(missing[where_local], "missing_tokens",
                                     np.where(invalid[where_local], "invalid_tokens", "priced"))
        priced_provider[where_row] = prov
        priced_model[where_row] = model
        if not rates.prices_calls:
            status[where_row] = "unpriced_model"
            return
        ok = ~missing[where_local] & ~invalid[where_local]
        if not ok.any():
            return
        args = [t[where_local[ok]] for t in tokens]
        in_cost, out_cost, total = apply_rates(rates, *args)
        input_cost[where_row[ok]] = in_cost
        output_cost[where_row[ok]] = out_cost
        cost[where_row[ok]] = total
        source[where_row[ok]] = src

    if resolution.overrides:
        dates = np.array([d for d, _, _ in resolution.overrides])
        pos = np.searchsorted(dates, days[target], side="right") - 1
        for index, (_, rates, override) in enumerate(resolution.overrides):
            mask = pos == index
            if mask.any():
                assign(mask, rates, "override", override.provider or provider, override.model)
        remaining = pos < 0
    if not remaining.any():
        return
    if resolution.model is None or resolution.provider is None:
        status[target[remaining]] = "unpriced_model"
        return
    period, prices = library_periods(resolution.model, ts_ns[target])
    for index, price in enumerate(prices):
        mask = remaining & (period == index)
        if mask.any():
            assign(mask, Rates.from_model_price(price), "genai-prices", resolution.provider.id,
                   resolution.model.id)


def pricing_summary(priced: pd.DataFrame, settings: CostSettings, top: int = 10) -> dict[str, Any]:
    """Coverage facts for asset metadata and checks: calls by status, unpriced share and models, mismatches."""
    billable = priced[priced["billable"]]
    calls = len(billable)
    unpriced = billable[billable["cost_usd"].isna()]
    share = (len(unpriced) / calls) if calls else 0.0
    unpriced_models = (
        unpriced.assign(model_name=unpriced["response_model"].fillna(unpriced["request_model"])
                        .fillna(unpriced["model"]).fillna("(none)"))
        .groupby(["model_name", "cost_status"], dropna=False).size().sort_values(ascending=False).head(top)
    )
    return {
        "spans": len(priced),
        "billable_calls": calls,
        "priced_calls": int(calls - len(unpriced)),
        "unpriced_calls": len(unpriced),
        "unpriced_share": round(share, 6),
        "unpriced_share_warning": share > settings.unpriced_share_warning,
        "calls_by_status": {str(k): int(v) for k, v in priced["cost_status"].value_counts().items()},
        "unpriced_models": [
            {"model": str(model), "cost_status": str(st), "calls": int(count)}
            for (model, st), count in unpriced_models.items()
        ],
        "cost_usd": float(billable["cost_usd"].sum()),
        "cost_mismatches": int(billable["cost_mismatch"].sum()),
        "genai_prices_version": genai_prices_version(),
    }
