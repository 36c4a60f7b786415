"""scripts/verify_audit.py, run as operators run it: a subprocess on a real vault."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.keyring import Keyring
from twin.catalog import open_database
from twin.config import Config
from twin.storage import open_keyed

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "verify_audit.py"
SERVICE = Actor("tok_service1", "service")


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The script's environment: data and keyring under tmp_path, nothing from the developer."""
    base = {k: v for k, v in os.environ.items()
            if not (k.startswith("TWIN_") or k.endswith("_DB_PATH")
                    or k == "DIGITAL_TWIN_ENCRYPTION_KEY")}
    return {**base, "TWIN_DATA_DIR": str(tmp_path / "data"),
            "TWIN_KEYRING_PATH": str(tmp_path / "keys" / "keyring.json")}


@pytest.fixture
def vault(env, keyring):
    """A real privacy vault holding 6 audit events, written where the script will look."""
    db = open_database("privacy_vault", Config.from_env(env), keyring.database_keys)
    trail = AuditTrail(db)
    for i in range(6):
        trail.record(SERVICE, "read", subject_hash=f"{i:064x}", request_id=f"req-{i}")
    db.close_all()
    return db


def run_script(env: dict[str, str], *args: str,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, cwd=cwd or REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_help_describes_the_exit_codes(env):
    result = run_script(env, "--help")
    assert result.returncode == 0
    assert "hash chain" in result.stdout and "1 broken" in result.stdout


def test_an_intact_trail_exits_0_then_a_hand_edit_exits_1_naming_the_event(env, vault, keyring):
    intact = run_script(env)
    assert (intact.returncode, intact.stdout.strip()) == (0, "audit trail OK: 6 events verified")

    conn = open_keyed(vault.path, keyring.database_key)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET action = 4 WHERE seq = 4")  # an export, says the code
    conn.close()

    broken = run_script(env)
    assert broken.returncode == 1
    assert broken.stdout.strip() == \
        "audit trail BROKEN at event 4: content does not match its hash (edited?)"


def test_a_deleted_event_exits_1_naming_the_next_event(env, vault, keyring):
    conn = open_keyed(vault.path, keyring.database_key)
    conn.execute("DELETE FROM audit_log WHERE seq = 2")
    conn.close()

    result = run_script(env)
    assert result.returncode == 1
    assert result.stdout.startswith("audit trail BROKEN at event 3: event 2 missing")


def test_runs_from_any_working_directory(env, vault, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run_script(env, cwd=elsewhere).returncode == 0


def test_a_missing_keyring_is_refused_not_generated(env, tmp_path):
    result = run_script(env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no keyring" in result.stderr
    assert "Traceback" not in result.stderr
    assert not Path(env["TWIN_KEYRING_PATH"]).exists()


def test_a_missing_vault_is_an_error_and_is_not_created(env, keyring, tmp_path):
    result = run_script(env)
    assert result.returncode == 2 and "no privacy vault" in result.stderr
    assert not (tmp_path / "data" / "privacy_vault.db").exists()


def test_a_wrong_key_is_a_one_line_error(env, vault):
    Keyring.generate().save(Path(env["TWIN_KEYRING_PATH"]))

    result = run_script(env)
    assert result.returncode == 2
    assert "wrong key" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_staged_events_not_yet_in_the_trail_are_mentioned(env, vault, keyring):
    from compliance.audit_journal import AuditJournal, audit_journal_dir
    from compliance.field_crypto import FieldCipher

    cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
    journal = AuditJournal(audit_journal_dir(vault.path), cipher)
    AuditTrail(vault, journal=journal, flush_delay=3600).stage(SERVICE, "read", request_id="staged")
    journal.close()  # as a stopped service leaves it: on disk, not in the chain

    result = run_script(env)

    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "audit trail OK: 6 events verified",
        "note: 1 audit journal segment(s) hold events not in the trail yet; the service moves "
        "them in as it runs, or when it next starts"]


def test_a_damaged_journal_segment_exits_1_naming_it(env, vault):
    from compliance.audit_journal import DAMAGED_SUFFIX, SUFFIX, audit_journal_dir

    journal = audit_journal_dir(vault.path)
    journal.mkdir(mode=0o700)
    (journal / ("1700000000000-42-cafebabe" + SUFFIX + DAMAGED_SUFFIX)).write_bytes(b"LTAJ")

    result = run_script(env)

    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "audit trail OK: 6 events verified"
    assert "DAMAGED: 1 segment(s)" in result.stdout and "1700000000000-42-cafebabe" in result.stdout


def test_by_default_it_reads_only_past_the_newest_seal_it_marked_and_full_reads_all(env, keyring):
    from compliance.audit_seals import SealBook

    keyring.save(Path(env["TWIN_KEYRING_PATH"]))
    env = {**env, "TWIN_AUDIT_SEAL_EVERY": "4"}
    db = open_database("privacy_vault", Config.from_env(env), keyring.database_keys)
    AuditTrail(db, seals=SealBook(keyring.audit_seal_key, 4)).record_many(
        [(SERVICE, "read", {"request_id": f"req-{i}"}) for i in range(10)])
    db.close_all()

    first = run_script(env)  # no seal marked yet: everything, marking seals 4 and 8
    assert (first.returncode, first.stdout.strip()) == (0, "audit trail OK: 10 events verified")
    second = run_script(env)
    assert (second.returncode, second.stdout.strip()) == \
        (0, "audit trail OK: 2 events verified after the verified seal at event 8")
    full = run_script(env, "--full")
    assert (full.returncode, full.stdout.strip()) == (0, "audit trail OK: 10 events verified")

    conn = open_keyed(db.path, keyring.database_key)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET details = '{}' WHERE seq = 9")
    conn.commit()
    conn.close()
    broken = run_script(env)
    assert (broken.returncode, broken.stdout.strip()) == \
        (1, "audit trail BROKEN at event 9: content does not match its hash (edited?)")
