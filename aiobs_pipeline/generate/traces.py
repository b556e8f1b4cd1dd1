"""Building the traces of one export hour: traffic, span trees, content, errors and incident effects.

Owns the format-neutral trace model (`Trace`, `Span`) and `build_hour`, which turns (seed, hour, scale,
incidents) into the hour's traces. Every random choice comes from generators seeded by the run seed and the
hour, so an hour is the same whichever other hours are generated and in whatever order or process. Separate
streams for traffic, incidents and ids keep the ordinary traffic of an hour identical whether or not an
incident is injected into it. It must not encode any export format: `writers.py` does that.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate

import orjson

from aiobs_pipeline.generate.scenario import (
    CHAT_OPENERS,
    CODE_TASKS,
    DOCS_BY_TOPIC,
    EMBEDDING_MODEL,
    FEATURES,
    HEDGES,
    KNOWLEDGE_BASE,
    LOOP_LOG,
    MODELS,
    PEAK_TRACES_PER_HOUR,
    SYSTEM_PROMPTS,
    TOPICS,
    Document,
    Feature,
    IncidentSpec,
    ModelSpec,
    User,
    derive_seed,
    diurnal_factor,
)

NS = 1_000_000_000
MS = 1_000_000
FORMATS = ("native", "otlp", "openinference", "langfuse", "langsmith")
FORMAT_WEIGHTS = {"native": 0.30, "otlp": 0.25, "openinference": 0.15, "langfuse": 0.15, "langsmith": 0.15}
# Share of OTLP single-call traces emitted by an older instrumentation with the pre-1.37 GenAI attributes.
LEGACY_OTLP_SHARE = 0.3
BASELINE_ERROR_RATE = 0.012
# Ordinary hours never exceed this error share, so a 5% error-rate alert has no false alarms to find.
BASELINE_ERROR_CAP = 0.04
LATE_TRACE_SHARE = 0.004
FEEDBACK_SHARE = 0.25


@dataclass(frozen=True)
class RetrievedDoc:
    """A document as one retrieval or rerank step returned it."""

    doc_id: str
    text: str
    score: float
    rank: int


@dataclass
class Span:
    """A format-neutral span; writers encode it into each export format."""

    span_id: str
    trace_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str = "ok"
    error_type: str | None = None
    error_message: str | None = None
    model: ModelSpec | None = None
    messages: list[dict] | None = None  # OpenAI chat format: role, content, tool_calls?, tool_call_id?
    output_text: str | None = None
    tool_calls: list[dict] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    ttft_ms: float | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    finish_reason: str | None = None
    response_id: str | None = None
    query: str | None = None
    documents: list[RetrievedDoc] | None = None
    input_documents: list[RetrievedDoc] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    tool_arguments: dict | None = None
    tool_result: str | None = None
    input_value: str | None = None
    output_value: str | None = None

    @property
    def latency_ms(self) -> float:
        """Duration in milliseconds (exact: from integer nanoseconds)."""
        return (self.end_ns - self.start_ns) / MS


@dataclass
class Trace:
    """One request through the application: its spans (root first) and the context writers need."""

    trace_id: str
    fmt: str
    user_id: str
    session_id: str
    feature: str
    endpoint: str
    prompt_name: str
    prompt_version: str
    spans: list[Span]
    question: str
    answer: str | None = None
    legacy: bool = False
    degraded: str | None = None  # incident kind that degraded the answer
    incident: str | None = None  # incident kind that produced the whole trace (the loop)
    citations: list[str] = field(default_factory=list)
    retrieved_ids: list[str] = field(default_factory=list)

    @property
    def response(self) -> Span | None:
        """The LLM span whose output the user saw: the last LLM span."""
        llm = [s for s in self.spans if s.kind == "llm"]
        return llm[-1] if llm else None


@dataclass
class HourTraces:
    """What `build_hour` produced: the traces and the bookkeeping the ground truth needs."""

    hour: datetime
    traces: list[Trace]
    late_spans: int = 0


class IdFactory:
    """Span and trace ids in each format's style, unique within the hour."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def _fresh(self, make) -> str:
        while True:
            value = make()
            if value not in self.seen:
                self.seen.add(value)
                return value

    def hex(self, bits: int) -> str:
        """Lower-case hex id of `bits` bits (OTLP, OpenInference, Langfuse)."""
        return self._fresh(lambda: f"{self.rng.getrandbits(bits):0{bits // 4}x}")

    def uuid(self) -> str:
        """A UUID4-shaped id (native, LangSmith)."""
        return self._fresh(lambda: str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))

    def span_id(self, fmt: str) -> str:
        """A span id in the style of `fmt`."""
        return self.uuid() if fmt in ("native", "langsmith") else self.hex(64)

    def trace_id(self, fmt: str) -> str:
        """A trace id in the style of `fmt` (LangSmith trace ids are set to the root run id by the caller)."""
        return self.uuid() if fmt in ("native", "langsmith") else self.hex(128)

    def response_id(self, provider: str) -> str | None:
        """The provider's completion id, as its API returns it."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        number = self.rng.getrandbits(143)
        chars = []
        for _ in range(24):
            number, digit = divmod(number, 62)
            chars.append(alphabet[digit])
        token = "".join(chars)
        if provider in ("openai", "azure"):
            return f"chatcmpl-{token}"
        if provider == "anthropic":
            return f"msg_01{token}"
        return None


def lognormal(rng: random.Random, median: float, sigma: float, cap: float | None = None) -> float:
    """A log-normal draw with the given median, optionally capped (token counts, latencies)."""
    value = rng.lognormvariate(math.log(median), sigma)
    return min(value, cap) if cap is not None else value


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth for small means, rounded normal otherwise)."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def session_id(seed: int, user_id: str, at: datetime) -> str:
    """A user's session: a new one every three hours of a day, stable across hours and processes."""
    return f"sess_{derive_seed(seed, 'session', user_id, at.date().isoformat(), at.hour // 3):016x}"


class HourBuilder:
    """Builds the traces of one export hour."""

    def __init__(self, seed: int, hour: datetime, scale: float, users: tuple[User, ...],
                 incidents: list[IncidentSpec], formats: tuple[str, ...]) -> None:
        self.seed = seed
        self.hour = hour
        self.scale = scale
        self.users = users
        self.incidents = [i for i in incidents if i.active(hour)]
        self.formats = formats
        key = hour.isoformat()
        self.rng = random.Random(derive_seed(seed, "traffic", key))
        self.irng = random.Random(derive_seed(seed, "incident", key))
        self.crng = self.rng
        self.ids = IdFactory(random.Random(derive_seed(seed, "ids", key)))
        self.hour_ns = int(hour.timestamp()) * NS
        self.user_cum = list(accumulate(u.weight for u in users))
        self.feature_names = tuple(FEATURES)
        weights = [FORMAT_WEIGHTS[f] for f in formats]
        self.format_cum = list(accumulate(weights))

    # -- incidents ------------------------------------------------------------------------------------

    def incident_at(self, kind: str, at_ns: int, feature: str | None = None) -> IncidentSpec | None:
        """The incident of `kind` active at `at_ns` (and for `feature`, when the kind has one)."""
        at = datetime.fromtimestamp(at_ns // NS, UTC)
        for spec in self.incidents:
            if spec.kind != kind or not (spec.start <= at < spec.end):
                continue
            if feature is not None and spec.param("feature") not in (None, feature):
                continue
            return spec
        return None

    # -- traffic --------------------------------------------------------------------------------------

    def build(self) -> HourTraces:
        """All traces of the hour, with errors and incident effects applied."""
        rng = self.rng
        n = poisson(rng, PEAK_TRACES_PER_HOUR * self.scale * diurnal_factor(self.hour))
        plan = self._format_plan(n)
        traces = [self._ordinary_trace(i, fmt) for i, fmt in enumerate(plan)]
        for spec in self.incidents:
            if spec.kind == "infinite_loop":
                traces.extend(self._loop_traces(spec))
        self._apply_errors(traces)
        late = 0
        end_ns = self.hour_ns + 3600 * NS
        for trace in traces:
            late += sum(1 for s in trace.spans if s.start_ns < self.hour_ns or s.start_ns >= end_ns)
        traces.sort(key=lambda t: (t.spans[0].start_ns, t.trace_id))
        return HourTraces(self.hour, traces, late)

    def _format_plan(self, n: int) -> list[str]:
        """Formats for n traces: each enabled format at least once (when n allows), the rest weighted."""
        first = list(self.formats)
        self.rng.shuffle(first)
        plan = first[:n]
        plan += self.rng.choices(self.formats, cum_weights=self.format_cum, k=max(0, n - len(plan)))
        return plan

    def _start_ns(self, duration_hint_s: float = 60.0) -> int:
        """A trace start inside the hour; rarely a few minutes before it (a late-arriving trace)."""
        rng = self.rng
        if rng.random() < LATE_TRACE_SHARE:
            return self.hour_ns - int(rng.uniform(30, 240) * NS)
        return self.hour_ns + int(rng.uniform(0, 3600 - duration_hint_s) * NS)

    def _ordinary_trace(self, index: int, fmt: str) -> Trace:
        """One user request. Who, what and when come from the traffic stream; the content from a stream of
        its own, so an incident that changes one answer's content leaves every other request unchanged."""
        rng = self.rng
        user = self.users[rng.choices(range(len(self.users)), cum_weights=self.user_cum)[0]]
        feature = FEATURES[rng.choices(self.feature_names, weights=user.feature_weights)[0]]
        start = self._start_ns()
        agentic = rng.random() < 0.3
        legacy = fmt == "otlp" and rng.random() < LEGACY_OTLP_SHARE
        self.crng = random.Random(derive_seed(self.seed, "content", self.hour.isoformat(), index))
        session = session_id(self.seed, user.user_id, datetime.fromtimestamp(start // NS, UTC))
        if feature.rag:
            trace = self._rag_trace(fmt, feature, user.user_id, session, start)
        elif feature.name == "code-assist" and agentic:
            trace = self._agent_trace(fmt, feature, user.user_id, session, start)
        else:
            trace = self._single_call_trace(fmt, feature, user.user_id, session, start)
            trace.legacy = legacy
        self._keep_children_in_hour(trace)
        return trace

    def _keep_children_in_hour(self, trace: Trace) -> None:
        """Shift a trace that would start a child after the hour so every span starts inside the hour."""
        end_ns = self.hour_ns + 3600 * NS
        last = max(s.start_ns for s in trace.spans)
        if last >= end_ns:
            shift = last - end_ns + NS
            for s in trace.spans:
                s.start_ns -= shift
                s.end_ns -= shift

    # -- model calls ----------------------------------------------------------------------------------

    def _pick_model(self, feature: Feature, start_ns: int) -> ModelSpec:
        switch = self.incident_at("model_change", start_ns, feature.name)
        if switch is not None:
            return MODELS[switch.param("model")]
        names = [m for m, _ in feature.models]
        return MODELS[self.crng.choices(names, weights=[w for _, w in feature.models])[0]]

    def _prompt_version(self, feature: Feature, start_ns: int) -> str:
        bad = self.incident_at("bad_prompt_version", start_ns, feature.name)
        return str(bad.param("prompt_version")) if bad is not None else feature.prompt_version

    def _llm_span(self, fmt: str, trace_id: str, parent: str | None, name: str, start_ns: int,
                  model: ModelSpec, feature: Feature, messages: list[dict], output: str,
                  rng: random.Random | None = None, stream: bool | None = None,
                  tool_calls: list[dict] | None = None) -> Span:
        """An LLM call with log-normal token counts and latency consistent with the model's speed."""
        rng = rng or self.crng
        chars = sum(len(m.get("content") or "") for m in messages)
        input_tokens = max(chars // 4, round(lognormal(rng, feature.input_median, 0.35,
                                                       feature.input_median * 2.5)))
        visible = max(len(output) // 4 + 1, round(lognormal(rng, feature.output_median, 0.35,
                                                            feature.output_median * 2.0)))
        reasoning = round(lognormal(rng, 220, 0.5, 800)) if model.reasoning else 0
        finish = "tool_calls" if tool_calls else "stop"
        if visible + reasoning > feature.max_tokens:
            visible = max(feature.max_tokens - reasoning, 1)
            finish = "length"
        cached = 0
        if input_tokens >= 1024 and model.provider in ("openai", "azure", "anthropic") and rng.random() < 0.3:
            cached = max(1024, int(input_tokens * rng.uniform(0.4, 0.9)) // 128 * 128)
        output_tokens = visible + reasoning
        tps = model.tokens_per_second * lognormal(rng, 1.0, 0.15)
        ttft = lognormal(rng, model.ttft_ms, 0.3, model.ttft_ms * 3) + reasoning / tps * 1000
        latency = min(ttft + visible / tps * 1000, 25_000.0)
        if stream is None:
            stream = rng.random() < (0.6 if feature.name == "chat" else 0.4)
        return Span(
            span_id=self.ids.span_id(fmt), trace_id=trace_id, parent_id=parent, name=name, kind="llm",
            start_ns=start_ns, end_ns=start_ns + int(latency * MS), model=model, messages=messages,
            output_text=output if not tool_calls else (output or None), tool_calls=tool_calls,
            input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached,
            reasoning_tokens=reasoning, cost_usd=model.cost(input_tokens, output_tokens, cached),
            ttft_ms=round(ttft, 3) if stream else None, stream=stream, temperature=feature.temperature,
            top_p=1.0, max_tokens=feature.max_tokens, finish_reason=finish,
            response_id=self.ids.response_id(model.provider),
        )

    # -- content --------------------------------------------------------------------------------------

    def _decorate(self, text: str, rng: random.Random, hedge_share: float,
                  confidence: tuple[float, float, float] | None) -> str:
        """Add a hedge at the start and a self-reported confidence line at the end, sometimes."""
        if rng.random() < hedge_share:
            hedge = rng.choice(HEDGES)
            text = f"{hedge} {text[0].lower()}{text[1:]}"
        if confidence is not None:
            level = rng.choices(("high", "medium", "low"), weights=confidence)[0]
            text = f"{text}\nConfidence: {level}"
        return text

    def _retrieve(self, topic: int, fact: int, rng: random.Random) -> tuple[list[RetrievedDoc],
                                                                             list[RetrievedDoc]]:
        """Vector search (top 5) and rerank (top 3) for a question answered by `fact` of `topic`."""
        scored: list[tuple[float, Document]] = []
        for doc in DOCS_BY_TOPIC[topic]:
            high = fact in doc.fact_indexes
            scored.append((rng.uniform(0.80, 0.93) if high else rng.uniform(0.62, 0.79), doc))
        others = [d for d in KNOWLEDGE_BASE if d.topic != topic]
        for doc in rng.sample(others, 2):
            scored.append((rng.uniform(0.35, 0.58), doc))
        scored.sort(key=lambda p: (-p[0], p[1].doc_id))
        top = scored[:5]
        retrieved = [RetrievedDoc(d.doc_id, d.text, round(s, 4), i + 1) for i, (s, d) in enumerate(top)]
        reranked_scores = []
        for s, d in top:
            relevance = rng.uniform(0.86, 0.99) if fact in d.fact_indexes and d.topic == topic else \
                rng.uniform(0.05, 0.6) * s
            reranked_scores.append((relevance, d))
        reranked_scores.sort(key=lambda p: (-p[0], p[1].doc_id))
        reranked = [RetrievedDoc(d.doc_id, d.text, round(s, 4), i + 1)
                    for i, (s, d) in enumerate(reranked_scores[:3])]
        return retrieved, reranked

    def _rag_answer(self, topic_i: int, fact: int, reranked: list[RetrievedDoc], rng: random.Random,
                    degraded: str | None) -> tuple[str, list[str]]:
        """The answer text and the ids it cites; grounded unless an incident degrades it."""
        topic = TOPICS[topic_i]
        by_id = {d.doc_id: d for d in KNOWLEDGE_BASE}
        with_fact = [d.doc_id for d in reranked if fact in by_id[d.doc_id].fact_indexes
                     and by_id[d.doc_id].topic == topic_i]
        primary = with_fact[0] if with_fact else reranked[0].doc_id
        extra_doc = by_id[reranked[1].doc_id] if len(reranked) > 1 else None
        extra_fact = None
        if extra_doc is not None and extra_doc.topic == topic_i:
            others = [i for i in extra_doc.fact_indexes if i != fact]
            extra_fact = others[0] if others else None
        opener = rng.choice(("", "Here is what the documentation says: ", "In short: "))
        if degraded == "model_change":
            text = f"{opener}{topic.wrong_facts[fact]}"
            if rng.random() < 0.5:
                text += f" {topic.wrong_facts[(fact + 1) % len(topic.wrong_facts)]}"
            cited = [primary] if rng.random() < 0.3 else []
            if cited:
                text += f" [{primary}]"
            return self._decorate(text.strip(), rng, 0.7, (0.0, 0.4, 0.6)), cited
        cited = [primary]
        if degraded == "bad_prompt_version":
            # A fabricated id in the knowledge base's own pattern: plausible, never retrieved, never existing.
            fake = f"kb-{(topic_i + 1) * 100 + rng.randint(7, 99):04d}"
            cited = [fake]
        text = f"{opener}{topic.facts[fact]} [{cited[0]}]"
        if extra_fact is not None and rng.random() < 0.5:
            cite = extra_doc.doc_id
            if degraded == "bad_prompt_version" and rng.random() < 0.5:
                cite = f"kb-{rng.randint(1300, 1999):04d}"
            text += f" {topic.facts[extra_fact]} [{cite}]"
            cited.append(cite)
        confidence = (0.85, 0.15, 0.0) if degraded else (0.8, 0.17, 0.03)
        return self._decorate(text.strip(), rng, 0.0 if degraded else 0.05, confidence), cited

    # -- trace shapes ---------------------------------------------------------------------------------

    def _new_trace_ids(self, fmt: str) -> tuple[str, str]:
        """(trace id, root span id); LangSmith's trace id is its root run id."""
        root = self.ids.span_id(fmt)
        return (root if fmt == "langsmith" else self.ids.trace_id(fmt)), root

    def _rag_trace(self, fmt: str, feature: Feature, user_id: str, session: str, start: int) -> Trace:
        rng = self.crng
        topic_i = rng.randrange(len(TOPICS))
        question, fact = rng.choice(TOPICS[topic_i].questions)
        model = self._pick_model(feature, start)
        version = self._prompt_version(feature, start)
        degraded = None
        if self.incident_at("model_change", start, feature.name) is not None:
            degraded = "model_change"
        elif self.incident_at("bad_prompt_version", start, feature.name) is not None:
            degraded = "bad_prompt_version"
        trace_id, root_id = self._new_trace_ids(fmt)
        t = start + int(rng.uniform(1, 4) * MS)
        embed_ms = lognormal(rng, 45, 0.3, 200)
        embed_tokens = len(question) // 4 + 2
        embedding = Span(self.ids.span_id(fmt), trace_id, root_id, "embedding", "embedding", t,
                         t + int(embed_ms * MS), model=EMBEDDING_MODEL, input_tokens=embed_tokens,
                         output_tokens=0, cost_usd=EMBEDDING_MODEL.cost(embed_tokens, 0), query=question)
        t = embedding.end_ns + MS
        retrieved, reranked = self._retrieve(topic_i, fact, rng)
        search = Span(self.ids.span_id(fmt), trace_id, root_id, "vector_search", "retrieval", t,
                      t + int(lognormal(rng, 90, 0.35, 400) * MS), query=question, documents=retrieved)
        t = search.end_ns + MS
        rerank = Span(self.ids.span_id(fmt), trace_id, root_id, "reranking", "rerank", t,
                      t + int(lognormal(rng, 85, 0.3, 300) * MS), query=question, documents=reranked,
                      input_documents=retrieved)
        t = rerank.end_ns + 2 * MS
        answer, cited = self._rag_answer(topic_i, fact, reranked, rng, degraded)
        sources = "\n".join(f"[{d.doc_id}] {d.text}" for d in reranked)
        messages = [
            {"role": "system", "content": f"{SYSTEM_PROMPTS[feature.prompt_name]}\n\nSources:\n{sources}"},
            {"role": "user", "content": question},
        ]
        llm = self._llm_span(fmt, trace_id, root_id, "llm_generation", t, model, feature, messages, answer)
        root = Span(root_id, trace_id, None, f"{feature.name}_pipeline", "chain", start, llm.end_ns + 3 * MS,
                    input_value=question, output_value=answer)
        return Trace(trace_id, fmt, user_id, session, feature.name, feature.endpoint, feature.prompt_name,
                     version, [root, embedding, search, rerank, llm], question, answer, degraded=degraded,
                     citations=cited, retrieved_ids=[d.doc_id for d in retrieved])

    def _single_call_trace(self, fmt: str, feature: Feature, user_id: str, session: str, start: int) -> Trace:
        rng = self.crng
        model = self._pick_model(feature, start)
        system = {"role": "system", "content": SYSTEM_PROMPTS[feature.prompt_name]}
        if feature.name == "summarize":
            topic_i = rng.randrange(len(TOPICS))
            docs = rng.sample(DOCS_BY_TOPIC[topic_i], 2)
            body = "\n\n".join(f"{d.title}\n{d.text}" for d in docs)
            question = f"Summarize this article:\n\n{body}"
            facts = [TOPICS[topic_i].facts[i] for i in sorted(set(docs[0].fact_indexes))[:2]]
            answer = self._decorate(" ".join(facts), rng, 0.02, None)
            messages = [system, {"role": "user", "content": question}]
            name = "summarize"
        elif feature.name == "code-assist":
            question, answer = rng.choice(CODE_TASKS)
            answer = self._decorate(answer, rng, 0.03, (0.9, 0.1, 0.0) if rng.random() < 0.1 else None)
            messages = [system, {"role": "user", "content": question}]
            name = "code_completion"
        else:
            topic = TOPICS[rng.randrange(len(TOPICS))]
            question, fact = rng.choice(topic.questions)
            degraded = self.incident_at("model_change", start, feature.name) is not None
            stated = topic.wrong_facts[fact] if degraded else topic.facts[fact]
            if rng.random() < 0.3:
                question = f"Draft a short reply to a customer who asks: {question}"
                answer = f"Hi! {stated} Let me know if there is anything else I can help with."
            else:
                answer = f"{rng.choice(CHAT_OPENERS)} {stated}"
            if degraded:
                answer = self._decorate(answer, rng, 0.7, (0.0, 0.4, 0.6))
            else:
                confidence = (0.85, 0.13, 0.02) if rng.random() < feature.confidence_share else None
                answer = self._decorate(answer, rng, 0.05, confidence)
            messages = [system]
            if rng.random() < 0.4:
                other = TOPICS[rng.randrange(len(TOPICS))]
                q2, f2 = rng.choice(other.questions)
                messages += [{"role": "user", "content": q2}, {"role": "assistant", "content": other.facts[f2]}]
            messages.append({"role": "user", "content": question})
            name = "chat_completion"
        trace_id, root_id = self._new_trace_ids(fmt)
        llm = self._llm_span(fmt, trace_id, None, name, start, model, feature, messages, answer)
        llm.span_id = root_id
        degraded = "model_change" if feature.name == "chat" and \
            self.incident_at("model_change", start, feature.name) is not None else None
        return Trace(trace_id, fmt, user_id, session, feature.name, feature.endpoint, feature.prompt_name,
                     self._prompt_version(feature, start), [llm], question, answer, degraded=degraded)

    def _agent_trace(self, fmt: str, feature: Feature, user_id: str, session: str, start: int) -> Trace:
        """Code assistant with a tool: the model asks to run the tests, then answers."""
        rng = self.crng
        model = self._pick_model(feature, start)
        question, answer = rng.choice(CODE_TASKS)
        trace_id, root_id = self._new_trace_ids(fmt)
        system = {"role": "system", "content": SYSTEM_PROMPTS[feature.prompt_name]}
        user = {"role": "user", "content": f"{question} Please run the tests first."}
        call_id = f"call_{self.ids.hex(64)[:12]}"
        arguments = {"path": "tests/", "quiet": True}
        first = self._llm_span(fmt, trace_id, root_id, "plan_step", start + 2 * MS, model, feature,
                               [system, user], "", stream=False,
                               tool_calls=[{"id": call_id, "name": "run_tests", "arguments": arguments}])
        first.output_tokens = min(first.output_tokens or 0, 60 + first.reasoning_tokens)
        first.cost_usd = model.cost(first.input_tokens or 0, first.output_tokens or 0, first.cached_tokens)
        t = first.end_ns + MS
        passed = rng.randint(4, 40)
        result = f"{passed} passed in {rng.uniform(0.5, 9.0):.2f}s"
        tool = Span(self.ids.span_id(fmt), trace_id, root_id, "run_tests", "tool", t,
                    t + int(lognormal(rng, 1500, 0.5, 9000) * MS), tool_name="run_tests", tool_call_id=call_id,
                    tool_arguments=arguments, tool_result=result)
        t = tool.end_ns + MS
        request = {"id": call_id, "type": "function",
                   "function": {"name": "run_tests", "arguments": orjson.dumps(arguments).decode()}}
        history = [system, user, {"role": "assistant", "content": None, "tool_calls": [request]},
                   {"role": "tool", "tool_call_id": call_id, "content": result}]
        final = self._llm_span(fmt, trace_id, root_id, "answer_step", t, model, feature, history, answer)
        root = Span(root_id, trace_id, None, "code_assist_agent", "chain", start, final.end_ns + 2 * MS,
                    input_value=user["content"], output_value=answer)
        return Trace(trace_id, fmt, user_id, session, feature.name, feature.endpoint, feature.prompt_name,
                     self._prompt_version(feature, start), [root, first, tool, final], question, answer)

    def _loop_traces(self, spec: IncidentSpec) -> list[Trace]:
        """The runaway client: the same request, evenly spaced over the part of the hour in the window."""
        rng = self.irng
        window_start = max(spec.start, self.hour)
        window_end = min(spec.end, self.hour + timedelta(hours=1))
        seconds = (window_end - window_start).total_seconds()
        calls = round(spec.param("calls_per_hour") * seconds / 3600)
        if calls <= 0:
            return []
        feature = FEATURES[spec.param("feature")]
        model = MODELS[spec.param("model")]
        user_id = spec.param("user_id")
        fmt = "native" if "native" in self.formats else self.formats[0]
        session = f"sess_loop_{derive_seed(self.seed, 'loop-session', spec.start.isoformat()):012x}"
        messages = [
            {"role": "system", "content": SYSTEM_PROMPTS[feature.prompt_name]},
            {"role": "user", "content": f"Summarize this log and list every failed job:\n\n{LOOP_LOG}"},
        ]
        answer = ("The log shows 12 failed jobs, all with 'upstream timeout after 30s' on workers 0 and 5; "
                  "every other job completed normally.")
        step = seconds / calls
        base_ns = int(window_start.timestamp()) * NS
        traces = []
        for i in range(calls):
            start = base_ns + int((i * step + rng.uniform(0, step * 0.5)) * NS)
            trace_id, root_id = self._new_trace_ids(fmt)
            llm = self._llm_span(fmt, trace_id, None, "chat_completion", start, model, feature, messages,
                                 answer, rng=rng, stream=False)
            llm.span_id = root_id
            # A repeated identical prompt is served from the provider's prompt cache after the first call.
            llm.input_tokens = 3400 + rng.randint(0, 40)
            llm.cached_tokens = 3328 if i > 0 or window_start > spec.start else 0
            llm.output_tokens = 260 + rng.randint(0, 60)
            llm.cost_usd = model.cost(llm.input_tokens, llm.output_tokens, llm.cached_tokens)
            trace = Trace(trace_id, fmt, user_id, session, feature.name, feature.endpoint, feature.prompt_name,
                          feature.prompt_version, [llm], messages[-1]["content"], answer, incident=spec.kind)
            self._keep_children_in_hour(trace)
            traces.append(trace)
        return traces

    # -- errors ---------------------------------------------------------------------------------------

    def _apply_errors(self, traces: list[Trace]) -> None:
        """Baseline errors (about 1%, never above the cap) and error bursts, on the answering LLM span."""
        candidates = [(t, t.response) for t in traces if t.response is not None]
        burst_idx = []
        normal_idx = []
        for i, (_, span) in enumerate(candidates):
            (burst_idx if self.incident_at("error_burst", span.start_ns) else normal_idx).append(i)
        chosen: dict[int, str | None] = {}
        n = len(normal_idx)
        k = sum(1 for _ in range(n) if self.rng.random() < BASELINE_ERROR_RATE)
        k = min(k, int(n * BASELINE_ERROR_CAP))
        for i in self.rng.sample(normal_idx, k):
            chosen[i] = None
        if burst_idx:
            spec = self.incident_at("error_burst", candidates[burst_idx[0]][1].start_ns)
            share = float(spec.param("error_share"))
            for i in self.irng.sample(burst_idx, round(share * len(burst_idx))):
                chosen[i] = "error_burst"
        for i in sorted(chosen):
            trace, span = candidates[i]
            self._fail(trace, span, self.irng if chosen[i] else self.rng, burst=chosen[i] is not None)
            if chosen[i]:
                trace.incident = trace.incident or chosen[i]

    def _fail(self, trace: Trace, span: Span, rng: random.Random, burst: bool) -> None:
        """Turn an answering call into a failed one; only outages time out (30 s), ordinary errors are quick."""
        provider = span.model.provider if span.model else "openai"
        model = span.model.name if span.model else "unknown"
        weights = (0.6, 0.25, 0.1, 0.05) if burst else (0.6, 0.3, 0.1, 0.0)
        kind = rng.choices(("429", "500", "overloaded", "timeout"), weights=weights)[0]
        if kind == "429":
            error_type = "RateLimitError"
            message = (f"Error code: 429 - Rate limit reached for {model} on tokens per min (TPM): "
                       f"Limit 200000, Used {rng.randint(195000, 199990)}, Requested {span.input_tokens}. "
                       f"Please try again in {rng.randint(200, 2000)}ms.")
            latency = lognormal(rng, 150, 0.4, 800)
        elif kind == "500":
            error_type = "InternalServerError"
            message = "Error code: 500 - The server had an error while processing your request. Sorry about that!"
            latency = lognormal(rng, 1200, 0.5, 6000)
        elif kind == "overloaded":
            error_type = "APIStatusError"
            message = ("Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': "
                       "'Overloaded'}}" if provider == "anthropic" else
                       "Error code: 503 - The model is overloaded. Please try again later.")
            latency = lognormal(rng, 400, 0.4, 2000)
        else:
            error_type = "APITimeoutError"
            message = "Request timed out."
            latency = 30_000.0
        span.status = "error"
        span.error_type = error_type
        span.error_message = message
        span.output_text = None
        span.tool_calls = None
        span.input_tokens = None
        span.output_tokens = None
        span.cached_tokens = 0
        span.reasoning_tokens = 0
        span.cost_usd = 0.0
        span.ttft_ms = None
        span.finish_reason = None
        span.response_id = None
        span.end_ns = span.start_ns + int(latency * MS)
        trace.answer = None
        root = trace.spans[0]
        if root is not span:
            root.status = "error"
            root.error_type = error_type
            root.error_message = message
            root.output_value = None
            root.end_ns = max(s.end_ns for s in trace.spans[1:]) + 2 * MS


def build_hour(seed: int, hour: datetime, scale: float, users: tuple[User, ...], incidents: list[IncidentSpec],
               formats: tuple[str, ...]) -> HourTraces:
    """Build every trace of the export hour starting at `hour` (UTC)."""
    return HourBuilder(seed, hour, scale, users, incidents, formats).build()
