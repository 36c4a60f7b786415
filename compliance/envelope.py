"""Envelope encryption: a fresh data key per purpose, stored only wrapped by the field key.

Subject keys (crypto-shredding: one per data subject, in the vault) and audit journal segments
(one per segment file) both use it. A data key is 256 random bits; its wrapped form is an
AES-GCM ciphertext under the keyring's active field key (``compliance.field_crypto`` format,
so it names its field-key version), bound by associated data to where it is kept. Wrapped keys
outlive field-key rotations: ``unwrap`` re-reads the keyring when one names a version this
process does not hold yet, and ``rewrap`` moves one under the active version.

A data key encrypts under the key id ``DATA_KEY_ID`` inside its own ciphertexts: a purpose has
exactly one data key, so the id never varies.
"""

from __future__ import annotations

import os

from .errors import UnknownKeyVersionError
from .field_crypto import FieldCipher
from .keyring import KEY_BYTES
from .keyring_watcher import FieldKeys

DATA_KEY_ID = 1


def data_cipher(data_key: bytes) -> FieldCipher:
    """The cipher of one data key."""
    return FieldCipher({DATA_KEY_ID: data_key}, DATA_KEY_ID)


def new_data_key(keys: FieldKeys, aad: bytes) -> tuple[bytes, bytes, int]:
    """A fresh data key, its wrapped form under the newest field key (the keyring is re-read
    first if it was replaced), and that field key's version."""
    wrapping = keys.refresh()  # one version for the wrap and its label, whatever reloads meanwhile
    data_key = os.urandom(KEY_BYTES)
    return data_key, wrapping.encrypt(data_key, aad), wrapping.active_key_id


def unwrap(keys: FieldKeys, wrapped: bytes, aad: bytes) -> bytes:
    """The data key inside ``wrapped``; a version this process lacks makes it re-read the keyring
    once (a rotation is under way). Raises ``DecryptionError`` subclasses."""
    try:
        return keys.cipher.decrypt(wrapped, aad)
    except UnknownKeyVersionError:
        if not keys.can_reload:
            raise
        return keys.reload().decrypt(wrapped, aad)


def rewrap(keys: FieldKeys, wrapped: bytes, aad: bytes) -> bytes:
    """``wrapped`` re-encrypted under the active field key (the data key does not change)."""
    cipher = keys.cipher
    return cipher.encrypt(cipher.decrypt(wrapped, aad), aad)
