"""Per-subject data keys: one per subject, wrapped in the vault, destroyed to crypto-shred."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone

import pytest

from compliance.audit import Actor
from compliance.errors import DecryptionError
from compliance.envelope import data_cipher
from compliance.field_crypto import FieldCipher, associated_data, key_id_of
from compliance.subject_keys import (KeyProof, PlaintextSealer, SubjectCipher, SubjectKeyMissingError,
                                     SubjectKeyStore)
from racing_vault import AfterNextRead

ALICE, BOB = "a" * 64, "b" * 64


@pytest.fixture
def vault(open_catalog_db):
    return open_catalog_db("privacy_vault")


@pytest.fixture
def store(vault, keyring) -> SubjectKeyStore:
    return SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key))


def test_a_key_is_made_on_first_use_and_reused_after(store):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "row1", {"name": "Alice"})

    assert store.has_key(ALICE)
    assert store.writer(ALICE).open("t", "c", "row1", sealed) == {"name": "Alice"}
    assert b"Alice" not in sealed


def test_without_create_a_missing_key_is_an_error(store):
    with pytest.raises(SubjectKeyMissingError) as raised:
        store.writer(ALICE)
    assert str(raised.value) == "the subject has no data key (erased or never stored)"
    assert not store.has_key(ALICE)


def test_a_ciphertext_opens_only_under_its_subject_and_its_row(store):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "row1", [1, 2])
    bob = store.writer(BOB, create=True)

    with pytest.raises(DecryptionError):
        bob.open("t", "c", "row1", sealed)
    with pytest.raises(DecryptionError):
        store.writer(ALICE).open("t", "c", "row2", sealed)
    with pytest.raises(DecryptionError):
        store.writer(ALICE).open("t", "other", "row1", sealed)


def test_destroying_the_key_makes_every_copy_unreadable(store):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "secret")

    assert store.destroy(ALICE) is True

    assert store.destroy(ALICE) is False
    with pytest.raises(SubjectKeyMissingError):
        store.writer(ALICE)
    fresh = store.writer(ALICE, create=True)  # a returning subject gets a new, different key
    with pytest.raises(DecryptionError):
        fresh.open("t", "c", "r", sealed)


def test_the_vault_holds_only_the_wrapped_key(store, vault, keyring):
    store.writer(ALICE, create=True)
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


def test_concurrent_first_uses_agree_on_one_key(store):
    sealers, barrier = [], threading.Barrier(4)

    def first_use() -> None:
        barrier.wait()
        sealers.append(store.writer(ALICE, create=True))

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len(sealers) == 4
    # What each one seals first opens under the one key the vault keeps (never a key it lost).
    written = [sealer.seal("t", "c", f"r{i}", i) for i, sealer in enumerate(sealers)]
    kept = SubjectKeyStore(store.vault, store.field_keys).writer(ALICE)
    assert [kept.open("t", "c", f"r{i}", blob) for i, blob in enumerate(written)] == [0, 1, 2, 3]
    sealed = sealers[0].seal("t", "c", "r", "same key")
    assert all(s.open("t", "c", "r", sealed) == "same key" for s in sealers)
    assert store.vault.query_one("SELECT count(*) FROM subject_keys")[0] == 1


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


def test_representations_never_show_key_material(store):
    assert repr(store.writer(ALICE, create=True)) == "SubjectKey(<key hidden>)"
    assert repr(store) == "SubjectKeyStore(vault='privacy_vault')"


# -- reader: remembered keys for read paths ---------------------------------------------------

@pytest.fixture
def other_process(vault, keyring) -> SubjectKeyStore:
    """Another SubjectKeyStore on the same vault: another service process or an operator script."""
    return SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key))


def _subject_key_rows(vault, subject: str) -> int:
    return vault.query_one("SELECT count(*) FROM subject_keys WHERE user_id_hash = ?", (subject,))[0]


def test_a_reader_opens_what_the_sealer_sealed(store):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", {"name": "Alice"})

    reader = store.reader(ALICE)

    assert reader.open("t", "c", "r", sealed) == {"name": "Alice"}
    assert not hasattr(reader, "seal")  # read paths cannot write with a remembered key


def test_a_reader_for_a_subject_without_a_key_is_an_error(store):
    with pytest.raises(SubjectKeyMissingError):
        store.reader(ALICE)


def test_after_destroy_no_reader_is_handed_out(store):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "x")
    assert store.reader(ALICE).open("t", "c", "r", sealed) == "x"  # the key is remembered

    store.destroy(ALICE)

    with pytest.raises(SubjectKeyMissingError):
        store.reader(ALICE)


def test_forget_makes_the_next_reader_read_the_vault(store, vault):
    store.writer(ALICE, create=True)
    store.reader(ALICE)
    # The row goes the way erasure deletes it: in its own transaction, not through the store.
    vault.write(lambda conn: conn.execute("DELETE FROM subject_keys"))

    store.forget(ALICE)

    with pytest.raises(SubjectKeyMissingError):
        store.reader(ALICE)


def test_a_reader_holding_a_replaced_key_reads_the_vault_again(store, other_process):
    """ALICE was erased and came back through another process: the vault holds a new key."""
    store.writer(ALICE, create=True).seal("t", "c", "r1", "before")
    reader = store.reader(ALICE)  # remembers the first key

    other_process.destroy(ALICE)
    after = other_process.writer(ALICE, create=True).seal("t", "c", "r2", "after")

    assert reader.open("t", "c", "r2", after) == "after"
    later = other_process.writer(ALICE).seal("t", "c", "r3", "later")
    assert store.reader(ALICE).open("t", "c", "r3", later) == "later"


def test_a_reader_opens_an_export_batch_and_reads_the_vault_again_for_a_replaced_key(store, other_process):
    """An export opens a subject's values in batches; ALICE erased and back through another
    process meanwhile: the batch opens under her new key, her old values under none."""
    old = store.writer(ALICE, create=True).seal("t", "c", "r1", "before")
    reader = store.reader(ALICE)
    assert reader.open_batch([("t", "c", "r1", old)]) == ["before"]

    other_process.destroy(ALICE)
    theirs = other_process.writer(ALICE, create=True)
    batch = [("t", "c", "r2", theirs.seal("t", "c", "r2", "after")),
             ("t", "c", "r3", theirs.seal("t", "c", "r3", {"n": 1}))]

    assert reader.open_batch(batch) == ["after", {"n": 1}]
    assert store.reader(ALICE).open_batch(batch) == ["after", {"n": 1}]
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


def test_a_value_no_key_opens_still_fails_after_one_fresh_read(store):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "genuine")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    reader = store.reader(ALICE)

    with pytest.raises(DecryptionError):
        reader.open("t", "c", "r", tampered)
    with pytest.raises(DecryptionError):  # bound to its row: another row's id does not open it
        reader.open("t", "c", "other-row", sealed)
    assert reader.open("t", "c", "r", sealed) == "genuine"


def test_a_value_sealed_under_a_destroyed_key_stays_unreadable_after_the_subject_returns(store, other_process):
    shredded = store.writer(ALICE, create=True).seal("t", "c", "r", "erased")
    reader = store.reader(ALICE)

    other_process.destroy(ALICE)
    other_process.writer(ALICE, create=True)

    # Once the reader has met the new key, the old ciphertext opens under neither key.
    other_value = other_process.writer(ALICE).seal("t", "c", "r2", "new")
    assert reader.open("t", "c", "r2", other_value) == "new"
    with pytest.raises(DecryptionError):
        reader.open("t", "c", "r", shredded)
    with pytest.raises(DecryptionError):
        store.reader(ALICE).open("t", "c", "r", shredded)


def test_the_benchmark_store_hands_out_plaintext_readers(vault, keyring):
    store = SubjectKeyStore(vault, FieldCipher(keyring.field_keys, keyring.active_field_key), encrypt=False)

    reader = store.reader(ALICE)

    assert isinstance(reader, PlaintextSealer)
    assert reader.open("t", "c", "r", b'{"a":1}') == {"a": 1}
    assert reader.open_batch([("t", "c", "r", b'{"a":1}'), ("t", "c", "r2", memoryview(b"[2]"))]) \
        == [{"a": 1}, [2]]
    assert not store.has_key(ALICE)


def test_create_for_an_existing_subject_returns_their_key_without_a_second_row(store, vault):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "first")

    again = store.writer(ALICE, create=True)

    assert again.open("t", "c", "r", sealed) == "first"
    assert _subject_key_rows(vault, ALICE) == 1


def test_create_by_another_process_for_an_existing_subject_returns_the_stored_key(store, other_process, vault):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "first")

    theirs = other_process.writer(ALICE, create=True)

    assert theirs.open("t", "c", "r", sealed) == "first"
    assert store.reader(ALICE).open("t", "c", "r2", theirs.seal("t", "c", "r2", "second")) == "second"
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


# -- sealing with a remembered key ------------------------------------------------------------

class _CountingVault:
    """The real vault, counting the key lookups that reach it."""

    def __init__(self, vault) -> None:
        self._vault, self.lookups = vault, 0

    def __getattr__(self, name):
        return getattr(self._vault, name)

    def query_one(self, sql, *args, **kwargs):
        if "FROM subject_keys" in sql:
            self.lookups += 1
        return self._vault.query_one(sql, *args, **kwargs)


def test_a_remembered_key_proven_by_the_subjects_own_ciphertext_seals_without_a_vault_read(vault, keyring):
    counting = _CountingVault(vault)
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
    counting = _CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    proof = store.writer(ALICE, create=True).seal("profiles", "data", "p1", {"v": 1})
    lookups = counting.lookups

    store.writer(ALICE, proof=KeyProof("profiles", "data", "p-other", proof))

    assert counting.lookups == lookups + 1


def test_remembered_keys_expire(vault, keyring):
    from compliance.subject_keys import READ_CACHE_SECONDS

    now = [1000.0]
    counting = _CountingVault(vault)
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


def test_with_the_keyring_alone_a_recovery_tool_opens_a_subjects_values(store, vault, keyring):
    """The stored format, as documented: the wrapped key is a field ciphertext bound to its
    vault row (table subject_keys, column wrapped_key, the subject hash), and it wraps a data
    key whose ciphertexts hold compact UTF-8 JSON bound to their own row."""
    sealed = store.writer(ALICE, create=True).seal("learning_profiles", "encrypted_data", "p1",
                                                    {"name": "Zoë", "n": [1, 2]})
    wrapped = vault.query_one("SELECT wrapped_key FROM subject_keys WHERE user_id_hash = ?", (ALICE,))[0]

    data_key = FieldCipher(keyring.field_keys, keyring.active_field_key).decrypt(
        bytes(wrapped), associated_data("subject_keys", "wrapped_key", ALICE))

    plaintext = data_cipher(data_key).decrypt(sealed, associated_data("learning_profiles", "encrypted_data", "p1"))
    assert plaintext == '{"name":"Zoë","n":[1,2]}'.encode()


def test_a_wrapped_key_copied_to_another_subjects_row_opens_nothing(store, vault):
    store.writer(ALICE, create=True)
    store.writer(BOB, create=True)
    vault.execute("UPDATE subject_keys SET wrapped_key = (SELECT wrapped_key FROM subject_keys "
                  "WHERE user_id_hash = ?) WHERE user_id_hash = ?", (ALICE, BOB))
    store.forget(BOB)

    with pytest.raises(DecryptionError):
        store.writer(BOB)


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


# -- looking for the key that opens a value -----------------------------------------------------

def test_a_subject_cipher_never_shows_its_key():
    assert repr(SubjectCipher(os.urandom(32))) == "SubjectCipher(<key hidden>)"


def test_a_value_no_key_of_the_subject_opens_says_so(store):
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "genuine")

    with pytest.raises(DecryptionError) as failed:
        store.reader(ALICE).open("t", "c", "r", sealed[:-1] + bytes([sealed[-1] ^ 1]))

    assert str(failed.value) == ("ciphertext failed authentication under every key of the subject "
                                 "(tampered, moved to another row/column, or wrong key)")


def test_a_reader_whose_subject_was_erased_elsewhere_says_they_have_no_key(store, other_process):
    store.writer(ALICE, create=True)
    reader = store.reader(ALICE)
    other_process.destroy(ALICE)
    written_after = SubjectCipher(os.urandom(32)).seal("t", "c", "r", "not theirs")

    with pytest.raises(SubjectKeyMissingError) as missing:
        reader.open("t", "c", "r", written_after)

    assert str(missing.value) == "the subject has no data key (erased or never stored)"


def test_the_key_found_for_a_value_is_remembered_for_the_next_reader(vault, keyring, other_process):
    counting = _CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    store.writer(ALICE, create=True)
    reader = store.reader(ALICE)
    other_process.destroy(ALICE)  # erased and back through another process: a new key
    after = other_process.writer(ALICE, create=True).seal("t", "c", "r", "after")
    assert reader.open("t", "c", "r", after) == "after"
    lookups = counting.lookups

    assert store.reader(ALICE).open("t", "c", "r", after) == "after"
    assert counting.lookups == lookups  # the key found is the one remembered


def test_a_value_no_key_opens_drops_the_remembered_key(vault, keyring):
    counting = _CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    sealed = store.writer(ALICE, create=True).seal("t", "c", "r", "genuine")
    with pytest.raises(DecryptionError):
        store.reader(ALICE).open("t", "c", "r", sealed[:-1] + bytes([sealed[-1] ^ 1]))
    lookups = counting.lookups

    assert store.reader(ALICE).open("t", "c", "r", sealed) == "genuine"
    assert counting.lookups == lookups + 1  # the vault was asked again, not memory


def test_a_sealer_proven_from_memory_opens_a_value_of_the_subjects_new_key(store, other_process):
    proof = store.writer(ALICE, create=True).seal("profiles", "data", "p1", {"v": 1})
    sealer = store.writer(ALICE, proof=KeyProof("profiles", "data", "p1", proof))  # from memory
    other_process.destroy(ALICE)
    after = other_process.writer(ALICE, create=True).seal("sessions", "notes", "s1", "after")

    assert sealer.open("sessions", "notes", "s1", after) == "after"


def test_the_key_existing_finds_is_remembered(vault, keyring, other_process):
    counting = _CountingVault(vault)
    store = SubjectKeyStore(counting, FieldCipher(keyring.field_keys, keyring.active_field_key))
    sealed = other_process.writer(ALICE, create=True).seal("t", "c", "r", "hers")

    assert store.existing(ALICE).open("t", "c", "r", sealed) == "hers"
    lookups = counting.lookups
    assert store.reader(ALICE).open("t", "c", "r", sealed) == "hers"
    assert counting.lookups == lookups
