"""ingest/storage.py: roots, listings, streams, retries and credential hygiene, on fsspec's in-memory
filesystem (memory://) and local folders (file://)."""

from __future__ import annotations

import gzip
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from aiobs_pipeline.ingest import files
from aiobs_pipeline.ingest.storage import (
    RetryPolicy,
    StorageError,
    Store,
    _s3_options,
    check_root_url,
    is_transient,
    open_root,
    redact_text,
)

FAST = RetryPolicy(attempts=4, initial_seconds=0, max_seconds=0)


@pytest.fixture
def bucket() -> Iterator[str]:
    """A fresh memory:// bucket name, removed afterwards (the memory filesystem is process-wide)."""
    name = f"bkt-{uuid.uuid4().hex[:10]}"
    yield name
    memory = fsspec.filesystem("memory")
    if memory.exists(f"/{name}"):
        memory.rm(f"/{name}", recursive=True)


def put(bucket: str, key: str, data: bytes) -> None:
    fsspec.filesystem("memory").pipe(f"/{bucket}/{key}", data)


def test_memory_root_lists_objects_with_key_size_and_version(bucket: str) -> None:
    put(bucket, "p/2026/12/07/13/b.jsonl", b"{}\n" * 3)
    put(bucket, "p/2026/12/07/13/a.jsonl", b"{}\n")
    put(bucket, "other/x.jsonl", b"{}\n")
    store = open_root(f"memory://{bucket}/p")
    objects = store.list()
    assert [(o.key, o.size) for o in objects] == [("2026/12/07/13/a.jsonl", 3), ("2026/12/07/13/b.jsonl", 9)]
    assert all(o.version() for o in objects)  # memory has no ETag: the creation time stands in
    assert objects[0].name == "a.jsonl"
    assert objects[0].url == f"memory://{bucket}/p/2026/12/07/13/a.jsonl"
    assert objects[0].local_path is None
    assert store.list("2026/12/07", "13/a") == [objects[0]]
    assert store.list("nothing/here") == []


def test_listing_sees_objects_written_after_the_last_listing(bucket: str) -> None:
    store = open_root(f"memory://{bucket}")
    put(bucket, "a.jsonl", b"{}\n")
    assert len(store.list()) == 1
    put(bucket, "b.jsonl", b"{}\n")
    assert len(store.list()) == 2


def test_file_url_is_a_local_folder(tmp_path: Path) -> None:
    (tmp_path / "2026" / "12").mkdir(parents=True)
    (tmp_path / "2026" / "12" / "x.jsonl").write_bytes(b"{}\n")
    store = open_root(f"file://{tmp_path}")
    assert store.is_local and store.local == tmp_path
    [obj] = store.list()
    assert obj.key == "2026/12/x.jsonl" and obj.local_path == tmp_path / "2026/12/x.jsonl"
    assert obj.mtime is not None and obj.size == 3
    assert open_root(tmp_path).list() == [obj]
    assert open_root(tmp_path / "missing").list() == []


def test_object_stream_reads_lines_and_gunzips_by_magic(bucket: str) -> None:
    lines = [f'{{"n": {i}}}'.encode() for i in range(50_000)]
    put(bucket, "plain.jsonl", b"\n".join(lines) + b"\n")
    # A gzip object named without .gz: the magic decides, not the name.
    put(bucket, "packed.jsonl", gzip.compress(b"\n".join(lines) + b"\n"))
    put(bucket, "fake.jsonl.gz", b'{"n": 1}\n')
    store = open_root(f"memory://{bucket}")
    by_name = {o.name: o for o in store.list()}
    for name in ("plain.jsonl", "packed.jsonl"):
        with files.open_binary(by_name[name]) as stream:
            assert [line for _, line in files.iter_lines(stream)] == lines
    with pytest.raises(files.UnreadableFile, match=r"memory://.*/fake.jsonl.gz: named .gz but is not gzip"):
        files.open_binary(by_name["fake.jsonl.gz"])
    records = list(files.iter_records(by_name["packed.jsonl"]))
    assert len(records) == 50_000 and records[-1].value == {"n": 49_999}


def test_truncated_gzip_object_yields_records_then_a_corrupt_gzip_reject(bucket: str) -> None:
    data = gzip.compress(b"".join(f'{{"n": {i}, "pad": "{"x" * 50}"}}\n'.encode() for i in range(5000)))
    put(bucket, "cut.jsonl.gz", data[: len(data) // 2])
    [obj] = open_root(f"memory://{bucket}").list()
    out = list(files.iter_records(obj))
    assert out[-1].reason == "corrupt_gzip"
    assert len(out) > 100


def test_vanished_object_is_unreadable_not_a_storage_failure(bucket: str) -> None:
    put(bucket, "gone.jsonl", b"{}\n")
    [obj] = open_root(f"memory://{bucket}").list()
    fsspec.filesystem("memory").rm(f"/{bucket}/gone.jsonl")
    with pytest.raises(files.UnreadableFile, match="gone.jsonl"):
        files.open_binary(obj)


class FlakyFS:
    """A filesystem whose reads and listings fail `failures` times with `error`, then work (memory-backed)."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.inner = fsspec.filesystem("memory")
        self.failures = failures
        self.error = error
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    def invalidate_cache(self, path: str | None = None) -> None:
        self.inner.invalidate_cache(path)

    def find(self, path: str, **kwargs: Any) -> Any:
        self._maybe_fail()
        return self.inner.find(path, **kwargs)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        self._maybe_fail()
        return self.inner.cat_file(path, start=start, end=end)

    def info(self, path: str) -> Any:
        return self.inner.info(path)


class SlowDown(Exception):
    """Like botocore's ClientError for S3's 503 SlowDown."""

    def __init__(self) -> None:
        super().__init__("An error occurred (SlowDown) when calling the GetObject operation: Please reduce "
                         "your request rate. Credential=AKIAIOSFODNN7EXAMPLE/20261207/us-east-1/s3")
        self.response = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}


@pytest.mark.parametrize("error", [SlowDown(), ConnectionResetError("Connection reset by peer"),
                                   TimeoutError("read timed out"), OSError("503 Service Unavailable")])
def test_transient_errors_are_retried_then_succeed(bucket: str, error: Exception) -> None:
    put(bucket, "p/a.jsonl", b'{"a": 1}\n')
    store = Store(f"memory://{bucket}/p", retry=FAST, filesystem=FlakyFS(2, error))
    [obj] = store.list()  # two failed listings, then the third works
    store.fs.failures, store.fs.calls = 2, 0
    with obj.open() as stream:
        assert stream.read() == b'{"a": 1}\n'


def test_persistent_throttling_fails_naming_the_key_without_credentials(bucket: str, monkeypatch, caplog) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    put(bucket, "p/2026/12/07/13/a.jsonl", b'{"a": 1}\n')
    error = SlowDown()
    error.args = (error.args[0] + " secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",)
    store = Store(f"memory://{bucket}/p", retry=FAST, filesystem=FlakyFS(0, error))
    [obj] = Store(f"memory://{bucket}/p").list()
    obj = type(obj)(store, obj.key, obj.size)
    store.fs.failures = 10**6
    with caplog.at_level(logging.WARNING), pytest.raises(StorageError) as caught:
        with files.open_binary(obj) as stream:
            stream.read()
    message = str(caught.value)
    assert f"memory://{bucket}/p/2026/12/07/13/a.jsonl" in message
    assert "failed after 4 attempts" in message and "SlowDown" in message
    for secret in ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"):
        assert secret not in message
        assert secret not in caplog.text
    assert "transient error (attempt 1 of 4)" in caplog.text
    # A StorageError is not an OSError: readers that quarantine damaged files do not swallow it.
    assert not isinstance(caught.value, OSError)


def test_permanent_errors_are_not_retried(bucket: str) -> None:
    put(bucket, "a.jsonl", b"{}\n")
    fs = FlakyFS(1, PermissionError("Access Denied"))
    store = Store(f"memory://{bucket}", retry=FAST, filesystem=fs)
    with pytest.raises(StorageError, match=r"memory://bkt-\w+: list objects: PermissionError: Access Denied"):
        store.list()
    assert fs.calls == 1


def test_is_transient_classifies_sdk_errors() -> None:
    assert is_transient(SlowDown())
    assert is_transient(ConnectionResetError())
    assert not is_transient(FileNotFoundError("no such key"))
    assert not is_transient(PermissionError("403 Forbidden"))

    class Status(Exception):
        status_code = 500

    class Missing(Exception):
        status_code = 404

    assert is_transient(Status()) and not is_transient(Missing())


@pytest.mark.parametrize("url", [
    "s3://AKIAIOSFODNN7EXAMPLE:secret@bucket/prefix",
    "s3://user@bucket/prefix",
    "az://container/prefix?sv=2022-11-02&sig=abc%2Fdef",
    "gs://bucket/prefix?X-Goog-Signature=abc",
])
def test_root_urls_with_credentials_are_refused_and_redacted(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_root_url(url)
    message = str(caught.value)
    assert "secret" not in message and "abc" not in message and "AKIAIOSFODNN7EXAMPLE" not in message


def test_unsupported_scheme_and_abfs_account_form() -> None:
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        check_root_url("ftp://host/x")
    assert check_root_url("abfs://landing@myaccount.dfs.core.windows.net/exports") .startswith("abfs://")
    assert check_root_url("var/landing") == "var/landing"


def test_redact_text_removes_userinfo_signatures_and_env_secrets(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "my-access-key-123")
    text = ("GET https://u:pw@host/x?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F "
            "key my-access-key-123 sig=abc")
    out = redact_text(text)
    for secret in ("pw@", "deadbeef", "AKIAIOSFODNN7EXAMPLE", "my-access-key-123", "sig=abc"):
        assert secret not in out


def test_s3_options_come_from_the_standard_environment(monkeypatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert _s3_options() == {"endpoint_url": "http://127.0.0.1:8333", "client_kwargs": {"region_name": "eu-west-1"}}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")
    assert _s3_options()["endpoint_url"] == "http://127.0.0.1:9000"


def test_s3_root_builds_an_s3fs_filesystem_without_network(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    store = open_root("s3://bucket/exports/")
    assert store.protocol == "s3" and store.prefix == "bucket/exports"
    assert store.fs.endpoint_url == "http://127.0.0.1:1"
    assert store.fs_path("2026/x.jsonl") == "bucket/exports/2026/x.jsonl"
    assert str(store) == "s3://bucket/exports"


def test_write_and_delete_objects(bucket: str) -> None:
    store = open_root(f"memory://{bucket}/p")
    store.write_bytes("a/b.jsonl", b"x\n")
    obj = store.object("a/b.jsonl")
    assert obj.size == 2
    store.delete(["a/b.jsonl"])
    assert store.list() == []
    with pytest.raises(FileNotFoundError):
        store.object("a/b.jsonl")


def test_an_object_opened_several_times_is_fetched_once(bucket: str) -> None:
    put(bucket, "p/a.jsonl", b"".join(f'{{"n": {i}}}\n'.encode() for i in range(1000)))
    fs = FlakyFS(0, OSError("unused"))
    store = Store(f"memory://{bucket}/p", retry=FAST, filesystem=fs)
    [obj] = store.list()
    fs.calls = 0
    # iter_records opens the object twice (JSON document or lines? then the records); the bytes come once.
    assert len(list(files.iter_records(obj))) == 1000
    assert files.looks_like_document(obj) is False
    assert fs.calls == 1
    # A rewritten object (new size or version) is fetched again, not served from the old bytes.
    put(bucket, "p/a.jsonl", b'{"n": "new"}\n')
    [new] = store.list()
    fs.calls = 0
    assert [r.value for r in files.iter_records(new)] == [{"n": "new"}]
    assert fs.calls == 1


def test_a_store_that_cannot_be_opened_says_which_root(monkeypatch) -> None:
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageError, match=r"az://container/prefix: cannot open the store: .*account_name"):
        open_root("az://container/prefix")


def test_local_roots_relative_or_with_symlinked_files(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "land" / "13").mkdir(parents=True)
    (tmp_path / "land" / "13" / "a.jsonl").write_bytes(b"{}\n")
    (tmp_path / "land" / "13" / "b.jsonl").symlink_to(tmp_path / "land" / "13" / "a.jsonl")
    monkeypatch.chdir(tmp_path)
    objects = open_root("land").list()
    assert [(o.key, o.size) for o in objects] == [("13/a.jsonl", 3), ("13/b.jsonl", 3)]
    assert objects[1].local_path == Path("land/13/b.jsonl")
