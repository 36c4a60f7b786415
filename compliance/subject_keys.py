"""Per-subject data keys (crypto-shredding).

Every data subject's personal fields are encrypted under a random 256-bit data key of their
own, stored only wrapped by the keyring's active field key (``compliance.envelope``) in the
privacy vault. Erasure destroys the wrapped key, so every copy of the subject's ciphertext
(backups, free pages, replicas) becomes unreadable at once.

A subject's key is reached through one pair of accessors:

- ``reader(subject_hash)`` opens stored values. The unwrapped key is remembered in memory for
  up to ``READ_CACHE_SECONDS``, so serving a request does not read and unwrap it every time; a
  value it does not open makes it read the vault again for the key that does (``key_opening``).
- ``writer(subject_hash, create=..., proof=...)`` seals new values (and opens too). It reads the
  vault, unless ``proof`` (a ciphertext the subject's live row holds) opens under the
  remembered key: AES-GCM authentication then proves it is the subject's current key, also if
  the subject was erased and came back through another process. ``create`` makes the key on
  first use.

Erasure and retention in this process drop the remembered key at once; after an erasure by
another process it can stay in memory that long, with no row left to open.

Each key has a key id; its wrapping's associated data names it. A key made for a subject here
has their subject hash as key id and is bound (``user_id_hash``) when stored. A key created with
a profile comes from its process's lease of unbound keys (``compliance.subject_key_lease``):
until the lease binds it in the vault, the profile's row is the binding, and ``bindings`` (the
data owner's ``KeyBindings``) finds it. ``settle`` copies such bindings into the vault: erasure
and retention settle a subject first, so their key goes by subject hash like any other.
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
from .key_bindings import Binding, KeyBindings, bind, chunks, marks
from .keyring_watcher import FieldKeys, field_keys

READ_CACHE_SECONDS = 60.0
READ_CACHE_ENTRIES = 4096
# A sealed value's plaintext, as json.dumps(value, separators=(",", ":"), ensure_ascii=False)
# gives it: one encoder for every seal, where json.dumps with options builds one per call.
_PLAINTEXT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


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
    # Decoded here as ``json.loads`` decodes bytes, without its look for which UTF they are
    # in: sealed text is UTF-8 (and this text starts with "[", so has no BOM).
    values = json.loads((b"[" + b",".join(texts) + b"]").decode("utf-8", "surrogatepass"))
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
        plaintext = _PLAINTEXT(value).encode()
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


class _SubjectKey:
    """A subject's key in use (what ``reader`` and ``writer`` return): seals under the key chosen
    for the subject, and when a value does not open with it, looks for the key that does among
    every key of the subject (``SubjectKeyStore.key_opening``): the subject was erased and came
    back meanwhile through another process, or was given a second key by a key store without
    the profiles' bindings while their profile named a leased one."""

    __slots__ = ("_store", "_subject_hash", "_cipher")

    def __init__(self, store: "SubjectKeyStore", subject_hash: str, cipher: SubjectCipher) -> None:
        self._store, self._subject_hash, self._cipher = store, subject_hash, cipher

    def __repr__(self) -> str:
        return "SubjectKey(<key hidden>)"

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any:
        try:
            return self._cipher.open(table, column, row_id, blob)
        except DecryptionError:
            self._cipher = self._store.key_opening(self._subject_hash, KeyProof(table, column, row_id, blob))
            return self._cipher.open(table, column, row_id, blob)

    def open_batch(self, items: Sequence[SealedValue]) -> list[Any]:
        try:
            return self._cipher.open_batch(items)
        except DecryptionError:  # one by one: a batch may hold values of two keys of theirs
            return [self.open(*item) for item in items]


class _SubjectSealer(_SubjectKey):
    """What ``writer`` returns: a subject's key that seals too (read paths cannot)."""

    __slots__ = ()

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes:
        return self._cipher.seal(table, column, row_id, value)


class PlaintextSealer:
    """Benchmark-only stand-in (``TWIN_BENCH_PLAINTEXT``): JSON bytes, no encryption."""

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes:
        return _PLAINTEXT(value).encode()

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
                 monotonic: Callable[[], float] = time.monotonic,
                 bindings: KeyBindings | None = None) -> None:
        self.vault = vault
        self.bindings = bindings
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
    def aad(key_id: str) -> bytes:
        """The associated data of a wrapped key: its key id (a bound-made key's is its subject
        hash, as before key ids)."""
        return associated_data("subject_keys", "wrapped_key", key_id)

    @property
    def encrypts(self) -> bool:
        return self._encrypt

    @property
    def field_keys(self) -> FieldKeys:
        return self._keys

    def now(self) -> datetime:
        return self._clock()

    # -- the two accessors ----------------------------------------------------------------

    def reader(self, subject_hash: str) -> FieldReader:
        """The subject's key for opening stored values, remembered for a while (see the module
        docstring). Raises ``SubjectKeyMissingError`` when the subject has no key."""
        if not self._encrypt:
            return PlaintextSealer()
        return _SubjectKey(self, subject_hash, self._remembered.get(subject_hash) or self._vault_cipher(subject_hash))

    def writer(self, subject_hash: str, *, create: bool = False,
               proof: KeyProof | None = None) -> FieldSealer:
        """The subject's key for sealing (and opening) values.

        With ``proof``, the remembered key is used when it opens the proof (it is the key the
        subject's data is under now); otherwise, and without a proof, the vault is read. With
        ``create`` a data key is made on first use. Raises ``SubjectKeyMissingError`` when the
        subject has no key and ``create`` is false. A subject with two keys (see ``key_opening``)
        seals under the one that opens ``proof``: their data stays under their profile's key.
        """
        if not self._encrypt:
            return PlaintextSealer()
        if proof is not None:
            cached = self._remembered.get(subject_hash)
            if cached is not None and cached.authenticates(proof):
                return _SubjectSealer(self, subject_hash, cached)
        before_read = self._remembered.token()
        cipher = self._vault_cipher(subject_hash, create=create)
        if proof is not None and not cipher.authenticates(proof):
            cipher = next((c for c in self._all_keys(subject_hash) if c.authenticates(proof)), cipher)
            self._remembered.put(subject_hash, cipher, before_read)
        return _SubjectSealer(self, subject_hash, cipher)

    def _vault_cipher(self, subject_hash: str, *, create: bool = False) -> SubjectCipher:
        """The subject's key as the vault has it now (made with ``create``), remembered."""
        before_read = self._remembered.token()
        cipher = self._create(subject_hash) if create else None
        if cipher is None:
            row = self._stored(subject_hash)
            if row is None:
                raise SubjectKeyMissingError("the subject has no data key (erased or never stored)")
            cipher = self._unwrapped(row)
        self._remembered.put(subject_hash, cipher, before_read)
        return cipher

    def key_opening(self, subject_hash: str, sealed: KeyProof) -> SubjectCipher:
        """The subject's key that opens ``sealed``, read from the vault now and remembered.

        Every key of the subject is tried: the one the vault binds them to, and those their data
        rows name. A subject has two when a key store without the profiles' bindings made them
        one by subject hash while their profile was being created with a leased key (the vault
        could then not bind the leased one to them): neither key's values ever become
        unreadable, and ending the subject destroys both. Raises ``DecryptionError`` when none
        opens it, ``SubjectKeyMissingError`` when they have no key."""
        self.forget(subject_hash)
        before_read = self._remembered.token()
        keys = self._all_keys(subject_hash)
        if not keys:
            raise SubjectKeyMissingError("the subject has no data key (erased or never stored)")
        cipher = next((c for c in keys if c.authenticates(sealed)), None)
        if cipher is None:
            raise DecryptionError("ciphertext failed authentication under every key of the subject "
                                  "(tampered, moved to another row/column, or wrong key)")
        self._remembered.put(subject_hash, cipher, before_read)
        return cipher

    def _all_keys(self, subject_hash: str) -> list[SubjectCipher]:
        """Every key of the subject: bound to them in the vault, then those their rows name."""
        rows = list(self.vault.query("SELECT key_id, wrapped_key FROM subject_keys WHERE user_id_hash = ?",
                                     (subject_hash,)))
        return [self._unwrapped(row) for row in rows + self._named(subject_hash, {r["key_id"] for r in rows})]

    def _named(self, subject_hash: str, besides: set[str] = frozenset()) -> list[Any]:
        """The vault rows of the keys the subject's data rows name (theirs, or bound to no one)."""
        if self.bindings is None:
            return []
        ids = [b.key_id for b in self.bindings.bound_keys([subject_hash]) if b.key_id not in besides]
        return [row for chunk in chunks(ids) for row in self.vault.query(
            f"SELECT key_id, wrapped_key FROM subject_keys WHERE key_id IN ({marks(chunk)}) "
            "AND (user_id_hash IS NULL OR user_id_hash = ?)", (*chunk, subject_hash))]

    def _unwrapped(self, row: Any) -> SubjectCipher:
        return SubjectCipher(envelope.unwrap(self._keys, row["wrapped_key"], self.aad(row["key_id"])))

    def existing(self, subject_hash: str) -> FieldSealer | None:
        """The subject's key if the vault binds them one now, else None: a new subject's profile
        then takes a leased key. Never the remembered key (another process may have erased them
        since), nor a key their profile names (a second profile would not be stored anyway)."""
        if not self._encrypt:
            return PlaintextSealer()
        before_read = self._remembered.token()
        row = self._stored(subject_hash, through_bindings=False)
        if row is None:
            return None
        cipher = self._unwrapped(row)
        self._remembered.put(subject_hash, cipher, before_read)
        return cipher

    def remember(self, subject_hash: str, cipher: SubjectCipher) -> None:
        """Keep a key just bound to the subject (by a create's data row) in memory."""
        self._remembered.put(subject_hash, cipher, self._remembered.token())

    def _stored(self, subject_hash: str, *, through_bindings: bool = True) -> Any:
        """The subject's ``key_id, wrapped_key`` row: bound in the vault, else through the data
        row that binds them to a leased key; None when they have no key."""
        row = self.vault.query_one("SELECT key_id, wrapped_key FROM subject_keys WHERE user_id_hash = ?",
                                   (subject_hash,))
        if row is not None or not through_bindings:
            return row
        return next(iter(self._named(subject_hash)), None)

    # -- keys -----------------------------------------------------------------------------

    def _create(self, subject_hash: str) -> SubjectCipher | None:
        """A new data key for the subject, stored wrapped and bound (its key id is their subject
        hash); None if they already have one (bound here, or through a data row)."""
        if self.bindings is not None and self.bindings.bound_keys([subject_hash]):
            return None
        data_key, wrapped, version = envelope.new_data_key(self._keys, self.aad(subject_hash))
        row = (subject_hash, subject_hash, version, wrapped, to_db(self._clock()))
        inserted = self.vault.write_shared(lambda conn: conn.execute(
            "INSERT INTO subject_keys (key_id, user_id_hash, key_version, wrapped_key, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", row).rowcount)
        return SubjectCipher(data_key) if inserted else None

    def forget(self, subject_hash: str) -> None:
        """Drop the subject's key from memory (it was destroyed, or is about to be)."""
        self._remembered.forget(subject_hash)

    def has_key(self, subject_hash: str) -> bool:
        return self._stored(subject_hash) is not None

    def settle(self, subject_hashes: Sequence[str]) -> list[str]:
        """Bind in the vault the leased keys that data rows bind these subjects to, so that
        ending them destroys those keys by subject hash. Returns the key ids that stay unbound:
        their subject was bound another key meanwhile (made at the same moment by a key store
        without these bindings), for ``destroy_strays`` when the subject ends."""
        if self.bindings is None or not subject_hashes:
            return []
        named = self.bindings.bound_keys(subject_hashes)
        if not named:
            return []
        bind(self.vault, named)
        ids = [b.key_id for b in named]
        return [r["key_id"] for chunk in chunks(ids) for r in self.vault.query(
            f"SELECT key_id FROM subject_keys WHERE user_id_hash IS NULL AND key_id IN ({marks(chunk)})", chunk)]

    def destroy_strays(self, key_ids: Sequence[str]) -> int:
        """Delete leased keys ``settle`` could not bind, with the subject whose rows name them
        (a key is taken once: no other subject's row can name it)."""
        return sum(self.vault.write(lambda conn, chunk=chunk: conn.execute(
            f"DELETE FROM subject_keys WHERE user_id_hash IS NULL AND key_id IN ({marks(chunk)})", chunk).rowcount)
            for chunk in chunks(list(key_ids)))

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
                "SELECT key_id, wrapped_key FROM subject_keys WHERE key_version != ? LIMIT ?",
                (active, batch_size)).fetchall()
            for row in rows:
                rewrapped = envelope.rewrap(self._keys, row["wrapped_key"], self.aad(row["key_id"]))
                conn.execute("UPDATE subject_keys SET wrapped_key = ?, key_version = ? "
                             "WHERE key_id = ?", (rewrapped, key_id_of(rewrapped), row["key_id"]))
            return len(rows)

        return self.vault.write(work)
