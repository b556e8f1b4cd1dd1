"""aiobs: observability and evaluation pipeline for LLM applications, on Dagster."""

import os

__version__ = "0.1.0"

# DuckDB's bundled jemalloc hands freed pages back to the kernel after about a second (its dirty_decay_ms is
# 1000). The native fast path's query frees and reallocates its JSON buffers chunk after chunk, so at that
# setting the kernel unmapped and zeroed the same pages over and over: a third of the page faults of a
# 1M-span hour, and the TLB shootdowns that stall the other core. Ten seconds keeps them for reuse while a
# file is read and still returns them soon after. Read by jemalloc when DuckDB first allocates, so it is set
# here, before any aiobs module imports duckdb; a value the user exported wins (see docs/benchmarks.md).
DUCKDB_ALLOCATOR_ENV = "DUCKDB_JE_MALLOC_CONF"
DUCKDB_ALLOCATOR_CONF = "dirty_decay_ms:10000"
os.environ.setdefault(DUCKDB_ALLOCATOR_ENV, DUCKDB_ALLOCATOR_CONF)
