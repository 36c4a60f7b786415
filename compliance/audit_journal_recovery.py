"""Recovering audit journal segments that a process left when it died.

A segment is locked (``flock``) by the process writing it (``compliance.audit_journal``) until
its events are in the trail; one nobody holds was left by a process that died, and
``recover()`` locks it for the caller, with its events read back and authenticated, so that
``compliance.audit_staging`` imports it (exactly once: its import marker says whether that
process got its events into the trail before dying). A torn last record (the machine stopped
mid-write) ends the segment; a record failing authentication marks it damaged: the events
before it are kept and the file is renamed to ``*.damaged``, never imported again. A segment
of the other mode (encrypted or not) or under a field key this process lacks is left alone.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import time
from pathlib import Path

from . import envelope
from .audit_journal import (DAMAGED_SUFFIX, FORMAT_VERSION, HEADER, MAGIC, RECORD_LENGTH, SUFFIX,
                            Segment, record_aad, segment_key_aad, staged_segment_files)
from .errors import DecryptionError, KeyringError, UnknownKeyVersionError
from .keyring_watcher import FieldKeys

log = logging.getLogger(__name__)

STALE_PARTIAL_S = 60  # a half-created segment this old has lost its process


def recover(directory: Path, keys: FieldKeys | None) -> list[Segment]:
    """Segments under ``directory`` left by processes that died, now locked by this one, with
    their events. ``keys``: the journal's (``AuditJournal.keys``).

    A segment whose process is alive (it holds the lock) is skipped; so are this
    process's own, which it locks through another file description, and any file that
    cannot be read (logged; the others are still recovered).
    """
    _remove_stale_partials(directory)
    recovered = []
    for path in staged_segment_files(directory):
        try:
            segment = _take(path, keys)
        except OSError as exc:
            log.error("audit journal segment %s cannot be recovered now: %s", path.name,
                      exc.strerror or exc)
            continue
        if segment is not None:
            recovered.append(segment)
    return recovered


def _take(path: Path, keys: FieldKeys | None) -> Segment | None:
    """The segment at ``path`` with its events, locked, if its process is gone."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None  # imported and deleted meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not path.exists() or os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise BlockingIOError  # imported and deleted between our open and our lock
        segment = Segment(path.name[:-len(SUFFIX)], path, fd, recovered=True)
        if read_segment(segment, keys):
            return segment
    except BlockingIOError:
        pass  # its process is alive
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _remove_stale_partials(directory: Path) -> None:
    """Segments whose process died before naming them (they never held an event)."""
    if not directory.is_dir():
        return
    for path in directory.glob(".*.new"):
        try:
            if time.time() - path.stat().st_mtime < STALE_PARTIAL_S:
                continue  # perhaps being created right now
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)


def read_segment(segment: Segment, keys: FieldKeys | None) -> bool:
    """Fill ``segment.events`` from its file; False when it must wait for a newer keyring
    (or a process of the other mode).

    A torn last record (the machine stopped mid-write) ends the segment; anything that
    fails authentication marks it damaged: the events before it are kept and the file is
    renamed, not deleted."""
    data = b""
    while chunk := os.pread(segment.fd, 1 << 20, len(data)):
        data += chunk
    try:
        magic, version, key_length = HEADER.unpack_from(data)
    except struct.error:
        magic, version, key_length = b"", 0, 0
    if magic != MAGIC or version != FORMAT_VERSION or len(data) < HEADER.size + key_length:
        return _damaged(segment, "no valid header")
    offset = HEADER.size + key_length
    encrypted = key_length > 0
    if encrypted != (keys is not None):
        # Another mode's segment (a benchmark run's, or this one's seen by a benchmark):
        # not this process's to judge; left where it is.
        log.error("audit journal segment %s is %s, unlike this process's; left alone",
                  segment.name, "encrypted" if encrypted else "not encrypted")
        return False
    cipher = None
    if encrypted:
        try:
            data_key = envelope.unwrap(keys, data[HEADER.size:offset], segment_key_aad(segment.name))
        except (DecryptionError, KeyringError, OSError) as exc:
            # A newer field key (a rotation this process has not seen yet) or another
            # keyring altogether: a process with the right keyring imports it later.
            log.error("audit journal segment %s: its key does not open under this process's "
                      "keyring (%s); left for a process that holds its key", segment.name,
                      "unknown key version" if isinstance(exc, UnknownKeyVersionError)
                      else "wrong keyring?")
            return False
        cipher = envelope.data_cipher(data_key)
    while offset < len(data):
        if offset + RECORD_LENGTH.size > len(data) or \
                offset + RECORD_LENGTH.size + RECORD_LENGTH.unpack_from(data, offset)[0] > len(data):
            log.warning("audit journal segment %s ends in a partial record (the machine "
                        "stopped mid-write); %d events recovered", segment.name, len(segment.events))
            return True
        (length,) = RECORD_LENGTH.unpack_from(data, offset)
        blob = data[offset + RECORD_LENGTH.size:offset + RECORD_LENGTH.size + length]
        offset += RECORD_LENGTH.size + length
        try:
            payload = blob if cipher is None else \
                cipher.decrypt(blob, record_aad(segment.name, len(segment.events)))
            event = json.loads(payload)
        except (DecryptionError, ValueError):
            return _damaged(segment, f"record {len(segment.events)} does not authenticate")
        segment.events.append(event)
    return True


def _damaged(segment: Segment, reason: str) -> bool:
    damaged = segment.path.with_name(segment.path.name + DAMAGED_SUFFIX)
    os.rename(segment.path, damaged)
    segment.path, segment.keep_file = damaged, True
    log.error("audit journal segment %s is damaged (%s): %d events before the damage "
              "recovered; the file is kept as %s", segment.name, reason, len(segment.events),
              damaged.name)
    return True
