"""Audit archive segments: the bytes of one archived run of the chain, and where they are kept.

A segment holds the events of a run of seqs in their hashed form (every field an auditor needs,
the interned values spelt out, so it reads without the vault) plus the hash the run chains to:
it verifies on its own (``decode`` then walk it), and the vault's index joins it to the chain by
the seal of its last event. File layout (integers big-endian)::

    b"LTAA" | format version u8 | wrapped-key length u16 | wrapped key | AES-256-GCM ciphertext

The plaintext is the zlib-compressed binary form of the segment (format 2,
``compliance.audit_archive_codec``); segments of format 1, its JSON, are still read. Each segment has a fresh data key
(``compliance.envelope``) wrapped by the keyring's field key, both bound by associated data to
the segment's first seq, so a segment cannot be passed off as another. Its SHA-256 (the
checksum) is in the vault's index: a damaged or swapped file is named before anything is
decrypted. A field-key rotation rewraps the data key (``rewrapped``): only the wrapped key in
the header changes, so the segment gets a new checksum and the same sealed events.

Where: on SQLCipher one file per segment in ``<vault>.audit-archive/`` beside the vault
(``FileSegments``); on PostgreSQL rows of ``audit_archive_blobs`` in the vault
(``TableSegments``), since replicas share no disk.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, Mapping

from twin.storage.paths import fsync_path

from . import audit_archive_codec as codec
from . import envelope
from .errors import ComplianceError, CryptoError, KeyringError
from .field_crypto import associated_data, key_id_of
from .keyring_watcher import FieldKeys

MAGIC = b"LTAA"
FORMAT_VERSION = 2  # 1: JSON (the first release's), read still
READABLE_VERSIONS = (1, 2)
SUFFIX = ".ltaa"
_REWRAP = ".rewrap"
_HEADER = struct.Struct(">4sBH")
_FORMAT = "twin-audit-archive/1"
LEGACY, LOG = codec.LEGACY, codec.LOG
_LOG_FIELDS = ("seq", "event_id", "occurred_at", "actor_id", "actor_role", "action", "subject_hash",
               "resource", "request_id", "details", "event_hash")
_BYTES_FIELDS = ("event_id", "request_id", "event_hash")
_SUBJECT = 7  # where both forms of an encoded event hold the subject hash (after the form tag)
_LEGACY_FIELDS = ("seq", "event_id", "occurred_at", "actor_id", "actor_role", "action", "subject_hash",
                  "resource", "request_id", "details", "prev_hash", "event_hash")


class SegmentUnreadableError(ComplianceError):
    """A segment's bytes are not a segment this keyring can open (damaged, swapped or forged)."""


@dataclass
class SegmentContent:
    first_seq: int
    last_seq: int
    prev_hash: bytes                    # what the first event chains to
    events: list[tuple[str, dict[str, Any]]]  # (form, row) as compliance.audit_store.chain_rows


def segment_name(first_seq: int) -> str:
    return f"{first_seq:016d}{SUFFIX}"


def checksum(body: bytes) -> bytes:
    return sha256(body).digest()


def _aad(first_seq: int, part: str) -> bytes:
    return associated_data("audit_archive", part, first_seq)


def _b64(value: bytes | memoryview | None) -> str | None:
    return None if value is None else base64.b64encode(bytes(value)).decode("ascii")


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def _row_out(form: str, row: Mapping[str, Any]) -> list[Any]:
    if form == LEGACY:
        return ["l", *(row[f] for f in _LEGACY_FIELDS)]
    return ["c", *(_b64(row[f]) if f in _BYTES_FIELDS else row[f] for f in _LOG_FIELDS)]


def _row_in(item: list[Any]) -> tuple[str, dict[str, Any]]:
    if item[0] == "l":
        return LEGACY, dict(zip(_LEGACY_FIELDS, item[1:], strict=True))
    if item[0] != "c":
        raise ValueError("neither a legacy nor a compact event")
    row = dict(zip(_LOG_FIELDS, item[1:], strict=True))
    for name in _BYTES_FIELDS:
        row[name] = _unb64(row[name])
    return LOG, row


def _json_plaintext(content: SegmentContent) -> bytes:
    return json.dumps({"format": _FORMAT, "first_seq": content.first_seq, "last_seq": content.last_seq,
                       "prev_hash": content.prev_hash.hex(),
                       "events": [_row_out(form, row) for form, row in content.events]},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode(content: SegmentContent, keys: FieldKeys, *, version: int = FORMAT_VERSION) -> bytes:
    """The stored bytes of a segment: compressed, then encrypted under a fresh data key.
    ``version`` 1 writes the JSON form of the first release (its segments are still read)."""
    if version == 1:
        plain = _json_plaintext(content)
    elif version == 2:
        plain = codec.pack(content.first_seq, content.last_seq, content.prev_hash, content.events)
    else:
        raise ValueError(f"no archive segment format {version}")
    data_key, wrapped, _ = envelope.new_data_key(keys, _aad(content.first_seq, "segment_key"))
    sealed = envelope.data_cipher(data_key).encrypt(zlib.compress(plain, 6), _aad(content.first_seq, "segment"))
    return _HEADER.pack(MAGIC, version, len(wrapped)) + wrapped + sealed


def _header(body: bytes) -> tuple[int, bytes]:
    """(format version, wrapped key) of a segment."""
    if len(body) < _HEADER.size:
        raise SegmentUnreadableError("too short to be an archive segment (truncated?)")
    magic, version, wrapped_len = _HEADER.unpack_from(body)
    if magic != MAGIC or version not in READABLE_VERSIONS:
        raise SegmentUnreadableError("not an archive segment of this format")
    return version, body[_HEADER.size:_HEADER.size + wrapped_len]


def _wrapped_key(body: bytes) -> bytes:
    return _header(body)[1]


def wrap_version(body: bytes) -> int:
    """The field-key version the segment's data key is wrapped under (read from its header)."""
    try:
        return key_id_of(_wrapped_key(body))
    except CryptoError:
        raise SegmentUnreadableError("holds no wrapped key (truncated?)") from None


def rewrapped(body: bytes, first_seq: int, keys: FieldKeys) -> bytes:
    """The segment with its data key wrapped under the active field key (``envelope.rewrap``,
    as subject keys are): the content's ciphertext, and so the events, do not change."""
    version, wrapped = _header(body)
    try:
        again = envelope.rewrap(keys, wrapped, _aad(first_seq, "segment_key"))
    except (CryptoError, KeyringError) as exc:
        raise SegmentUnreadableError(f"fails authentication ({type(exc).__name__})") from None
    if len(again) > 0xFFFF:
        raise SegmentUnreadableError("rewrapped key too long for the header")
    return _HEADER.pack(MAGIC, version, len(again)) + again + body[_HEADER.size + len(wrapped):]


def _plaintext(body: bytes, first_seq: int, keys: FieldKeys) -> tuple[int, bytes]:
    version, wrapped = _header(body)
    try:
        data_key = envelope.unwrap(keys, wrapped, _aad(first_seq, "segment_key"))
        packed = envelope.data_cipher(data_key).decrypt(body[_HEADER.size + len(wrapped):],
                                                        _aad(first_seq, "segment"))
        return version, zlib.decompress(packed)
    except (CryptoError, KeyringError) as exc:
        raise SegmentUnreadableError(f"fails authentication ({type(exc).__name__}: altered, or "
                                     "another segment's?)") from None
    except zlib.error as exc:
        raise SegmentUnreadableError(f"cannot be decoded ({type(exc).__name__})") from None


def _document(body: bytes, first_seq: int, keys: FieldKeys) -> dict[str, Any]:
    """A format-1 segment's JSON document."""
    _, plain = _plaintext(body, first_seq, keys)
    try:
        doc = json.loads(plain)
    except ValueError as exc:
        raise SegmentUnreadableError(f"cannot be decoded ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("first_seq") != first_seq:
        raise SegmentUnreadableError("holds another range than its index says")
    return doc


@contextmanager
def _shaped() -> Iterator[None]:
    """Reading a format-1 document: one of another shape (only a key holder can seal one; missing,
    extra or odd fields) is named, not raised as whatever its reading ran into."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SegmentUnreadableError(f"cannot be decoded ({type(exc).__name__})") from None


def decode(body: bytes, first_seq: int, keys: FieldKeys) -> SegmentContent:
    """The content of the segment that should start at ``first_seq``, of either format; raises
    ``SegmentUnreadableError`` saying what is wrong."""
    if _header(body)[0] == 1:
        doc = _document(body, first_seq, keys)
        with _shaped():
            return SegmentContent(doc["first_seq"], doc["last_seq"], bytes.fromhex(doc["prev_hash"]),
                                  [_row_in(item) for item in doc["events"]])
    _, plain = _plaintext(body, first_seq, keys)
    try:
        first, last, prev_hash, events = codec.unpack(plain)
    except (ValueError, IndexError, struct.error) as exc:
        raise SegmentUnreadableError(f"cannot be decoded ({type(exc).__name__})") from None
    if first != first_seq:
        raise SegmentUnreadableError("holds another range than its index says")
    return SegmentContent(first, last, prev_hash, events)


def subject_rows(body: bytes, first_seq: int, keys: FieldKeys,
                 subject_hash: str) -> list[tuple[str, dict[str, Any], str]]:
    """The events of one subject in a segment, as (form, row, hash it chains to in hex): of a
    format-1 segment only those rows are decoded (a DSR export reads a few events out of many)."""
    if _header(body)[0] != 1:
        content = decode(body, first_seq, keys)
        out, prev = [], content.prev_hash.hex()
        for form, row in content.events:
            if row["subject_hash"] == subject_hash:
                out.append((form, row, prev))
            prev = row["event_hash"] if form == LEGACY else row["event_hash"].hex()
        return out
    doc = _document(body, first_seq, keys)
    with _shaped():
        events, out = doc["events"], []
        for i, item in enumerate(events):
            if item[_SUBJECT] != subject_hash:
                continue
            if i == 0:
                prev = doc["prev_hash"]
            else:
                before = events[i - 1]
                prev = before[-1] if before[0] == "l" else _unb64(before[-1]).hex()
            form, row = _row_in(item)
            out.append((form, row, prev))
        return out


def _partial(path: Path) -> Path:
    """Where a body is written before it is renamed to ``path`` (whole, or not at all)."""
    return path.with_name(f".{path.name}.new")


class FileSegments:
    """Segments as files in one directory (the SQLCipher vault's archive)."""

    in_vault = False

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"FileSegments({str(self.directory)!r})"

    def _path(self, first_seq: int) -> Path:
        return self.directory / segment_name(first_seq)

    def put(self, conn: Any, first_seq: int, body: bytes) -> None:
        """Write the segment durably (a temporary name, fsync, rename), before its index row
        says it is complete."""
        self._write(self._path(first_seq), body)

    def _write(self, path: Path, body: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = _partial(path)
        with open(partial, "wb") as out:
            out.write(body)
            if self._fsync:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(partial, 0o600)
        os.replace(partial, path)
        if self._fsync:
            fsync_path(self.directory)

    def get(self, conn: Any, first_seq: int) -> bytes | None:
        try:
            return self._path(first_seq).read_bytes()
        except FileNotFoundError:
            return None

    def size(self, conn: Any, first_seq: int) -> int | None:
        try:
            return self._path(first_seq).stat().st_size
        except FileNotFoundError:
            return None

    def remove(self, conn: Any, first_seq: int) -> None:
        # The rewrapped body first: a rewrap settling meanwhile either renamed it already or finds
        # it gone, never renames it over the segment after the segment went. And what a crash
        # left half-written of either.
        for path in (self._pending(first_seq), self._path(first_seq)):
            path.unlink(missing_ok=True)
            _partial(path).unlink(missing_ok=True)

    # A rewrapped segment (``compliance.audit_archive.AuditArchive.rewrap``) is written beside
    # the segment first, and replaces it only once the index holds its checksum.

    def _pending(self, first_seq: int) -> Path:
        return self.directory / f".{segment_name(first_seq)}{_REWRAP}"

    def put_rewrapped(self, first_seq: int, body: bytes) -> None:
        self._write(self._pending(first_seq), body)

    def get_rewrapped(self, first_seq: int) -> bytes | None:
        try:
            return self._pending(first_seq).read_bytes()
        except FileNotFoundError:
            return None

    def pending_rewraps(self) -> dict[int, bytes]:
        """The rewrapped bodies a crash left beside their segments, by first seq."""
        found = {}
        for path in self.directory.glob(f".*{SUFFIX}{_REWRAP}") if self.directory.is_dir() else ():
            stem = path.name[1:-len(SUFFIX + _REWRAP)]
            if stem.isdigit():
                found[int(stem)] = path.read_bytes()
        return found

    def settle_rewrapped(self, first_seq: int, *, keep: bool) -> None:
        """Move the rewrapped body over the segment (``keep``) or drop it."""
        if keep:
            try:
                os.replace(self._pending(first_seq), self._path(first_seq))
            except FileNotFoundError:
                return  # retention deleted the segment, and this body with it, once the index committed
            if self._fsync:
                fsync_path(self.directory)
        else:
            self._pending(first_seq).unlink(missing_ok=True)

    def stored(self, conn: Any) -> list[int]:
        """The first seqs of every segment stored here, listed or not."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob("*" + SUFFIX):
            stem = path.name[:-len(SUFFIX)]
            if stem.isdigit():
                found.append(int(stem))
        return sorted(found)


class TableSegments:
    """Segments as rows of ``audit_archive_blobs`` in the vault (PostgreSQL)."""

    in_vault = True

    def __repr__(self) -> str:
        return "TableSegments()"

    def put(self, conn: Any, first_seq: int, body: bytes) -> None:
        conn.execute("INSERT INTO audit_archive_blobs (first_seq, body) VALUES (?, ?)", (first_seq, body))

    def get(self, conn: Any, first_seq: int) -> bytes | None:
        row = conn.execute("SELECT body FROM audit_archive_blobs WHERE first_seq = ?", (first_seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def size(self, conn: Any, first_seq: int) -> int | None:
        row = conn.execute("SELECT length(body) FROM audit_archive_blobs WHERE first_seq = ?",
                           (first_seq,)).fetchone()
        return None if row is None else int(row[0])

    def remove(self, conn: Any, first_seq: int) -> None:
        conn.execute("DELETE FROM audit_archive_blobs WHERE first_seq = ?", (first_seq,))

    def get_rewrapped(self, first_seq: int) -> None:
        return None  # a rewrap replaces the body in the transaction changing its checksum

    def replace(self, conn: Any, first_seq: int, body: bytes) -> None:
        """A rewrapped body in place of the segment's (in the transaction changing its index)."""
        conn.execute("UPDATE audit_archive_blobs SET body = ? WHERE first_seq = ?", (body, first_seq))

    def stored(self, conn: Any) -> list[int]:
        return [r[0] for r in conn.execute("SELECT first_seq FROM audit_archive_blobs ORDER BY first_seq").fetchall()]


def archive_dir(vault_path: str | os.PathLike[str]) -> Path:
    """Where the archive of the SQLCipher vault at ``vault_path`` keeps its segments."""
    path = Path(vault_path)
    return path.with_name(path.stem + ".audit-archive")
