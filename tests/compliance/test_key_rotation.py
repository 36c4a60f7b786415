"""Field-key rotation while the service runs: old and new versions are both served."""

from __future__ import annotations

from compliance.audit import Actor
from compliance.field_crypto import FieldCipher, key_id_of
from compliance.subject_keys import SubjectKeyStore

ACTOR = Actor("tok_rotation", "service")


def test_a_running_service_keeps_serving_while_a_rotation_rewraps_keys(runtime, config, keyring):
    keyring.save(config.keyring_path)  # the running service's keyring file
    before, _ = runtime.profiles.create(ACTOR, None, {"user_id": "u-before", "personal": {"v": "old"}})

    # What scripts/rotate_keys.py --new-field-key does, from another process's point of view.
    rotated = keyring.with_new_field_key()
    rotated.save(config.keyring_path)
    rewrapper = SubjectKeyStore(runtime.vault_db, FieldCipher(rotated.field_keys, rotated.active_field_key))
    assert rewrapper.rewrap_batch(100) == 1
    wrapped = runtime.vault_db.query_one("SELECT wrapped_key FROM subject_keys")["wrapped_key"]
    assert key_id_of(wrapped) == 2

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
        runtime.keys.sealer_for(runtime.hasher.hash("u1"))
