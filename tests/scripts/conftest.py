"""Shared set-up for running operator scripts as an operator would: a subprocess over real
files under tmp_path, with nothing inherited from the developer's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from compliance.keyring import Keyring

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items()
               if not (k.startswith("TWIN_") or k.endswith("_DB_PATH") or k == "DIGITAL_TWIN_ENCRYPTION_KEY")}
    environ.update(TWIN_DATA_DIR=str(tmp_path / "data"), TWIN_KEYRING_PATH=str(tmp_path / "keys" / "keyring.json"))
    return environ


@pytest.fixture
def keyring(env) -> Keyring:
    """A keyring saved where the scripts look for it (overrides the in-memory one)."""
    keyring = Keyring.generate()
    keyring.save(Path(env["TWIN_KEYRING_PATH"]))
    return keyring


@pytest.fixture
def run_script(env) -> Callable[..., subprocess.CompletedProcess]:
    """``run_script("backup_databases.py", "--yes")``: the finished process, output captured."""
    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], env=env,
                              cwd=Path(env["TWIN_DATA_DIR"]).parent, capture_output=True, text=True,
                              timeout=120)
    return run
