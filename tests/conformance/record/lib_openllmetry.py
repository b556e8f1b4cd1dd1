"""OpenLLMetry (Traceloop): `opentelemetry-instrumentation-openai` set up by `traceloop-sdk`'s
`Traceloop.init(exporter=aiobs's file exporter, disable_batch=True, telemetry_enabled=False)`; user and session
through `Traceloop.set_association_properties`. `--mode attributes` keeps content in span attributes (the
default); `--mode events` passes `use_attributes=False` (the current name of `use_legacy_attributes=False`),
so content goes out as OpenTelemetry log events, exported by aiobs's log exporter (global LoggerProvider).
The same script records the older generation (0.33.x, `--mode attributes`) in its own virtualenv."""

from __future__ import annotations

import importlib.metadata
import inspect
import os

from tests.conformance.record import common as c


def main() -> None:
    """Record the three calls with content in attributes or in events."""
    args = c.parse_args()
    if args.mode not in ("attributes", "events"):
        raise SystemExit(f"lib_openllmetry: unknown --mode {args.mode!r} (attributes or events)")
    os.environ["TRACELOOP_TELEMETRY"] = "false"
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from traceloop.sdk import Traceloop

    logger_provider = None
    settings: dict[str, object] = {"app_name": "conformance", "disable_batch": True, "telemetry_enabled": False,
                                   "api_endpoint": "http://127.0.0.1:9"}
    if args.mode == "events":
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(c.log_exporter(args.landing)))
        # The instrumentation emits its events through the global logger provider (opentelemetry._logs).
        set_logger_provider(logger_provider)
        settings["use_attributes"] = False
    # Older traceloop-sdk releases have fewer parameters (0.33 has no telemetry_enabled: TRACELOOP_TELEMETRY does it).
    accepted = inspect.signature(Traceloop.init).parameters
    settings = {k: v for k, v in settings.items() if k in accepted}
    Traceloop.init(**settings, exporter=c.span_exporter(args.landing))
    client = c.openai_client(args.base_url)
    version = importlib.metadata.version("opentelemetry-instrumentation-openai")
    recording = c.Recording(
        library="openllmetry", mode=args.mode if version.startswith("0.6") else f"{args.mode}-{version}",
        distributions=("opentelemetry-instrumentation-openai", "traceloop-sdk"),
        settings={**settings, "exporter": "aiobs OtlpJsonFileSpanExporter", "env": {"TRACELOOP_TELEMETRY": "false"},
                  "events": "set_logger_provider(LoggerProvider + SimpleLogRecordProcessor(aiobs "
                            "OtlpJsonFileLogExporter))" if logger_provider else None,
                  "user_session": "Traceloop.set_association_properties({'user_id': ..., 'session_id': ...})"},
        captures={"content": True, "ttft": False, "user_session": "association_properties",
                  "logs": logger_provider is not None},
    )
    for kind, call in (("chat", recording.chat), ("stream", recording.stream),
                       ("embeddings", recording.embeddings)):
        user_id, session_id = c.USERS[kind]
        Traceloop.set_association_properties({"user_id": user_id, "session_id": session_id})
        create = client.embeddings.create if kind == "embeddings" else client.chat.completions.create
        call(create, user_id, session_id)
    if logger_provider is not None:
        logger_provider.force_flush()
        logger_provider.shutdown()
    from opentelemetry import trace

    trace.get_tracer_provider().force_flush()
    trace.get_tracer_provider().shutdown()
    recording.write(args.manifest)


if __name__ == "__main__":
    main()
