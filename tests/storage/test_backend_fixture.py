"""The test fixture's promises about servers: without PostgreSQL its tests skip and say why;
with CI=true a missing PostgreSQL fails the whole run instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:1/postgres"
# One test that runs on both backends and needs nothing else.
BOTH_BACKENDS_TEST = "storage/test_backend_contract.py::test_floats_keep_eight_bytes"


def _pytest(tmp_path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(TESTS / BOTH_BACKENDS_TEST)], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_without_postgresql_its_tests_skip_with_the_reason(tmp_path):
    run = _pytest(tmp_path, TWIN_TEST_POSTGRESQL_URL=CLOSED_PORT_URL)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout
    assert "PostgreSQL not reachable at 127.0.0.1:1" in run.stdout


@pytest.mark.slow
def test_with_ci_true_a_missing_postgresql_fails_the_run(tmp_path):
    run = _pytest(tmp_path, TWIN_TEST_POSTGRESQL_URL=CLOSED_PORT_URL, CI="true")
    assert run.returncode != 0
    assert "CI=true but PostgreSQL not reachable at 127.0.0.1:1" in run.stdout + run.stderr


@pytest.mark.slow
def test_with_ci_true_a_missing_redis_fails_the_run(tmp_path):
    run = _pytest(tmp_path, TWIN_TEST_REDIS_URL="redis://127.0.0.1:1", CI="true")
    assert run.returncode != 0
    assert "CI=true but Redis not reachable at 127.0.0.1:1" in run.stdout + run.stderr
