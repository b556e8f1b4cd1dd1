"""A local OpenAI-compatible server for tests and the demo: deterministic, configurable, never a default.

It is a stand-in, not a model: answers come from a small built-in knowledge base, an extractive reader of
`Context:` blocks, a lexical claim judge and a generator of made-up facts (see `responder`), and
embeddings are hashed bag-of-words vectors (see `text.embed`). Run it with `aiobs llm-server` or
`python -m aiobs_pipeline.llmserver --port 0`; it prints `aiobs llm-server listening on <base_url> ...`
as its first stdout line. Fault injection is described in `server`.
"""

from aiobs_pipeline.llmserver.server import (
    DEFAULT_PORT,
    LLMHTTPServer,
    ServerConfig,
    add_arguments,
    main,
    make_server,
    run_from_args,
    serve,
)

__all__ = [
    "DEFAULT_PORT",
    "LLMHTTPServer",
    "ServerConfig",
    "add_arguments",
    "main",
    "make_server",
    "run_from_args",
    "serve",
]
