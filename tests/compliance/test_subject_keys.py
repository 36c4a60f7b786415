"""Per-subject data keys: one per subject, wrapped in the vault, destroyed to crypto-shred."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from compliance.errors import DecryptionError
from compliance.field_crypto import FieldCipher, key_id_of
from compliance.subject_keys import PlaintextSealer, SubjectKeyMissingError, SubjectKeyStore

ALICE, BOB = "a" * 64, "b" * 64


@pytest.fixture
def vault(open_catalog_db):
    return open_catalog_db("privacy_vault")


@pytest.fixture
def store(vault, keyring) -> SubjectKeyStore:
    return SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key))


def test_a_key_is_made_on_first_use_and_reused_after(store):
    sealed = store.sealer_for(ALICE, create=True).seal("t", "c", "row1", {"name": "Alice"})

    assert store.has_key(ALICE)
    assert store.sealer_for(ALICE).open("t", "c", "row1", sealed) == {"name": "Alice"}
    assert b"Alice" not in sealed


def test_without_create_a_missing_key_is_an_error(store):
    with pytest.raises(SubjectKeyMissingError):
        store.sealer_for(ALICE)
    assert not store.has_key(ALICE)


def test_a_ciphertext_opens_only_under_its_subject_and_its_row(store):
    sealed = store.sealer_for(ALICE, create=True).seal("t", "c", "row1", [1, 2])
    bob = store.sealer_for(BOB, create=True)

    with pytest.raises(DecryptionError):
        bob.open("t", "c", "row1", sealed)
    with pytest.raises(DecryptionError):
        store.sealer_for(ALICE).open("t", "c", "row2", sealed)
    with pytest.raises(DecryptionError):
        store.sealer_for(ALICE).open("t", "other", "row1", sealed)


def test_destroying_the_key_makes_every_copy_unreadable(store):
    sealed = store.sealer_for(ALICE, create=True).seal("t", "c", "r", "secret")

    assert store.destroy(ALICE) is True

    assert store.destroy(ALICE) is False
    with pytest.raises(SubjectKeyMissingError):
        store.sealer_for(ALICE)
    fresh = store.sealer_for(ALICE, create=True)  # a returning subject gets a new, different key
    with pytest.raises(DecryptionError):
        fresh.open("t", "c", "r", sealed)


def test_the_vault_holds_only_the_wrapped_key(store, vault, keyring):
    store.sealer_for(ALICE, create=True)
    row = vault.query_one("SELECT * FROM subject_keys WHERE user_id_hash = ?", (ALICE,))

    assert row["key_version"] == keyring.active_field_key
    assert len(row["wrapped_key"]) > 32 and key_id_of(row["wrapped_key"]) == keyring.active_field_key
    other = FieldCipher({keyring.active_field_key: b"\x01" * 32}, keyring.active_field_key)
    with pytest.raises(DecryptionError):  # useless without the keyring
        SubjectKeyStore(vault, other).sealer_for(ALICE)


def test_key_creation_time_follows_the_given_clock(vault, keyring):
    moment = datetime(2031, 7, 1, 12, tzinfo=timezone.utc)
    store = SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key),
                            clock=lambda: moment)

    store.sealer_for(ALICE, create=True)

    assert vault.query_one("SELECT created_at FROM subject_keys")[0] == "2031-07-01T12:00:00.000000Z"


def test_concurrent_first_uses_agree_on_one_key(store):
    sealers, barrier = [], threading.Barrier(4)

    def first_use() -> None:
        barrier.wait()
        sealers.append(store.sealer_for(ALICE, create=True))

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len(sealers) == 4
    sealed = sealers[0].seal("t", "c", "r", "same key")
    assert all(s.open("t", "c", "r", sealed) == "same key" for s in sealers)
    assert store.vault.query_one("SELECT count(*) FROM subject_keys")[0] == 1


def test_rotation_rewraps_keys_in_batches_without_losing_data(vault, keyring):
    old = SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key))
    sealed = {s: old.sealer_for(s, create=True).seal("t", "c", "r", s) for s in (ALICE, BOB, "c" * 64)}
    rotated = keyring.with_new_field_key()
    new = SubjectKeyStore(vault, FieldCipher(rotated.field_keys, rotated.active_field_key))

    assert new.count_needing_rewrap() == 3
    assert new.sealer_for(ALICE).open("t", "c", "r", sealed[ALICE]) == ALICE  # readable mid-rotation
    assert new.rewrap_batch(batch_size=2) == 2
    assert new.count_needing_rewrap() == 1
    assert new.rewrap_batch(batch_size=2) == 1 and new.rewrap_batch() == 0

    versions = {r[0] for r in vault.query("SELECT key_version FROM subject_keys")}
    assert versions == {rotated.active_field_key}
    assert all(new.sealer_for(s).open("t", "c", "r", blob) == s for s, blob in sealed.items())
    with pytest.raises(DecryptionError):  # the old keyring alone no longer opens them
        old.sealer_for(ALICE)


def test_the_benchmark_store_seals_nothing(vault, keyring):
    store = SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key), encrypt=False)

    sealer = store.sealer_for(ALICE)

    assert isinstance(sealer, PlaintextSealer)
    assert sealer.open("t", "c", "r", sealer.seal("t", "c", "r", {"a": 1})) == {"a": 1}
    assert not store.has_key(ALICE)


def test_representations_never_show_key_material(store):
    assert "key hidden" in repr(store.sealer_for(ALICE, create=True))
    assert repr(store) == "SubjectKeyStore(vault='privacy_vault')"
