"""Where landing files come from: a local folder or an object store (S3, GCS, Azure, file://, memory://).

The one module that knows about object stores. Everything else gets a `Store` (a root) and `StoreObject`s
(a key relative to the root, its size, ETag and modification time) and opens them as binary streams; the
readers never see a URL.

* `open_root(url_or_path)` gives a `Store`. Local paths and `file://` URLs stay local folders (their objects
  are read as plain files, so every local code path, the native fast path's included, is unchanged);
  `s3://`, `gs://`/`gcs://`, `az://`/`abfs://`/`abfss://` and `memory://` go through fsspec (s3fs, gcsfs,
  adlfs), which pages through listings and finds credentials in each provider's standard chain.
* Credentials never come from aiobs settings: a URL with embedded credentials (`s3://KEY:SECRET@bucket`, a
  SAS token in the query) is rejected, and every message this module writes is redacted (`redact_text`).
* An object is read as a stream of ranged reads (`StoreObject.open`), never downloaded whole to disk; each
  read, like each listing, is retried on transient errors (throttling, 5xx, timeouts, connection resets)
  with jittered exponential backoff (tenacity). When the retries run out, or the store refuses access,
  `StorageError` names the object's key: it is not an `OSError`, so no reader mistakes it for a damaged
  file, and the partition fails instead of quarantining a file that was never read.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

log = logging.getLogger(__name__)
T = TypeVar("T")

# Schemes that mean "an object store through fsspec"; file:// is mapped to a local folder.
REMOTE_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "az", "abfs": "abfs",
                  "abfss": "abfs", "adl": "adl", "memory": "memory"}
# Filesystems whose find() filters by name prefix in the listing request itself (s3fs, gcsfs, adlfs).
SERVER_SIDE_PREFIX = {"s3", "gcs", "az", "abfs"}
# A ranged read's size when the caller asks for less (readline, the gzip reader): few requests per object.
READ_CHUNK = 8 * 1024 * 1024
# Ranges a sequential reader fetches ahead of the one it is reading (see _RangeReader); 0 turns it off.
READ_AHEAD = 2
# Query parameters that carry credentials (SAS tokens, pre-signed URLs): refused in a root URL.
_SECRET_QUERY = re.compile(r"^(sig|se|sv|sp|st|spr|srt|ss|skoid|sktid|x-amz-.*|awsaccesskeyid|signature|"
                           r"token|access_token|x-goog-.*|key|secret|password|sas)$", re.IGNORECASE)
# Environment variables holding secrets of the provider chains: their values are scrubbed from messages.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY",
              "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
              "AZURE_CLIENT_SECRET", "GOOGLE_OAUTH_ACCESS_TOKEN")
_REDACTIONS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s:]+(:[^/@\s]*)?@"), r"\1***@"),
    (re.compile(r"(?i)\b(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid|"
                r"accountkey|sharedaccesssignature|x-goog-signature|x-goog-credential|access_token|token)"
                r"=([^&;\s\"']+)"), r"\1=***"),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b"), "***"),
)


class StorageError(Exception):
    """An object store operation failed for good (retries exhausted, or access refused); names the key."""


def is_url(value: str | os.PathLike[str]) -> bool:
    """True for `scheme://...` strings (an object store or file:// URL), False for local paths."""
    return isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", value) is not None


def redact_text(text: str) -> str:
    """The text with credentials removed: URL user info, signature/token query values, secret env values."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text


def check_root_url(value: str) -> str:
    """Return a root URL unchanged, or raise ValueError when it is unsupported or embeds credentials."""
    if not is_url(value):
        return value
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme != "file" and scheme not in REMOTE_SCHEMES:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {redact_text(value)!r}; use a local path, file://, "
                         f"{', '.join(sorted(s + '://' for s in REMOTE_SCHEMES))}")
    # adlfs' abfs://container@account.dfs.core.windows.net/ form has a user part that is not a secret.
    if parts.password is not None or (parts.username is not None and scheme not in ("abfs", "abfss")):
        raise ValueError(f"{redact_text(value)!r} embeds credentials; give them through the provider's "
                         "environment or credential chain (e.g. AWS_ACCESS_KEY_ID), never in a setting")
    secret = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_QUERY.match(k)]
    if secret:
        raise ValueError(f"{redact_text(value)!r} carries credentials in its query ({', '.join(secret)}); use "
                         "the provider's environment or credential chain instead")
    if parts.query or parts.fragment:
        raise ValueError(f"{redact_text(value)!r}: a root URL takes no query or fragment")
    return value


# ------------------------------------------------------------------------------------------------ retries

_TRANSIENT_WORDS = re.compile(
    r"(?i)throttl|slow ?down|too many requests|rate ?exceed|request ?limit|timed? ?out|timeout|"
    r"connection (?:reset|aborted|refused|closed)|reset by peer|broken pipe|temporar|unavailable|"
    r"internal ?error|bad gateway|gateway|server ?busy|\b(?:429|500|502|503|504)\b|incomplete ?read|"
    r"RequestTimeTooSkewed|OperationTimedOut|ServerBusy")
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError,
              ValueError, TypeError, KeyError, StorageError)


def _status(exc: BaseException) -> int | None:
    """The HTTP status an SDK exception carries (botocore, google-api-core, azure-core), if any."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: throttling, 5xx, timeouts, connection resets."""
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    status = _status(exc)
    if status is not None:
        return status == 429 or status >= 500 or status == 408
    if isinstance(exc, _PERMANENT):
        return False
    name = type(exc).__name__
    return bool(re.search(r"Timeout|Throttl|Connection|Transient|ServiceUnavailable|IncompleteRead", name)) or \
        bool(_TRANSIENT_WORDS.search(str(exc)))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a store operation is retried on transient errors."""

    attempts: int = 6
    initial_seconds: float = 0.5
    max_seconds: float = 20.0

    def call(self, operation: Callable[[], T], what: str) -> T:
        """Run `operation`, retrying transient errors with jittered backoff; raise StorageError naming `what`."""
        def _log(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: transient error (attempt %d of %d), retrying: %s", what, state.attempt_number,
                        self.attempts, redact_text(f"{type(exc).__name__}: {exc}"))

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.initial_seconds, max=self.max_seconds),
            retry=retry_if_exception(is_transient), before_sleep=_log, reraise=True,
        )
        try:
            return retrying(operation)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise  # the object is not there: the caller decides (a vanished object is quarantined)
        except Exception as exc:
            if isinstance(exc, StorageError):
                raise
            detail = redact_text(f"{type(exc).__name__}: {exc}")
            if is_transient(exc):
                raise StorageError(f"{what}: failed after {self.attempts} attempts: {detail}") from None
            raise StorageError(f"{what}: {detail}") from None


# ------------------------------------------------------------------------------------------------ objects


@dataclass(frozen=True)
class StoreObject:
    """One object (file) under a root: its key relative to the root, size, ETag and modification time."""

    store: Store = field(repr=False, compare=False)
    key: str
    size: int
    etag: str | None = None
    mtime: float | None = None

    @property
    def name(self) -> str:
        """The last part of the key (the file name)."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def url(self) -> str:
        """The object's full URL (or local path), for messages; never carries credentials."""
        return self.store.display(self.key)

    @property
    def local_path(self) -> Path | None:
        """The local file behind the object, for local roots; None on object stores."""
        return None if self.store.local is None else self.store.local / self.key

    def version(self) -> str:
        """What changes when the object is rewritten: its ETag, else its modification time."""
        return self.etag or ("" if self.mtime is None else f"{self.mtime:.6f}")

    def open(self) -> io.BufferedReader:
        """A binary stream of the object's bytes, read in ranges, each range retried on transient errors."""
        return io.BufferedReader(_RangeReader(self), buffer_size=READ_CHUNK)

    def __str__(self) -> str:
        return self.url


class _RangeReader(io.RawIOBase):
    """The raw stream behind `StoreObject.open`: every range is one ranged read, retried on its own.

    Read-ahead: once a reader has read two ranges in a row, the next READ_AHEAD ranges of READ_CHUNK bytes
    are fetched in a background thread while the caller works on the current one, so that parsing and the
    network overlap (without it, reading from a store took as long as the download plus the local read).
    A seek elsewhere drops what was fetched ahead; streams that only read an object's head (format
    detection) never trigger it.
    """

    def __init__(self, obj: StoreObject) -> None:
        super().__init__()
        self.obj = obj
        self.pos = 0
        # Bytes fetched but not yet handed out: (offset of data[0], data).
        self._held: tuple[int, bytes | memoryview] | None = None
        self._ahead: dict[int, Future[bytes]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._next = -1  # where the last range ended: a read starting there is sequential
        self._streak = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.obj.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _fetch(self, start: int, end: int) -> bytes:
        store = self.obj.store
        return store.retry.call(lambda: store.fs.cat_file(store.fs_path(self.obj.key), start=start, end=end),
                                f"{self.obj.url}: read bytes {start}-{end}")

    def _range_at(self, start: int, want: int) -> bytes | memoryview:
        """The bytes from `start`: fetched ahead when they were, else read now (at least `want` bytes)."""
        if start == self._next:
            self._streak += 1
        else:
            self._streak = 0
            self._drop_ahead()
        future = self._ahead.pop(start, None)
        head = None if future is not None else self.obj.store.head_of(self.obj)
        data: bytes | memoryview
        if future is not None:
            data = future.result()
        elif head is not None and start < len(head):
            # The readers open an object several times to sniff it (gzip magic, JSON document or lines,
            # the fast path's first lines): its first chunk is fetched once, not once per open.
            data = memoryview(head)[start:]
        else:
            data = self._fetch(start, min(start + want, self.obj.size))
            if start == 0:
                self.obj.store.keep_head(self.obj, data[:READ_CHUNK])
        self._next = start + len(data)
        if self._streak >= 1 and READ_AHEAD > 0:
            self._schedule(self._next)
        return data

    def _schedule(self, start: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="aiobs-read-ahead")
        for i in range(READ_AHEAD):
            begin = start + i * READ_CHUNK
            if begin >= self.obj.size:
                break
            if begin not in self._ahead:
                self._ahead[begin] = self._pool.submit(self._fetch, begin, min(begin + READ_CHUNK, self.obj.size))

    def _drop_ahead(self) -> None:
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.obj.size:
            return 0
        view = memoryview(buffer).cast("B")
        held = self._held
        if held is None or not held[0] <= self.pos < held[0] + len(held[1]):
            held = self._held = (self.pos, self._range_at(self.pos, max(len(view), 1)))
        offset = self.pos - held[0]
        n = min(len(view), len(held[1]) - offset)
        view[:n] = held[1][offset:offset + n]
        self.pos += n
        if offset + n >= len(held[1]):
            self._held = None
        return n

    def close(self) -> None:
        self._drop_ahead()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._held = None
        super().close()


# ------------------------------------------------------------------------------------------------ roots


def _s3_options() -> dict[str, Any]:
    """S3 options from the standard environment only: the endpoint of an S3-compatible store and region."""
    options: dict[str, Any] = {}
    # botocore reads AWS_ENDPOINT_URL itself in recent versions; passing it also covers older ones, and
    # AWS_ENDPOINT_URL_S3 (the service-specific variable) wins as in the AWS SDKs.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["client_kwargs"] = {"region_name": region}
    return options


class Store:
    """A landing or feedback root: a local folder or a prefix in an object store."""

    def __init__(self, root: str | os.PathLike[str], retry: RetryPolicy | None = None,
                 filesystem: Any | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self._head: tuple[tuple[str, int, str], bytes] | None = None
        text = os.fspath(root)
        self.local: Path | None = None
        if not is_url(text) or text.lower().startswith("file://"):
            if is_url(text):
                check_root_url(text)
                text = urlsplit(text).path
            self.local = Path(text)
            self.protocol = "file"
            # Absolute, as LocalFileSystem.find returns paths (a relative root would match no key).
            self.prefix = os.path.abspath(self.local).rstrip("/") or "/"
            if filesystem is None:
                from fsspec.implementations.local import LocalFileSystem  # noqa: PLC0415

                filesystem = LocalFileSystem()
            self.fs = filesystem
            self.root_display = str(self.local)
            return
        check_root_url(text)
        parts = urlsplit(text)
        self.protocol = REMOTE_SCHEMES[parts.scheme.lower()]
        self.prefix = (parts.netloc + parts.path).strip("/")
        if self.protocol == "memory":
            self.prefix = "/" + self.prefix
        self.root_display = f"{parts.scheme}://{(parts.netloc + parts.path).rstrip('/')}"
        if filesystem is None:
            import fsspec  # noqa: PLC0415 - only object-store roots need it

            options = _s3_options() if self.protocol == "s3" else {}
            if self.protocol in ("abfs", "az") and "@" in parts.netloc:
                # abfs://container@account.dfs.core.windows.net/path: the account comes from the URL.
                container, host = parts.netloc.split("@", 1)
                options["account_name"] = host.split(".", 1)[0]
                self.prefix = (container + parts.path).strip("/")
            try:
                filesystem = fsspec.filesystem(self.protocol, **options)
            except Exception as exc:
                # e.g. adlfs without AZURE_STORAGE_ACCOUNT_NAME: the message says which setting is missing.
                raise StorageError(f"{self.root_display}: cannot open the store: "
                                   f"{redact_text(f'{type(exc).__name__}: {exc}')}") from None
        self.fs = filesystem

    def head_of(self, obj: StoreObject) -> bytes | None:
        """The first bytes of the object last opened from the start, if `obj` is that object (same version)."""
        head = self._head
        if head is not None and head[0] == (obj.key, obj.size, obj.version()):
            return head[1]
        return None

    def keep_head(self, obj: StoreObject, data: bytes) -> None:
        """Remember the first bytes of one object (one at a time: memory stays bounded by READ_CHUNK)."""
        self._head = ((obj.key, obj.size, obj.version()), bytes(data))

    @property
    def is_local(self) -> bool:
        """True for a local folder (or file:// URL)."""
        return self.local is not None

    def __repr__(self) -> str:
        return f"Store({self.root_display!r})"

    def __str__(self) -> str:
        return self.root_display

    def fs_path(self, key: str) -> str:
        """The filesystem path of a key (relative to the root)."""
        key = key.strip("/")
        return f"{self.prefix}/{key}" if key else self.prefix

    def display(self, key: str) -> str:
        """The key's full URL or path for messages (no credentials)."""
        return f"{self.root_display}/{key.strip('/')}" if key.strip("/") else self.root_display

    def _key_of(self, path: str) -> str:
        path = path if not self.protocol == "memory" or path.startswith("/") else "/" + path
        return path[len(self.prefix):].lstrip("/") if path.startswith(self.prefix) else path

    def list(self, prefix: str = "", name_prefix: str = "") -> list[StoreObject]:
        """Every object under `prefix` (a folder, relative to the root), at any depth, sorted by key; with
        `name_prefix`, only those whose key under the folder starts with it (filtered by the store itself on
        S3, GCS and Azure, so a folder of a year of windows is not listed for one hour)."""
        folder = self.fs_path(prefix)
        if self.local is not None and not Path(folder).is_dir():
            return []

        def _find() -> dict[str, dict[str, Any]]:
            # s3fs/gcsfs/adlfs keep listings in a cache that never expires by default: a sensor tick must
            # see objects written since the last one.
            self.fs.invalidate_cache(folder)
            try:
                server_side = name_prefix and self.protocol in SERVER_SIDE_PREFIX
                return self.fs.find(folder, detail=True, **({"prefix": name_prefix} if server_side else {}))
            except FileNotFoundError:
                return {}

        found = self.retry.call(_find, f"{self.display(prefix)}: list objects")
        objects = []
        for path, info in found.items():
            if info.get("type", "file") != "file":
                if not (self.local is not None and info.get("islink") and os.path.isfile(path)):
                    continue
                # A symlinked file in a local folder counts as the file it points to (as Path.is_file does).
                target = os.stat(path)
                info = {**info, "size": target.st_size, "mtime": target.st_mtime}
            key = self._key_of(path)
            below = key[len(prefix.strip("/")):].lstrip("/") if prefix.strip("/") else key
            if name_prefix and not below.startswith(name_prefix):
                continue
            objects.append(StoreObject(self, key, int(info.get("size") or info.get("Size") or 0),
                                       _etag(info), _mtime(info)))
        return sorted(objects, key=lambda o: o.key)

    def object(self, key: str) -> StoreObject:
        """The object at `key` with its current size, ETag and mtime; FileNotFoundError when absent."""
        info = self.retry.call(lambda: self.fs.info(self.fs_path(key)), f"{self.display(key)}: stat")
        if info.get("type", "file") != "file":
            raise IsADirectoryError(f"{self.display(key)} is a folder, not an object")
        return StoreObject(self, key.strip("/"), int(info.get("size") or info.get("Size") or 0),
                           _etag(info), _mtime(info))

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write (replace) an object whole; object stores replace atomically on close."""
        def _write() -> None:
            with self.fs.open(self.fs_path(key), "wb") as handle:
                handle.write(data)
        self.retry.call(_write, f"{self.display(key)}: write")

    def delete(self, keys: Iterable[str]) -> None:
        """Delete objects by key (one batch request where the store supports it)."""
        keys = list(keys)
        if keys:
            what = self.display(keys[0]) + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else "")
            self.retry.call(lambda: self.fs.rm([self.fs_path(k) for k in keys]), f"{what}: delete")


def _etag(info: dict[str, Any]) -> str | None:
    for name in ("ETag", "etag", "md5Hash", "content_md5"):
        value = info.get(name)
        if value:
            return str(value).strip('"')
    return None


def _mtime(info: dict[str, Any]) -> float | None:
    for name in ("mtime", "LastModified", "last_modified", "updated", "mtime_ns", "created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value) / (1e9 if name == "mtime_ns" else 1)
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return None


# For sensor ticks, which time out after 60 s: each attempt already includes the provider library's own
# retries (s3fs and botocore retry connection errors for several seconds), so two attempts are enough.
QUICK_RETRY = RetryPolicy(attempts=2, initial_seconds=0.5, max_seconds=2.0)


def open_root(root: str | os.PathLike[str] | Store, retry: RetryPolicy | None = None) -> Store:
    """The `Store` for a landing or feedback root (a local path, file://, s3://, gs://, az://, ...)."""
    return root if isinstance(root, Store) else Store(root, retry=retry)
