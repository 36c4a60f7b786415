"""What a process that stopped (or was killed), a failed create or a failing vault leave behind
with a lease: unbound keys no create used, bindings the vault never recorded; none of it loses an
acknowledged profile, all of it is recorded or reclaimed later, and the lease's own threads record
bindings and lease keys off the request path. Real runtime, on both backends (the same crash
points in a real server killed with SIGKILL: tests/serving/test_subject_key_crash_points.py)."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import pytest

from compliance.subject_key_lease import (LEASE_SECONDS, RECLAIM_AFTER_SECONDS, NewSubjectKey, SubjectKeyLease,
                                          reclaim)
from leased_keys import create, key_rows, profile_key, readable
from racing_vault import BeforeNextWrite
from storage_backends import held_elsewhere
from twin.learners.errors import DuplicateProfileError
from twin.storage import OperationalError, ServerBacked


def test_a_start_reclaims_the_keys_a_stopped_process_left_once_their_lease_is_long_over(
        runtime, quiet_lease, config, keyring, clock):
    from twin.runtime import Runtime

    keyring.save(config.keyring_path)  # the deployment's keyring file, which a start loads
    view = create(runtime, "kept")
    runtime.close()  # its lease's other 63 keys were never used, and the binding never recorded
    clock.advance(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)

    started = Runtime.open(config, clock=clock)
    try:
        [row] = key_rows(started)
        assert (row["key_id"], row["user_id_hash"]) == (profile_key(started, "kept"), started.hasher.hash("kept"))
        assert readable(started, view)
    finally:
        started.close()


def test_a_new_process_never_takes_from_the_lease_of_the_one_before(runtime, quiet_lease, config, keyring):
    from twin.runtime import Runtime

    keyring.save(config.keyring_path)
    create(runtime, "first")
    runtime.close()  # killed with 63 keys of its lease still unused and unexpired

    started = Runtime.open(config, clock=runtime.clock)
    try:
        create(started, "second")
        rows = {r["key_id"]: r for r in key_rows(started)}
        assert len(rows) == 128
        assert rows[profile_key(started, "second")]["leased_to"] == started.lease.holder != quiet_lease.holder
        # its 63 unused keys and the one "first" took, whose binding it never recorded
        assert sum(r["leased_to"] == quiet_lease.holder for r in rows.values()) == 64
        assert rows[profile_key(started, "first")]["user_id_hash"] is None
    finally:
        started.close()


def test_the_key_a_failed_create_took_is_never_handed_out_again_and_goes_with_the_reclaim(
        runtime, quiet_lease, clock):
    views = [create(runtime, "ada")]
    with pytest.raises(DuplicateProfileError):
        create(runtime, "ada")  # took a key, then lost to the existing profile
    views += [create(runtime, f"other-{i}") for i in range(63)]

    named = {r[0] for r in runtime.twin_db.query("SELECT subject_key_id FROM learning_profiles")}
    assert len(named) == 64 and len(key_rows(runtime)) == 128  # the 64th create needed a second lease
    after = clock() + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    # the 64th create's take leased again, which recorded the 63 bindings before it: its own is left
    assert reclaim(runtime.keys, now=after) == {"bound": 1, "destroyed": 64}
    assert {r["key_id"] for r in key_rows(runtime)} == named
    assert all(readable(runtime, view) for view in views)


@contextmanager
def subject_keys_away(runtime) -> Iterator[None]:
    """The vault's key table unreachable for a while (an operator's mistake, a failing disk):
    every statement on it fails as it would, then it is back."""
    runtime.vault_db.execute("ALTER TABLE subject_keys RENAME TO subject_keys_away")
    try:
        yield
    finally:
        runtime.vault_db.execute("ALTER TABLE subject_keys_away RENAME TO subject_keys")


def test_bindings_a_failing_vault_refused_stay_queued_for_the_next_flush(runtime, quiet_lease, caplog):
    view = create(runtime, "ada")
    subject, late = runtime.hasher.hash("ada"), runtime.hasher.hash("late")
    vault = runtime.keys.vault
    # A create committing while the failing flush is under way: its binding is queued meanwhile.
    taken = quiet_lease.for_new_subject(late)
    runtime.keys.vault = BeforeNextWrite(vault, lambda: quiet_lease.bound(taken, late, "2030-01-01T00:00:00.000000Z"))

    with subject_keys_away(runtime):
        with pytest.raises(OperationalError):
            quiet_lease.flush()
        with caplog.at_level(logging.WARNING, logger="compliance.subject_key_lease"):
            quiet_lease._flush_quietly()  # what the flush timer runs
    runtime.keys.vault = vault
    [record] = [r for r in caplog.records if r.name == "compliance.subject_key_lease"]
    assert record.getMessage() == "recording subject key bindings failed"
    assert isinstance(record.exc_info[1], OperationalError)  # with its traceback
    assert subject not in caplog.text and profile_key(runtime, "ada") not in caplog.text

    assert quiet_lease.flush() == 2 and quiet_lease.flush() == 0  # both, once
    bound = runtime.vault_db.query_one("SELECT key_id FROM subject_keys WHERE user_id_hash = ?", (subject,))
    assert bound["key_id"] == profile_key(runtime, "ada") and readable(runtime, view)


def test_a_refill_a_failing_vault_refused_is_logged_and_the_next_take_leases(runtime, caplog):
    lease = runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys, background=False)

    with subject_keys_away(runtime), caplog.at_level(logging.WARNING, logger="compliance.subject_key_lease"):
        lease._refill_quietly()  # what the refill thread runs
    [record] = [r for r in caplog.records if r.name == "compliance.subject_key_lease"]
    assert record.getMessage() == "leasing subject keys failed"
    assert isinstance(record.exc_info[1], OperationalError)  # with its traceback
    assert key_rows(runtime) == []

    view = create(runtime, "ada")
    assert len(key_rows(runtime)) == 64 and readable(runtime, view)


# -- the lease's own threads ----------------------------------------------------------------

def bound_in_vault(runtime, *users: str) -> set:
    """Which of these users the vault binds the key their profile's row names."""
    return {user for user in users if runtime.vault_db.query_one(
        "SELECT 1 FROM subject_keys WHERE user_id_hash = ? AND key_id = ?",
        (runtime.hasher.hash(user), profile_key(runtime, user))) is not None}


def test_bindings_are_recorded_a_second_later_on_the_leases_timer_with_those_made_meanwhile(runtime):
    lease = runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys)
    create(runtime, "ada")
    create(runtime, "bo")
    timer = lease._flusher
    assert timer.daemon  # a stopping process never waits for it: the data rows bind the keys

    timer.join(timeout=30)
    assert bound_in_vault(runtime, "ada", "bo") == {"ada", "bo"}
    create(runtime, "cy")  # after the timer ran: a new one
    assert lease._flusher is not timer
    lease._flusher.join(timeout=30)
    assert bound_in_vault(runtime, "cy") == {"cy"}
    lease.close()


def test_a_lease_told_to_run_no_threads_records_nothing_until_flushed(runtime, quiet_lease):
    create(runtime, "ada")  # what a process killed right after its create leaves: no thread ran

    assert (quiet_lease._flusher, quiet_lease._refiller) == (None, None)
    assert bound_in_vault(runtime, "ada") == set()
    assert quiet_lease.flush() == 1 and bound_in_vault(runtime, "ada") == {"ada"}


def test_a_binding_queued_before_the_lease_ever_flushed_is_recorded(runtime):
    lease = SubjectKeyLease(runtime.keys, background=False)
    # A take between a refill's new keys reaching the lease and that refill's first flush:
    # its create commits and queues the binding before any flush ran.
    [key] = lease.lease_batch(1)
    subject = runtime.hasher.hash("ada")
    lease.bound(NewSubjectKey(key.cipher, key.key_id, key), subject, "2030-01-01T00:00:00.000000Z")

    assert lease.flush() == 1
    assert [(r["key_id"], r["user_id_hash"]) for r in key_rows(runtime)] == [(key.key_id, subject)]


def test_a_lease_refills_on_its_own_thread_once_a_take_leaves_it_below_the_low_water(runtime):
    lease = SubjectKeyLease(runtime.keys, batch=4, low_water=2)
    lease.take()  # nothing to take yet: this one leases, on the caller's thread
    lease.take()
    assert lease._refiller is None and len(key_rows(runtime)) == 4  # 2 left
    lease.take()  # 1 left
    refiller = lease._refiller
    assert refiller.name == "subject-key-lease" and refiller.daemon
    refiller.join(timeout=30)

    assert len(key_rows(runtime)) == 8
    lease.close()


def test_a_full_batch_of_bindings_is_recorded_at_once_on_the_leases_thread(runtime):
    lease = SubjectKeyLease(runtime.keys, batch=2, low_water=1)
    subjects = [runtime.hasher.hash(user) for user in ("ada", "bo")]
    first, second = (lease.for_new_subject(subject) for subject in subjects)
    earlier = lease._refiller  # the second take left none: it refilled
    earlier.join(timeout=30)
    since = "2030-01-01T00:00:00.000000Z"

    lease.bound(first, subjects[0], since)
    lease.bound(second, subjects[1], since)  # 2 pending: a batch's worth
    assert lease._refiller is not earlier
    lease._refiller.join(timeout=30)

    assert {(r["key_id"], r["user_id_hash"]) for r in key_rows(runtime) if r["user_id_hash"]} == \
        {(first.key_id, subjects[0]), (second.key_id, subjects[1])}
    lease.close()


def test_at_shutdown_a_lease_records_its_pending_bindings_at_once(runtime):
    lease = runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys)
    create(runtime, "ada")

    lease.close()

    assert not lease._flusher.is_alive()
    row = runtime.vault_db.query_one("SELECT key_id FROM subject_keys WHERE user_id_hash = ?",
                                     (runtime.hasher.hash("ada"),))
    assert row["key_id"] == profile_key(runtime, "ada")


@contextmanager
def vault_writes_held(vault) -> Iterator[None]:
    """Another process's transaction holding the vault's key table against every insert, open
    until the block ends (a vault that does not answer a refill)."""
    with vault.transaction() as conn:
        if isinstance(vault, ServerBacked):
            conn.execute("LOCK TABLE subject_keys IN SHARE MODE")
        else:  # the write lock of the whole file, which BEGIN IMMEDIATE took
            conn.execute("DELETE FROM subject_keys WHERE key_id = ''")
        yield


def test_a_shutdown_waits_for_a_stuck_refill_no_longer_than_it_was_told(runtime):
    lease = SubjectKeyLease(runtime.keys, batch=2, low_water=2)
    lease.refill()  # on this thread: 2 keys
    with held_elsewhere(lambda: vault_writes_held(runtime.vault_db)):
        lease.take()  # 1 left: a refill starts on the lease's thread and waits for the vault
        started = time.monotonic()
        lease.close(timeout=0.3)
        waited = time.monotonic() - started
        assert 0.3 <= waited < 8 and lease._refiller.is_alive()  # still stuck when close returned
        assert len(key_rows(runtime)) == 2
    lease._refiller.join(timeout=30)  # the vault answers: the refill was only waiting
    assert len(key_rows(runtime)) == 4
