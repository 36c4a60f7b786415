"""Verifying the audit trail's hash chain, and purging its head without breaking it.

Retention cuts the head of the chain: ``purge_older_than`` deletes the oldest events and
records, in the same transaction, a checkpoint (last purged seq and its hash) that the
surviving chain is verified from. The purged events are verified first, so retention never
launders tampered evidence. Both read one consistent snapshot at a time, so concurrent appends
and purges do not cause false alarms.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from twin.storage import Database
from twin.storage.timestamps import to_db

from .audit_events import SELECT, AuditChainBrokenError, InvalidAuditQueryError, compute_event_hash
from .hash_chain import GENESIS_HASH, Break, ChainVerification, ChainWalker


def _span(first: int, last: int) -> str:
    return f"event {first}" if first == last else f"events {first}-{last}"


def _check(walker: ChainWalker, row: Any) -> str | None:
    """None if ``row`` continues the chain, else why not (and the walker stops moving)."""
    seq = row["seq"]
    problem = walker.check(seq, row["prev_hash"], row["event_hash"], compute_event_hash(row))
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


def verify(vault: Database, batch_size: int = 5000) -> ChainVerification:
    """Walk the chain from the latest purge checkpoint and report the first bad event."""
    with vault.transaction(immediate=False) as conn:
        walker, _ = _walker(conn)
        after: int | None = None
        while True:
            if after is None:
                # From the very first row: rows left below the checkpoint are suspicious too.
                rows = conn.execute(SELECT + " ORDER BY seq LIMIT ?", (batch_size,)).fetchall()
            else:
                rows = conn.execute(SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, batch_size)).fetchall()
            for row in rows:
                reason = _check(walker, row)
                if reason is not None:
                    return ChainVerification(False, walker.checked, row["seq"], reason)
            if len(rows) < batch_size:
                break
            after = rows[-1]["seq"]
        high_water = vault.dialect.identity_high_water("audit_events", "seq")
        max_row = conn.execute(f"SELECT {high_water} AS seq").fetchone()
        max_seq = (max_row["seq"] if max_row is not None else None) or 0
        if max_seq > walker.position:
            first = walker.position + 1
            return ChainVerification(False, walker.checked, first,
                                     f"{_span(first, max_seq)} missing at the end of the trail (deleted?)")
    return ChainVerification(True, walker.checked, None, None)


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
    total, run_checkpoint = 0, None

    def purge_batch(conn: Any) -> tuple[int, int | None]:
        walker, latest_id = _walker(conn)
        rows = conn.execute(SELECT + " ORDER BY seq LIMIT ?", (batch_size,)).fetchall()
        for row in rows:
            if row["occurred_at"] >= threshold:
                break
            reason = _check(walker, row)
            if reason is not None:
                raise AuditChainBrokenError(row["seq"], reason)
        if walker.checked == 0:
            return 0, latest_id
        conn.execute("DELETE FROM audit_events WHERE seq <= ?", (walker.position,))
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
