"""bench/request_cpu.py measures in a temporary directory of its own (data files, keyring,
metrics, callgrind parts) and removes it, whether the measurement succeeds or fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp)}  # where tempfile puts its directories
    return subprocess.run([sys.executable, str(ROOT / "bench" / "request_cpu.py"), "--only", "get",
                           "--n", "5", "--rounds", "1", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_a_measurement_leaves_no_temporary_directory_behind(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    done = _bench(tmp)

    assert done.returncode == 0, done.stderr[-500:]
    assert re.search(r"^  get +this tree [\d,]+$", done.stdout, re.M), done.stdout
    assert list(tmp.iterdir()) == []


def test_a_failed_measurement_leaves_none_either(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    before = tmp_path / "before"  # a checkout whose interpreter fails
    (before / ".venv" / "bin").mkdir(parents=True)
    python = before / ".venv" / "bin" / "python"
    python.write_text("#!/bin/sh\necho 'no such release' >&2\nexit 3\n")
    python.chmod(0o755)

    done = _bench(tmp, "--before", str(before))

    assert done.returncode != 0
    assert f"{before}: get failed: no such release" in done.stderr
    assert list(tmp.iterdir()) == []
