"""The audit archive goes with the vault into a backup set and back: `twin db backup` copies the
segments the backed-up vault lists (checked against its index), `twin db restore` brings exactly
those back, so the restored chain verifies even after retention deleted them from the live
archive, and a restore still re-applies the erasures made since the backup."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from compliance.audit import Actor
from twin.config import Config
from twin.runtime import Runtime

from cli_support import operator_env, twin

ADMIN = Actor("test:ops", "admin")
ERASED = "erased-after-the-backup"


def _runtime(env, days_ago: int | None = None) -> Runtime:
    if days_ago is None:
        return Runtime.open(Config.from_env(env))
    then = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return Runtime.open(Config.from_env(env), clock=lambda: then)


def _record_old_events(env, days_ago: int, count: int) -> None:
    rt = _runtime(env, days_ago)
    try:
        rt.audit.record_many([(Actor("tok_cli", "service"), "read", {"subject_hash": "d" * 64})] * count)
    finally:
        rt.close()


def _archive(env) -> None:
    done = twin(env, "audit", "archive")
    assert done.returncode == 0 and done.stdout.startswith("archived "), done.stderr


def _segments(env) -> list[str]:
    return sorted(p.name for p in (Path(env["TWIN_DATA_DIR"]) / "privacy_vault.audit-archive").glob("*.ltaa"))


@pytest.fixture
def backed_up(tmp_path):
    """A learner, old events archived into segments, then a backup set."""
    env = operator_env(tmp_path)
    env.update(TWIN_AUDIT_SEAL_EVERY="5", TWIN_AUDIT_ARCHIVE_SEGMENT_EVENTS="10")
    assert twin(env, "db", "setup").returncode == 0
    rt = _runtime(env)
    try:
        rt.profiles.create(ADMIN, None, {"user_id": ERASED, "personal": {"name": "Ada"}})
    finally:
        rt.close()
    _record_old_events(env, 60, 23)
    _archive(env)
    in_backup = _segments(env)
    assert len(in_backup) >= 2
    backup = tmp_path / "backup-set"
    taken = twin(env, "db", "backup", "--out", str(backup))
    assert taken.returncode == 0, taken.stderr
    assert f"{len(in_backup)} segment(s), each checked against the vault's index" in taken.stdout
    return env, backup, in_backup


def test_the_set_holds_the_segments_its_vault_lists_with_their_checksums(backed_up):
    env, backup, in_backup = backed_up
    assert sorted(p.name for p in (backup / "privacy_vault.audit-archive").iterdir()) == in_backup
    manifest = json.loads((backup / "manifest.json").read_text())
    records = manifest["attached"]["audit_archive"]
    assert [r["file"] for r in records] == in_backup
    assert {r["field_key"] for r in records} == {1} and "1" in manifest["keys"]["field_keys"]
    for rec in records:
        live = Path(env["TWIN_DATA_DIR"]) / "privacy_vault.audit-archive" / rec["file"]
        assert (backup / "privacy_vault.audit-archive" / rec["file"]).read_bytes() == live.read_bytes()
        assert rec["size"] == live.stat().st_size
    checked = twin(env, "db", "verify", "--backup-check", str(backup))
    assert checked.returncode == 0 and checked.stdout.endswith("all checks passed\n"), checked.stdout


def test_after_more_archival_and_retention_a_restore_brings_back_the_segments_and_the_chain_verifies(
        backed_up):
    env, backup, in_backup = backed_up
    _record_old_events(env, 40, 20)
    _archive(env)
    assert len(_segments(env)) > len(in_backup)
    rt = _runtime(env)
    try:  # retention: the segments of 60 days ago expire, whole
        assert rt.audit.purge_older_than(datetime.now(timezone.utc) - timedelta(days=50)) > 0
    finally:
        rt.close()
    assert not set(in_backup) & set(_segments(env))  # gone from the live archive
    assert twin(env, "audit", "verify", "--full").returncode == 0
    erased = twin(env, "dsr", "erase", "--user-id", ERASED, "--yes")
    assert erased.returncode == 0 and '"verified": true' in erased.stdout, erased.stderr

    restored = twin(env, "db", "restore", str(backup), "--yes")

    assert restored.returncode == 0, restored.stderr
    assert f"audit archive      restored from {backup} ({len(in_backup)} segment(s))" in restored.stdout
    assert "1 erasure tombstone(s) carried; every tombstone re-applied" in restored.stdout
    assert _segments(env) == in_backup  # exactly the set's: the newer ones rewound with the vault
    verified = twin(env, "audit", "verify", "--full")
    assert verified.returncode == 0 and verified.stdout.startswith("audit trail OK"), verified.stdout
    rt = _runtime(env)
    try:  # the erasure made after the backup stands in the restored vault
        subject = rt.hasher.hash(ERASED)
        assert rt.vault_db.query_one("SELECT count(*) FROM subject_keys WHERE user_id_hash = ?", (subject,))[0] == 0
        assert rt.vault_db.query_one("SELECT count(*) FROM erasure_tombstones WHERE user_id_hash = ?",
                                     (subject,))[0] == 1
    finally:
        rt.close()


def test_an_altered_segment_in_the_set_is_named_and_the_restore_replaces_nothing(backed_up):
    env, backup, in_backup = backed_up
    altered = backup / "privacy_vault.audit-archive" / in_backup[0]
    body = bytearray(altered.read_bytes())
    body[-1] ^= 1
    altered.write_bytes(bytes(body))
    vault = Path(env["TWIN_DATA_DIR"]) / "privacy_vault.db"
    before = vault.read_bytes()

    checked = twin(env, "db", "verify", "--backup-check", str(backup))
    assert checked.returncode == 1
    assert f"FAIL backup privacy_vault: archive segment {in_backup[0]} fails its checksum" in checked.stdout
    refused = twin(env, "db", "restore", str(backup), "--yes")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert f"archive segment {in_backup[0]} fails its checksum" in line
    assert vault.read_bytes() == before and _segments(env) == in_backup


def test_a_set_taken_before_the_archive_was_backed_up_leaves_the_live_archive_as_it_is(backed_up):
    env, backup, in_backup = backed_up
    manifest_path = backup / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["attached"]
    manifest_path.write_text(json.dumps(manifest))
    (backup / "privacy_vault.audit-archive" / in_backup[0]).unlink()
    _record_old_events(env, 40, 20)
    _archive(env)
    live = _segments(env)

    restored = twin(env, "db", "restore", str(backup), "--yes")

    assert restored.returncode == 0, restored.stderr
    assert "audit archive" not in restored.stdout
    assert _segments(env) == live
    # The newer segments beside the older vault are the gap verify reports, as before.
    gap = twin(env, "audit", "verify")
    assert gap.returncode == 1 and "is not in the vault's index: a gap" in gap.stdout, gap.stdout


def test_a_backup_refuses_an_archive_that_does_not_match_its_index_naming_the_segment(backed_up, tmp_path):
    env, _, in_backup = backed_up
    live = Path(env["TWIN_DATA_DIR"]) / "privacy_vault.audit-archive"
    altered = bytearray((live / in_backup[1]).read_bytes())
    altered[-1] ^= 1
    (live / in_backup[1]).write_bytes(bytes(altered))  # damage the vault's index cannot explain
    (live / in_backup[0]).unlink()  # and a segment lost

    failed = twin(env, "db", "backup", "--out", str(tmp_path / "second-set"))

    assert failed.returncode == 2
    line = failed.stderr.strip().splitlines()[-1]  # after the copies' progress lines
    assert f"archive segment {in_backup[0]} left the live archive during the backup" in line
    assert not (tmp_path / "second-set" / "manifest.json").exists()  # no set that looks whole
    (live / in_backup[0]).write_bytes((tmp_path / "backup-set" / "privacy_vault.audit-archive"
                                       / in_backup[0]).read_bytes())
    failed = twin(env, "db", "backup", "--out", str(tmp_path / "third-set"))
    assert failed.returncode == 2
    assert f"archive segment {in_backup[1]} does not match the vault's index" in failed.stderr.splitlines()[-1]
