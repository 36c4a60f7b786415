"""Readers: the subject keys a read path remembers, and how a destroyed, replaced or erased key
makes the next reader read the vault again instead of answering from memory."""

from __future__ import annotations

import json
import os

import pytest

from compliance.audit import Actor
from compliance.envelope import data_cipher
from compliance.errors import DecryptionError
from compliance.field_crypto import FieldCipher, associated_data
from compliance.subject_keys import (PlaintextSealer, SubjectCipher, SubjectKeyMissingError,
                                     SubjectKeyStore)
from key_subjects import ALICE
from racing_vault import AfterNextRead


def _subject_key_rows(vault, subject: str) -> int:
    return vault.query_one("SELECT count(*) FROM subject_keys WHERE user_id_hash = ?", (subject,))[0]


def test_a_reader_opens_what_the_sealer_sealed(key_store):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "r", {"name": "Alice"})

    reader = key_store.reader(ALICE)

    assert reader.open("t", "c", "r", sealed) == {"name": "Alice"}
    assert not hasattr(reader, "seal")  # read paths cannot write with a remembered key


def test_a_reader_for_a_subject_without_a_key_is_an_error(key_store):
    with pytest.raises(SubjectKeyMissingError):
        key_store.reader(ALICE)


def test_after_destroy_no_reader_is_handed_out(key_store):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "r", "x")
    assert key_store.reader(ALICE).open("t", "c", "r", sealed) == "x"  # the key is remembered

    key_store.destroy(ALICE)

    with pytest.raises(SubjectKeyMissingError):
        key_store.reader(ALICE)


def test_forget_makes_the_next_reader_read_the_vault(key_store, vault):
    key_store.writer(ALICE, create=True)
    key_store.reader(ALICE)
    # The row goes the way erasure deletes it: in its own transaction, not through the key_store.
    vault.write(lambda conn: conn.execute("DELETE FROM subject_keys"))

    key_store.forget(ALICE)

    with pytest.raises(SubjectKeyMissingError):
        key_store.reader(ALICE)


def test_a_reader_holding_a_replaced_key_reads_the_vault_again(key_store, other_key_store):
    """ALICE was erased and came back through another process: the vault holds a new key."""
    key_store.writer(ALICE, create=True).seal("t", "c", "r1", "before")
    reader = key_store.reader(ALICE)  # remembers the first key

    other_key_store.destroy(ALICE)
    after = other_key_store.writer(ALICE, create=True).seal("t", "c", "r2", "after")

    assert reader.open("t", "c", "r2", after) == "after"
    later = other_key_store.writer(ALICE).seal("t", "c", "r3", "later")
    assert key_store.reader(ALICE).open("t", "c", "r3", later) == "later"


def test_a_reader_opens_an_export_batch_and_reads_the_vault_again_for_a_replaced_key(key_store, other_key_store):
    """An export opens a subject's values in batches; ALICE erased and back through another
    process meanwhile: the batch opens under her new key, her old values under none."""
    old = key_store.writer(ALICE, create=True).seal("t", "c", "r1", "before")
    reader = key_store.reader(ALICE)
    assert reader.open_batch([("t", "c", "r1", old)]) == ["before"]

    other_key_store.destroy(ALICE)
    theirs = other_key_store.writer(ALICE, create=True)
    batch = [("t", "c", "r2", theirs.seal("t", "c", "r2", "after")),
             ("t", "c", "r3", theirs.seal("t", "c", "r3", {"n": 1}))]

    assert reader.open_batch(batch) == ["after", {"n": 1}]
    assert key_store.reader(ALICE).open_batch(batch) == ["after", {"n": 1}]
    with pytest.raises(DecryptionError):
        reader.open_batch([("t", "c", "r1", old)])


def test_a_sealed_text_that_is_not_exactly_one_json_value_is_refused_not_split():
    """A batch parses its values as one JSON array: a text holding two values must not turn
    into two (every later value would then land on the wrong row)."""
    data_key = os.urandom(32)
    two_values = data_cipher(data_key).encrypt(b"1,2", associated_data("t", "c", "r"))
    one_value = SubjectCipher(data_key).seal("t", "c", "r2", 3)

    with pytest.raises(json.JSONDecodeError):
        SubjectCipher(data_key).open_batch([("t", "c", "r", two_values), ("t", "c", "r2", one_value)])
    with pytest.raises(json.JSONDecodeError):
        PlaintextSealer().open_batch([("t", "c", "r", b"1,2")])


def test_a_value_no_key_opens_still_fails_after_one_fresh_read(key_store):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "r", "genuine")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    reader = key_store.reader(ALICE)

    with pytest.raises(DecryptionError):
        reader.open("t", "c", "r", tampered)
    with pytest.raises(DecryptionError):  # bound to its row: another row's id does not open it
        reader.open("t", "c", "other-row", sealed)
    assert reader.open("t", "c", "r", sealed) == "genuine"


def test_a_value_sealed_under_a_destroyed_key_stays_unreadable_after_the_subject_returns(key_store, other_key_store):
    shredded = key_store.writer(ALICE, create=True).seal("t", "c", "r", "erased")
    reader = key_store.reader(ALICE)

    other_key_store.destroy(ALICE)
    other_key_store.writer(ALICE, create=True)

    # Once the reader has met the new key, the old ciphertext opens under neither key.
    other_value = other_key_store.writer(ALICE).seal("t", "c", "r2", "new")
    assert reader.open("t", "c", "r2", other_value) == "new"
    with pytest.raises(DecryptionError):
        reader.open("t", "c", "r", shredded)
    with pytest.raises(DecryptionError):
        key_store.reader(ALICE).open("t", "c", "r", shredded)


def test_the_benchmark_store_hands_out_plaintext_readers(vault, keyring):
    store = SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key), encrypt=False)

    reader = store.reader(ALICE)

    assert isinstance(reader, PlaintextSealer)
    assert reader.open("t", "c", "r", b'{"a":1}') == {"a": 1}
    assert reader.open_batch([("t", "c", "r", b'{"a":1}'), ("t", "c", "r2", memoryview(b"[2]"))]) \
        == [{"a": 1}, [2]]
    assert not store.has_key(ALICE)


def test_create_for_an_existing_subject_returns_their_key_without_a_second_row(key_store, vault):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "r", "first")

    again = key_store.writer(ALICE, create=True)

    assert again.open("t", "c", "r", sealed) == "first"
    assert _subject_key_rows(vault, ALICE) == 1


def test_create_by_another_process_for_an_existing_subject_returns_the_stored_key(key_store, other_key_store, vault):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "r", "first")

    theirs = other_key_store.writer(ALICE, create=True)

    assert theirs.open("t", "c", "r", sealed) == "first"
    assert key_store.reader(ALICE).open("t", "c", "r2", theirs.seal("t", "c", "r2", "second")) == "second"
    assert _subject_key_rows(vault, ALICE) == 1


def test_dsr_erasure_drops_the_remembered_key(runtime, make_subject):
    subject = make_subject("u-cached-key", sessions=1, knowledge=0)
    runtime.profiles.get(Actor("tok_reader", "service"), None, subject.profile_id)  # a read remembers the key
    assert runtime.keys.reader(subject.subject_hash) is not None

    runtime.subject_requests.erase(Actor("tok_admin", "admin"), None, user_id=subject.user_id)

    with pytest.raises(SubjectKeyMissingError):
        runtime.keys.reader(subject.subject_hash)


def test_retention_ending_a_subject_drops_the_remembered_key(runtime, make_subject, clock):
    subject = make_subject("u-expiring", sessions=0, knowledge=0, retention_days=1)
    runtime.keys.reader(subject.subject_hash)
    clock.advance(days=3)

    runtime.retention.run()

    with pytest.raises(SubjectKeyMissingError):
        runtime.keys.reader(subject.subject_hash)


def test_an_erasure_racing_a_key_lookup_is_not_undone_by_the_cache(vault, keyring):
    cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
    SubjectKeyStore(vault, cipher).writer(ALICE, create=True)
    store = None
    racing = AfterNextRead(vault, lambda: store.destroy(ALICE))
    store = SubjectKeyStore(racing, cipher)

    store.writer(ALICE)  # looked the key up before the erasure: may still succeed

    with pytest.raises(SubjectKeyMissingError):
        store.reader(ALICE)
