"""Sealing with a remembered key only when the subject's own ciphertext proves it current, and
looking for the key that opens a value (remembered for the next reader; forgotten when none
opens it)."""

from __future__ import annotations

import os

import pytest

from compliance.audit import Actor
from compliance.errors import DecryptionError
from compliance.field_crypto import FieldCipher
from compliance.subject_keys import KeyProof, SubjectCipher, SubjectKeyMissingError, SubjectKeyStore
from key_subjects import ALICE, CountingVault


def test_a_remembered_key_proven_by_the_subjects_own_ciphertext_seals_without_a_vault_read(vault, keyring):
    counting = CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    proof = store.writer(ALICE, create=True).seal("profiles", "data", "p1", {"v": 1})
    lookups = counting.lookups

    sealer = store.writer(ALICE, proof=KeyProof("profiles", "data", "p1", proof))
    new_value = sealer.seal("sessions", "notes", "s1", "hello")

    assert counting.lookups == lookups
    assert store.writer(ALICE).open("sessions", "notes", "s1", new_value) == "hello"


def test_a_stale_remembered_key_is_not_used_for_sealing(vault, keyring):
    """The subject was erased and came back through another process: the remembered key no
    longer opens their live row, so the vault is read and new data goes under the new key."""
    cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
    here = SubjectKeyStore(vault, cipher)
    here.writer(ALICE, create=True)                # remembered here
    elsewhere = SubjectKeyStore(vault, cipher)
    elsewhere.destroy(ALICE)
    live_row_value = elsewhere.writer(ALICE, create=True).seal("profiles", "data", "p2", {"v": 2})

    sealer = here.writer(ALICE, proof=KeyProof("profiles", "data", "p2", live_row_value))
    written = sealer.seal("sessions", "notes", "s2", "kept")

    assert elsewhere.writer(ALICE).open("sessions", "notes", "s2", written) == "kept"


def test_a_proof_from_another_row_is_no_proof(vault, keyring):
    counting = CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    proof = store.writer(ALICE, create=True).seal("profiles", "data", "p1", {"v": 1})
    lookups = counting.lookups

    sealer = store.writer(ALICE, proof=KeyProof("profiles", "data", "p-other", proof))

    assert counting.lookups == lookups + 1
    # No key of theirs opens it: values are sealed under the key the vault binds them.
    assert store.writer(ALICE).open("sessions", "notes", "s1", sealer.seal("sessions", "notes", "s1", "x")) == "x"


def test_remembered_keys_expire(vault, keyring):
    from compliance.subject_keys import READ_CACHE_SECONDS

    now = [1000.0]
    counting = CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key),
                            monotonic=lambda: now[0])
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "x")
    lookups = counting.lookups

    store.reader(ALICE).open("t", "c", "r", sealed)
    assert counting.lookups == lookups
    now[0] += READ_CACHE_SECONDS + 1
    store.reader(ALICE).open("t", "c", "r", sealed)
    assert counting.lookups == lookups + 1


def test_a_service_that_remembers_an_erased_subject_writes_a_returning_subjects_data_readably(
        runtime, config, keyring, clock):
    """Two processes on the same files: one remembers the subject's key; the other erases the
    subject, who then signs up again. What the first process writes next must open under the
    subject's new key (it reads the vault again because its key fails the proof)."""
    from compliance.audit import Actor
    from twin.runtime import Runtime

    actor = Actor("tok_service", "service")
    first, _ = runtime.profiles.create(actor, None, {"user_id": "u-returning", "personal": {"v": 1}})
    runtime.profiles.get(actor, None, first["profile_id"])          # key remembered here
    other = Runtime(config, keyring, clock=clock)
    try:
        other.subject_requests.erase(actor, None, user_id="u-returning")
        again, _ = other.profiles.create(actor, None, {"user_id": "u-returning", "personal": {"v": 2}})

        started, _ = runtime.sessions.start(actor, None, again["profile_id"],
                                            {"session_type": "lesson", "topics_covered": ["fractions"]})
        runtime.knowledge.upsert(actor, None, again["profile_id"], "math", "fractions",
                                 {"mastery_level": 0.5, "learning_trajectory": {"step": 1}})

        view, _ = other.sessions.get(actor, None, started["session_id"])
        assert view["topics_covered"] == ["fractions"]
        [state] = other.knowledge.list(actor, None, again["profile_id"])
        assert state["learning_trajectory"] == {"step": 1}
    finally:
        other.close()


def test_a_subject_cipher_never_shows_its_key():
    assert repr(SubjectCipher(os.urandom(32))) == "SubjectCipher(<key hidden>)"


def test_a_value_no_key_of_the_subject_opens_says_so(key_store):
    sealed = key_store.writer(ALICE, create=True).seal("t", "c", "r", "genuine")

    with pytest.raises(DecryptionError) as failed:
        key_store.reader(ALICE).open("t", "c", "r", sealed[:-1] + bytes([sealed[-1] ^ 1]))

    assert str(failed.value) == ("ciphertext failed authentication under every key of the subject "
                                 "(tampered, moved to another row/column, or wrong key)")


def test_a_reader_whose_subject_was_erased_elsewhere_says_they_have_no_key(key_store, other_key_store):
    key_store.writer(ALICE, create=True)
    reader = key_store.reader(ALICE)
    other_key_store.destroy(ALICE)
    written_after = SubjectCipher(os.urandom(32)).seal("t", "c", "r", "not theirs")

    with pytest.raises(SubjectKeyMissingError) as missing:
        reader.open("t", "c", "r", written_after)

    assert str(missing.value) == "the subject has no data key (erased or never stored)"


def test_the_key_found_for_a_value_is_remembered_for_the_next_reader(vault, keyring, other_key_store):
    counting = CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    store.writer(ALICE, create=True)
    reader = store.reader(ALICE)
    other_key_store.destroy(ALICE)  # erased and back through another process: a new key
    after = other_key_store.writer(ALICE, create=True).seal("t", "c", "r", "after")
    assert reader.open("t", "c", "r", after) == "after"
    lookups = counting.lookups

    assert store.reader(ALICE).open("t", "c", "r", after) == "after"
    assert counting.lookups == lookups  # the key found is the one remembered


def test_a_value_no_key_opens_drops_the_remembered_key(vault, keyring):
    counting = CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "genuine")
    with pytest.raises(DecryptionError):
        store.reader(ALICE).open("t", "c", "r", sealed[:-1] + bytes([sealed[-1] ^ 1]))
    lookups = counting.lookups

    assert store.reader(ALICE).open("t", "c", "r", sealed) == "genuine"
    assert counting.lookups == lookups + 1  # the vault was asked again, not memory


def test_a_sealer_proven_from_memory_opens_a_value_of_the_subjects_new_key(key_store, other_key_store):
    proof = key_store.writer(ALICE, create=True).seal("profiles", "data", "p1", {"v": 1})
    sealer = key_store.writer(ALICE, proof=KeyProof("profiles", "data", "p1", proof))  # from memory
    other_key_store.destroy(ALICE)
    after = other_key_store.writer(ALICE, create=True).seal("sessions", "notes", "s1", "after")

    assert sealer.open("sessions", "notes", "s1", after) == "after"


def test_the_key_existing_finds_is_remembered(vault, keyring, other_key_store):
    counting = CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    sealed = other_key_store.writer(ALICE, create=True).seal("t", "c", "r", "hers")

    assert store.existing(ALICE).open("t", "c", "r", sealed) == "hers"
    lookups = counting.lookups
    assert store.reader(ALICE).open("t", "c", "r", sealed) == "hers"
    assert counting.lookups == lookups
