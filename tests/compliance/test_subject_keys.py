"""Per-subject data keys: one per subject, wrapped in the vault, destroyed to crypto-shred; what
the keyring alone opens, and rewrapping. Remembered keys on read paths: test_subject_key_readers.py;
sealing with a proven remembered key and finding the key that opens a value:
test_subject_key_proofs.py (fixtures ``key_store``, ``other_key_store``: conftest.py)."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone

import pytest

from compliance.envelope import data_cipher
from compliance.errors import DecryptionError
from compliance.field_crypto import FieldCipher, associated_data, key_id_of
from compliance.subject_keys import PlaintextSealer, SubjectKeyMissingError, SubjectKeyStore
from key_subjects import ALICE, BOB


def test_a_key_is_made_on_first_use_and_reused_after(key_store):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "row1", {"name": "Alice"})

    assert key_store.has_key(ALICE)
    assert key_store.writer(ALICE).open("t", "c", "row1", sealed) == {"name": "Alice"}
    assert b"Alice" not in sealed


def test_without_create_a_missing_key_is_an_error(key_store):
    with pytest.raises(SubjectKeyMissingError) as raised:
        key_store.writer(ALICE)
    assert str(raised.value) == "the subject has no data key (erased or never stored)"
    assert not key_store.has_key(ALICE)


def test_a_ciphertext_opens_only_under_its_subject_and_its_row(key_store):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "row1", [1, 2])
    bob = key_store.writer(BOB, create=True)

    with pytest.raises(DecryptionError):
        bob.open("t", "c", "row1", sealed)
    with pytest.raises(DecryptionError):
        key_store.writer(ALICE).open("t", "c", "row2", sealed)
    with pytest.raises(DecryptionError):
        key_store.writer(ALICE).open("t", "other", "row1", sealed)


def test_destroying_the_key_makes_every_copy_unreadable(key_store):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "r", "secret")

    assert key_store.destroy(ALICE) is True

    assert key_store.destroy(ALICE) is False
    with pytest.raises(SubjectKeyMissingError):
        key_store.writer(ALICE)
    fresh = key_store.writer(ALICE, create=True)  # a returning subject gets a new, different key
    with pytest.raises(DecryptionError):
        fresh.open("t", "c", "r", sealed)


def test_the_vault_holds_only_the_wrapped_key(key_store, vault, keyring):
    key_store.writer(ALICE, create=True)
    row = vault.query_one("SELECT * FROM subject_keys WHERE user_id_hash = ?", (ALICE,))

    assert row["key_version"] == keyring.active_field_key
    assert len(row["wrapped_key"]) > 32 and key_id_of(row["wrapped_key"]) == keyring.active_field_key
    other = FieldCipher({keyring.active_field_key: b"\x01" * 32}, keyring.active_field_key)
    with pytest.raises(DecryptionError):  # useless without the keyring
        SubjectKeyStore(vault, other).writer(ALICE)


def test_key_creation_time_follows_the_given_clock(vault, keyring):
    moment = datetime(2031, 7, 1, 12, tzinfo=timezone.utc)
    store = SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key),
                            clock=lambda: moment)

    store.writer(ALICE, create=True)

    assert vault.query_one("SELECT created_at FROM subject_keys")[0] == "2031-07-01T12:00:00.000000Z"


def test_concurrent_first_uses_agree_on_one_key(key_store):
    sealers, barrier = [], threading.Barrier(4)

    def first_use() -> None:
        barrier.wait()
        sealers.append(key_store.writer(ALICE, create=True))

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len(sealers) == 4
    # What each one seals first opens under the one key the vault keeps (never a key it lost).
    written = [sealer.seal("t", "c", f"r{i}", i) for i, sealer in enumerate(sealers)]
    kept = SubjectKeyStore(key_store.vault, key_store.field_keys).writer(ALICE)
    assert [kept.open("t", "c", f"r{i}", blob) for i, blob in enumerate(written)] == [0, 1, 2, 3]
    sealed = sealers[0].seal("t", "c", "r", "same key")
    assert all(s.open("t", "c", "r", sealed) == "same key" for s in sealers)
    assert key_store.vault.query_one("SELECT count(*) FROM subject_keys")[0] == 1


def test_rotation_rewraps_keys_in_batches_without_losing_data(vault, keyring):
    old = SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key))
    sealed = {s: old.writer(s, create=True).seal("t", "c", "r", s) for s in (ALICE, BOB, "c" * 64)}
    rotated = keyring.with_new_field_key()
    new = SubjectKeyStore(vault, FieldCipher(rotated.field_keys, rotated.active_field_key))

    assert new.count_needing_rewrap() == 3
    assert new.writer(ALICE).open("t", "c", "r", sealed[ALICE]) == ALICE  # readable mid-rotation
    assert new.rewrap_batch(batch_size=2) == 2
    assert new.count_needing_rewrap() == 1
    assert new.rewrap_batch(batch_size=2) == 1 and new.rewrap_batch() == 0

    versions = {r[0] for r in vault.query("SELECT key_version FROM subject_keys")}
    assert versions == {rotated.active_field_key}
    assert all(new.writer(s).open("t", "c", "r", blob) == s for s, blob in sealed.items())
    with pytest.raises(DecryptionError):  # the old keyring alone no longer opens them
        old.writer(ALICE)


def test_the_benchmark_store_seals_nothing(vault, keyring):
    store = SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key), encrypt=False)

    sealer = store.writer(ALICE)

    assert isinstance(sealer, PlaintextSealer)
    assert sealer.open("t", "c", "r", sealer.seal("t", "c", "r", {"a": 1})) == {"a": 1}
    # The same compact UTF-8 JSON the encrypting path seals, so benchmarks compare like sizes.
    assert sealer.seal("t", "c", "r", {"name": "Zoë", "n": [1, 2]}) == '{"name":"Zoë","n":[1,2]}'.encode()
    assert not store.has_key(ALICE)


def test_representations_never_show_key_material(key_store):
    assert repr(key_store.writer(ALICE, create=True)) == "SubjectKey(<key hidden>)"
    assert repr(key_store) == "SubjectKeyStore(vault='privacy_vault')"


def test_with_the_keyring_alone_a_recovery_tool_opens_a_subjects_values(key_store, vault, keyring):
    """The stored format, as documented: the wrapped key is a field ciphertext bound to its
    vault row (table subject_keys, column wrapped_key, the subject hash), and it wraps a data
    key whose ciphertexts hold compact UTF-8 JSON bound to their own row."""
    sealed = key_store.writer(ALICE, create=True).seal("learning_profiles", "encrypted_data", "p1",
                                                    {"name": "Zoë", "n": [1, 2]})
    wrapped = vault.query_one("SELECT wrapped_key FROM subject_keys WHERE user_id_hash = ?", (ALICE,))[0]

    data_key = FieldCipher(keyring.field_keys, keyring.active_field_key).decrypt(
        bytes(wrapped), associated_data("subject_keys", "wrapped_key", ALICE))

    plaintext = data_cipher(data_key).decrypt(sealed, associated_data("learning_profiles", "encrypted_data", "p1"))
    assert plaintext == '{"name":"Zoë","n":[1,2]}'.encode()


def test_a_wrapped_key_copied_to_another_subjects_row_opens_nothing(key_store, vault):
    key_store.writer(ALICE, create=True)
    key_store.writer(BOB, create=True)
    vault.execute("UPDATE subject_keys SET wrapped_key = (SELECT wrapped_key FROM subject_keys "
                  "WHERE user_id_hash = ?) WHERE user_id_hash = ?", (ALICE, BOB))
    key_store.forget(BOB)

    with pytest.raises(DecryptionError):
        key_store.writer(BOB)


def test_a_rewrap_batch_is_500_keys_unless_told(vault, keyring):
    old = FieldCipher(keyring.field_keys, keyring.active_field_key)
    subjects = [f"{i:064x}" for i in range(501)]
    rows = [(s, s, old.active_key_id, old.encrypt(os.urandom(32), associated_data("subject_keys", "wrapped_key", s)),
             "2030-01-01T00:00:00.000000Z") for s in subjects]
    vault.executemany("INSERT INTO subject_keys (key_id, user_id_hash, key_version, wrapped_key, created_at) "
                      "VALUES (?, ?, ?, ?, ?)", rows)
    rotated = keyring.with_new_field_key()
    new = SubjectKeyStore(vault, FieldCipher(rotated.field_keys, rotated.active_field_key))

    assert new.rewrap_batch() == 500
    assert new.count_needing_rewrap() == 1
