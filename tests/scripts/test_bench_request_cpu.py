"""bench/request_cpu.py measures in a temporary directory of its own (data files, keyring,
metrics, callgrind parts) under TMPDIR and removes it, whether the measurement succeeds or
fails."""

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


def _checkout(tmp_path: Path, then: str) -> tuple[Path, Path]:
    """A checkout whose interpreter notes the metrics directory the bench hands it (in a file
    outside TMPDIR) if that directory exists while it runs, then runs the shell line ``then``."""
    before, seen = tmp_path / "before", tmp_path / "seen"
    (before / ".venv" / "bin").mkdir(parents=True)
    python = before / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\n[ -d "$PROMETHEUS_MULTIPROC_DIR" ] && '
                      f'echo "$PROMETHEUS_MULTIPROC_DIR" > {seen}\n{then}\n')
    python.chmod(0o755)
    return before, seen


def _measured_in(seen: Path, tmp: Path) -> Path:
    """The directory the measurement ran in: a ``twin-cpu-*`` directory right under ``tmp``."""
    directory = Path(seen.read_text().strip()).parent
    assert directory.parent == tmp and directory.name.startswith("twin-cpu-"), directory
    return directory


def test_a_measurement_leaves_no_temporary_directory_behind(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    before, seen = _checkout(tmp_path, "echo 1234")

    done = _bench(tmp, "--before", str(before))

    assert done.returncode == 0, done.stderr[-500:]
    figures = r"^  get +this tree [\d,]+  before 1,234  after/before "
    assert re.search(figures, done.stdout, re.M), done.stdout
    assert not _measured_in(seen, tmp).exists()
    assert list(tmp.iterdir()) == []


def test_a_failed_measurement_leaves_none_either(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    before, seen = _checkout(tmp_path, "echo 'no such release' >&2\nexit 3")  # it fails

    done = _bench(tmp, "--before", str(before))

    assert done.returncode != 0
    assert f"{before}: get failed: no such release" in done.stderr
    assert not _measured_in(seen, tmp).exists()
    assert list(tmp.iterdir()) == []
