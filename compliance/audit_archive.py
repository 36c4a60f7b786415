"""The audit archive: old events move out of the live vault into encrypted segments.

``archive_older_than`` moves the oldest events, in runs that end on a seal
(``compliance.audit_seals``), into segments (``compliance.audit_archive_segments``: compressed,
encrypted, checksummed), listed in the vault's index with the hashes that join each to the
chain. Events are verified before they move, so the archive never takes in tampered evidence.
A run is written in two steps: its index row first, marked incomplete; then, once the segment is
stored, one transaction marks it complete, lists its subjects and deletes its events from the
live log. A crash between them leaves an incomplete row, which the next run removes with its
file: a segment on disk past the retention cut that the index does not list at all is therefore
never a leftover but a gap between the vault and its archive (an older vault restored beside
newer archives).

Retention deletes whole segments (``delete_expired``): the oldest first, each verified, its
range recorded as a retention cut (``audit_checkpoints``), so the remaining chain verifies. The
index row and the cut commit before a file is unlinked; a file a crash left below the cut is
removed by the next retention or archive run.
A subject's archived events are found through ``audit_archive_subjects`` (the segments that
hold any): a DSR export reads those segments, never every one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator

from twin.storage import Database
from twin.storage.progress import ProgressFactory, silent
from twin.storage.timestamps import to_db, utc_now

from . import audit_archive_index as index
from . import audit_terms
from .audit_archive_index import Listed, span
from .audit_archive_segments import (FileSegments, SegmentContent, SegmentUnreadableError, TableSegments,
                                     decode, encode, rewrapped, subject_rows, wrap_version)
from .audit_codec import micros
from .audit_events import AuditChainBrokenError, AuditError, AuditEvent, to_event
from .audit_integrity import ArchiveBreak, check_row  # the one check of an event against the chain
from .audit_seals import SealBook, drop_through
from .audit_vault_staging import CHAIN_LOCK
from .audit_store import LEGACY, chain_rows, log_event
from .field_crypto import FieldCipher
from .job_lock import JobAlreadyRunningError, JobLock
from .hash_chain import ChainWalker
from .keyring_watcher import FieldKeys, field_keys

DEFAULT_SEGMENT_EVENTS = 100_000

log = logging.getLogger(__name__)


def _name(seg: Listed) -> str:
    return f"archive segment of {span(seg.first_seq, seg.last_seq)}"


class AuditArchiveError(AuditError):
    """The archive cannot be read or written as asked (a segment missing or unreadable)."""


@dataclass
class ArchiveRun:
    segments: int = 0
    events: int = 0
    bytes: int = 0


class AuditArchive:
    """Archives, reads, checks and expires the segments of one vault's audit trail."""

    def __init__(self, vault: Database, keys: FieldCipher | FieldKeys, store: FileSegments | TableSegments,
                 seals: SealBook, *, segment_events: int = DEFAULT_SEGMENT_EVENTS,
                 clock: Callable[[], datetime] = utc_now) -> None:
        if segment_events < 1:
            raise ValueError("a segment holds 1 or more events")
        self.vault, self.store, self.seals = vault, store, seals
        self._keys = field_keys(keys)
        self.segment_events = segment_events
        self._clock = clock

    def __repr__(self) -> str:
        return f"AuditArchive({self.store!r}, segment_events={self.segment_events})"

    # -- reading ------------------------------------------------------------------------

    def read(self, conn: Any, seg: Listed) -> SegmentContent:
        """The content of a listed segment, its checksum and authenticity checked; raises
        ``ArchiveBreak`` naming the segment."""
        body = self._checked_body(conn, seg)
        try:
            content = decode(body, seg.first_seq, self._keys)
        except SegmentUnreadableError as exc:
            raise ArchiveBreak(seg.first_seq, f"{_name(seg)} {exc}") from None
        if (content.last_seq, content.prev_hash) != (seg.last_seq, seg.prev_hash):
            raise ArchiveBreak(seg.first_seq, f"{_name(seg)} holds another range than its index says")
        return content

    def _checked_body(self, conn: Any, seg: Listed) -> bytes:
        body = self.store.get(conn, seg.first_seq)
        if body is None:
            raise ArchiveBreak(seg.first_seq, f"{_name(seg)} is missing (deleted?)")
        if index.checksum(body) != seg.checksum:
            rewrapped_body = self.store.get_rewrapped(seg.first_seq)  # a rewrap between its two steps
            if rewrapped_body is not None and index.checksum(rewrapped_body) == seg.checksum:
                return rewrapped_body
            raise ArchiveBreak(seg.first_seq, f"{_name(seg)} fails its checksum (altered or replaced?)")
        return body

    def rows(self, conn: Any, segments: list[Listed], cut: int) -> Iterator[tuple[str, Any]]:
        """Every archived event past the retention cut, in chain order, as ``chain_rows``
        gives live ones; a missing or unreadable segment raises ``ArchiveBreak``."""
        for seg in segments:
            if seg.last_seq > cut:
                yield from self.read(conn, seg).events

    def problem(self, conn: Any, segments: list[Listed], cut: int) -> tuple[int, str] | None:
        """The first gap in the archive's shape, without reading a segment: (seq, why) or None
        (see ``audit_archive_index.shape_problem``)."""
        return index.shape_problem(conn, segments, cut, self.store, self.seals)

    def archived_through(self, conn: Any) -> int:
        """The seq of the newest archived event (0 when none is): in the same snapshot, no live
        event is at or below it."""
        through = index.archived_through(conn)
        return 0 if through is None else through[0]

    def subject_events(self, conn: Any, subject_hash: str, *, after: int = 0, since_us: int | None = None,
                       until_us: int | None = None) -> Iterator[AuditEvent]:
        """The subject's archived events past seq ``after``, oldest first, from the segments the
        subject index names (only those are read; with ``since_us`` / ``until_us``, only the
        segments whose time span meets that window: the caller filters the events)."""
        ref = audit_terms.subject_ref(conn, subject_hash)
        if ref is None:
            return
        for seg in index.of_subject(conn, ref, after=after, since_us=since_us, until_us=until_us):
            try:
                rows = subject_rows(self._checked_body(conn, seg), seg.first_seq, self._keys, subject_hash)
            except ArchiveBreak as exc:
                raise AuditArchiveError(exc.reason) from None
            except SegmentUnreadableError as exc:
                raise AuditArchiveError(f"{_name(seg)} {exc}") from None
            for form, row, prev in rows:
                if row["seq"] > after:
                    yield to_event(row) if form == LEGACY else log_event(row, prev)

    # -- archiving ----------------------------------------------------------------------

    def archive_older_than(self, cutoff: datetime, *, batch_size: int = 5000,
                           progress: ProgressFactory = silent) -> ArchiveRun:
        """Move the events that occurred before ``cutoff``, up to the newest seal among them,
        into segments of at most ``segment_events`` (a seal range is never split). A
        tampered event raises ``AuditChainBrokenError`` and nothing from it on moves."""
        run = ArchiveRun()
        cutoff_us = micros(to_db(cutoff))
        with JobLock(self.vault, "audit-archive", self._clock) as lock, \
                progress("archive audit events", None, "events") as bar:
            self.vault.write(self._drop_incomplete)  # a crashed run's (no run is under way)
            self._settle_rewraps()
            self._drop_expired_leftovers()
            with self.vault.transaction(immediate=False) as conn:
                problem = self.problem(conn, index.listed(conn), index.retention_cut(conn)[0])
            if problem is not None:  # never archive over (or past) a gap: it is evidence
                raise AuditChainBrokenError(*problem)
            while True:
                lock.refresh()
                with self.vault.transaction(immediate=False) as conn:
                    content = self._next_segment(conn, cutoff_us, batch_size)
                if content is None:
                    break
                stored = self._store(content)
                run.segments, run.events, run.bytes = run.segments + 1, run.events + len(content.events), \
                    run.bytes + stored
                bar.update(len(content.events))
        if run.segments:
            self.vault.write(lambda conn: audit_terms.prune_unused_terms(conn, self.vault.dialect), lock=CHAIN_LOCK)
        return run

    def _next_segment(self, conn: Any, cutoff_us: int, batch_size: int) -> SegmentContent | None:
        position, last_hash = index.chain_start(conn)
        end = index.segment_end(conn, position, cutoff_us, self.segment_events)
        if end is None:
            return None
        walker = ChainWalker(position, last_hash.hex(), contiguous=True)
        events: list[tuple[str, Any]] = []
        # From the first live row: one at or below the position is claimed by the archive (or a
        # retention cut) too, a break the run must not archive past.
        for table, row in chain_rows(conn, batch_size):
            if row["seq"] <= position:
                raise AuditChainBrokenError(row["seq"], f"event lies inside the archived or purged range (through "
                                                        f"{position}); put back in the live log, or the index or "
                                                        "checkpoint altered?")
            reason = check_row(walker, table, row)
            if reason is not None:
                raise AuditChainBrokenError(row["seq"], reason)
            events.append((table, dict(row)))
            if row["seq"] == end:
                break
        if walker.position != end:
            raise AuditChainBrokenError(walker.position + 1, f"{span(walker.position + 1, end)} missing (deleted?)")
        seal = conn.execute("SELECT seq, event_hash, mac FROM audit_seals WHERE seq = ?", (end,)).fetchone()
        reason = self.seals.check(seal, bytes.fromhex(walker.last_hash))
        if reason is not None:
            raise AuditChainBrokenError(end, reason)
        return SegmentContent(position + 1, end, last_hash, events)

    def _store(self, content: SegmentContent) -> int:
        body = encode(content, self._keys)
        first, now = content.first_seq, micros(to_db(self._clock()))
        self.vault.write(lambda conn: index.add_incomplete(conn, content, body, now))
        if not self.store.in_vault:
            self.store.put(None, first, body)

        def complete(conn: Any) -> None:
            live = index.live_count(conn, first, content.last_seq)
            if live != content.last_seq - first + 1:
                raise AuditArchiveError(f"the events of {span(first, content.last_seq)} changed while being "
                                        "archived (a concurrent purge?); nothing was moved")
            if self.store.in_vault:
                self.store.put(conn, first, body)
            index.complete(conn, content)

        try:
            self.vault.write(complete)
        except BaseException:
            self.vault.write(self._drop_incomplete)
            raise
        return len(body)

    def _drop_incomplete(self, conn: Any) -> None:
        for first in index.incomplete(conn):
            self.store.remove(conn, first)
            conn.execute("DELETE FROM audit_archive_segments WHERE first_seq = ? AND complete = 0", (first,))

    # -- key rotation -------------------------------------------------------------------

    def rewrap(self, progress: ProgressFactory = silent) -> int:
        """Wrap every listed segment's data key under the active field key, as the subject keys
        are (``envelope.rewrap``), so a retired field key leaves the archive readable; returns
        how many were rewrapped. Each segment's new checksum goes into the index in one
        transaction, only if the index still lists it as read; on PostgreSQL its body changes in
        that transaction, on SQLCipher the new file is written beside it first and renamed over
        it after (a crash in between is settled by the next rewrap or archive run). A segment
        that fails its checksum or authentication raises ``AuditArchiveError`` naming it.

        It holds the archive run's job lock throughout: an archive run settles (and so drops)
        every rewrapped file whose checksum the index does not hold yet, which is this run's
        between writing the file and committing its checksum; so is a second rewrap's. While
        another run holds it, raises ``JobAlreadyRunningError`` and changes nothing."""
        lock = JobLock(self.vault, "audit-archive", self._clock)
        try:
            lock.acquire()
        except JobAlreadyRunningError as exc:
            raise JobAlreadyRunningError(f"{exc}: the audit archive segments are not rewrapped; "
                                         "run the rewrap again once it ends") from None
        try:
            return self._rewrap_held(lock, progress)
        finally:
            lock.release()

    def _rewrap_held(self, lock: JobLock, progress: ProgressFactory) -> int:
        self._settle_rewraps()
        active, done = self._keys.cipher.active_key_id, 0
        with self.vault.transaction(immediate=False) as conn:
            segments = index.listed(conn)
        with progress("rewrap audit archive segments", len(segments), "segments") as bar:
            for seg in segments:
                lock.refresh()
                with self.vault.transaction(immediate=False) as conn:
                    try:
                        body = self._checked_body(conn, seg)
                        new = None if wrap_version(body) == active else rewrapped(body, seg.first_seq, self._keys)
                    except ArchiveBreak as exc:
                        raise AuditArchiveError(f"{exc.reason}; it is not rewrapped") from None
                    except SegmentUnreadableError as exc:
                        raise AuditArchiveError(f"{_name(seg)} {exc}; it is not rewrapped") from None
                bar.update(1)
                if new is not None:
                    done += self._replace(seg, new)
        return done

    def _replace(self, seg: Listed, body: bytes) -> int:
        def swap(conn: Any) -> int:
            changed = conn.execute("UPDATE audit_archive_segments SET checksum = ?, bytes = ? WHERE first_seq = ? "
                                   "AND checksum = ? AND complete = 1",
                                   (index.checksum(body), len(body), seg.first_seq, seg.checksum)).rowcount
            if changed and self.store.in_vault:
                self.store.replace(conn, seg.first_seq, body)
            return int(changed)

        if self.store.in_vault:
            return self.vault.write(swap)
        try:
            self.store.put_rewrapped(seg.first_seq, body)
        except FileNotFoundError:
            # Retention takes no job lock: it unlists the segment, then removes its files, the new
            # one half-written here too. Anything else removing it is not a rewrap's to hide.
            if self._listed(seg.first_seq):
                raise AuditArchiveError(f"{_name(seg)}: its rewrapped file went while being written; "
                                        "it is not rewrapped") from None
            return 0
        changed = self.vault.write(swap)  # 0: retention took the segment meanwhile
        self.store.settle_rewrapped(seg.first_seq, keep=bool(changed))
        return changed

    def _listed(self, first_seq: int) -> bool:
        with self.vault.transaction(immediate=False) as conn:
            return conn.execute("SELECT 1 FROM audit_archive_segments WHERE first_seq = ?",
                                (first_seq,)).fetchone() is not None

    def _settle_rewraps(self) -> None:
        """A rewrapped file a crash left beside its segment replaces it if the index holds its
        checksum (the rewrap committed), else goes."""
        if self.store.in_vault:
            return
        with self.vault.transaction(immediate=False) as conn:
            sums = {seg.first_seq: seg.checksum for seg in index.listed(conn)}
        for first, body in self.store.pending_rewraps().items():
            self.store.settle_rewrapped(first, keep=sums.get(first) == index.checksum(body))

    # -- retention ----------------------------------------------------------------------

    def delete_expired(self, cutoff: datetime, batch_size: int = 5000) -> int:
        """Delete the whole segments whose newest event occurred before ``cutoff``, oldest
        first, each verified first and recorded as a retention cut; returns the events they
        held. A broken segment raises ``AuditChainBrokenError`` and is kept."""
        cutoff_us, total = micros(to_db(cutoff)), 0
        while True:
            with self.vault.transaction(immediate=False) as conn:
                segments = index.listed(conn)
                cut, cut_hash = index.retention_cut(conn)
                seg = segments[0] if segments else None  # retention unlists what it cuts: the oldest
                if seg is None or seg.last_at >= cutoff_us:
                    break
                self._verify_segment(conn, seg, cut, cut_hash)

            def delete(conn: Any, seg: Listed = seg) -> None:
                audit_terms.hold_subjects(conn, self.vault.dialect)  # first: the subjects it prunes
                index.remove(conn, seg, to_db(self._clock()))
                drop_through(conn, seg.last_seq)
                if self.store.in_vault:
                    self.store.remove(conn, seg.first_seq)
            self.vault.write(delete)
            if not self.store.in_vault:
                self.store.remove(None, seg.first_seq)  # a crash before this leaves the file
            total += seg.events
        self._drop_expired_leftovers()
        return total

    def _drop_expired_leftovers(self) -> None:
        """Remove the stored segments retention unlisted but a crash kept: not in the index and
        holding nothing past the retention cut (each read to be sure: an unlisted segment
        reaching past the cut is a gap ``problem`` names, never removed)."""
        with self.vault.transaction(immediate=False) as conn:
            cut = index.retention_cut(conn)[0]
            leftovers = [(first, self.store.get(conn, first))
                         for first in index.unlisted(conn, self.store, index.listed(conn)) if first <= cut]
        for first, body in leftovers:
            if body is None:
                continue  # gone meanwhile
            try:
                last: int | None = decode(body, first, self._keys).last_seq
            except SegmentUnreadableError:
                last = None
            if last is None or last > cut:
                log.warning("an unlisted archive segment from event %d is kept: it is not wholly below "
                            "the retention cut, or cannot be read", first)
                continue
            if self.store.in_vault:
                self.vault.write(lambda conn, first=first: self.store.remove(conn, first))
            else:
                self.store.remove(None, first)

    def _verify_segment(self, conn: Any, seg: Listed, cut: int, cut_hash: str) -> None:
        if seg.first_seq <= cut:  # the cut was recorded in the transaction that unlisted what it took
            raise AuditChainBrokenError(seg.first_seq, f"{_name(seg)} reaches into the purged range (through {cut}); "
                                                       "checkpoint altered?")
        if seg.first_seq != cut + 1:
            raise AuditChainBrokenError(cut + 1, f"{span(cut + 1, seg.first_seq - 1)} missing before the "
                                                 "oldest archive segment (deleted?)")
        walker = ChainWalker(cut, cut_hash, contiguous=True)
        try:
            content = self.read(conn, seg)
        except ArchiveBreak as exc:
            raise AuditChainBrokenError(exc.seq, exc.reason) from None
        for table, row in content.events:
            reason = check_row(walker, table, row)
            if reason is not None:
                raise AuditChainBrokenError(row["seq"], reason)
        if walker.position != seg.last_seq or bytes.fromhex(walker.last_hash) != seg.last_hash:
            raise AuditChainBrokenError(seg.first_seq, "archive segment does not end where its index says")
