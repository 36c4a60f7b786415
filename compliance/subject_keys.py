"""Per-subject data keys (crypto-shredding).

Every data subject's personal fields are encrypted under a random 256-bit data key of their
own, stored only wrapped by the keyring's active field key (``compliance.envelope``) in the
privacy vault. Erasure destroys the wrapped key, so every copy of the subject's ciphertext
(backups, free pages, replicas) becomes unreadable at once.

A subject's key is reached through one pair of accessors:

- ``reader(subject_hash)`` opens stored values. The unwrapped key is remembered in memory for
  up to ``READ_CACHE_SECONDS``, so serving a request does not read and unwrap it every time; a
  value it does not open makes it read the vault again (the subject was erased and came back
  through another process meanwhile).
- ``writer(subject_hash, create=..., proof=...)`` seals new values (and opens too). It reads the
  vault, unless ``proof`` (a ciphertext the subject's live row holds) opens under the
  remembered key: AES-GCM authentication then proves it is the subject's current key, also if
  the subject was erased and came back through another process. ``create`` makes the key on
  first use.

Erasure and retention in this process drop the remembered key at once; after an erasure by
another process it can stay in memory that long, with no row left to open.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Callable, NamedTuple, Protocol, Sequence

from twin.storage import Database
from twin.storage.timestamps import to_db, utc_now

from . import envelope
from .errors import ComplianceError, DecryptionError
from .expiring_cache import ExpiringCache
from .field_crypto import FieldCipher, associated_data, key_id_of
from .keyring_watcher import FieldKeys, field_keys

READ_CACHE_SECONDS = 60.0
READ_CACHE_ENTRIES = 4096


class SubjectKeyMissingError(ComplianceError):
    """The subject has no data key (never had data, or was erased)."""


class FieldReader(Protocol):
    """Opens one subject's stored values (read paths)."""

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any: ...

    def open_batch(self, items: Sequence[SealedValue]) -> list[Any]:
        """Every ``(table, column, row_id, blob)`` opened, in order (a batch of an export)."""


class FieldSealer(FieldReader, Protocol):
    """Seals and opens one subject's JSON values, bound to table/column/row."""

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes: ...


SealedValue = tuple[str, str, str, bytes]  # table, column, row id, ciphertext


def _parse_many(texts: list[bytes]) -> list[Any]:
    """JSON values (as sealed: one complete value each) parsed with one ``json.loads`` call, as a
    JSON array: a batch pays the parser's per-call cost once instead of per value."""
    if not texts:
        return []
    values = json.loads(b"[" + b",".join(texts) + b"]")
    if len(values) != len(texts):  # a sealed text that is not one value: never ours, but be exact
        return [json.loads(text) for text in texts]
    return values


class KeyProof(NamedTuple):
    """A ciphertext a live row of the subject holds, and where: it proves which key is theirs."""

    table: str
    column: str
    row_id: str
    blob: bytes


class SubjectCipher:
    """One subject's data key in use: JSON values in, row-bound ciphertext out."""

    __slots__ = ("_cipher",)

    def __init__(self, data_key: bytes) -> None:
        self._cipher = envelope.data_cipher(data_key)

    def __repr__(self) -> str:
        return "SubjectCipher(<key hidden>)"

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes:
        plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return self._cipher.encrypt(plaintext, associated_data(table, column, row_id))

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any:
        return json.loads(self._cipher.decrypt(blob, associated_data(table, column, row_id)).decode())

    def open_batch(self, items: Sequence[SealedValue]) -> list[Any]:
        return _parse_many(self._cipher.decrypt_many(
            [(blob, associated_data(table, column, row_id)) for table, column, row_id, blob in items]))

    def authenticates(self, proof: KeyProof) -> bool:
        """Whether ``proof`` was sealed under this key for its table, column and row."""
        try:
            self._cipher.decrypt(proof.blob, associated_data(proof.table, proof.column, proof.row_id))
        except DecryptionError:
            return False
        return True


class _CachedReader:
    """A remembered subject key that reads the vault again when a value does not open with
    it (the subject was erased and came back meanwhile, through another process)."""

    __slots__ = ("_store", "_subject_hash", "_cipher")

    def __init__(self, store: "SubjectKeyStore", subject_hash: str, cipher: SubjectCipher) -> None:
        self._store, self._subject_hash, self._cipher = store, subject_hash, cipher

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any:
        try:
            return self._cipher.open(table, column, row_id, blob)
        except DecryptionError:
            self._store.forget(self._subject_hash)
            self._cipher = self._store._remembered_cipher(self._subject_hash)
            return self._cipher.open(table, column, row_id, blob)

    def open_batch(self, items: Sequence[SealedValue]) -> list[Any]:
        try:
            return self._cipher.open_batch(items)
        except DecryptionError:
            self._store.forget(self._subject_hash)
            self._cipher = self._store._remembered_cipher(self._subject_hash)
            return self._cipher.open_batch(items)


class PlaintextSealer:
    """Benchmark-only stand-in (``TWIN_BENCH_PLAINTEXT``): JSON bytes, no encryption."""

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any:
        return json.loads(bytes(blob))

    def open_batch(self, items: Sequence[SealedValue]) -> list[Any]:
        return _parse_many([bytes(blob) for _, _, _, blob in items])


class SubjectKeyStore:
    """Creates, unwraps, destroys and rewraps subject data keys in the privacy vault.

    ``wrapping`` is the process's field keys (a ``KeyringWatcher``, which re-reads the keyring
    after a rotation elsewhere), or a bare ``FieldCipher`` that never changes.
    """

    def __init__(self, vault: Database, wrapping: FieldCipher | FieldKeys, *, encrypt: bool = True,
                 clock: Callable[[], datetime] = utc_now,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.vault = vault
        self._keys = field_keys(wrapping)
        self._encrypt = encrypt
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

    # -- the two accessors ----------------------------------------------------------------

    def reader(self, subject_hash: str) -> FieldReader:
        """The subject's key for opening stored values, remembered for a while (see the module
        docstring). Raises ``SubjectKeyMissingError`` when the subject has no key."""
        if not self._encrypt:
            return PlaintextSealer()
        return _CachedReader(self, subject_hash, self._remembered_cipher(subject_hash))

    def writer(self, subject_hash: str, *, create: bool = False,
               proof: KeyProof | None = None) -> FieldSealer:
        """The subject's key for sealing (and opening) values.

        With ``proof``, the remembered key is used when it opens the proof (it is the key the
        subject's data is under now); otherwise, and without a proof, the vault is read. With
        ``create`` a data key is made on first use. Raises ``SubjectKeyMissingError`` when the
        subject has no key and ``create`` is false.
        """
        if not self._encrypt:
            return PlaintextSealer()
        if proof is not None:
            cached = self._remembered.get(subject_hash)
            if cached is not None and cached.authenticates(proof):
                return cached
        before_read = self._remembered.token()
        cipher = self._create(subject_hash) if create else None
        if cipher is None:
            row = self.vault.query_one("SELECT wrapped_key FROM subject_keys WHERE user_id_hash = ?",
                                       (subject_hash,))
            if row is None:
                raise SubjectKeyMissingError("the subject has no data key (erased or never stored)")
            cipher = SubjectCipher(envelope.unwrap(self._keys, row["wrapped_key"], self._aad(subject_hash)))
        self._remembered.put(subject_hash, cipher, before_read)
        return cipher

    # -- keys -----------------------------------------------------------------------------

    def _create(self, subject_hash: str) -> SubjectCipher | None:
        """A new data key for the subject, stored wrapped; None if they already have one."""
        data_key, wrapped, version = envelope.new_data_key(self._keys, self._aad(subject_hash))
        row = (subject_hash, version, wrapped, to_db(self._clock()))
        inserted = self.vault.write_shared(lambda conn: conn.execute(
            "INSERT INTO subject_keys (user_id_hash, key_version, wrapped_key, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (user_id_hash) DO NOTHING", row).rowcount)
        return SubjectCipher(data_key) if inserted else None

    def _remembered_cipher(self, subject_hash: str) -> SubjectCipher:
        cipher = self._remembered.get(subject_hash) or self.writer(subject_hash)
        assert isinstance(cipher, SubjectCipher)
        return cipher

    def forget(self, subject_hash: str) -> None:
        """Drop the subject's key from memory (it was destroyed, or is about to be)."""
        self._remembered.forget(subject_hash)

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
                                        (self._keys.cipher.active_key_id,))[0])

    def rewrap_batch(self, batch_size: int = 500) -> int:
        """Re-wrap up to ``batch_size`` keys under the active field key; returns how many.

        Old and new versions stay readable throughout, so the service keeps serving.
        """
        active = self._keys.cipher.active_key_id

        def work(conn: Any) -> int:
            rows = conn.execute(
                "SELECT user_id_hash, wrapped_key FROM subject_keys WHERE key_version != ? LIMIT ?",
                (active, batch_size)).fetchall()
            for row in rows:
                rewrapped = envelope.rewrap(self._keys, row["wrapped_key"], self._aad(row["user_id_hash"]))
                conn.execute("UPDATE subject_keys SET wrapped_key = ?, key_version = ? "
                             "WHERE user_id_hash = ?", (rewrapped, key_id_of(rewrapped), row["user_id_hash"]))
            return len(rows)

        return self.vault.write(work)
