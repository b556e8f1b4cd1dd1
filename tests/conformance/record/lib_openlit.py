"""OpenLIT: `openlit.init(...)` reusing the global TracerProvider and LoggerProvider that carry aiobs's span
and log exporters (OpenLIT detects configured providers and adds no OTLP exporter without an endpoint).
OpenLIT has no user/session API of its own: the request's `user` field is all it records. Its price list
download fails offline (recorded as it then writes)."""

from __future__ import annotations

from tests.conformance.record import common as c


def main() -> None:
    """Record the three calls."""
    args = c.parse_args()
    from opentelemetry import trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create({"service.name": "conformance"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(c.span_exporter(args.landing)))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(c.log_exporter(args.landing)))
    set_logger_provider(logger_provider)

    import openlit

    settings = {"environment": "conformance", "application_name": "conformance", "disable_batch": True,
                "capture_message_content": True, "disable_metrics": True}
    openlit.init(**settings)
    client = c.openai_client(args.base_url)
    recording = c.Recording(
        library="openlit", mode="", distributions=("openlit",),
        settings={**settings, "providers": "global TracerProvider + SimpleSpanProcessor(aiobs OtlpJsonFileSpanExporter), "
                                           "global LoggerProvider + SimpleLogRecordProcessor(aiobs OtlpJsonFileLogExporter)",
                  "user_session": "none (OpenLIT has no user/session API); the chat call sends the request's user"},
        captures={"content": True, "ttft": True, "user_session": "request_user", "logs": True},
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
