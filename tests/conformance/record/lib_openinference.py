"""Arize OpenInference: `OpenAIInstrumentor().instrument(tracer_provider=...)` with aiobs's span exporter;
user and session through `openinference.instrumentation.using_attributes(user_id=, session_id=)`."""

from __future__ import annotations

from tests.conformance.record import common as c


def main() -> None:
    """Record the three calls."""
    args = c.parse_args()
    from openinference.instrumentation import using_attributes
    from openinference.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "conformance"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(c.span_exporter(args.landing)))
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    client = c.openai_client(args.base_url)
    recording = c.Recording(
        library="openinference", mode="", distributions=("openinference-instrumentation-openai",
                                                         "openinference-instrumentation"),
        settings={"instrument": "OpenAIInstrumentor().instrument(tracer_provider=)",
                  "user_session": "openinference.instrumentation.using_attributes(user_id=, session_id=)"},
        captures={"content": True, "ttft": True, "user_session": "explicit", "logs": False},
    )
    for kind, call in (("chat", recording.chat), ("stream", recording.stream),
                       ("embeddings", recording.embeddings)):
        user_id, session_id = c.USERS[kind]
        create = client.embeddings.create if kind == "embeddings" else client.chat.completions.create
        with using_attributes(user_id=user_id, session_id=session_id):
            call(create, user_id, session_id)
    tracer_provider.force_flush()
    tracer_provider.shutdown()
    recording.write(args.manifest)


if __name__ == "__main__":
    main()
