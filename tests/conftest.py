"""Shared pytest fixtures.

Services: tests that need PostgreSQL take `postgres_url` (skipped with the URL named when the server is
unreachable; failed instead when AIOBS_REQUIRE_SERVICES=1, as in CI) and `postgres_schema` for a fresh,
randomly named schema that is dropped afterwards. Mark such tests `@pytest.mark.postgres`.

Tests that need an S3-compatible server take `seaweedfs` (one SeaweedFS server for the session, see
tests/seaweedfs.py; skipped with the reason without the `weed` binary, failed under AIOBS_REQUIRE_SERVICES=1)
and `s3_bucket` for a fresh bucket of their own. Mark them `@pytest.mark.s3`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from aiobs_pipeline.warehouse.postgres import drop_schema, redact_url
from tests.seaweedfs import SeaweedS3, SeaweedUnavailable, start_seaweedfs

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _service_unavailable(message: str) -> None:
    """Skip the test, or fail it when the run requires every service (AIOBS_REQUIRE_SERVICES=1)."""
    if os.environ.get("AIOBS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (AIOBS_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the test PostgreSQL server (env AIOBS_TEST_POSTGRES_URL), checked to be reachable."""
    url = os.environ.get("AIOBS_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _service_unavailable(
            f"PostgreSQL is not reachable at {redact_url(url)} ({reason}); start it or set AIOBS_TEST_POSTGRES_URL"
        )
    return url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name for one test (created by whatever writes to it), dropped with its tables after."""
    name = f"aiobs_test_{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(postgres_url, name)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 server on free loopback ports for the whole session (it takes seconds to start)."""
    try:
        server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    except SeaweedUnavailable as error:
        _service_unavailable(f"SeaweedFS is not available: {error}")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedS3) -> str:
    """A fresh, randomly named bucket on the session's SeaweedFS server."""
    name = f"aiobs-{uuid.uuid4().hex[:12]}"
    seaweedfs.create_bucket(name)
    return name
