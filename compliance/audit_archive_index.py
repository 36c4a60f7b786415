"""The vault's index of the audit archive (``audit_archive_segments``, ``audit_archive_subjects``):
what is listed, where the next segment ends, and the checks of the archive's shape that need no
segment read (``compliance.audit_archive`` moves events; this module keeps the books).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from . import audit_terms
from .audit_archive_segments import LEGACY, SegmentContent, checksum
from .audit_codec import micros
from .audit_seals import SealBook
from .audit_store import hash_bytes
from .hash_chain import GENESIS_HASH

__all__ = ["Listed", "checksum", "span"]

_COLUMNS = "first_seq, last_seq, prev_hash, last_hash, events, first_at, last_at, bytes, checksum"


class SegmentStore(Protocol):
    in_vault: bool

    def size(self, conn: Any, first_seq: int) -> int | None: ...
    def stored(self, conn: Any) -> list[int]: ...


@dataclass(frozen=True)
class Listed:
    """A complete segment as the index lists it."""

    first_seq: int
    last_seq: int
    prev_hash: bytes
    last_hash: bytes
    events: int
    first_at: int
    last_at: int
    bytes: int
    checksum: bytes

    @classmethod
    def of(cls, row: Any) -> "Listed":
        return cls(row["first_seq"], row["last_seq"], bytes(row["prev_hash"]), bytes(row["last_hash"]),
                   row["events"], row["first_at"], row["last_at"], row["bytes"], bytes(row["checksum"]))


def span(first: int, last: int) -> str:
    return f"event {first}" if first == last else f"events {first}-{last}"


def listed(conn: Any) -> list[Listed]:
    """Every complete segment, oldest first."""
    return [Listed.of(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM audit_archive_segments WHERE complete = 1 ORDER BY first_seq").fetchall()]


def of_subject(conn: Any, subject_ref: int, *, after: int = 0, since_us: int | None = None,
               until_us: int | None = None) -> list[Listed]:
    """The complete segments holding events of one interned subject, oldest first: only those
    holding events past seq ``after``, and (when given) of ``since_us`` or later and before
    ``until_us``."""
    where, params = ["x.subject_ref = ?", "g.complete = 1", "g.last_seq > ?"], [subject_ref, after]
    if since_us is not None:
        where.append("g.last_at >= ?")
        params.append(since_us)
    if until_us is not None:
        where.append("g.first_at < ?")
        params.append(until_us)
    return [Listed.of(r) for r in conn.execute(
        f"SELECT {', '.join('g.' + c.strip() for c in _COLUMNS.split(','))} FROM audit_archive_subjects x "
        f"JOIN audit_archive_segments g ON g.first_seq = x.first_seq WHERE {' AND '.join(where)} "
        "ORDER BY g.first_seq", params).fetchall()]


def incomplete(conn: Any) -> list[int]:
    return [r[0] for r in conn.execute("SELECT first_seq FROM audit_archive_segments WHERE complete = 0").fetchall()]


def unlisted(conn: Any, store: SegmentStore, segments: list[Listed]) -> list[int]:
    """The first seqs of the stored segments the index lists neither complete (``segments``)
    nor incomplete."""
    known = {s.first_seq for s in segments} | set(incomplete(conn))
    return [first for first in store.stored(conn) if first not in known]


def retention_cut(conn: Any) -> tuple[int, str]:
    """(seq, hash) of the newest retention cut, or the genesis."""
    row = conn.execute("SELECT purged_through_seq, last_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    return (0, GENESIS_HASH) if row is None else (row[0], row[1])


def archived_through(conn: Any) -> tuple[int, bytes] | None:
    """(last seq, its hash) of the newest complete segment, or None."""
    row = conn.execute("SELECT last_seq, last_hash FROM audit_archive_segments WHERE complete = 1 "
                       "ORDER BY first_seq DESC LIMIT 1").fetchone()
    return None if row is None else (row[0], bytes(row[1]))


def chain_start(conn: Any) -> tuple[int, bytes]:
    """Where the live chain starts after: the newest segment's end, else the retention cut."""
    cut, cut_hash = retention_cut(conn)
    archived = archived_through(conn)
    if archived is not None and archived[0] > cut:
        return archived
    return cut, hash_bytes(cut_hash)


def segment_end(conn: Any, after: int, cutoff_us: int, max_events: int) -> int | None:
    """The seal the next segment (events from ``after + 1``) ends on: the furthest one whose
    event occurred before ``cutoff_us`` within ``max_events``, or the first such seal if even it
    lies further; None when no sealed event past ``after`` is old enough."""
    rows = conn.execute("SELECT s.seq, l.occurred_at, e.occurred_at AS legacy_at FROM audit_seals s "
                        "LEFT JOIN audit_log l ON l.seq = s.seq LEFT JOIN audit_events e ON e.seq = s.seq "
                        "WHERE s.seq > ? ORDER BY s.seq LIMIT 1000", (after,)).fetchall()
    end = None
    for row in rows:
        at = row["occurred_at"] if row["occurred_at"] is not None else \
            (micros(row["legacy_at"]) if row["legacy_at"] is not None else None)
        if at is None or at >= cutoff_us:
            break
        if end is not None and row["seq"] - after > max_events:
            break
        end = row["seq"]
    return end


def _at(form: str, row: Any) -> int:
    return micros(row["occurred_at"]) if form == LEGACY else row["occurred_at"]


def add_incomplete(conn: Any, content: SegmentContent, body: bytes, now_us: int) -> None:
    """List a segment about to be stored, as incomplete (see ``compliance.audit_archive``)."""
    first, last = content.events[0], content.events[-1]
    last_hash = hash_bytes(last[1]["event_hash"])
    conn.execute("INSERT INTO audit_archive_segments (first_seq, last_seq, prev_hash, last_hash, events, "
                 "first_at, last_at, bytes, checksum, archived_at, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                 (content.first_seq, content.last_seq, content.prev_hash, last_hash, len(content.events),
                  _at(*first), _at(*last), len(body), checksum(body), now_us))


def live_count(conn: Any, first: int, last: int) -> int:
    return sum(conn.execute(f"SELECT count(*) FROM {table} WHERE seq >= ? AND seq <= ?", (first, last)).fetchone()[0]
               for table in ("audit_events", "audit_log"))


def complete(conn: Any, content: SegmentContent) -> None:
    """The segment is stored: mark it complete, list its subjects, and delete its events from
    the live trail (in the caller's transaction)."""
    first, last = content.first_seq, content.last_seq
    refs = {r[0] for r in conn.execute("SELECT DISTINCT subject_ref FROM audit_log WHERE seq >= ? AND seq <= ? "
                                       "AND subject_ref IS NOT NULL", (first, last)).fetchall()}
    legacy = sorted({row["subject_hash"] for form, row in content.events
                     if form == LEGACY and row["subject_hash"] is not None})
    refs.update(audit_terms.intern_subjects(conn, legacy).values())
    conn.execute("UPDATE audit_archive_segments SET complete = 1 WHERE first_seq = ?", (first,))
    if refs:
        conn.executemany("INSERT INTO audit_archive_subjects (subject_ref, first_seq) VALUES (?, ?)",
                         [(ref, first) for ref in sorted(refs)])
    conn.execute("DELETE FROM audit_events WHERE seq >= ? AND seq <= ?", (first, last))
    conn.execute("DELETE FROM audit_log WHERE seq >= ? AND seq <= ?", (first, last))


def remove(conn: Any, seg: Listed, now: str) -> None:
    """Unlist an expired segment and record its end as the retention cut (in the caller's
    transaction, begun with ``audit_terms.hold_subjects``); subjects no event refers to any
    more go."""
    refs = [r[0] for r in conn.execute("SELECT subject_ref FROM audit_archive_subjects WHERE first_seq = ?",
                                       (seg.first_seq,)).fetchall()]
    conn.execute("DELETE FROM audit_archive_subjects WHERE first_seq = ?", (seg.first_seq,))
    conn.execute("DELETE FROM audit_archive_segments WHERE first_seq = ?", (seg.first_seq,))
    audit_terms.prune_subjects(conn, refs)
    conn.execute("INSERT INTO audit_checkpoints (purged_through_seq, last_hash, created_at) VALUES (?, ?, ?)",
                 (seg.last_seq, seg.last_hash.hex(), now))


def shape_problem(conn: Any, segments: list[Listed], cut: int, store: SegmentStore,
                  seals: SealBook | None) -> tuple[int, str] | None:
    """The first fault in the archive that shows without reading a segment, as (seq, why):
    a gap between the retention cut and the segments or between two segments, a segment
    missing from its store or of another size, a segment end without its seal, or a segment in
    the store that the index does not list (an older vault restored beside newer archives)."""
    position = cut
    for seg in segments:
        if seg.last_seq <= cut:
            continue  # below the cut: retention took it
        if seg.first_seq != position + 1:
            return position + 1, (f"{span(position + 1, seg.first_seq - 1)} missing between archive "
                                  "segments (a segment deleted?)")
        name = f"archive segment of {span(seg.first_seq, seg.last_seq)}"
        size = store.size(conn, seg.first_seq)
        if size is None:
            return seg.first_seq, f"{name} is missing (deleted?)"
        if size != seg.bytes:
            return seg.first_seq, f"{name} is not the size its index says (truncated or replaced?)"
        if seals is not None:
            seal = conn.execute("SELECT seq, event_hash, mac FROM audit_seals WHERE seq = ?",
                                (seg.last_seq,)).fetchone()
            reason = "the seal joining it to the chain is missing" if seal is None \
                else seals.check(seal, seg.last_hash)
            if reason is not None:
                return seg.last_seq, f"{name}: {reason}"
        position = seg.last_seq
    for first in unlisted(conn, store, segments):
        if first > cut:  # one at or below the cut is retention's, its removal interrupted
            return first, (f"an archive segment from event {first} is not in the vault's index: a gap "
                           "between the vault and its archive (an older vault restored beside newer archives?)")
    return None
