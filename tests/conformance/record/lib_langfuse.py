"""Langfuse Python SDK (OpenTelemetry-based): `--mode observe` (the `@observe` decorator and the
`langfuse.openai` drop-in client) or `--mode manual` (`start_as_current_observation(as_type="generation")`
and an embedding observation around a plain openai client). Langfuse's own OTLP export is replaced by aiobs's
file exporter (`span_exporter=`), so nothing leaves the machine; user and session via `propagate_attributes`."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conformance.record import common as c

SETTINGS = {"public_key": "pk-lf-conformance", "secret_key": "sk-lf-conformance",
            "base_url": "http://127.0.0.1:9", "environment": "conformance", "release": "rec-1"}


def main() -> None:
    """Record the three calls in the mode asked for."""
    args = c.parse_args()
    from langfuse import Langfuse, observe, propagate_attributes

    langfuse = Langfuse(**SETTINGS, span_exporter=c.span_exporter(args.landing))
    recording = c.Recording(
        library="langfuse", mode=args.mode, distributions=("langfuse",),
        settings={**{k: v for k, v in SETTINGS.items() if not k.endswith("_key")},
                  "public_key, secret_key": "dummy values (the SDK disables itself without keys; nothing is sent)",
                  "span_exporter": "aiobs OtlpJsonFileSpanExporter (replaces Langfuse's OTLP export)",
                  "path": "@observe + langfuse.openai.OpenAI" if args.mode == "observe"
                  else "start_as_current_observation(as_type='generation' / 'embedding') + openai.OpenAI",
                  "user_session": "langfuse.propagate_attributes(user_id=, session_id=)"},
        captures={"content": True, "ttft": True, "user_session": "explicit", "logs": False},
    )
    if args.mode == "observe":
        from langfuse.openai import OpenAI

        client = c.openai_client(args.base_url, OpenAI)

        @observe(name="conformance-chat")
        def chat() -> None:
            with propagate_attributes(user_id=c.USERS["chat"][0], session_id=c.USERS["chat"][1]):
                recording.chat(client.chat.completions.create, *c.USERS["chat"])

        @observe(name="conformance-stream")
        def stream() -> None:
            with propagate_attributes(user_id=c.USERS["stream"][0], session_id=c.USERS["stream"][1]):
                recording.stream(client.chat.completions.create, *c.USERS["stream"])

        @observe(name="conformance-embeddings")
        def embed() -> None:
            with propagate_attributes(user_id=c.USERS["embeddings"][0], session_id=c.USERS["embeddings"][1]):
                recording.embeddings(client.embeddings.create, *c.USERS["embeddings"])

        chat()
        stream()
        embed()
    elif args.mode == "manual":
        client = c.openai_client(args.base_url)
        for kind in ("chat", "stream", "embeddings"):
            user_id, session_id = c.USERS[kind]
            with langfuse.start_as_current_observation(as_type="span", name=f"conformance-{kind}"), \
                    propagate_attributes(user_id=user_id, session_id=session_id):
                if kind == "embeddings":
                    with langfuse.start_as_current_observation(as_type="embedding", name="embed",
                                                               model=c.EMBEDDING_MODEL, input=c.EMBEDDING_INPUT) as obs:
                        result = recording.embeddings(client.embeddings.create, user_id, session_id)
                        obs.update(model=result.model, usage_details={"input": result.usage.prompt_tokens})
                    continue
                with langfuse.start_as_current_observation(as_type="generation", name=kind, model=c.MODEL,
                                                           input=c.MESSAGES,
                                                           model_parameters={"stream": kind == "stream"}) as gen:
                    if kind == "chat":
                        completion = recording.chat(client.chat.completions.create, user_id, session_id)
                        response = recording.calls[-1]["response"]
                        output = completion.choices[0].message.content
                    else:
                        response = recording.stream(client.chat.completions.create, user_id, session_id)
                        output = response["output_text"]
                        first = recording.calls[-1]["client_first_content_unix_nano"]
                        gen.update(completion_start_time=datetime.fromtimestamp(first / 1e9, tz=UTC))
                    # The spelling Langfuse's docs give for manual generations (input/output/...), not OpenAI's.
                    gen.update(model=response["model"], output={"role": "assistant", "content": output},
                               usage_details={"input": response["input_tokens"], "output": response["output_tokens"],
                                              "input_cached_tokens": response["cached_tokens"],
                                              "output_reasoning_tokens": response["reasoning_tokens"]})
    else:
        raise SystemExit(f"lib_langfuse: unknown --mode {args.mode!r} (observe or manual)")
    langfuse.flush()
    langfuse.shutdown()
    recording.write(args.manifest)


if __name__ == "__main__":
    main()
