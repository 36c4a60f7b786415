"""The keyring: generated keys, what its representations show (no key material), and the keys and
versions it refuses. Its file: test_keyring_file.py; the environment-variable form:
test_keyring_environment.py; a start without a keyring: test_keyring_startup.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest

from compliance.errors import KeyringError
from compliance.keyring import DatabaseKey, Keyring
from keyring_checks import all_key_material, assert_no_key_material


def test_generated_keyring_has_distinct_random_keys_and_field_key_1_active():
    keyring = Keyring.generate()
    assert keyring.active_field_key == 1
    assert sorted(keyring.field_keys) == [1]
    material = all_key_material(keyring)
    assert all(len(k) == 32 for k in material)
    assert len(set(material)) == len(material)
    assert Keyring.generate().database_key != keyring.database_key


def test_a_generated_keyring_says_it_was_generated():
    assert Keyring.generate().source == "generated"
    assert Keyring.from_master_secret(os.urandom(32)).source == "environment"


def test_repr_and_str_show_no_key_material():
    keyring = Keyring.generate().with_new_field_key()
    for text in (repr(keyring), str(keyring), f"{keyring}"):
        assert_no_key_material(text, all_key_material(keyring))
        assert "field_key_versions=[1, 2]" in text


def test_the_database_key_shows_only_whether_a_previous_key_is_held():
    current, previous = os.urandom(32), os.urandom(32)

    assert repr(DatabaseKey(current)) == "DatabaseKey(<hidden>, previous=None)"
    assert repr(DatabaseKey(current, previous)) == "DatabaseKey(<hidden>, previous=<hidden>)"
    assert_no_key_material(repr(DatabaseKey(current, previous)), [current, previous])


def test_field_key_fingerprints_name_each_version_without_its_key():
    keyring = Keyring.generate().with_new_field_key()

    fingerprints = keyring.field_key_fingerprints()

    assert list(fingerprints) == [1, 2]
    for version, key in keyring.field_keys.items():
        assert fingerprints[version] == hmac.new(key, b"learner-twin/key-fingerprint/v1",
                                                 hashlib.sha256).hexdigest()[:16]
    assert fingerprints[1] != fingerprints[2]
    assert_no_key_material(json.dumps(fingerprints), all_key_material(keyring))


def test_a_new_field_key_keeps_an_unfinished_rekeys_previous_key_and_the_source(keyring_path):
    rekeying = Keyring(os.urandom(32), {1: os.urandom(32)}, 1, os.urandom(32),
                       previous_database_key=os.urandom(32), source=str(keyring_path))

    rotated = rekeying.with_new_field_key()

    assert rotated.previous_database_key == rekeying.previous_database_key  # a crash mid-rekey stays openable
    assert rotated.database_keys.previous == rekeying.previous_database_key
    assert rotated.source == str(keyring_path)
    assert rotated.field_keys[1] == rekeying.field_keys[1] and rotated.active_field_key == 2


def test_keyring_rejects_keys_of_the_wrong_length():
    with pytest.raises(KeyringError, match="^database key and ID pepper must be 32 bytes$") as excinfo:
        Keyring(database_key=os.urandom(16), field_keys={1: os.urandom(32)}, active_field_key=1,
                id_pepper=os.urandom(32))
    with pytest.raises(KeyringError, match="^database key and ID pepper must be 32 bytes$") as excinfo:
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(32)}, active_field_key=1,
                id_pepper=os.urandom(33))
    with pytest.raises(KeyringError, match=r"^field keys must be 32 bytes under versions 1\.\.2\*\*32-1$"):
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(31)}, active_field_key=1,
                id_pepper=os.urandom(32))


@pytest.mark.parametrize("version", [0, -1, 2**32, 2**33, 2.5, "2"])
def test_field_key_versions_outside_1_to_2_to_the_32_minus_1_are_refused(version):
    with pytest.raises(KeyringError) as excinfo:
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(32), version: os.urandom(32)},
                active_field_key=1, id_pepper=os.urandom(32))
    assert str(excinfo.value) == "field keys must be 32 bytes under versions 1..2**32-1"


@pytest.mark.parametrize("version", [1, 65, 2**24, 2**32 - 1])
def test_field_key_versions_up_to_2_to_the_32_minus_1_are_accepted(version):
    keyring = Keyring(database_key=os.urandom(32), field_keys={version: os.urandom(32)},
                      active_field_key=version, id_pepper=os.urandom(32))
    assert keyring.active_field_key == version


def test_an_active_field_key_missing_from_the_keyring_is_refused_naming_its_version():
    with pytest.raises(KeyringError) as excinfo:
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(32)}, active_field_key=3,
                id_pepper=os.urandom(32))
    assert str(excinfo.value) == "active field key version 3 is not in the keyring"


def test_a_malformed_keyring_file_is_named_by_the_kind_of_fault_only():
    doc = json.loads(Keyring.generate().to_json())
    del doc["id_pepper"]

    with pytest.raises(KeyringError) as excinfo:
        Keyring.from_json(json.dumps(doc))

    assert str(excinfo.value) == "keyring file is malformed (KeyError)"
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__
