"""The plaintext of an audit archive segment in format 2: binary (format 1 was JSON, still read).

Before compression and encryption (``compliance.audit_archive_segments``) a segment's events
are packed as (integers big-endian)::

    first_seq i64 | last_seq i64 | events u32 | prev_hash (u16 length, bytes)
    strings u32 | each string (u32 length, UTF-8)
    each event: a compact one
        0 u8 | actor_id, actor_role u32 | action u16 | subject_hash, resource, details u32
             | occurred_at i64 | event_id, request_id, event_hash (u16 length, bytes)
    or one of the releases before the compact form (all its fields text, as it was hashed)
        1 u8 | seq i64 | event_id ... event_hash: 11 x u32

A u32 string field is an index into the segment's string table plus one (0: none), so an
actor, subject or resource is spelt once per segment; a u16 byte length is one more than the
length (0: none). A compact event's seq is the one after the previous event's (a segment is a
contiguous run, checked when it is read back). Every field an auditor needs is kept as the
event was hashed, so a segment verifies on its own, without the vault.
"""

from __future__ import annotations

import struct
from typing import Any

LEGACY, LOG = "audit_events", "audit_log"  # as compliance.audit_store names the two forms
_HEAD = struct.Struct(">qqI")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_COMPACT = struct.Struct(">BIIHIIIq")
_LEGACY = struct.Struct(">Bq11I")
_COMPACT_TEXT = ("actor_id", "actor_role")
_COMPACT_MORE = ("subject_hash", "resource", "details")
_COMPACT_BYTES = ("event_id", "request_id", "event_hash")
_LEGACY_FIELDS = ("event_id", "occurred_at", "actor_id", "actor_role", "action", "subject_hash",
                  "resource", "request_id", "details", "prev_hash", "event_hash")

Events = list[tuple[str, dict[str, Any]]]


def _bytes(value: bytes | memoryview | None) -> bytes:
    if value is None:
        return _U16.pack(0)
    raw = bytes(value)
    if len(raw) >= 0xFFFF:
        raise ValueError("an id or hash of 64 KiB or more")
    return _U16.pack(len(raw) + 1) + raw


def pack(first_seq: int, last_seq: int, prev_hash: bytes, events: Events) -> bytes:
    """The format-2 plaintext of a segment's events (rows as ``audit_store.chain_rows`` gives)."""
    table: dict[str, int] = {}

    def ref(value: str | None) -> int:
        if value is None:
            return 0
        return table.setdefault(value, len(table)) + 1

    body = []
    for form, row in events:
        if form == LEGACY:
            body.append(_LEGACY.pack(1, row["seq"], *(ref(row[f]) for f in _LEGACY_FIELDS)))
            continue
        body.append(_COMPACT.pack(0, ref(row["actor_id"]), ref(row["actor_role"]), row["action"],
                                  *(ref(row[f]) for f in _COMPACT_MORE), row["occurred_at"]))
        body.extend(_bytes(row[f]) for f in _COMPACT_BYTES)
    strings = [_U32.pack(len(table))]
    for value in table:
        raw = value.encode("utf-8", errors="surrogatepass")
        strings += [_U32.pack(len(raw)), raw]
    return b"".join([_HEAD.pack(first_seq, last_seq, len(events)), _bytes(prev_hash), *strings, *body])


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def fixed(self, shape: struct.Struct) -> tuple:
        values = shape.unpack_from(self.data, self.at)
        self.at += shape.size
        return values

    def blob(self) -> bytes | None:
        (n,) = self.fixed(_U16)
        if n == 0:
            return None
        self.at += n - 1
        if self.at > len(self.data):
            raise ValueError("truncated")
        return self.data[self.at - n + 1:self.at]


def unpack(data: bytes) -> tuple[int, int, bytes, Events]:
    """(first_seq, last_seq, prev_hash, events) of a format-2 plaintext; raises ``ValueError``
    (or ``struct.error``, one) when it is not one."""
    read = _Reader(data)
    first_seq, last_seq, count = read.fixed(_HEAD)
    prev_hash = read.blob()
    (strings,) = read.fixed(_U32)
    table: list[str | None] = [None]
    for _ in range(strings):
        (n,) = read.fixed(_U32)
        table.append(data[read.at:read.at + n].decode("utf-8", errors="surrogatepass"))
        read.at += n
    events: Events = []
    seq = first_seq
    for _ in range(count):
        if data[read.at] == 1:
            _, seq, *refs = read.fixed(_LEGACY)
            row: dict[str, Any] = {"seq": seq, **{f: table[r] for f, r in zip(_LEGACY_FIELDS, refs)}}
            events.append((LEGACY, row))
        else:
            _, actor, role, action, subject, resource, details, at = read.fixed(_COMPACT)
            event_id, request_id, event_hash = read.blob(), read.blob(), read.blob()
            events.append((LOG, {"seq": seq, "event_id": event_id, "occurred_at": at, "actor_id": table[actor],
                                 "actor_role": table[role], "action": action, "subject_hash": table[subject],
                                 "resource": table[resource], "request_id": request_id, "details": table[details],
                                 "event_hash": event_hash}))
        seq += 1
    if read.at != len(data) or prev_hash is None or (events and seq - 1 != last_seq):
        raise ValueError("not a whole segment")
    return first_seq, last_seq, prev_hash, events
