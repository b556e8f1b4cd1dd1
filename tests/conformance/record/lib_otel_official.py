"""The official OpenTelemetry OpenAI instrumentation (`opentelemetry-instrumentation-openai-v2` with
`opentelemetry-util-genai`): `OpenAIInstrumentor().instrument(tracer_provider=..., logger_provider=...)` with
aiobs's span and log exporters. The content mode comes from the environment the recorder sets
(`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental` with
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY` or `EVENT_ONLY`; or the legacy path's `true`
without the opt-in, which this release refuses with a warning: no content). No user/session API, and the
request's `user` is not recorded."""

from __future__ import annotations

import os

from tests.conformance.record import common as c

ENV_KEYS = ("OTEL_SEMCONV_STABILITY_OPT_IN", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")


def main() -> None:
    """Record the three calls in the content mode of the environment."""
    args = c.parse_args()
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create({"service.name": "conformance"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(c.span_exporter(args.landing)))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(c.log_exporter(args.landing)))
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    env = {k: os.environ.get(k) for k in ENV_KEYS}
    mode = (env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] or "").lower()
    opted_in = "gen_ai_latest_experimental" in (env["OTEL_SEMCONV_STABILITY_OPT_IN"] or "")
    client = c.openai_client(args.base_url)
    recording = c.Recording(
        library="opentelemetry-instrumentation-openai-v2", mode=args.mode,
        distributions=("opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai"),
        settings={"environment": env, "instrument": "OpenAIInstrumentor().instrument(tracer_provider=, logger_provider=)",
                  "user_session": "none (no user/session API; the request's user is not recorded)"},
        # The content modes need the experimental opt-in; "true" (the legacy value) is refused with a warning
        # and captures nothing. The request's `user` is not recorded either.
        captures={"content": opted_in and mode in ("span_only", "event_only", "span_and_event"), "ttft": False,
                  "user_session": "none", "logs": opted_in and mode in ("event_only", "span_and_event")},
    )
    recording.chat(client.chat.completions.create, None, None)
    recording.stream(client.chat.completions.create, None, None)
    recording.embeddings(client.embeddings.create, None, None)
    tracer_provider.force_flush()
    logger_provider.force_flush()
    tracer_provider.shutdown()
    logger_provider.shutdown()
    recording.write(args.manifest)


if __name__ == "__main__":
    main()
