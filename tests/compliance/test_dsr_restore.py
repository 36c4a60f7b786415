"""Tombstones and their re-application after a restore: a backup from before an erasure serves
nothing of the subject once restored (not even in the file's bytes), a subject who came back
keeps what they were given since, and the re-application's own bookkeeping (only where data
remains, whatever the order, erasure generations, its lock). Helpers: dsr_checks.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compliance.audit import Actor
from dsr_checks import (ADMIN_ACTOR, assert_export_empty, client_of, erase_then_restore_an_older_backup,
                        export_http, restart, stop_and_restore)
from twin.runtime import Runtime
from twin.storage import backup_database, read_manifest, write_manifest


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_a_restored_backup_taken_before_erasure_serves_nothing_of_the_subject(
        runtime, keyring, clock, make_subject, tmp_path):
    subject = make_subject("restored", sessions=2, knowledge=2)
    bystander = make_subject("survivor", sessions=2, knowledge=1)
    backup_dir = tmp_path / "backup"
    write_manifest(backup_dir, [backup_database(runtime.twin_db, backup_dir)])
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    (entry,) = read_manifest(backup_dir)
    stop_and_restore(runtime, keyring, backup_dir, entry)
    restarted = restart(runtime, keyring, clock)
    try:
        assert set(restarted.dsr.counts(subject.subject_hash).values()) == {0}
        assert_export_empty(restarted.dsr.export(subject.subject_hash))
        assert restarted.audit.query(subject_hash=subject.subject_hash, action="restore_reapply")
        kept = restarted.dsr.export(bystander.subject_hash)
        assert len(kept["sessions"]) == 2 and len(kept["knowledge_states"]) == 1
        client = client_of(restarted)
        assert client.get(f"/v1/profiles/{subject.profile_id}", headers=client.service).status_code == 404
        assert client.get(f"/v1/profiles/{bystander.profile_id}", headers=client.service).status_code == 200
    finally:
        restarted.close()


def test_a_subject_who_returns_after_erasure_keeps_their_new_data_across_restarts(
        runtime, keyring, clock, make_subject):
    first = make_subject("comeback", sessions=1)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=first.user_id)
    again = make_subject("comeback", sessions=2)

    restarted = restart(runtime, keyring, clock)
    try:
        doc = restarted.dsr.export(again.subject_hash)
        assert [p["profile_id"] for p in doc["profiles"]] == [again.profile_id]
        assert len(doc["sessions"]) == 2
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_a_returning_subject_restored_from_an_old_backup_loses_only_the_erased_rows(
        runtime, keyring, clock, make_subject, tmp_path):
    old = make_subject("came-back", sessions=2)
    backup_dir = tmp_path / "backup"
    entry = backup_database(runtime.twin_db, backup_dir)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=old.user_id)
    make_subject("came-back", sessions=1)  # re-registers: a new key, newer than the tombstone

    stop_and_restore(runtime, keyring, backup_dir, entry)
    restarted = restart(runtime, keyring, clock)
    try:
        # The restored rows were sealed under the destroyed key: they must go, not break reads.
        assert restarted.twin_db.query_one("SELECT count(*) FROM learning_profiles WHERE profile_id = ?",
                                           (old.profile_id,))[0] == 0
        doc = restarted.dsr.export(old.subject_hash)
        assert doc["profiles"] == [] and doc["sessions"] == []
        client = client_of(restarted)
        assert client.post("/v1/profiles/lookup", json={"user_id": "came-back"},
                           headers=client.service).status_code == 404
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_a_subject_who_came_back_keeps_their_new_key_and_token_when_an_old_backup_is_re_erased(
        runtime, keyring, clock, make_subject, tmp_path):
    """Restored rows from before the erasure go; what the returning subject was given since
    (their new data key, a learner token) stays, and the audit counts only what went."""
    old = make_subject("returns-then-restore", sessions=2, knowledge=0)
    backup_dir = tmp_path / "backup"
    entry = backup_database(runtime.twin_db, backup_dir)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=old.user_id)
    clock.advance(seconds=1)
    make_subject("returns-then-restore", sessions=1, knowledge=0)
    token = runtime.tokens.issue("learner", subject_hash=old.subject_hash).token
    stop_and_restore(runtime, keyring, backup_dir, entry)

    restarted = restart(runtime, keyring, clock)
    try:
        assert restarted.dsr.export(old.subject_hash)["profiles"] == []
        assert restarted.dsr.counts(old.subject_hash)["learning_sessions"] == 0
        assert restarted.keys.has_key(old.subject_hash)
        assert restarted.tokens.verify(token).subject_hash == old.subject_hash
        (event,) = restarted.audit.query(subject_hash=old.subject_hash, action="restore_reapply")
        assert event.details["counts"] == {"learning_profiles": 1}  # sessions go with their profile
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups and the SQLCipher file")
def test_after_a_restore_and_restart_the_reerased_subject_is_gone_from_the_files_bytes(
        runtime, keyring, clock, make_subject, ciphertexts_of, forensics, tmp_path):
    """Re-applying a tombstone deletes the restored rows, and then empties the WAL: otherwise
    the restored pages, with the subject's rows, stay in digital_twin.db until some later
    checkpoint, readable by anyone holding the database key."""
    subject = make_subject("restored-bytes", sessions=2, knowledge=1)
    bystander = make_subject("kept-bytes", sessions=1, knowledge=0)
    needles = {"profile_id": subject.profile_id.encode(), "subject hash": subject.subject_hash.encode(),
               **{f"session {i}": s.encode() for i, s in enumerate(subject.session_ids)},
               **{f"ciphertext {i}": c for i, c in enumerate(ciphertexts_of(subject.subject_hash))}}
    erase_then_restore_an_older_backup(runtime, keyring, subject, tmp_path)
    restored = forensics.decrypted(runtime.twin_db.path, keyring.database_key)
    assert [name for name, needle in needles.items() if needle not in restored] == []  # it came back

    restarted = restart(runtime, keyring, clock)
    try:
        # Read while the service runs: a graceful stop would checkpoint anyway.
        pages = forensics.decrypted(restarted.twin_db.path, keyring.database_key)
        assert bystander.profile_id.encode() in pages  # the reader does see live data
        assert [name for name, needle in needles.items() if needle in pages] == []
        assert forensics.tables_containing(forensics.rows(restarted.twin_db), subject.subject_hash) == set()
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_before_the_tombstones_are_reapplied_a_restored_subject_exports_nothing_and_nothing_breaks(
        runtime, keyring, clock, make_subject, tmp_path):
    """Between a restore and the re-application of the tombstones, the subject's rows are back
    but their key is gone: the export shows nothing of them (it cannot open them) and serves
    everyone else as usual."""
    subject = make_subject("keyless", sessions=2, knowledge=1)
    bystander = make_subject("keyed", sessions=1, knowledge=0)
    erase_then_restore_an_older_backup(runtime, keyring, subject, tmp_path)
    keyring.save(runtime.config.keyring_path)

    restarted = Runtime.open(runtime.config, clock=clock, reapply_tombstones=False)
    try:
        assert restarted.dsr.counts(subject.subject_hash)["learning_sessions"] == 2  # rows are back
        assert not restarted.keys.has_key(subject.subject_hash)
        client = client_of(restarted)
        admin = {"Authorization": f"Bearer {restarted.tokens.issue('admin').token}"}

        doc = export_http(client, admin, subject.user_id)

        assert_export_empty(doc)
        assert len(export_http(client, admin, bystander.user_id)["sessions"]) == 1
        assert restarted.dsr.reapply_tombstones(ADMIN_ACTOR)["subjects_reapplied"] == 1
        assert set(restarted.dsr.counts(subject.subject_hash).values()) == {0}
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_restored_subjects_are_all_erased_again_whatever_order_their_tombstones_come_in(
        runtime, keyring, clock, make_subject, tmp_path):
    """Tombstones of subjects with nothing left to erase do not stop the ones after them."""
    long_gone = make_subject("erased-long-ago", sessions=1)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=long_gone.user_id)
    first, second = make_subject("restored-1", sessions=1), make_subject("restored-2", sessions=2)
    backup_dir = tmp_path / "backup"
    entry = backup_database(runtime.twin_db, backup_dir)
    for subject in (first, second):
        runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)
    stop_and_restore(runtime, keyring, backup_dir, entry)
    keyring.save(runtime.config.keyring_path)
    restarted = Runtime.open(runtime.config, clock=clock, reapply_tombstones=False)
    try:
        result = restarted.dsr.reapply_tombstones(ADMIN_ACTOR)

        assert (result["subjects_reapplied"], result["tombstones"]) == (2, 3)
        for subject in (first, second):
            assert set(restarted.dsr.counts(subject.subject_hash).values()) == {0}
            (event,) = restarted.audit.query(subject_hash=subject.subject_hash, action="restore_reapply")
            assert event.resource == "dsr:tombstone"
    finally:
        restarted.close()


def test_tombstones_are_reapplied_only_where_data_remains(runtime, make_subject):
    erased = make_subject("gone")
    make_subject("alive")
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=erased.user_id)

    result = runtime.dsr.reapply_tombstones(Actor("system:test", "system"))

    # The runtime was never opened (Runtime.open), so no generation was recorded: every
    # tombstone is looked at.
    assert result == {"subjects_reapplied": 0, "tombstones": 1, "every": 1}
    assert runtime.audit.query(action="restore_reapply") == []


def test_a_re_application_with_no_tombstone_leaves_every_erasure_generation_as_it_was(runtime):
    from compliance import erasure_generation

    data = runtime.dsr._data_databases()  # noqa: SLF001 - the files whose generation is at stake
    before = {db.name: erasure_generation.current(db) for db in data}

    result = runtime.dsr.reapply_tombstones(Actor("system:test", "system"), every=True)

    assert result == {"subjects_reapplied": 0, "tombstones": 0, "every": 1}
    assert {db.name: erasure_generation.current(db) for db in data} == before
    assert runtime.vault_db.query("SELECT * FROM erasure_state") == []


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_an_unfinished_erasure_is_finished_under_the_reapply_lock_leased_for_a_minute(runtime, make_subject, clock):
    from dataclasses import replace

    from twin.storage.timestamps import from_db, to_db

    subject = make_subject("half-erased", sessions=1, knowledge=0)
    # An erasure that stopped after writing its tombstone (the process died): rows remain.
    runtime.vault_db.execute("INSERT INTO erasure_tombstones (user_id_hash, receipt_id, erased_at, counts) "
                             "VALUES (?, 'r-1', ?, '{}')", (subject.subject_hash, to_db(clock())))
    seen = []

    class Watched:
        def __init__(self, ending) -> None:
            self._ending = ending

        def __getattr__(self, name):
            return getattr(self._ending, name)

        def end(self, *args, **kwargs):
            seen.extend(tuple(r) for r in runtime.vault_db.query("SELECT name, acquired_at, expires_at FROM job_locks"))
            return self._ending.end(*args, **kwargs)

    dsr = replace(runtime.dsr, ending=Watched(runtime.dsr.ending))
    result = dsr.reapply_tombstones(Actor("system:test", "system"))

    assert result["subjects_reapplied"] == 1
    [(name, acquired, expires)] = seen
    assert name == "reapply-tombstones" and from_db(expires) - from_db(acquired) == timedelta(minutes=1)
    assert runtime.vault_db.query("SELECT * FROM job_locks") == []
    assert runtime.dsr.counts(subject.subject_hash)["learning_sessions"] == 0
