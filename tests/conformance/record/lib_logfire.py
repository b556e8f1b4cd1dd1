"""Pydantic Logfire: `logfire.instrument_openai(version=...)` with `send_to_logfire=False` and aiobs's file
exporter as an additional span processor. `--mode v2` is the current default format (content in
`gen_ai.input.messages` / `gen_ai.output.messages`), `--mode v1` the older one (content in `request_data` /
`response_data`). User and session through `logfire.set_baggage`, which Logfire copies onto the spans."""

from __future__ import annotations

from tests.conformance.record import common as c


def main() -> None:
    """Record the three calls with the asked-for message format."""
    args = c.parse_args()
    versions = {"v1": 1, "v2": 2}
    if args.mode not in versions:
        raise SystemExit(f"lib_logfire: unknown --mode {args.mode!r} (v1 or v2)")
    import logfire
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    settings = {"send_to_logfire": False, "console": False, "service_name": "conformance",
                "environment": "conformance", "add_baggage_to_attributes": True}

    def keep_session_id(match: logfire.ScrubMatch) -> object:
        # Logfire's default scrubbing redacts any attribute named like "session" (the baggage's session_id
        # becomes "[Scrubbed due to 'session']"); its documented way out is a callback keeping that value.
        return match.value if match.path == ("attributes", "session_id") else None

    logfire.configure(**settings, scrubbing=logfire.ScrubbingOptions(callback=keep_session_id),
                      additional_span_processors=[SimpleSpanProcessor(c.span_exporter(args.landing))])
    client = c.openai_client(args.base_url)
    logfire.instrument_openai(client, version=versions[args.mode])
    recording = c.Recording(
        library="logfire", mode=args.mode, distributions=("logfire-sdk", "logfire"),
        settings={**settings, "additional_span_processors": "SimpleSpanProcessor(aiobs OtlpJsonFileSpanExporter)",
                  "instrument_openai": {"openai_client": "the client instance", "version": versions[args.mode]},
                  "user_session": "logfire.set_baggage(user_id=, session_id=)",
                  "scrubbing": "ScrubbingOptions(callback=keep attributes.session_id); without it Logfire writes "
                               "session_id as \"[Scrubbed due to 'session']\""},
        captures={"content": True, "ttft": False, "user_session": "baggage", "logs": False},
    )
    with logfire.set_baggage(user_id=c.USERS["chat"][0], session_id=c.USERS["chat"][1]):
        recording.chat(client.chat.completions.create, *c.USERS["chat"])
    with logfire.set_baggage(user_id=c.USERS["stream"][0], session_id=c.USERS["stream"][1]):
        recording.stream(client.chat.completions.create, *c.USERS["stream"])
    with logfire.set_baggage(user_id=c.USERS["embeddings"][0], session_id=c.USERS["embeddings"][1]):
        recording.embeddings(client.embeddings.create, *c.USERS["embeddings"])
    logfire.force_flush()
    logfire.shutdown()
    recording.write(args.manifest)


if __name__ == "__main__":
    main()
