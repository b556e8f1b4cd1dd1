"""`python -m aiobs_pipeline.llmserver`: run the local OpenAI-compatible server."""

from aiobs_pipeline.llmserver.server import main

raise SystemExit(main())
