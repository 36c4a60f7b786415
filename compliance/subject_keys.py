"""Per-subject data keys (crypto-shredding).

Every data subject's personal fields are encrypted under a random 256-bit data key of their
own. That key is stored only wrapped (AES-GCM) by the keyring's active field key, in the
privacy vault. Erasure destroys the wrapped key, so every copy of the subject's ciphertext
(backups, free pages, replicas) becomes unreadable at once.

Unwrapped keys are remembered in memory for up to ``READ_CACHE_SECONDS``, so that serving a
request does not read and unwrap the subject's key every time: ``reader_for`` opens stored
values with the remembered key, and ``sealer_proven_by`` seals new values with it once it has
opened a ciphertext the subject's live row holds (AES-GCM authentication proves it is the
subject's current key, also if the subject was erased and came back through another process
meanwhile). Erasure and retention in this process drop the key from memory at once; after an
erasure by another process it can stay in memory that long, with no row left to open.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any, Callable, Protocol

from twin.storage import Database
from twin.storage.timestamps import to_db, utc_now

from .errors import ComplianceError, DecryptionError, UnknownKeyVersionError
from .expiring_cache import ExpiringCache
from .field_crypto import FieldCipher, associated_data, key_id_of

_DATA_KEY_ID = 1  # the key id inside subject ciphertexts: a subject has one data key
READ_CACHE_SECONDS = 60.0
READ_CACHE_ENTRIES = 4096


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
        return json.loads(self._cipher.decrypt(blob, associated_data(table, column, row_id)).decode())

    def authenticates(self, table: str, column: str, row_id: str, blob: bytes) -> bool:
        """Whether ``blob`` was sealed under this key for that table, column and row."""
        try:
            self._cipher.decrypt(blob, associated_data(table, column, row_id))
        except DecryptionError:
            return False
        return True


class FieldReader(Protocol):
    """Opens one subject's stored values (read paths)."""

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any: ...


class _CachedReader:
    """A remembered subject key that reads the vault again when a value does not open with
    it (the subject was erased and came back meanwhile, through another process)."""

    __slots__ = ("_store", "_subject", "_cipher")

    def __init__(self, store: "SubjectKeyStore", subject_hash: str, cipher: SubjectCipher) -> None:
        self._store, self._subject, self._cipher = store, subject_hash, cipher

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any:
        try:
            return self._cipher.open(table, column, row_id, blob)
        except DecryptionError:
            self._store.forget(self._subject)
            self._cipher = self._store._cached_cipher(self._subject)
            return self._cipher.open(table, column, row_id, blob)


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
                 reload_wrapping: Callable[..., FieldCipher] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.vault = vault
        self._wrapping = wrapping
        self._encrypt = encrypt
        # Re-reads the keyring (with if_changed=True only when its file was replaced): called
        # when a wrapped key names a field-key version this process does not hold yet, and
        # before a new key is wrapped. scripts/rotate_keys.py changes the keyring while the
        # service runs.
        self._reload_wrapping = reload_wrapping
        # Key creation times are compared with erasure tombstones (written with the service's
        # clock) to tell a returning subject from a restored one: both must use one clock.
        self._clock = clock
        self._remembered: ExpiringCache[str, SubjectCipher] = \
            ExpiringCache(READ_CACHE_SECONDS, READ_CACHE_ENTRIES, monotonic)

    def __repr__(self) -> str:
        return f"SubjectKeyStore(vault={self.vault.name!r})"

    @staticmethod
    def _aad(subject_hash: str) -> bytes:
        return associated_data("subject_keys", "wrapped_key", subject_hash)

    def sealer_for(self, subject_hash: str, *, create: bool = False) -> FieldSealer:
        """The subject's sealer, read from the vault; with ``create`` a data key is made on
        first use.

        Raises ``SubjectKeyMissingError`` when the subject has no key and ``create`` is false.
        """
        if not self._encrypt:
            return PlaintextSealer()
        before_read = self._remembered.token()
        cipher = self._create(subject_hash) if create else None
        if cipher is None:
            row = self.vault.query_one("SELECT wrapped_key FROM subject_keys WHERE user_id_hash = ?",
                                       (subject_hash,))
            if row is None:
                raise SubjectKeyMissingError("the subject has no data key (erased or never stored)")
            cipher = SubjectCipher(self._unwrap(row["wrapped_key"], subject_hash))
        self._remembered.put(subject_hash, cipher, before_read)
        return cipher

    def _create(self, subject_hash: str) -> SubjectCipher | None:
        """A new data key for the subject, stored wrapped; None if they already have one."""
        if self._reload_wrapping is not None:
            # A new key goes under the newest field key, also right after a rotation elsewhere.
            self._wrapping = self._reload_wrapping(if_changed=True)
        wrapping = self._wrapping  # one version for the wrap and its label, whatever reloads meanwhile
        data_key = os.urandom(32)
        row = (subject_hash, wrapping.active_key_id, wrapping.encrypt(data_key, self._aad(subject_hash)),
               to_db(self._clock()))
        inserted = self.vault.write_shared(lambda conn: conn.execute(
            "INSERT INTO subject_keys (user_id_hash, key_version, wrapped_key, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (user_id_hash) DO NOTHING", row).rowcount)
        return SubjectCipher(data_key) if inserted else None

    def reader_for(self, subject_hash: str) -> FieldReader:
        """The subject's key for opening stored values, remembered for a while (see the module
        docstring). Writes use ``sealer_for``, which always reads the vault.

        Raises ``SubjectKeyMissingError`` when the subject has no key.
        """
        if not self._encrypt:
            return PlaintextSealer()
        return _CachedReader(self, subject_hash, self._cached_cipher(subject_hash))

    def _cached_cipher(self, subject_hash: str) -> SubjectCipher:
        cipher = self._remembered.get(subject_hash) or self.sealer_for(subject_hash)
        assert isinstance(cipher, SubjectCipher)
        return cipher

    def sealer_proven_by(self, subject_hash: str, table: str, column: str, row_id: str,
                         blob: bytes) -> FieldSealer:
        """The subject's sealer for a write, given ``blob``: a ciphertext that a live row of the
        subject holds at ``table``/``column``/``row_id``. The remembered key is used when it
        opens ``blob``, so it is the key the subject's data is under now; otherwise (nothing
        remembered, or a stale key) the vault is read, as ``sealer_for`` does."""
        if not self._encrypt:
            return PlaintextSealer()
        cached = self._remembered.get(subject_hash)
        if cached is not None and cached.authenticates(table, column, row_id, blob):
            return cached
        return self.sealer_for(subject_hash)

    def forget(self, subject_hash: str) -> None:
        """Drop the subject's key from memory (it was destroyed, or is about to be)."""
        self._remembered.forget(subject_hash)

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
        self.forget(subject_hash)
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
