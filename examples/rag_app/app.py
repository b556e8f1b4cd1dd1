"""A small RAG help-desk app, traced with OpenTelemetry into an aiobs landing folder.

For each question it retrieves the best-matching paragraphs of its document corpus (BM25, `bm25s`), records a
GenAI retrieval span carrying the retrieved documents, and asks an OpenAI-compatible chat model through the
official `openai` client, which the official OpenTelemetry instrumentation
(`opentelemetry-instrumentation-openai-v2`) traces. Spans go through aiobs's OTLP/JSON file exporter into
`<landing_root>/YYYY/MM/DD/HH/`, where the aiobs pipeline reads them.

    python examples/rag_app/app.py --landing-root var/landing --base-url http://127.0.0.1:8765/v1 \\
        --user-id u-42 "How long do I have to return a tent?"

Message content goes on the chat spans (not into log events) because the app defaults
`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental` and
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY`; set either variable yourself to override.
User, session, feature and prompt version are put in OpenTelemetry baggage once per request and copied onto
every span of the request (`BaggageAttributes`), so the instrumented chat span carries them too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = Path(__file__).resolve().parent / "docs"
DATA_SOURCE_ID = "helpdesk-docs"
PROMPT_NAME = "helpdesk-answer"
PROMPT_VERSION = "v1"
SYSTEM_PROMPT = ("You are the help desk of an outdoor equipment shop. Answer the question using only the "
                 "context; cite the ids of the paragraphs you used in square brackets. If the context does "
                 "not answer the question, say so.")
# Request-scoped attributes the aiobs OTLP reader maps to columns (docs/formats.md, "otlp").
BAGGAGE_KEYS = ("user.id", "session.id", "aiobs.feature", "aiobs.prompt.name", "aiobs.prompt.version")
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a about also am an and any are as ask at be been by can could do does for from get had has have how i "
    "if in into is it its me my not of on or our should so than that the then there this to was we were "
    "what when where which who why will with would you your".split()
)


@dataclass(frozen=True)
class Passage:
    """One paragraph of a corpus file: `id` is `<file stem>#<paragraph number>`."""

    id: str
    title: str
    text: str


def load_corpus(folder: Path) -> list[Passage]:
    """The paragraphs of every .md/.txt file in `folder` (headings become the title of what follows)."""
    if not folder.is_dir():
        raise SystemExit(f"corpus folder {folder} does not exist or is not a folder")
    passages: list[Passage] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".md", ".txt") and p.is_file()):
        title = path.stem
        number = 0
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            block = " ".join(block.split())
            if not block:
                continue
            if block.startswith("#"):
                title = block.lstrip("#").strip()
                continue
            number += 1
            passages.append(Passage(f"{path.stem}#{number}", title, block))
    if not passages:
        raise SystemExit(f"corpus folder {folder} has no paragraphs in .md or .txt files")
    return passages


def tokenize(text: str) -> list[str]:
    """Lower-case words without stopwords, with a plural 's' removed (so 'refunds' matches 'refund')."""
    words = (w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS)
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


class Retriever:
    """BM25 over the corpus passages (bm25s)."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        import bm25s

        self.passages = list(passages)
        self.index = bm25s.BM25()
        self.index.index([tokenize(f"{p.title} {p.text}") for p in self.passages], show_progress=False)
        self.vocabulary = set(self.index.vocab_dict)

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """The k best passages with a positive score, best first."""
        tokens = [t for t in tokenize(query) if t in self.vocabulary]
        if not tokens:
            return []
        k = min(k, len(self.passages))
        ids, scores = self.index.retrieve([tokens], k=k, show_progress=False)
        return [(self.passages[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]


def build_messages(question: str, hits: Sequence[tuple[Passage, float]]) -> list[dict[str, str]]:
    """The chat request: instructions, then the retrieved paragraphs as `Context:` and the question."""
    context = "\n".join(f"[{p.id}] {p.text}" for p, _ in hits) or "(no matching documents)"
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"}]


def retrieval_documents(hits: Sequence[tuple[Passage, float]]) -> str:
    """`gen_ai.retrieval.documents` as a JSON string: [{id, score, content, title}] (id and score are the
    convention's required keys; content makes the span usable for grounding checks)."""
    return json.dumps([{"id": p.id, "score": round(score, 6), "content": p.text, "title": p.title}
                       for p, score in hits], ensure_ascii=False)


def make_baggage_processor() -> Any:
    """A span processor that copies the request's baggage (BAGGAGE_KEYS) onto every span as it starts."""
    from opentelemetry import baggage
    from opentelemetry.sdk.trace import SpanProcessor

    class BaggageAttributes(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            for key in BAGGAGE_KEYS:
                value = baggage.get_baggage(key, parent_context)
                if value is not None:
                    span.set_attribute(key, str(value))

    return BaggageAttributes()


def setup_tracing(landing_root: Path, service_name: str, environment: str) -> Any:
    """A tracer provider exporting to the landing folder, with the OpenAI client instrumented."""
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    # Imported after the variables are set: the instrumentation reads them once, when it is set up.
    from opentelemetry import trace
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from aiobs_pipeline.otel import OtlpJsonFileSpanExporter

    resource = Resource.create({"service.name": service_name, "deployment.environment.name": environment})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(make_baggage_processor())
    provider.add_span_processor(BatchSpanProcessor(OtlpJsonFileSpanExporter(landing_root, file_prefix=service_name)))
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider


def answer(question: str, retriever: Retriever, client: Any, tracer: Any, args: argparse.Namespace) -> dict:
    """Retrieve, then ask the model; return {question, answer, trace_id, documents, error}."""
    from opentelemetry import baggage, context
    from opentelemetry.trace import SpanKind, Status, StatusCode

    ctx = context.get_current()
    for key, value in (("user.id", args.user_id), ("session.id", args.session_id),
                       ("aiobs.feature", args.feature), ("aiobs.prompt.name", PROMPT_NAME),
                       ("aiobs.prompt.version", PROMPT_VERSION)):
        if value:
            ctx = baggage.set_baggage(key, value, ctx)
    token = context.attach(ctx)
    try:
        with tracer.start_as_current_span("helpdesk.answer") as root:
            trace_id = f"{root.get_span_context().trace_id:032x}"
            with tracer.start_as_current_span(f"retrieval {DATA_SOURCE_ID}", kind=SpanKind.INTERNAL) as span:
                hits = retriever.search(question, args.top_k)
                span.set_attributes({
                    "gen_ai.operation.name": "retrieval",
                    "gen_ai.data_source.id": DATA_SOURCE_ID,
                    "gen_ai.retrieval.top_k": args.top_k,
                    "gen_ai.retrieval.query.text": question,
                    "gen_ai.retrieval.documents": retrieval_documents(hits),
                })
            result = {"question": question, "trace_id": trace_id, "documents": [p.id for p, _ in hits],
                      "answer": None, "error": None}
            try:
                response = client.chat.completions.create(
                    model=args.model, messages=build_messages(question, hits),
                    temperature=args.temperature, max_tokens=args.max_tokens)
                result["answer"] = response.choices[0].message.content
            except Exception as exc:  # the chat span records the error; the app reports it and goes on
                root.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                result["error"] = f"{type(exc).__name__}: {exc}"
            return result
    finally:
        context.detach(token)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (see --help)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", nargs="*", help="questions to answer (or --questions-file)")
    parser.add_argument("--questions-file", type=Path, help="a file with one question per line")
    parser.add_argument("--landing-root", type=Path, required=True, help="aiobs landing folder for the spans")
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8765/v1"),
                        help="OpenAI-compatible API base URL (default $OPENAI_BASE_URL, else the local "
                             "`aiobs llm-server` at http://127.0.0.1:8765/v1)")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "local-server-needs-no-key"),
                        help="API key (default $OPENAI_API_KEY)")
    parser.add_argument("--model", default="aiobs-local", help="chat model name (default aiobs-local)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of .md/.txt documents")
    parser.add_argument("--top-k", type=int, default=3, help="paragraphs to retrieve (default 3)")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--user-id", default="demo-user", help="end user id (span attribute user.id)")
    parser.add_argument("--session-id", default=None, help="conversation id (default: a new one per run)")
    parser.add_argument("--feature", default="helpdesk-rag", help="product feature (attribute aiobs.feature)")
    parser.add_argument("--service-name", default="rag-helpdesk", help="OpenTelemetry service.name")
    parser.add_argument("--environment", default="demo", help="deployment.environment.name")
    parser.add_argument("--json", action="store_true", help="print one JSON object per question")
    args = parser.parse_args(argv)
    if args.questions_file is not None:
        try:
            lines = args.questions_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            parser.error(f"cannot read --questions-file {args.questions_file}: {exc.strerror or exc}")
        args.questions += [line.strip() for line in lines if line.strip()]
    if not args.questions:
        parser.error("give at least one question, or --questions-file")
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}")
    if args.landing_root.exists() and not args.landing_root.is_dir():
        parser.error(f"--landing-root {args.landing_root} exists and is not a folder")
    args.session_id = args.session_id or f"session-{uuid.uuid4().hex[:12]}"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Answer the questions; exit code 1 when any model call failed."""
    args = parse_args(argv)
    retriever = Retriever(load_corpus(args.corpus))
    provider = setup_tracing(args.landing_root, args.service_name, args.environment)
    import openai

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=30.0, max_retries=2)
    tracer = provider.get_tracer("examples.rag_app")
    failures = 0
    try:
        for question in args.questions:
            result = answer(question, retriever, client, tracer, args)
            failures += result["error"] is not None
            if args.json:
                print(json.dumps(result, ensure_ascii=False), flush=True)
            else:
                print(f"Q: {question}\nA: {result['answer'] or 'ERROR ' + str(result['error'])}\n"
                      f"   documents: {', '.join(result['documents']) or '-'}   trace: {result['trace_id']}\n",
                      flush=True)
    finally:
        provider.shutdown()  # flushes the batch processor into the landing files
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
