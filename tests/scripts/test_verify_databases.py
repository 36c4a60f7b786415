"""scripts/verify_databases.py on broken live databases: one FAIL line per problem, exit 1,
never a traceback, and never a side effect such as creating a missing file."""

from __future__ import annotations

from pathlib import Path

import pytest

from compliance.audit import Actor
from twin.config import Config
from twin.runtime import Runtime


@pytest.fixture
def data_dir(env, keyring, run_script) -> Path:
    """Every database created and migrated, with some rows in digital_twin."""
    assert run_script("setup_databases.py").returncode == 0
    rt = Runtime.open(Config.from_env(env))
    for i in range(200):
        rt.profiles.create(Actor("t", "admin"), None, {"user_id": f"u{i}", "personal": {"pad": "x" * 200}})
    rt.close()
    return Path(env["TWIN_DATA_DIR"])


def test_healthy_databases_pass(data_dir, run_script):
    result = run_script("verify_databases.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout


def test_a_corrupted_live_database_is_a_fail_line_not_a_traceback(data_dir, run_script):
    path = data_dir / "digital_twin.db"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))

    result = run_script("verify_databases.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert any(line.startswith("FAIL digital_twin") for line in result.stdout.splitlines()), result.stdout
    assert "ok   privacy_vault" in result.stdout  # the other databases are still checked


def test_a_missing_database_is_reported_and_not_created(data_dir, run_script):
    path = data_dir / "ledger.db"
    path.unlink()

    result = run_script("verify_databases.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL ledger: missing ({path})" in result.stdout
    assert "1 problem(s) found" in result.stdout
    assert not path.exists()
