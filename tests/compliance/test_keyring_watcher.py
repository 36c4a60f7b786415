"""The key-reload policy: when a running process reads its keyring again, and what it keeps."""

from __future__ import annotations

import logging
import os

import pytest

from compliance import envelope
from compliance.errors import KeyringError, UnknownKeyVersionError
from compliance.field_crypto import FieldCipher, associated_data
from compliance.keyring import Keyring
from compliance.keyring_watcher import FixedKeys, KeyringWatcher

AAD = associated_data("t", "c", "r")


@pytest.fixture
def on_disk(tmp_path):
    """(watcher, keyring, path, reads): a watcher over a keyring file, counting its reads."""
    keyring = Keyring.generate()
    path = tmp_path / "keyring.json"
    keyring.save(path)
    reads = []

    def load():
        reads.append(1)
        return Keyring.load(path, production=False) if path.exists() else None

    return KeyringWatcher(keyring, load=load, path=path), keyring, path, reads


def test_refresh_reads_the_keyring_only_after_its_file_was_replaced(on_disk):
    watcher, keyring, path, reads = on_disk

    assert watcher.refresh() is watcher.cipher and reads == []
    rotated = keyring.with_new_field_key()
    rotated.save(path)

    assert watcher.refresh().active_key_id == 2 and reads == [1]
    assert watcher.refresh().active_key_id == 2 and reads == [1]


def test_a_reload_keeps_every_version_held_so_old_ciphertexts_still_open(on_disk):
    watcher, keyring, path, _ = on_disk
    old = watcher.cipher.encrypt(b"old", AAD)
    keyring.with_new_field_key().save(path)

    cipher = watcher.reload()

    assert cipher.active_key_id == 2 and cipher.decrypt(old, AAD) == b"old"


def test_a_keyring_with_another_database_key_is_not_taken_up(on_disk):
    watcher, _, path, _ = on_disk
    Keyring.generate().with_new_field_key().save(path)  # another deployment's keyring

    assert watcher.reload().active_key_id == 1


def test_a_refresh_that_fails_keeps_the_keys_and_a_reload_that_fails_says_so(on_disk):
    watcher, _, path, _ = on_disk
    path.write_text("not a keyring")
    os.utime(path, ns=(1, 1))

    assert watcher.refresh().active_key_id == 1
    with pytest.raises(KeyringError):
        watcher.reload()


def test_unwrapping_a_key_under_a_version_not_held_reads_the_keyring_once(on_disk):
    watcher, keyring, path, reads = on_disk
    rotated = keyring.with_new_field_key()
    rotated.save(path)
    wrapped = FieldCipher(rotated.field_keys, 2).encrypt(b"k" * 32, AAD)

    assert envelope.unwrap(watcher, wrapped, AAD) == b"k" * 32 and reads == [1]
    with pytest.raises(UnknownKeyVersionError):  # fixed keys never reload
        envelope.unwrap(FixedKeys(FieldCipher(keyring.field_keys, 1)), wrapped, AAD)


def test_a_new_data_key_goes_under_the_newest_field_key(on_disk):
    watcher, keyring, path, _ = on_disk
    keyring.with_new_field_key().save(path)

    data_key, wrapped, version = envelope.new_data_key(watcher, AAD)

    assert version == 2 and envelope.unwrap(watcher, wrapped, AAD) == data_key
    assert envelope.data_cipher(data_key).decrypt(envelope.data_cipher(data_key).encrypt(b"x", AAD), AAD) == b"x"


def test_what_an_operator_reads_in_the_log_of_each_reload(on_disk, caplog):
    caplog.set_level(logging.INFO, logger="compliance.keyring_watcher")
    watcher, keyring, path, _ = on_disk
    keyring.with_new_field_key().save(path)
    watcher.reload()
    Keyring.generate().save(path)  # another deployment's keyring
    watcher.reload()
    path.write_text("not a keyring")
    os.utime(path, ns=(1, 1))
    watcher.refresh()
    with pytest.raises(KeyringError) as failed:
        watcher.reload()

    assert [r.getMessage() for r in caplog.records] == [
        "field keys reloaded: versions [1, 2], active 2",
        "keyring reload: the database key changed; keeping this process's keys",
        f"keyring reload failed ({failed.value}); keeping this process's keys"]
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING", "WARNING"]


def test_its_repr_says_whether_it_reloads_and_shows_no_key(on_disk):
    watcher, keyring, _, _ = on_disk
    fixed = KeyringWatcher(keyring)

    assert repr(watcher) == f"KeyringWatcher({watcher.cipher!r}, reloads=True)"
    assert repr(fixed) == f"KeyringWatcher({fixed.cipher!r}, reloads=False)"
    assert not any(key.hex() in repr(watcher) for key in keyring.field_keys.values())
