"""Starting the local OpenAI-compatible server as a separate process (the demo and the tests use this).

`start_llm_server(**options)` runs `python -m aiobs_pipeline.llmserver --port 0`, waits for the URL it
prints, and returns an `LLMServer` handle (also a context manager) that stops it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 20.0
_OPTIONS = ("seed", "error_rate", "malformed_rate", "timeout_rate", "timeout_s", "latency_ms", "retry_after_ms",
            "embedding_dims", "ttft_ms", "chunk_delay_ms", "prompt_cache_min_tokens", "prompt_cache_block")


@dataclass
class LLMServer:
    """A running local server process and where to reach it."""

    base_url: str
    port: int
    process: subprocess.Popen[str]
    options: dict[str, Any] = field(default_factory=dict)
    stderr_path: Path | None = None

    def stop(self) -> None:
        """Terminate the process (kill it if it does not exit within 5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.stderr_path is not None:
            self.stderr_path.unlink(missing_ok=True)

    def reset(self) -> None:
        """Forget per-request fault sequences and the simulated prompt cache."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/admin/reset", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            json.load(response)

    def __enter__(self) -> LLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_llm_server(**options: Any) -> LLMServer:
    """Start `python -m aiobs_pipeline.llmserver --port 0` with the given options and wait until it serves."""
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"unknown llm server options {sorted(unknown)}; known: {list(_OPTIONS)}")
    args = [sys.executable, "-m", "aiobs_pipeline.llmserver", "--host", "127.0.0.1", "--port", "0"]
    for name, value in options.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    stderr_file = tempfile.NamedTemporaryFile(prefix="aiobs-llm-server-", suffix=".log", delete=False)  # noqa: SIM115
    stderr_path = Path(stderr_file.name)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr_file, text=True)
    stderr_file.close()
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=STARTUP_TIMEOUT_S)
    except queue.Empty:
        first = ""
    if "listening on " not in first:
        process.kill()
        process.wait(timeout=5)
        raise RuntimeError(
            f"the local LLM server did not start ({' '.join(args)}): stdout {first!r}, "
            f"stderr {stderr_path.read_text(errors='replace')[-2000:]!r}"
        )
    base_url = first.split("listening on ", 1)[1].split()[0]
    port = int(base_url.rsplit(":", 1)[1].split("/", 1)[0])
    return LLMServer(base_url=base_url, port=port, process=process, options=dict(options), stderr_path=stderr_path)
