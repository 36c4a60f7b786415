"""Per-subject data keys (crypto-shredding).

Every data subject's personal fields are encrypted under a random 256-bit data key of their
own. That key is stored only wrapped (AES-GCM) by the keyring's active field key, in the
privacy vault. Erasure destroys the wrapped key, so every copy of the subject's ciphertext
(backups, free pages, replicas) becomes unreadable at once.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any, Callable, Protocol

from twin.storage import Database, IntegrityError
from twin.storage.timestamps import to_db, utc_now

from .errors import ComplianceError, UnknownKeyVersionError
from .field_crypto import FieldCipher, associated_data, key_id_of

_DATA_KEY_ID = 1  # the key id inside subject ciphertexts: a subject has one data key


class SubjectKeyMissingError(ComplianceError):
    """The subject has no data key (never had data, or was erased)."""


class FieldSealer(Protocol):
    """Seals and opens one subject's JSON values, bound to table/column/row."""

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes: ...
    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any: ...


class SubjectCipher:
    """One subject's data key in use: JSON values in, row-bound ciphertext out."""

    __slots__ = ("_cipher",)

    def __init__(self, data_key: bytes) -> None:
        self._cipher = FieldCipher({_DATA_KEY_ID: data_key}, _DATA_KEY_ID)

    def __repr__(self) -> str:
        return "SubjectCipher(<key hidden>)"

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes:
        plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return self._cipher.encrypt(plaintext, associated_data(table, column, row_id))

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any:
        return json.loads(self._cipher.decrypt(blob, associated_data(table, column, row_id)))


class PlaintextSealer:
    """Benchmark-only stand-in (``TWIN_BENCH_PLAINTEXT``): JSON bytes, no encryption."""

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any:
        return json.loads(bytes(blob))


class SubjectKeyStore:
    """Creates, unwraps, destroys and rewraps subject data keys in the privacy vault."""

    def __init__(self, vault: Database, wrapping: FieldCipher, *, encrypt: bool = True,
                 clock: Callable[[], datetime] = utc_now,
                 reload_wrapping: Callable[[], FieldCipher] | None = None) -> None:
        self.vault = vault
        self._wrapping = wrapping
        self._encrypt = encrypt
        # Called when a wrapped key names a field-key version this process does not hold yet:
        # scripts/rotate_keys.py added it to the keyring while the service was running.
        self._reload_wrapping = reload_wrapping
        # Key creation times are compared with erasure tombstones (written with the service's
        # clock) to tell a returning subject from a restored one: both must use one clock.
        self._clock = clock

    def __repr__(self) -> str:
        return f"SubjectKeyStore(vault={self.vault.name!r})"

    @staticmethod
    def _aad(subject_hash: str) -> bytes:
        return associated_data("subject_keys", "wrapped_key", subject_hash)

    def sealer_for(self, subject_hash: str, *, create: bool = False) -> FieldSealer:
        """The subject's sealer; with ``create`` a data key is made on first use.

        Raises ``SubjectKeyMissingError`` when the subject has no key and ``create`` is false.
        """
        if not self._encrypt:
            return PlaintextSealer()
        row = self.vault.query_one("SELECT wrapped_key FROM subject_keys WHERE user_id_hash = ?",
                                   (subject_hash,))
        if row is not None:
            return SubjectCipher(self._unwrap(row["wrapped_key"], subject_hash))
        if not create:
            raise SubjectKeyMissingError("the subject has no data key (erased or never stored)")
        data_key = os.urandom(32)
        wrapped = self._wrapping.encrypt(data_key, self._aad(subject_hash))
        try:
            self.vault.write_shared(lambda conn: conn.execute(
                "INSERT INTO subject_keys (user_id_hash, key_version, wrapped_key, created_at) "
                "VALUES (?, ?, ?, ?)", (subject_hash, self._wrapping.active_key_id, wrapped,
                                        to_db(self._clock()))))
        except IntegrityError:  # another request created it first: use theirs
            return self.sealer_for(subject_hash)
        return SubjectCipher(data_key)

    def _unwrap(self, wrapped: bytes, subject_hash: str) -> bytes:
        try:
            return self._wrapping.decrypt(wrapped, self._aad(subject_hash))
        except UnknownKeyVersionError:
            if self._reload_wrapping is None:
                raise
            self._wrapping = self._reload_wrapping()  # a rotation is under way: read the new keyring
            return self._wrapping.decrypt(wrapped, self._aad(subject_hash))

    def has_key(self, subject_hash: str) -> bool:
        return self.vault.query_one("SELECT 1 FROM subject_keys WHERE user_id_hash = ?",
                                    (subject_hash,)) is not None

    def destroy(self, subject_hash: str) -> bool:
        """Delete the subject's wrapped key (secure_delete zeroes its bytes). True if it existed."""
        cursor = self.vault.write(lambda conn: conn.execute(
            "DELETE FROM subject_keys WHERE user_id_hash = ?", (subject_hash,)))
        return cursor.rowcount > 0

    def count_needing_rewrap(self) -> int:
        return int(self.vault.query_one("SELECT count(*) FROM subject_keys WHERE key_version != ?",
                                        (self._wrapping.active_key_id,))[0])

    def rewrap_batch(self, batch_size: int = 500) -> int:
        """Re-wrap up to ``batch_size`` keys under the active field key; returns how many.

        Old and new versions stay readable throughout, so the service keeps serving.
        """
        active = self._wrapping.active_key_id

        def work(conn: Any) -> int:
            rows = conn.execute(
                "SELECT user_id_hash, wrapped_key FROM subject_keys WHERE key_version != ? LIMIT ?",
                (active, batch_size)).fetchall()
            for row in rows:
                aad = self._aad(row["user_id_hash"])
                data_key = self._wrapping.decrypt(row["wrapped_key"], aad)
                rewrapped = self._wrapping.encrypt(data_key, aad)
                conn.execute("UPDATE subject_keys SET wrapped_key = ?, key_version = ? "
                             "WHERE user_id_hash = ?", (rewrapped, key_id_of(rewrapped), row["user_id_hash"]))
            return len(rows)

        return self.vault.write(work)
