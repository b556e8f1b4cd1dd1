"""aiobs sets DuckDB's allocator (jemalloc) to keep freed pages for reuse; the user's own setting wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import aiobs_pipeline

ROOT = Path(__file__).resolve().parents[2]

# Prints the dirty-page decay DuckDB's jemalloc runs with, after aiobs_pipeline and then DuckDB were imported and
# DuckDB allocated; "absent" where DuckDB is built without jemalloc (macOS, Windows).
_PROBE = """
import ctypes
import aiobs_pipeline, duckdb, _duckdb
duckdb.connect().sql("SELECT 1").fetchall()
try:
    mallctl = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
except AttributeError:
    print("absent")
else:
    value, size = ctypes.c_ssize_t(), ctypes.c_size_t(ctypes.sizeof(ctypes.c_ssize_t))
    assert mallctl(b"arenas.dirty_decay_ms", ctypes.byref(value), ctypes.byref(size), None, 0) == 0
    print(value.value)
"""


def _decay_ms(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip()
    if out == "absent":
        pytest.skip("this DuckDB build does not use jemalloc (only Linux builds do)")
    return out


def _env_without_setting() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != aiobs_pipeline.DUCKDB_ALLOCATOR_ENV}


def test_importing_aiobs_sets_the_setting_without_overriding_the_users() -> None:
    assert aiobs_pipeline.DUCKDB_ALLOCATOR_CONF == "dirty_decay_ms:10000"
    assert os.environ[aiobs_pipeline.DUCKDB_ALLOCATOR_ENV]  # set on import (or exported by the user)


def test_duckdb_runs_with_the_ten_second_decay_after_importing_aiobs() -> None:
    assert _decay_ms(_env_without_setting()) == "10000"


def test_a_setting_the_user_exported_wins() -> None:
    env = {**_env_without_setting(), aiobs_pipeline.DUCKDB_ALLOCATOR_ENV: "dirty_decay_ms:2500"}
    assert _decay_ms(env) == "2500"
