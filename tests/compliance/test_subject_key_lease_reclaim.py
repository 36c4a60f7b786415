"""Reclaim of leased subject keys: unbound keys go only after their lease ended plus the
documented time, and never while a data row names them (those are bound to the row's subject);
settling binds the leased key a profile names. Real runtime, on both backends, and on PostgreSQL
databases in a linguistic (ICU) collation, where text order is not byte order."""

from __future__ import annotations

from datetime import timedelta

import pytest

import storage_backends
from compliance.field_crypto import FieldCipher
from compliance.subject_key_lease import LEASE_SECONDS, RECLAIM_AFTER_SECONDS, SubjectKeyLease, reclaim
from compliance.subject_keys import SubjectKeyStore
from leased_keys import create, key_rows, profile_key, readable


def test_reclaim_waits_the_documented_time_then_binds_referenced_keys_and_destroys_only_unused_ones(
        runtime, quiet_lease):
    views = [create(runtime, user) for user in ("ada", "bo")]
    leased_at = runtime.clock()
    just_before = leased_at + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS - 60)

    assert reclaim(runtime.keys, now=just_before) == {"bound": 0, "destroyed": 0}
    assert len(key_rows(runtime)) == 64

    after = leased_at + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    assert reclaim(runtime.keys, now=after) == {"bound": 2, "destroyed": 62}
    rows = key_rows(runtime)
    assert {r["user_id_hash"] for r in rows} == {runtime.hasher.hash("ada"), runtime.hasher.hash("bo")}
    assert {r["key_id"] for r in rows} == {profile_key(runtime, "ada"), profile_key(runtime, "bo")}
    for user in ("ada", "bo"):
        runtime.keys.forget(runtime.hasher.hash(user))
    assert all(readable(runtime, view) for view in views)
    assert reclaim(runtime.keys, now=after) == {"bound": 0, "destroyed": 0}


def test_without_the_data_owner_to_ask_nothing_is_reclaimed(runtime, quiet_lease, keyring):
    create(runtime, "ada")
    blind = SubjectKeyStore(runtime.vault_db, FieldCipher(keyring.field_keys, keyring.active_field_key))
    far = runtime.clock() + timedelta(days=30)

    assert reclaim(blind, now=far) == {"bound": 0, "destroyed": 0}
    assert len(key_rows(runtime)) == 64


def test_reclaim_goes_past_expired_keys_it_cannot_bind_to_the_unused_ones_after_them(runtime, keyring, clock):
    lease = runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys, batch=2, low_water=1, background=False)
    blind = SubjectKeyStore(runtime.vault_db, FieldCipher(keyring.field_keys, keyring.active_field_key))
    for user in ("first", "second"):  # the oldest lease: both keys named, both subjects bound another
        create(runtime, user)
        blind.writer(runtime.hasher.hash(user), create=True)
    clock.advance(seconds=60)
    lease.lease_batch(5)  # a later lease, never used

    after = clock() + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    assert reclaim(runtime.keys, batch=2, now=after) == {"bound": 0, "destroyed": 5}
    assert {r["key_id"] for r in key_rows(runtime) if r["user_id_hash"] is None} == \
        {profile_key(runtime, "first"), profile_key(runtime, "second")}


def test_settling_binds_the_leased_key_a_profile_names_and_leaves_no_stray(runtime, quiet_lease):
    create(runtime, "ada")
    subject, key_id = runtime.hasher.hash("ada"), profile_key(runtime, "ada")

    assert runtime.keys.settle([]) == []
    assert runtime.keys.settle([runtime.hasher.hash("never-stored")]) == []
    assert runtime.keys.settle([subject]) == []

    (row,) = [r for r in key_rows(runtime) if r["key_id"] == key_id]
    assert (row["user_id_hash"], row["leased_to"], row["lease_ends_at"]) == (subject, None, None)
    assert runtime.keys.settle([subject]) == []  # bound already


def test_a_store_without_key_bindings_settles_nothing(runtime):
    store = SubjectKeyStore(runtime.vault_db, runtime.field_keys)

    assert store.settle([runtime.hasher.hash("ada")]) == []


def test_reclaim_adds_up_what_it_bound_and_destroyed_over_every_page(runtime, clock):
    lease = runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys, batch=7, low_water=1, background=False)
    views = {user: create(runtime, user) for user in ("ada", "bo", "cy", "di")}  # 3 keys never used

    after = clock() + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    assert reclaim(runtime.keys, batch=2, now=after) == {"bound": 4, "destroyed": 3}  # pages of 2, 2, 2, 1

    rows = key_rows(runtime)
    assert {(r["key_id"], r["user_id_hash"]) for r in rows} == \
        {(profile_key(runtime, user), runtime.hasher.hash(user)) for user in views}
    assert lease.flush() == 0  # bound by the reclaim already
    for user, view in views.items():
        runtime.keys.forget(runtime.hasher.hash(user))
        assert readable(runtime, view)


def test_a_refill_reclaims_at_most_every_ten_minutes_what_ended_an_hour_ago(runtime, clock):
    stopped = SubjectKeyLease(runtime.keys, background=False)
    left = {k.key_id for k in stopped.lease_batch(5)}  # a stopped process's lease, never used
    clock.advance(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS - 60)  # not yet an hour past its end
    now = [0.0]
    lease = SubjectKeyLease(runtime.keys, background=False, monotonic=lambda: now[0])

    def unbound_left() -> set:
        return left & {r["key_id"] for r in key_rows(runtime)}

    lease.refill()  # the first refill reclaims: nothing is due
    assert unbound_left() == left
    clock.advance(seconds=120)  # now it is
    now[0] = 599.5
    lease.refill()  # less than ten minutes after the last reclaim: none
    assert unbound_left() == left and len(key_rows(runtime)) == 5 + 64
    now[0] = 600.0
    lease.refill()
    assert unbound_left() == set()
    assert len(key_rows(runtime)) == 64 * 2  # its own keys (the first lease ran out of use: a second)


def test_a_refill_reclaims_after_the_time_the_lease_was_given(runtime, clock):
    stopped = SubjectKeyLease(runtime.keys, background=False)
    stopped.lease_batch(5)
    clock.advance(seconds=LEASE_SECONDS + 120)
    SubjectKeyLease(runtime.keys, background=False, reclaim_after_seconds=180).refill()
    assert len(key_rows(runtime)) == 5 + 64
    clock.advance(seconds=61)
    SubjectKeyLease(runtime.keys, background=False, reclaim_after_seconds=180).refill()
    assert len(key_rows(runtime)) == 64 * 2


def test_reclaim_writes_the_vault_only_for_what_a_page_has_to_bind_or_destroy(runtime, clock):
    runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys, batch=2, low_water=1, background=False)
    for user in ("ada", "bo"):  # the whole first lease: both keys named
        create(runtime, user)
    first_due = clock() + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    clock.advance(hours=2)
    SubjectKeyLease(runtime.keys, background=False).lease_batch(2)  # a later lease, never used
    second_due = clock() + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    runtime.vault_db.enable_statement_counting()

    def transactions(now) -> tuple[dict, int]:
        before = runtime.vault_db.counter.this_thread()
        reclaimed = reclaim(runtime.keys, batch=4, now=now)
        return reclaimed, (runtime.vault_db.counter.this_thread() - before).transactions

    assert transactions(first_due) == ({"bound": 2, "destroyed": 0}, 1)  # a page of named keys only
    assert transactions(second_due) == ({"bound": 0, "destroyed": 2}, 1)  # of unused ones only
    assert {r["key_id"] for r in key_rows(runtime)} == {profile_key(runtime, "ada"), profile_key(runtime, "bo")}


@pytest.fixture(scope="module")
def icu_pair(postgres_server):
    """A learner pair on PostgreSQL databases in the en-US ICU collation."""
    pair = storage_backends.LearnerPair(icu_locale="en-US")
    yield pair
    pair.drop()


@pytest.fixture
def icu_runtime(icu_pair, tmp_path, keyring, clock):
    from twin.runtime import Runtime

    rt = Runtime(storage_backends.learner_config(tmp_path, keyring, icu_pair), keyring, clock=clock)
    yield rt
    rt.close()


def test_reclaim_pages_through_every_key_in_a_linguistic_collation(icu_runtime, clock):
    runtime = icu_runtime
    runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys, batch=7, low_water=1, background=False)
    views = {user: create(runtime, user) for user in ("ada", "bo", "cy", "di")}  # 3 keys never used
    # Here 'sk_...' sorts before upper-case text (byte order puts it after): paging starts below every id.
    assert runtime.vault_db.query_one("SELECT count(*) FROM subject_keys WHERE key_id < 'XXXX'")[0] == 7

    after = clock() + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    assert reclaim(runtime.keys, batch=2, now=after) == {"bound": 4, "destroyed": 3}  # pages of 2, 2, 2, 1
    assert {(r["key_id"], r["user_id_hash"]) for r in key_rows(runtime)} == \
        {(profile_key(runtime, user), runtime.hasher.hash(user)) for user in views}
    for user, view in views.items():
        runtime.keys.forget(runtime.hasher.hash(user))
        assert readable(runtime, view)
