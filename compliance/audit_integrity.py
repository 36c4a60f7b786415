"""Verifying the audit trail's hash chain, and purging its head without breaking it.

Retention cuts the head of the chain: ``purge_older_than`` deletes the oldest events and
records, in the same transaction, a checkpoint (last purged seq and its hash) that the
surviving chain is verified from. The purged events are verified first, so retention never
launders tampered evidence. Both read one consistent snapshot at a time, so concurrent appends
and purges do not cause false alarms.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any, Callable

from twin.storage import Database
from twin.storage.timestamps import to_db, utc_now

from . import audit_archive_index as archive_index
from . import audit_terms
from .audit_codec import hash_of_row, micros
from .audit_events import AuditChainBrokenError, InvalidAuditQueryError, compute_event_hash
from .audit_seals import Seal, SealBook, drop_through
from .audit_store import LEGACY, chain_rows, hash_before, hash_bytes, hash_text, max_seq_used
from .hash_chain import GENESIS_HASH, Break, ChainVerification, ChainWalker


class ArchiveBreak(Exception):
    """The chain is broken in the archive at ``seq`` (raised while walking its segments)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


def _span(first: int, last: int) -> str:
    return f"event {first}" if first == last else f"events {first}-{last}"


def check_row(walker: ChainWalker, table: str, row: Any) -> str | None:
    """None if ``row`` (of ``table``, as ``audit_store.chain_rows`` reads it) continues the
    chain, else why not (and the walker stops moving)."""
    seq = row["seq"]
    if table == LEGACY:
        problem = walker.check(seq, row["prev_hash"], row["event_hash"], compute_event_hash(row))
    else:  # a compact event chains to whatever precedes it: its hash covers that link
        stored = hash_text(row["event_hash"])
        # Out of place, its content cannot be judged (it was hashed after an event that is not
        # the one before it here): the position is the finding.
        computed = hash_of_row(row, hash_bytes(walker.last_hash)).hex() \
            if seq == walker.position + 1 else stored
        problem = walker.check(seq, walker.last_hash, stored, computed)
    if problem is Break.CONTENT:
        return "content does not match its hash (edited?)"
    if problem is Break.POSITION:
        expected = walker.position + 1
        if walker.checked == 0 and walker.position > 0 and seq <= walker.position:
            return (f"event lies inside the purged range (through {walker.position}); "
                    "checkpoint altered?")
        if seq > expected:
            where = "at the start of the trail" if walker.checked == 0 else "before it"
            return f"{_span(expected, seq - 1)} missing {where} (deleted?)"
        return f"out of sequence after event {walker.position} (renumbered?)"
    if problem is Break.LINK:
        return "previous-hash link broken (event deleted or reordered?)"
    return None


def _latest_checkpoint(conn: Any) -> tuple[int, str, int | None]:
    row = conn.execute("SELECT id, purged_through_seq, last_hash FROM audit_checkpoints "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return 0, GENESIS_HASH, None
    return row["purged_through_seq"], row["last_hash"], row["id"]


def _walker(conn: Any) -> tuple[ChainWalker, int | None]:
    anchor_seq, anchor_hash, checkpoint_id = _latest_checkpoint(conn)
    return ChainWalker(anchor_seq, anchor_hash, contiguous=True), checkpoint_id


def _sealed_event_problem(conn: Any, seal: Seal) -> str | None:
    """None if the event a trusted seal names is there, holds the sealed hash and matches its
    own content, else what is wrong (checked where a verification starts from the seal)."""
    found = next(iter(chain_rows(conn, 1, after=seal.seq - 1)), None)
    if found is None or found[1]["seq"] != seal.seq:
        return "the sealed event is missing (deleted?)"
    table, row = found
    walker = ChainWalker(seal.seq - 1, hash_before(conn, seal.seq), contiguous=True)
    reason = check_row(walker, table, row)
    if reason is None and hash_bytes(walker.last_hash) != seal.event_hash:
        reason = "event does not match its seal (edited and rehashed?)"
    return reason


def verify(vault: Database, batch_size: int = 5000, seals: SealBook | None = None, *,
           full: bool = True, clock: Callable[[], datetime] | None = None,
           archive: Any = None) -> ChainVerification:
    """Walk the chain and report the first bad event: from the latest purge checkpoint
    (``full``: the archive's segments, then the live events), or from the newest seal with a
    valid mark when there is one (else in full). With ``seals``, every seal passed is checked,
    and those found sound are marked. With ``archive`` (``compliance.audit_archive``), the
    archive's shape is checked either way (no segment missing, none unlisted, each joined by
    its seal) and a full walk reads every segment; without it the chain is walked from the
    newest segment's end, as from a retention cut."""
    passed: list[Seal] = []
    with vault.transaction(immediate=False) as conn:
        walker, _ = _walker(conn)
        segments = archive_index.listed(conn)
        archived = archive_index.archived_through(conn)
        if archive is not None and segments:
            problem = archive.problem(conn, segments, walker.position)
            if problem is not None:
                return ChainVerification(False, 0, *problem)
        start = seals.newest_marked(conn) if seals is not None and not full else None
        floor = walker.position if archived is None else max(walker.position, archived[0])
        if start is not None and start.seq <= floor:
            start = None  # retention or archival cut past it: the cut is the nearer trusted point
        if start is not None:
            reason = _sealed_event_problem(conn, start)
            if reason is not None:
                return ChainVerification(False, 0, start.seq, reason)
            walker.anchor(start.seq, start.event_hash.hex())
        elif archived is not None and archived[0] > walker.position and archive is None:
            walker.anchor(archived[0], archived[1].hex())  # its segments cannot be read here
        due = seals.seals_after(conn, walker.position) if seals is not None else {}
        result = None
        # In full: from the very first row, as rows left below the checkpoint are suspicious too.
        rows = chain_rows(conn, batch_size, after=None if start is None else start.seq)
        if start is None and archive is not None and segments:
            rows = itertools.chain(archive.rows(conn, segments, walker.position), rows)
        try:
            for table, row in rows:
                reason = check_row(walker, table, row)
                if reason is None and row["seq"] in due:
                    digest = hash_bytes(walker.last_hash)
                    reason = seals.check(due[row["seq"]], digest)
                    if reason is None:
                        passed.append(Seal(row["seq"], digest))
                if reason is not None:
                    result = ChainVerification(False, walker.checked, row["seq"], reason)
                    break
        except ArchiveBreak as exc:
            result = ChainVerification(False, walker.checked, exc.seq, exc.reason)
        if result is None:
            result = _end_problem(conn, vault, walker, due)
        if result is None:
            result = ChainVerification(True, walker.checked, None, None,
                                       since=None if start is None else start.seq)
    if passed:
        now = micros(to_db((clock or utc_now)()))
        vault.write(lambda conn: seals.mark(conn, passed, now))
    return result


def _end_problem(conn: Any, vault: Database, walker: ChainWalker, due: dict) -> ChainVerification | None:
    """What is wrong past the last event walked: events missing at the end, or a seal naming
    an event beyond it."""
    unreached = sorted(seq for seq in due if seq > walker.position)
    max_seq = max_seq_used(conn, vault.dialect)
    if max_seq > walker.position:
        first = walker.position + 1
        return ChainVerification(False, walker.checked, first,
                                 f"{_span(first, max_seq)} missing at the end of the trail (deleted?)")
    if unreached:
        return ChainVerification(False, walker.checked, unreached[0],
                                 "a seal names an event past the end of the trail (deleted?)")
    return None


def purge_older_than(vault: Database, cutoff: datetime, batch_size: int,
                     clock: Callable[[], datetime]) -> int:
    """Delete events that occurred before ``cutoff``; returns how many.

    Deletes the oldest events in seq order, each batch in its own short transaction so the API
    keeps serving, and stops at the first event not older than ``cutoff``. Each batch advances
    this run's checkpoint (last purged seq and its hash) in the same transaction as its
    delete, so ``verify`` keeps passing. A tampered event raises ``AuditChainBrokenError`` and
    is not purged.
    """
    if batch_size < 1:
        raise InvalidAuditQueryError("batch_size must be at least 1")
    threshold = to_db(cutoff)
    threshold_us = micros(threshold)
    total, run_checkpoint = 0, None

    def purge_batch(conn: Any) -> tuple[int, int | None]:
        audit_terms.hold_subjects(conn, vault.dialect)  # first: the subjects it prunes
        walker, latest_id = _walker(conn)
        if archive_index.archived_through(conn) is not None:
            return 0, latest_id  # older events are in the archive: its segments go first, whole
        for table, row in chain_rows(conn, batch_size):
            if (row["occurred_at"] >= threshold) if table == LEGACY \
                    else (row["occurred_at"] >= threshold_us):
                break
            reason = check_row(walker, table, row)
            if reason is not None:
                raise AuditChainBrokenError(row["seq"], reason)
            if walker.checked == batch_size:
                break
        if walker.checked == 0:
            return 0, latest_id
        conn.execute("DELETE FROM audit_events WHERE seq <= ?", (walker.position,))
        subjects = audit_terms.subjects_through(conn, walker.position)
        conn.execute("DELETE FROM audit_log WHERE seq <= ?", (walker.position,))
        audit_terms.prune_subjects(conn, subjects)
        drop_through(conn, walker.position)
        now = to_db(clock())
        if run_checkpoint is not None and run_checkpoint == latest_id:
            # One checkpoint row per run, advanced batch by batch.
            conn.execute("UPDATE audit_checkpoints SET purged_through_seq = ?, last_hash = ?, "
                         "created_at = ? WHERE id = ?", (walker.position, walker.last_hash, now, latest_id))
            return walker.checked, latest_id
        row = conn.execute("INSERT INTO audit_checkpoints (purged_through_seq, last_hash, created_at) "
                           "VALUES (?, ?, ?) RETURNING id", (walker.position, walker.last_hash, now)).fetchone()
        return walker.checked, row[0]

    while True:
        deleted, run_checkpoint = vault.write(purge_batch)
        total += deleted
        if deleted < batch_size:
            return total
