"""The operator scripts, run as an operator would: real subprocesses on real files."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from compliance.audit import Actor
from compliance.keyring import Keyring
from twin.catalog import DATABASES
from twin.config import Config
from twin.learners.schema import MIGRATIONS as LEARNER_MIGRATIONS
from twin.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("*.py"))


def run(env, script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], env=env, cwd=Path(env["TWIN_DATA_DIR"]).parent,
                          capture_output=True, text=True, input=stdin, timeout=120)


def open_runtime(env) -> Runtime:
    return Runtime.open(Config.from_env(env))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_help(env, script):
    result = run(env, script, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_generate_keys_writes_a_private_keyring_and_refuses_to_overwrite(env, tmp_path):
    first = run(env, "generate_keys.py")
    assert first.returncode == 0, first.stderr
    path = Path(env["TWIN_KEYRING_PATH"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    second = run(env, "generate_keys.py")
    assert second.returncode == 2 and "refusing to overwrite" in second.stderr
    assert "Traceback" not in second.stderr and path.read_bytes() == before
    printed = run(env, "generate_keys.py", "--print-env")
    assert printed.stdout.startswith("DIGITAL_TWIN_ENCRYPTION_KEY=")


def test_setup_creates_every_database_encrypted_and_migration_system_round_trips(env, tmp_path):
    assert run(env, "generate_keys.py").returncode == 0
    setup = run(env, "setup_databases.py")
    assert setup.returncode == 0, setup.stderr
    for spec in DATABASES.values():
        path = tmp_path / "data" / spec.filename
        assert path.exists(), spec.name
        with pytest.raises(sqlite3.DatabaseError):
            sqlite3.connect(path).execute("SELECT * FROM sqlite_master").fetchall()
    status = run(env, "migration_system.py", "status")
    assert status.returncode == 0 and "up to date" in status.stdout
    refused = run(env, "migration_system.py", "down", "--to", "0")
    assert refused.returncode == 2 and "--database" in refused.stderr
    unconfirmed = run(env, "migration_system.py", "down", "--database", "digital_twin", "--to", "0")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert "drop table learning_profiles (0 rows)" in unconfirmed.stdout  # said before asking
    down = run(env, "migration_system.py", "down", "--database", "digital_twin", "--to", "0", "--yes")
    assert down.returncode == 0, down.stderr
    assert "digital_twin" in run(env, "migration_system.py", "status").stdout
    every = [m.version for m in LEARNER_MIGRATIONS]
    assert f"pending {every}" in run(env, "migration_system.py", "status", "--database", "digital_twin").stdout
    assert run(env, "migration_system.py", "up").returncode == 0
    unknown = run(env, "setup_databases.py", "--database", "nope")
    assert unknown.returncode == 2 and "unknown database" in unknown.stderr


def test_backup_verify_and_restore_with_a_corrupted_copy_detected(env, tmp_path):
    assert run(env, "generate_keys.py").returncode == 0
    rt = open_runtime(env)
    rt.profiles.create(Actor("t", "admin"), None, {"user_id": "kept", "personal": {"x": 1}})
    rt.close()
    backup_dir = tmp_path / "bk"
    made = run(env, "backup_databases.py", "--out", str(backup_dir))
    assert made.returncode == 0, made.stderr
    assert run(env, "verify_databases.py", "--database", "digital_twin").returncode == 0
    ok = run(env, "verify_databases.py", "--backup-check", str(backup_dir))
    assert ok.returncode == 0, ok.stdout + ok.stderr

    rt = open_runtime(env)
    rt.profiles.create(Actor("t", "admin"), None, {"user_id": "after-backup"})
    rt.close()
    refused = run(env, "backup_databases.py", "--restore", str(backup_dir))
    assert refused.returncode == 2 and "--yes" in refused.stderr
    restored = run(env, "backup_databases.py", "--restore", str(backup_dir), "--yes")
    assert restored.returncode == 0, restored.stderr
    rt = open_runtime(env)
    assert rt.twin_db.query_one("SELECT count(*) FROM learning_profiles")[0] == 1
    rt.close()

    copy = backup_dir / "digital_twin.db"
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    bad = run(env, "verify_databases.py", "--backup-check", str(backup_dir))
    assert bad.returncode == 1 and "checksum mismatch" in bad.stdout


def test_tokens_are_printed_once_stored_hashed_and_revocable(env):
    assert run(env, "generate_keys.py").returncode == 0
    issued = run(env, "issue_token.py", "--role", "service", "--label", "backend")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    token_id = token.removeprefix("lt_").split(".")[0]
    rt = open_runtime(env)
    assert rt.tokens.verify(token).role == "service"
    assert token.split(".")[1] not in json.dumps(rt.tokens.list())
    rt.close()
    assert token_id in run(env, "issue_token.py", "--list").stdout
    assert run(env, "issue_token.py", "--revoke", token_id).returncode == 0
    rt = open_runtime(env)
    assert rt.tokens.verify(token) is None
    rt.close()
    learner = run(env, "issue_token.py", "--role", "learner")
    assert learner.returncode == 2 and "--user-id" in learner.stderr


def test_dsr_scripts_export_then_erase_offline(env, tmp_path):
    assert run(env, "generate_keys.py").returncode == 0
    rt = open_runtime(env)
    profile, _ = rt.profiles.create(Actor("t", "admin"), None,
                                    {"user_id": "subject-7", "personal": {"nickname": "Quokka-Zeta"}})
    rt.sessions.start(Actor("t", "admin"), None, profile["profile_id"], {"session_type": "lesson"})
    rt.close()
    out = tmp_path / "export.json"
    exported = run(env, "dsr_export.py", "--user-id", "subject-7", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    document = json.loads(out.read_text())
    assert document["profiles"][0]["personal"] == {"nickname": "Quokka-Zeta"}
    assert len(document["sessions"]) == 1

    dry = run(env, "dsr_erase.py", "--user-id", "subject-7", "--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["counts"]["learning_sessions"] == 1
    unconfirmed = run(env, "dsr_erase.py", "--user-id", "subject-7", stdin="")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    erased = run(env, "dsr_erase.py", "--user-id", "subject-7", "--yes")
    assert erased.returncode == 0, erased.stderr
    receipt = json.loads(erased.stdout)
    assert receipt["verified"] and receipt["counts"]["learning_profiles"] == 1
    again = json.loads(run(env, "dsr_export.py", "--user-id", "subject-7").stdout)
    assert again["profiles"] == [] and again["sessions"] == []


def test_retention_job_once_dry_run_and_purge(env):
    assert run(env, "generate_keys.py").returncode == 0
    rt = open_runtime(env)
    rt.profiles.create(Actor("t", "admin"), None, {"user_id": "short-lived", "retention_days": 1})
    rt.twin_db.execute("UPDATE learning_profiles SET ttl_expires_at = '2000-01-01T00:00:00.000000Z'")
    rt.close()
    dry = run(env, "retention_job.py", "--once", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["counts"]["learning_profiles"] == 1
    real = run(env, "retention_job.py", "--once")
    assert json.loads(real.stdout)["counts"]["learning_profiles"] == 1
    assert json.loads(run(env, "retention_job.py", "--once").stdout)["counts"]["learning_profiles"] == 0
    bad = run(env, "retention_job.py", "--cron", "not a cron")
    assert bad.returncode == 2 and "invalid cron" in bad.stderr


def test_rotate_field_key_keeps_data_readable_and_rekey_changes_the_file_key(env):
    assert run(env, "generate_keys.py").returncode == 0
    rt = open_runtime(env)
    profile, _ = rt.profiles.create(Actor("t", "admin"), None, {"user_id": "r1", "personal": {"v": "kept"}})
    rt.close()
    rotated = run(env, "rotate_keys.py", "--new-field-key")
    assert rotated.returncode == 0, rotated.stderr
    keyring = Keyring.load(Path(env["TWIN_KEYRING_PATH"]), production=False)
    assert keyring.active_field_key == 2
    rt = open_runtime(env)
    assert rt.keys.count_needing_rewrap() == 0
    assert rt.profiles.get(Actor("t", "admin"), None, profile["profile_id"])[0]["personal"] == {"v": "kept"}
    rt.close()
    old_db_key = keyring.database_key
    rekeyed = run(env, "rotate_keys.py", "--rekey-databases")
    assert rekeyed.returncode == 0, rekeyed.stderr
    new = Keyring.load(Path(env["TWIN_KEYRING_PATH"]), production=False)
    assert new.database_key != old_db_key and new.previous_database_key is None
    rt = open_runtime(env)
    assert rt.profiles.get(Actor("t", "admin"), None, profile["profile_id"])[0]["personal"] == {"v": "kept"}
    rt.close()
