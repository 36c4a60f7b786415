"""scripts/data_migration.py, run as operators run it: a subprocess from the repo root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twin.catalog import open_database
from twin.config import Config
from twin.settings_store import SettingsStore

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "data_migration.py"
SECRET = "sk-legacy-0123456789abcdef"


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not (k.startswith("TWIN_") or k.endswith("_DB_PATH") or k == "DIGITAL_TWIN_ENCRYPTION_KEY")}
    return {**base, "TWIN_DATA_DIR": str(tmp_path / "data"),
            "TWIN_KEYRING_PATH": str(tmp_path / "keys" / "keyring.json")}


@pytest.fixture
def legacy_files(tmp_path) -> list[str]:
    settings, goals = tmp_path / "config.json", tmp_path / "goals.json"
    settings.write_text(json.dumps({"openai_api_key": SECRET, "region": "eu"}))
    goals.write_text(json.dumps([{"id": "g1", "title": "Ship it", "priority": 5}]))
    return ["--settings-json", str(settings), "--goals-json", str(goals)]


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_help_lists_the_options(env):
    result = run_script(env, "--help")
    assert result.returncode == 0
    for option in ("--settings-json", "--goals-json", "--log-file", "--dry-run", "--backup-dir"):
        assert option in result.stdout


def test_the_script_imports_once_and_changes_nothing_the_second_time(env, keyring, legacy_files, tmp_path):
    first = run_script(env, *legacy_files, "--log-file", str(tmp_path / "first.json"))
    assert first.returncode == 0, first.stderr
    assert "configurations  created 2" in first.stdout and "backup:" in first.stdout
    second = run_script(env, *legacy_files, "--log-file", str(tmp_path / "second.json"))
    assert second.returncode == 0, second.stderr
    log = json.loads((tmp_path / "second.json").read_text())
    assert log["counts"]["configurations"] == {"created": 0, "updated": 0, "unchanged": 2, "skipped": 0}
    assert log["counts"]["business_goals"]["unchanged"] == 1
    assert SECRET not in first.stdout + first.stderr + (tmp_path / "first.json").read_text()
    db = open_database("settings", Config.from_env(env), keyring.database_keys)
    try:
        store = SettingsStore.from_keyring(db, keyring)
        assert store.get_config("openai_api_key") == SECRET
        assert [h.changed_by for h in store.config_history("region")] == ["script:data_migration"]
    finally:
        db.close_all()


def test_a_dry_run_says_so_and_writes_nothing(env, keyring, legacy_files, tmp_path):
    result = run_script(env, *legacy_files, "--dry-run", "--log-file", str(tmp_path / "dry.json"))
    assert result.returncode == 0, result.stderr
    assert "dry run, nothing written" in result.stdout
    db = open_database("settings", Config.from_env(env), keyring.database_keys)
    try:
        assert db.query_one("SELECT count(*) FROM configurations")[0] == 0
    finally:
        db.close_all()
    assert not (tmp_path / "data" / "backups").exists()


@pytest.mark.parametrize("args, message", [
    ((), "nothing to import"),
    (("--settings-json", "missing.json"), "cannot read missing.json"),
])
def test_failures_are_one_line_without_a_traceback(env, keyring, args, message):
    result = run_script(env, *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert message in line


def test_an_invalid_goal_fails_cleanly_and_logs_the_failure(env, keyring, tmp_path):
    goals = tmp_path / "goals.json"
    goals.write_text(json.dumps([{"id": "g1", "title": "x", "status": "someday"}]))
    result = run_script(env, "--goals-json", str(goals), "--log-file", str(tmp_path / "log.json"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "goals[0]" in result.stderr
    assert json.loads((tmp_path / "log.json").read_text())["status"] == "failed"
