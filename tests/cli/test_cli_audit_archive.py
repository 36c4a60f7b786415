"""``twin audit archive``: an operator moves old audit events into archive segments, and
``twin audit verify`` names a segment that went missing; a field-key rotation rewraps the
segments' keys, so the old key can be retired."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from compliance.audit import Actor

from cli_support import operator_env, twin


@pytest.fixture
def env(tmp_path):
    env = operator_env(tmp_path)
    env.update(TWIN_AUDIT_SEAL_EVERY="5", TWIN_AUDIT_ARCHIVE_SEGMENT_EVENTS="10")
    assert twin(env, "db", "setup").returncode == 0
    from twin.config import Config
    from twin.runtime import Runtime

    then = datetime.now(timezone.utc) - timedelta(days=40)
    rt = Runtime.open(Config.from_env(env), clock=lambda: then)
    rt.audit.record_many([(Actor("tok_cli", "service"), "read", {"subject_hash": "d" * 64})] * 23)
    rt.close()
    return env


def test_archive_moves_old_events_into_segments_and_verify_names_a_missing_one(env, tmp_path):
    done = twin(env, "audit", "archive")
    assert done.returncode == 0, done.stderr
    # db setup's own events come first; 20 (or more) old events end on seals, in segments of 10.
    assert done.stdout.startswith("archived ") and " older than 30 day(s) into " in done.stdout
    files = sorted((tmp_path / "data" / "privacy_vault.audit-archive").glob("*.ltaa"))
    assert len(files) >= 2
    verified = twin(env, "audit", "verify", "--full")
    assert verified.returncode == 0 and verified.stdout.startswith("audit trail OK"), verified.stdout

    files[0].unlink()
    broken = twin(env, "audit", "verify")
    assert broken.returncode == 1
    first = int(files[0].name.split(".")[0])
    assert broken.stdout.splitlines()[0].startswith(f"audit trail BROKEN at event {first}: archive segment of events")
    assert "is missing (deleted?)" in broken.stdout


def test_a_bad_age_is_a_usage_error_naming_the_option_and_moves_nothing(env):
    bad = twin(env, "audit", "archive", "--older-than-days", "-1")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "--older-than-days" in bad.stderr.strip().splitlines()[-1]
    assert twin(env, "audit", "archive", "--older-than-days", "365").stdout.startswith("archived 0 audit event(s)")


def test_after_a_rotation_the_old_field_key_can_be_retired_and_archived_disclosures_still_export(env, tmp_path):
    import json

    from compliance.keyring import Keyring
    from twin.config import Config
    from twin.runtime import Runtime

    then = datetime.now(timezone.utc) - timedelta(days=40)
    rt = Runtime.open(Config.from_env(env), clock=lambda: then)
    subject = rt.hasher.hash("ada")
    rt.profiles.create(Actor("test:ops", "admin"), None, {"user_id": "ada", "personal": {"name": "Ada"}})
    rt.audit.record_many([(Actor("tok_cli", "service"), "read", {"subject_hash": subject,
                                                                 "request_id": f"old-{i}"}) for i in range(12)])
    rt.close()
    assert twin(env, "audit", "archive").returncode == 0
    segments = len(list((tmp_path / "data" / "privacy_vault.audit-archive").glob("*.ltaa")))
    assert segments >= 3

    rotated = twin(env, "keys", "rotate", "--new-field-key")
    assert rotated.returncode == 0, rotated.stderr
    assert f"and {segments} audit archive segment keys under field key v2" in rotated.stdout
    path = Path(env["TWIN_KEYRING_PATH"])
    keyring = Keyring.load(path, production=False)
    Keyring(keyring.database_key, {2: keyring.field_keys[2]}, 2, keyring.id_pepper).save(path)  # v1 retired

    verified = twin(env, "audit", "verify", "--full")
    assert verified.returncode == 0 and verified.stdout.startswith("audit trail OK"), verified.stdout
    exported = twin(env, "dsr", "export", "--user-id", "ada")
    assert exported.returncode == 0, exported.stderr
    disclosed = {e.get("request_id") for e in json.loads(exported.stdout)["disclosures"]}
    assert {f"old-{i}" for i in range(12)} <= disclosed


def test_a_rewrap_while_an_archive_run_holds_its_lock_is_one_line_exit_2_and_a_later_run_finishes(env):
    from compliance.job_lock import JobLock
    from twin.config import Config
    from twin.runtime import Runtime

    assert twin(env, "audit", "archive").returncode == 0
    rt = Runtime.open(Config.from_env(env))
    archive_run = JobLock(rt.vault_db, "audit-archive", rt.clock)
    archive_run.acquire()  # an archive run under way in another process
    try:
        refused = twin(env, "keys", "rotate", "--new-field-key")
    finally:
        archive_run.release()
        rt.close()
    assert refused.returncode == 2 and refused.stdout == ""
    line = refused.stderr.strip().splitlines()[-1]
    assert "job 'audit-archive' is already running" in line and "segments are not rewrapped" in line
    done = twin(env, "keys", "rotate", "--rewrap")
    assert done.returncode == 0, done.stderr
    assert " audit archive segment keys under field key v2" in done.stdout and " and 0 audit" not in done.stdout
    assert twin(env, "audit", "verify", "--full").stdout.startswith("audit trail OK")


def test_an_archived_event_put_back_in_the_live_log_is_one_line_and_the_archive_stays_as_it_was(env, tmp_path):
    from twin.config import Config
    from twin.runtime import Runtime

    rt = Runtime.open(Config.from_env(env))
    saved = rt.vault_db.query_one("SELECT * FROM audit_log WHERE seq = 2")
    rt.close()
    assert twin(env, "audit", "archive").returncode == 0
    files = {p.name: p.read_bytes() for p in (tmp_path / "data" / "privacy_vault.audit-archive").glob("*.ltaa")}
    rt = Runtime.open(Config.from_env(env))
    columns = list(saved.keys())  # the live log refuses an UPDATE, not an INSERT
    rt.vault_db.execute(f"INSERT INTO audit_log ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        tuple(saved[c] for c in columns))
    rt.audit.record_many([(Actor("tok_cli", "service"), "read", {"subject_hash": "d" * 64})] * 10)  # sealed now
    rt.close()

    refused = twin(env, "audit", "archive", "--older-than-days", "0")

    assert refused.returncode == 1 and len(refused.stdout.splitlines()) == 1, refused.stdout
    assert refused.stdout.startswith("audit trail BROKEN at event 2: event lies inside the archived or purged range")
    assert "Traceback" not in refused.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "data" / "privacy_vault.audit-archive").glob("*.ltaa")} == files
