"""Reclaim of leased subject keys: unbound keys go only after their lease ended plus the
documented time, and never while a data row names them (those are bound to the row's subject);
settling binds the leased key a profile names. Real runtime, on both backends."""

from __future__ import annotations

from datetime import timedelta

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
