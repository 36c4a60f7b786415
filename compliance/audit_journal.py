"""The audit journal: durable, encrypted staging for audit events.

Appending to the hash-chained trail costs a write transaction on the encrypted vault, and
every API read appends an event. ``AuditTrail.stage()`` therefore writes the event here
first: one ``write(2)`` to this process's segment file before the call returns, so from then
on the event survives a crash of the process (the guarantee the vault itself gives with
``synchronous=NORMAL``; neither survives a power loss before the OS wrote its cache out).
``compliance.audit_staging`` moves staged events into the chain in batches, one transaction per
segment that also records the segment as imported (``audit_journal_imports``), and only then
deletes the segment file: a file that outlives its import is never imported twice. This module
is the segment files: their format, writing them and their locks; reading back the segments of
a process that died is ``compliance.audit_journal_recovery``.
With ``fsync=True`` (``TWIN_DURABILITY=full``, where the vault runs ``synchronous=FULL``) each
record is also ``fdatasync``-ed, and the directory after a segment is named, so a staged
event survives a power loss too.

A full disk must not leave an acknowledged write unaudited: the journal keeps a disk-space
reserve (``compliance.disk_reserve``, 1 MiB) that ``ensure_room()`` checks before a request
starts and an append failing for lack of space uses up.

A segment is locked (``flock``) by the process writing it until its events are in the trail.
A segment nobody holds was left by a process that died: ``audit_journal_recovery.recover()``
hands it to whichever process flushes next. ``flock`` needs the data directory on a local file
system, and a process that forks must not stage events in the child (create the trail after
forking).

File layout (integers big-endian)::

    header:  b"LTAJ" | format version u8 | wrapped-key length u16 | wrapped key
    record:  length u32 | AES-256-GCM ciphertext of the event's JSON

Each segment has a fresh data key (``compliance.envelope``), wrapped by the keyring's field key
with associated data naming the segment; each record's associated data names the segment and the record's
position, so records cannot be forged, moved between segments or reordered unnoticed. A key
per segment also keeps every key far below the 2^32 messages that random 96-bit nonces allow.
Without a field cipher (the benchmark-only plaintext mode) the wrapped key is empty and
records are plain JSON; each mode leaves the other's segments alone.

What the journal cannot show: someone with write access to the data directory deleting or
truncating (at a record boundary) the segment of a process that crashed, before it is
imported. A segment whose records fail authentication is kept as ``*.damaged`` and reported
by ``scripts/verify_audit.py``.
"""
from __future__ import annotations

import fcntl
import logging
import errno
import os
import secrets
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.storage import StorageFullError
from twin.storage.paths import fsync_path

from . import envelope
from .compact_json import compact_encoder
from .disk_reserve import FULL_ERRNOS, DiskReserve
from .errors import ComplianceError
from .field_crypto import FieldCipher, associated_data
from .keyring_watcher import FieldKeys, field_keys

# A staged event's record text (json.dumps(event, separators=(",", ":"), ensure_ascii=False)).
_EVENT_JSON = compact_encoder(ensure_ascii=False)

log = logging.getLogger(__name__)

MAGIC = b"LTAJ"
FORMAT_VERSION = 1
SUFFIX = ".seg"
DAMAGED_SUFFIX = ".damaged"  # kept for investigation, never imported again
HEADER = struct.Struct(">4sBH")
RECORD_LENGTH = struct.Struct(">I")
RESERVE_NAME = ".reserve"
RESERVE_BYTES = 1 << 20


class AuditJournalError(ComplianceError):
    """An event could not be staged: the journal file could not be written."""


class AuditJournalFullError(AuditJournalError, StorageFullError):
    """The journal's disk is full: nothing can be staged (or reserved) until space is freed."""


@dataclass
class Segment:
    """One segment file, locked by this process, and the events it holds."""

    name: str
    path: Path
    fd: int
    events: list[dict[str, Any]] = field(default_factory=list)
    recovered: bool = False  # a dead process's: some events may already be in the trail
    keep_file: bool = False  # damaged: left on disk (renamed) for investigation


def audit_journal_dir(vault_path: str | os.PathLike[str]) -> Path:
    """Where the journal of the vault at ``vault_path`` keeps its segments (beside it)."""
    path = Path(vault_path)
    return path.with_name(path.stem + ".audit-journal")


def staged_segment_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Segment files under ``directory``: staged events not yet in the trail (any process)."""
    directory = Path(directory)
    return sorted(directory.glob("*" + SUFFIX)) if directory.is_dir() else []


def damaged_segment_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Segments kept because a record failed authentication: events may be missing."""
    directory = Path(directory)
    return sorted(directory.glob("*" + SUFFIX + DAMAGED_SUFFIX)) if directory.is_dir() else []


def segment_key_aad(name: str) -> bytes:
    return associated_data("audit_journal", "segment_key", name)


def record_aad(name: str, index: int) -> bytes:
    return associated_data("audit_journal", name, index)


def _write_all(fd: int, data: bytes) -> None:
    if os.write(fd, data) != len(data):  # a regular file writes short only when the disk is full
        raise OSError(errno.ENOSPC, "short write (disk full)")


class AuditJournal:
    """This process's staged audit events, in encrypted segment files under ``directory``.

    ``keys`` are the process's field keys (a ``KeyringWatcher`` follows rotations), or a bare
    ``FieldCipher``; None selects the benchmark-only plaintext mode. ``fsync``: make every
    record survive a power loss, not only a crash. ``reserve_bytes``: the disk space kept aside
    for records of requests already under way (0: none).
    """

    def __init__(self, directory: str | os.PathLike[str],
                 keys: FieldCipher | FieldKeys | None, *, fsync: bool = False,
                 reserve_bytes: int = RESERVE_BYTES) -> None:
        self.directory = Path(directory)
        self._keys = None if keys is None else field_keys(keys)
        self._fsync = fsync
        self._reserve = DiskReserve(self.directory, reserve_bytes, RESERVE_NAME)
        self._lock = threading.Lock()
        self._live: Segment | None = None
        self._live_cipher: FieldCipher | None = None
        self._abandoned: list[Segment] = []  # segments a failed write ended early

    def __repr__(self) -> str:
        return f"AuditJournal(directory={str(self.directory)!r}, encrypted={self._keys is not None})"

    # -- staging ------------------------------------------------------------------------

    def append(self, event: dict[str, Any]) -> None:
        """Stage one JSON-serialisable event; it is in the file when this returns.

        Raises ``AuditJournalError`` when the write fails, so the caller can refuse to go on
        (an access that cannot be recorded must not happen).
        """
        payload = _EVENT_JSON(event).encode()
        with self._lock:
            try:
                segment = self._write_record(payload)
            except OSError as exc:
                self._abandon_live()
                if exc.errno not in FULL_ERRNOS or not self._use_reserve():
                    raise self._error(exc) from None
                try:  # into a fresh segment, in the room the reserve left
                    segment = self._write_record(payload)
                except OSError as again:
                    self._abandon_live()
                    raise self._error(again) from None
            segment.events.append(event)

    def _write_record(self, payload: bytes) -> Segment:
        segment = self._live or self._start_segment()
        cipher = self._live_cipher
        blob = payload if cipher is None else \
            cipher.encrypt(payload, record_aad(segment.name, len(segment.events)))
        _write_all(segment.fd, RECORD_LENGTH.pack(len(blob)) + blob)
        if self._fsync:
            os.fdatasync(segment.fd)
        return segment

    def _abandon_live(self) -> None:
        # A partial record hides every later one from recovery: later events go to a new
        # segment; this one keeps what it holds and is flushed as usual.
        if self._live is not None:
            self._abandoned.append(self._live)
            self._live = None

    def _error(self, exc: OSError) -> AuditJournalError:
        log.error("could not write to the audit journal in %s: %s", self.directory,
                  exc.strerror or exc)
        if exc.errno in FULL_ERRNOS:
            return AuditJournalFullError("the access could not be recorded in the audit journal "
                                         "(its disk is full)")
        return AuditJournalError("the access could not be recorded in the audit journal "
                                 "(its disk is full or not writable)")

    def ensure_room(self) -> None:
        """Make sure the disk-space reserve is in place (one ``stat`` when it is); raises
        ``AuditJournalFullError`` when it cannot be, so a request is refused before it changes
        anything rather than left unaudited after."""
        try:
            self._reserve.ensure()
        except OSError as exc:
            raise self._error(exc) from None

    def _use_reserve(self) -> bool:
        if not self._reserve.use():
            return False
        log.warning("the audit journal's disk is full: its space reserve was used; new requests "
                    "are refused until space is freed")
        return True

    def _start_segment(self) -> Segment:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{int(time.time() * 1000):013d}-{os.getpid()}-{secrets.token_hex(4)}"
        # Written and locked under a name recovery ignores, then renamed: no other process can
        # take a segment for orphaned before its header and lock are in place.
        partial = self.directory / f".{name}.new"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if self._keys is None:
                wrapped, cipher = b"", None
            else:
                data_key, wrapped, _ = envelope.new_data_key(self._keys, segment_key_aad(name))
                cipher = envelope.data_cipher(data_key)
            _write_all(fd, HEADER.pack(MAGIC, FORMAT_VERSION, len(wrapped)) + wrapped)
            path = self.directory / (name + SUFFIX)
            os.rename(partial, path)
            if self._fsync:
                os.fsync(fd)
                fsync_path(self.directory)
        except BaseException:
            os.close(fd)
            partial.unlink(missing_ok=True)
            raise
        self._live, self._live_cipher = Segment(name, path, fd), cipher
        return self._live

    def seal(self) -> list[Segment]:
        """This process's segments that hold events; later appends start a new segment."""
        with self._lock:
            live, self._live = self._live, None
            sealed, self._abandoned = self._abandoned, []
        if live is not None:
            sealed.append(live)
        return sealed

    def release(self, segment: Segment) -> None:
        """The segment's events are in the trail: delete its file, then drop its lock."""
        try:
            if not segment.keep_file:
                # Unlinked while still locked, so no other process can take it for orphaned.
                segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)

    def close(self, held: list[Segment] = ()) -> None:
        """Let go of the segments still held, ``held`` included, without deleting them: a
        later flush (here, or in the next process) imports them. Call after the last flush.
        The space reserve goes too (another process still running re-creates it)."""
        for segment in [*self.seal(), *held]:
            os.close(segment.fd)
        self._reserve.discard()

    # -- what is on disk ------------------------------------------------------------------

    @property
    def keys(self) -> FieldKeys | None:
        """The field keys segments are wrapped under (None: the plaintext mode)."""
        return self._keys

    def pending_files(self) -> list[Path]:
        """Segment files on disk: staged events not yet in the trail (any process)."""
        return staged_segment_files(self.directory)

    def holds_file(self, name: str) -> bool:
        """Whether the segment ``name`` is still on disk (not yet imported and deleted)."""
        return (self.directory / (name + SUFFIX)).exists()
