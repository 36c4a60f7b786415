"""Field-key rotation while the service runs: old and new versions are both served."""

from __future__ import annotations

import pytest

from compliance.audit import Actor
from compliance.field_crypto import FieldCipher, key_id_of
from compliance.subject_keys import SubjectKeyStore
import twin.catalog
from subject_key_rows import subject_key_row
from twin.runtime import Runtime

ACTOR = Actor("tok_rotation", "service")


def test_a_running_service_keeps_serving_while_a_rotation_rewraps_keys(runtime, config, keyring):
    keyring.save(config.keyring_path)  # the running service's keyring file
    before, _ = runtime.profiles.create(ACTOR, None, {"user_id": "u-before", "personal": {"v": "old"}})

    # What scripts/rotate_keys.py --new-field-key does, from another process's point of view.
    rotated = keyring.with_new_field_key()
    rotated.save(config.keyring_path)
    rewrapper = SubjectKeyStore(runtime.vault_db, FieldCipher(rotated.field_keys, rotated.active_field_key))
    # Every key: the subject's, and those the service holds leased for new subjects.
    runtime.lease.flush()  # the profile's key bound in the vault (it is a second after a create)
    leased = runtime.vault_db.query_one("SELECT count(*) FROM subject_keys WHERE user_id_hash IS NULL")[0]
    assert leased > 0 and rewrapper.rewrap_batch(100) == 1 + leased
    assert key_id_of(subject_key_row(runtime, runtime.hasher.hash("u-before"))["wrapped_key"]) == 2

    # The service started with version 1 only, yet reads the rewrapped subject.
    view, _ = runtime.profiles.get(ACTOR, None, before["profile_id"])
    assert view["personal"] == {"v": "old"}
    # ...and from now on wraps new subjects under the new active version.
    runtime.profiles.create(ACTOR, None, {"user_id": "u-after", "personal": {"v": "new"}})
    versions = {key_id_of(r["wrapped_key"]) for r in runtime.vault_db.query("SELECT wrapped_key FROM subject_keys")}
    assert versions == {2}


def test_without_a_keyring_to_reload_an_unknown_version_is_still_an_error(runtime, keyring):
    import pytest
    from compliance.errors import UnknownKeyVersionError

    rotated = keyring.with_new_field_key()  # never saved anywhere the service can read
    runtime.profiles.create(ACTOR, None, {"user_id": "u1"})
    SubjectKeyStore(runtime.vault_db, FieldCipher(rotated.field_keys, rotated.active_field_key)).rewrap_batch()
    with pytest.raises(UnknownKeyVersionError):
        runtime.keys.writer(runtime.hasher.hash("u1"))


def test_new_subjects_reread_the_keyring_only_after_its_file_was_replaced(config, keyring, clock, monkeypatch):
    keyring.save(config.keyring_path)
    runtime = Runtime.open(config, clock=clock)  # a service started from the keyring file
    reads = []
    real_load_keyring = twin.catalog.load_keyring
    monkeypatch.setattr(twin.catalog, "load_keyring",
                        lambda *args, **kwargs: reads.append(1) or real_load_keyring(*args, **kwargs))

    def version_of(user_id: str) -> int:
        return key_id_of(subject_key_row(runtime, runtime.hasher.hash(user_id))["wrapped_key"])

    try:
        old, _ = runtime.profiles.create(ACTOR, None, {"user_id": "u-1", "personal": {"v": "old"}})
        runtime.profiles.create(ACTOR, None, {"user_id": "u-2"})
        assert reads == []  # unchanged file: one stat per new subject, no read
        assert version_of("u-1") == version_of("u-2") == keyring.active_field_key

        rotated = keyring.with_new_field_key()
        rotated.save(config.keyring_path)  # scripts/rotate_keys.py --new-field-key, elsewhere
        new, _ = runtime.profiles.create(ACTOR, None, {"user_id": "u-3", "personal": {"v": "new"}})
        runtime.profiles.create(ACTOR, None, {"user_id": "u-4"})

        assert reads == [1]
        assert version_of("u-3") == version_of("u-4") == rotated.active_field_key != keyring.active_field_key
        for created, personal in ((old, {"v": "old"}), (new, {"v": "new"})):  # both versions served
            assert runtime.profiles.get(ACTOR, None, created["profile_id"])[0]["personal"] == personal
    finally:
        runtime.close()


@pytest.mark.sqlite_only("the audit journal files")
def test_after_a_rotation_new_journal_segments_are_wrapped_under_the_new_version(runtime, config, keyring):
    from compliance.audit_journal import HEADER, audit_journal_dir, staged_segment_files

    keyring.save(config.keyring_path)
    rotated = keyring.with_new_field_key()
    rotated.save(config.keyring_path)
    runtime.profiles.create(ACTOR, None, {"user_id": "u-new"})  # a new subject: keyring re-read
    runtime.audit.flush()  # the next staged event starts a new segment

    runtime.audit.stage(ACTOR, "read", request_id="after-rotation")

    [segment] = staged_segment_files(audit_journal_dir(runtime.vault_db.path))
    data = segment.read_bytes()
    key_length = HEADER.unpack_from(data)[2]
    assert key_id_of(data[HEADER.size:HEADER.size + key_length]) == rotated.active_field_key == 2


def test_once_its_key_cache_expires_a_running_service_reads_subjects_rewrapped_under_a_new_version(
        runtime, config, keyring):
    """A process remembers an unwrapped subject key for READ_CACHE_SECONDS. After that it reads
    the wrapped key again; if a rotation elsewhere rewrapped it under a field-key version this
    process never loaded, it must re-read the keyring rather than fail every read of the
    subject. The cache's clock is driven by the test (no waiting)."""
    from compliance.subject_keys import READ_CACHE_SECONDS

    keyring.save(config.keyring_path)  # the running service's keyring file
    seconds = [0.0]
    service = SubjectKeyStore(runtime.vault_db, runtime.field_keys, monotonic=lambda: seconds[0])
    subject = runtime.hasher.hash("u-cached")
    sealed = service.writer(subject, create=True).seal("learning_profiles", "encrypted_data", "p1", {"v": 1})
    assert service.reader(subject).open("learning_profiles", "encrypted_data", "p1", sealed) == {"v": 1}

    rotated = keyring.with_new_field_key()  # scripts/rotate_keys.py --new-field-key, elsewhere
    rotated.save(config.keyring_path)
    rewrapper = SubjectKeyStore(runtime.vault_db, FieldCipher(rotated.field_keys, rotated.active_field_key))
    assert rewrapper.rewrap_batch(100) == 1
    assert runtime.field_keys.cipher.active_key_id == keyring.active_field_key  # nothing re-read yet

    seconds[0] += READ_CACHE_SECONDS + 1

    assert service.reader(subject).open("learning_profiles", "encrypted_data", "p1", sealed) == {"v": 1}
    assert service.writer(subject).open("learning_profiles", "encrypted_data", "p1", sealed) == {"v": 1}
