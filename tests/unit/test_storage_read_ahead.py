"""Read-ahead of object streams (storage._RangeReader): the same bytes in any read pattern, ranges fetched
ahead only for sequential readers, nothing fetched ahead for head-only reads, and errors surfacing where the
reader reaches the range."""

from __future__ import annotations

import gzip
import random
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pytest

from aiobs_pipeline.ingest import files, storage
from aiobs_pipeline.ingest.storage import RetryPolicy, StorageError, Store

CHUNK = 1000


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh memory:// bucket, with small ranges so that a few KB span many of them."""
    monkeypatch.setattr(storage, "READ_CHUNK", CHUNK)
    name = f"ra-{uuid.uuid4().hex[:10]}"
    yield name
    memory = fsspec.filesystem("memory")
    if memory.exists(f"/{name}"):
        memory.rm(f"/{name}", recursive=True)


class CountingFS:
    """The memory filesystem, recording every ranged read (and failing from a given offset when told to)."""

    def __init__(self, fail_from: int | None = None) -> None:
        self.inner = fsspec.filesystem("memory")
        self.reads: list[tuple[int, int]] = []
        self.fail_from = fail_from

    def cat_file(self, path: str, start: int, end: int) -> bytes:
        self.reads.append((start, end))
        if self.fail_from is not None and start >= self.fail_from:
            raise PermissionError("Access Denied.")
        return self.inner.cat_file(path, start=start, end=end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def make(bucket: str, data: bytes, fs: CountingFS | None = None) -> tuple[storage.StoreObject, CountingFS]:
    fs = fs or CountingFS()
    fs.inner.pipe(f"/{bucket}/k/obj.bin", data)
    store = Store(f"memory://{bucket}", retry=RetryPolicy(attempts=2, initial_seconds=0, max_seconds=0),
                  filesystem=fs)
    return store.object("k/obj.bin"), fs


def test_every_read_pattern_gets_the_same_bytes(bucket: str) -> None:
    data = random.Random(3).randbytes(23_456)
    obj, _ = make(bucket, data)
    with obj.open() as stream:
        assert stream.read() == data
    rng = random.Random(5)
    with obj.open() as stream:
        parts = []
        while chunk := stream.read(rng.choice([1, 7, 999, 1000, 1001, 2500, 6000])):
            parts.append(chunk)
    assert b"".join(parts) == data
    with obj.open() as stream:
        stream.read(4321)
        stream.seek(100)
        assert stream.read(3000) == data[100:3100]
        stream.seek(20_000)
        assert stream.read() == data[20_000:]
        stream.seek(0)
        assert stream.read() == data


def test_a_sequential_reader_fetches_ahead_and_reads_each_range_once(bucket: str) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes: 11 ranges of 1000
    obj, fs = make(bucket, data)
    with obj.open() as stream:
        assert stream.read(CHUNK) == data[:CHUNK]
        assert stream.read(CHUNK) == data[CHUNK:2 * CHUNK]
        # The second range in a row starts the read-ahead of the next two, before they are asked for.
        ahead = stream.raw._ahead
        assert sorted(ahead) == [2 * CHUNK, 3 * CHUNK]
        for future in ahead.values():
            future.result()
        assert {(2 * CHUNK, 3 * CHUNK), (3 * CHUNK, 4 * CHUNK)} <= set(fs.reads)
        assert stream.read() == data[2 * CHUNK:]
    reads = sorted(fs.reads)
    # Each byte fetched exactly once: the ranges tile the object.
    assert reads[0][0] == 0 and reads[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(reads, reads[1:], strict=False))


def test_read_ahead_off_reads_only_what_is_asked(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "READ_AHEAD", 0)
    data = bytes(5000)
    obj, fs = make(bucket, data)
    with obj.open() as stream:
        assert stream.read(CHUNK) + stream.read(CHUNK) == data[:2 * CHUNK]
        assert stream.raw._ahead == {}
    assert sorted(fs.reads) == [(0, CHUNK), (CHUNK, 2 * CHUNK)]


def test_reading_only_the_head_fetches_nothing_ahead(bucket: str) -> None:
    lines = b"".join(b'{"n": %d}\n' % i for i in range(2000))  # about 20 ranges
    obj, fs = make(bucket, lines)
    assert not files.looks_like_document(obj)
    with files.open_binary(obj) as stream:
        assert stream.readline() == b'{"n": 0}\n'
    # The head is fetched once (the store keeps it for the next opener) and nothing after it.
    assert fs.reads == [(0, CHUNK)]


def test_gzip_streams_through_read_ahead(bucket: str) -> None:
    text = b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 50)) for i in range(3000))
    obj, fs = make(bucket, gzip.compress(text))
    with files.open_binary(obj) as stream:
        assert stream.read() == text
    assert len(fs.reads) > 3


def test_a_range_that_fails_ahead_raises_where_the_reader_reaches_it(bucket: str) -> None:
    data = bytes(10_000)
    obj, fs = make(bucket, data, CountingFS(fail_from=5000))
    with obj.open() as stream:
        assert stream.read(5000) == data[:5000]
        with pytest.raises(StorageError, match="obj.bin: read bytes 5000"):
            stream.read(1000)
