"""Start-up re-applies erasure tombstones only when a database was restored or replaced since
they were last applied (the erasure generations on both sides), and always finishes erasures
that did not finish; a plain restart looks at no tombstone of the history.

An erased subject's row put back by hand (``_plant``), as a restore would bring it back but
without changing any file's generation, shows which starts re-applied every tombstone: a full
re-application deletes it, a plain start leaves it."""

from __future__ import annotations

import re

import pytest

from compliance import erasure_generation
from compliance.audit import Actor
from dsr_checks import ADMIN_ACTOR, restart, stop_and_restore
from twin.runtime import Runtime
from twin.storage import IntegrityError, backup_database, read_manifest, write_manifest

STARTUP = "system:startup"


def _plant(runtime: Runtime, subject_hash: str, profile_id: str) -> None:
    runtime.twin_db.write(lambda conn: conn.execute(
        "INSERT INTO learning_profiles (profile_id, user_id_hash, ttl_expires_at) VALUES (?, ?, ?)",
        (profile_id, subject_hash, "2999-01-01T00:00:00.000000Z")))


def _planted(runtime: Runtime, profile_id: str) -> bool:
    return runtime.twin_db.query_one("SELECT 1 FROM learning_profiles WHERE profile_id = ?",
                                     (profile_id,)) is not None


def _every_data_database_agrees(runtime: Runtime) -> bool:
    """The vault's record matches the generation of every data database (the learner data and,
    where it exists, the settings database), each one recorded."""
    data = [db for db in (runtime.twin_db, runtime.settings_db) if db is not None]
    return all(erasure_generation.current(db) is not None for db in data) \
        and erasure_generation.agree(runtime.vault_db, data)


def _reapplied(runtime: Runtime, subject_hash: str) -> int:
    return len(runtime.audit.query(subject_hash=subject_hash, action="restore_reapply"))


@pytest.fixture
def opened(runtime, keyring, clock, make_subject):
    """A deployment started once (its generations recorded) with one erased subject."""
    erased = make_subject("erased-long-ago", sessions=1, knowledge=1)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=erased.user_id)
    restarted = restart(runtime, keyring, clock)
    yield restarted, erased
    restarted.close()


def test_after_a_start_both_sides_agree_and_a_plain_restart_reapplies_nothing(opened, keyring, clock):
    runtime, erased = opened
    assert _every_data_database_agrees(runtime)
    _plant(runtime, erased.subject_hash, "prf_planted")

    restarted = restart(runtime, keyring, clock)
    try:
        assert _planted(restarted, "prf_planted")  # no full re-application
        assert _reapplied(restarted, erased.subject_hash) == 0
        result = restarted.dsr.reapply_tombstones(Actor(STARTUP, "system"))
        assert result == {"subjects_reapplied": 0, "tombstones": 0, "every": 0}
    finally:
        restarted.close()


def test_each_completed_erasure_keeps_both_sides_in_agreement(opened):
    runtime, _ = opened
    runtime.profiles.create(ADMIN_ACTOR, None, {"user_id": "erased-now", "personal": {"n": 1}})
    data = [db for db in (runtime.twin_db, runtime.settings_db) if db is not None]
    before = [erasure_generation.current(db) for db in data]

    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="erased-now")

    after = [erasure_generation.current(db) for db in data]
    assert all(now != then for now, then in zip(after, before))  # every data database advanced
    assert _every_data_database_agrees(runtime)
    assert runtime.vault_db.query_one("SELECT completed_at FROM erasure_tombstones WHERE user_id_hash = ?",
                                      (runtime.hasher.hash("erased-now"),))[0] is not None


def test_a_generation_is_a_new_random_128_bit_token_in_the_data_file_at_each_advance(opened):
    runtime, _ = opened
    held = erasure_generation.current(runtime.twin_db)

    before, now = erasure_generation.advance(runtime.twin_db)
    again = erasure_generation.advance(runtime.twin_db)

    assert before == held and re.fullmatch("[0-9a-f]{32}", now)  # 16 random bytes, in hex
    assert again[0] == now and re.fullmatch("[0-9a-f]{32}", again[1]) and again[1] != now
    assert erasure_generation.current(runtime.twin_db) == again[1]


def test_a_vault_with_no_record_of_a_data_database_disagrees_with_it(opened):
    """A vault restored from before that database had a record (or a record lost): every
    tombstone is re-applied at the next start."""
    runtime, _ = opened
    runtime.vault_db.execute("DELETE FROM erasure_state")

    assert erasure_generation.recorded(runtime.vault_db, "digital_twin") is None
    assert not erasure_generation.agree(runtime.vault_db, [runtime.twin_db])

def test_two_erasures_finishing_out_of_order_make_the_next_start_reapply_everything(opened):
    runtime, _ = opened
    first = erasure_generation.advance(runtime.twin_db)   # one erasure's rows went ...
    second = erasure_generation.advance(runtime.twin_db)  # ... then another's
    runtime.vault_db.write(lambda conn: erasure_generation.record(conn, "digital_twin", *second))
    runtime.vault_db.write(lambda conn: erasure_generation.record(conn, "digital_twin", *first))

    assert erasure_generation.recorded(runtime.vault_db, "digital_twin") is None
    assert not erasure_generation.agree(runtime.vault_db, [runtime.twin_db])


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_restoring_an_older_data_file_reapplies_every_tombstone(opened, keyring, clock, tmp_path):
    runtime, erased = opened
    view, _ = runtime.profiles.create(ADMIN_ACTOR, None, {"user_id": "erased-after-backup", "personal": {"n": 1}})
    backup_dir = tmp_path / "backup"
    write_manifest(backup_dir, [backup_database(runtime.twin_db, backup_dir)])
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="erased-after-backup")
    (entry,) = read_manifest(backup_dir)
    stop_and_restore(runtime, keyring, backup_dir, entry)

    restarted = restart(runtime, keyring, clock)
    try:
        subject_hash = restarted.hasher.hash("erased-after-backup")
        assert not _planted(restarted, view["profile_id"])
        assert _reapplied(restarted, subject_hash) == 1
        assert _every_data_database_agrees(restarted)
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_restoring_an_older_vault_reapplies_every_tombstone(opened, keyring, clock, tmp_path):
    runtime, erased = opened
    backup_dir = tmp_path / "backup"
    write_manifest(backup_dir, [backup_database(runtime.vault_db, backup_dir)])
    runtime.profiles.create(ADMIN_ACTOR, None, {"user_id": "erased-after-vault-backup", "personal": {"n": 1}})
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="erased-after-vault-backup")
    _plant(runtime, erased.subject_hash, "prf_planted")
    (entry,) = read_manifest(backup_dir)
    stop_and_restore(runtime, keyring, backup_dir, entry, "vault_db")

    restarted = restart(runtime, keyring, clock)
    try:
        assert not _planted(restarted, "prf_planted")  # the restored vault's tombstone, re-applied
        assert _reapplied(restarted, erased.subject_hash) == 1
    finally:
        restarted.close()


def test_a_replaced_data_file_reapplies_every_tombstone(opened, keyring, clock):
    runtime, erased = opened
    _plant(runtime, erased.subject_hash, "prf_planted")
    runtime.twin_db.write(lambda conn: conn.execute("DELETE FROM erasure_generation"))  # as a new file has none

    restarted = restart(runtime, keyring, clock)
    try:
        assert not _planted(restarted, "prf_planted")
        assert _every_data_database_agrees(restarted)
    finally:
        restarted.close()


@pytest.mark.sqlite_only("simulates the crash with a TEMP trigger")
def test_an_unfinished_erasure_is_finished_by_a_plain_restart_without_a_full_pass(opened, keyring, clock):
    runtime, erased = opened
    _plant(runtime, erased.subject_hash, "prf_planted")
    view, _ = runtime.profiles.create(ADMIN_ACTOR, None, {"user_id": "interrupted", "personal": {"n": 1}})
    with runtime.vault_db.writes_held() as writes:  # the key's deletion fails, as a crash there would
        writes.execute("CREATE TEMP TRIGGER crash BEFORE DELETE ON main.subject_keys "
                       "BEGIN SELECT RAISE(ABORT, 'crash'); END")
    with pytest.raises(IntegrityError):
        runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="interrupted")

    restarted = restart(runtime, keyring, clock)
    try:
        subject_hash = restarted.hasher.hash("interrupted")
        assert not restarted.keys.has_key(subject_hash)
        assert _reapplied(restarted, subject_hash) == 1
        assert _planted(restarted, "prf_planted")  # only the unfinished one was looked at
        assert not _planted(restarted, view["profile_id"])
        assert restarted.vault_db.query_one("SELECT completed_at FROM erasure_tombstones WHERE user_id_hash = ?",
                                            (subject_hash,))[0] is not None  # finished: not looked at again
        result = restarted.dsr.reapply_tombstones(Actor(STARTUP, "system"))
        assert result == {"subjects_reapplied": 0, "tombstones": 0, "every": 0}
    finally:
        restarted.close()


def test_twin_db_restore_reapplies_every_tombstone_whatever_the_generations(opened):
    runtime, erased = opened
    _plant(runtime, erased.subject_hash, "prf_planted")

    result = runtime.dsr.reapply_tombstones(Actor(STARTUP, "system"), every=True)

    assert result == {"subjects_reapplied": 1, "tombstones": 1, "every": 1}
    assert not _planted(runtime, "prf_planted")
    assert _every_data_database_agrees(runtime)
