"""Field encryption: AES-256-GCM with row-bound associated data.

Ciphertext format (all big-endian)::

    +--------+-----------+-----------+---------------------------+
    | 0x01   | key id u32| nonce 12B | ciphertext || GCM tag 16B|
    +--------+-----------+-----------+---------------------------+

The format byte lets the layout change later; the key id names the key version that
encrypted it (both are authenticated as part of the associated data), so rotation can run while old and new ciphertexts coexist. The associated data
(``associated_data(table, column, row_id)``) is not stored: the caller rebuilds it from where the
value lives, so a ciphertext copied to another row or column fails authentication.
"""

from __future__ import annotations

import os
import struct
from typing import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError, MalformedCiphertextError, UnknownKeyVersionError

FORMAT_VERSION = 1
NONCE_BYTES = 12
_HEADER = struct.Struct(">BI")
_MIN_LENGTH = _HEADER.size + NONCE_BYTES + 16
_MAX_KEY_ID = 2**32 - 1


def associated_data(table: str, column: str, row_id: str | int) -> bytes:
    """The associated data binding a ciphertext to one table, column and row."""
    return f"learner-twin|{table}|{column}|{row_id}".encode()


class FieldCipher:
    """Encrypts and decrypts field values under a set of versioned keys, one active."""

    def __init__(self, keys: Mapping[int, bytes], active_key_id: int) -> None:
        # The header stores the key id as a u32, and id 0 is never issued (the keyring
        # refuses both too): an id outside 1..2**32-1 could not be written into a header.
        # Named by value if an int, else by type: a key id that is not one may be key material.
        refused = sorted(key_id for key_id in keys if type(key_id) is int and not _is_key_id(key_id))
        others = sorted({type(key_id).__name__ for key_id in keys if not isinstance(key_id, int)})
        if refused or others:
            raise ValueError(f"key ids must be integers 1..2**32-1, not {', '.join(map(str, refused + others))}")
        if not _is_key_id(active_key_id) or active_key_id not in keys:
            named = active_key_id if isinstance(active_key_id, int) else f"of type {type(active_key_id).__name__}"
            raise ValueError(f"active key id {named} not among the keys")
        self._aeads = {key_id: AESGCM(key) for key_id, key in keys.items()}
        # By the header a ciphertext under each key starts with (format byte and key id).
        self._by_header = {_HEADER.pack(FORMAT_VERSION, key_id): aead for key_id, aead in self._aeads.items()}
        self.active_key_id = active_key_id

    def __repr__(self) -> str:
        return f"FieldCipher(key_ids={sorted(self._aeads)}, active={self.active_key_id})"

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt under the active key with a fresh random 96-bit nonce."""
        nonce = os.urandom(NONCE_BYTES)
        header = _HEADER.pack(FORMAT_VERSION, self.active_key_id)
        # The header is authenticated too, so its format byte and key id cannot be altered.
        return header + nonce + self._aeads[self.active_key_id].encrypt(nonce, plaintext, header + aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a ciphertext; raise a ``DecryptionError`` subclass if it does not authenticate."""
        blob = _as_ciphertext(blob)
        key_id = int.from_bytes(blob[1:_HEADER.size], "big")
        aead = self._aeads.get(key_id)
        if aead is None:
            raise UnknownKeyVersionError(f"ciphertext uses key version {key_id}, which the keyring does not hold")
        nonce = blob[_HEADER.size:_HEADER.size + NONCE_BYTES]
        try:
            return aead.decrypt(nonce, blob[_HEADER.size + NONCE_BYTES:], blob[:_HEADER.size] + aad)
        except InvalidTag:
            raise DecryptionError(
                "ciphertext failed authentication (tampered, moved to another row/column, or wrong key)"
            ) from None

    def decrypt_many(self, pairs: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
        """``decrypt`` of every ``(blob, aad)``, in order: the same checks, with the per-value
        call overhead paid once (exports open hundreds of thousands of values)."""
        by_header, header_size, body = self._by_header, _HEADER.size, _HEADER.size + NONCE_BYTES
        if not isinstance(pairs, (list, tuple)):
            pairs = list(pairs)  # the fallback below goes over them again
        out = []
        try:
            for blob, aad in pairs:
                if type(blob) is not bytes:
                    blob = _as_ciphertext(blob)
                header = blob[:header_size]  # a known header: our format, a key the keyring holds
                aead = by_header.get(header) if len(blob) >= _MIN_LENGTH else None
                if aead is None:
                    return [self.decrypt(blob, aad) for blob, aad in pairs]  # raises as decrypt does
                out.append(aead.decrypt(blob[header_size:body], blob[body:], header + aad))
        except InvalidTag:
            raise DecryptionError(
                "ciphertext failed authentication (tampered, moved to another row/column, or wrong key)"
            ) from None
        return out

    def needs_rewrap(self, blob: bytes) -> bool:
        """True when the ciphertext is not under the active key (rotation work to do)."""
        return key_id_of(blob) != self.active_key_id


def _is_key_id(key_id: object) -> bool:
    return isinstance(key_id, int) and 1 <= key_id <= _MAX_KEY_ID


def key_id_of(blob: bytes) -> int:
    """The key version recorded in a ciphertext's header."""
    return int.from_bytes(_as_ciphertext(blob)[1:_HEADER.size], "big")


def _as_ciphertext(blob: bytes | bytearray | memoryview) -> bytes:
    """``blob`` as bytes, checked to be long enough and in our format (decrypting is on every
    read's path, so no copy is made of what already is bytes)."""
    if type(blob) is not bytes:
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise MalformedCiphertextError("value is not a field ciphertext (too short)")
        blob = bytes(blob)
    if len(blob) < _MIN_LENGTH:
        raise MalformedCiphertextError("value is not a field ciphertext (too short)")
    if blob[0] != FORMAT_VERSION:
        raise MalformedCiphertextError(f"unknown ciphertext format version {blob[0]}")
    return blob
