"""The audit trail: an append-only, hash-chained record of every access to personal data.

It serves FERPA's record of disclosures and GDPR accountability (art. 5(2)). What an event
holds and how it is validated is in ``compliance.audit_events``; the chain is the one hash-chain
mechanism (``compliance.hash_chain``), verified and purged by ``compliance.audit_integrity``.
``AuditTrail.verify()`` names the first event where the chain breaks. A database trigger blocks
UPDATE as a guard against accidents; the chain is what catches someone who drops it.

With a journal (``compliance.audit_journal``), ``stage()`` records an event durably without a
vault transaction per call: the event is on disk in an encrypted journal segment when the call
returns and joins the chain within ``flush_delay`` seconds, in a batch
(``compliance.audit_staging``). Everything that reads the trail (``query``, ``iter_subject``,
``verify``, ``purge_older_than``) and every direct ``record`` flushes first, so a process always
sees its own events in order.
"""

from __future__ import annotations

import functools
import logging
import itertools
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, TypeVar

from twin.storage import Database
from twin.storage.pipeline import execute_at_commit
from twin.storage.progress import ProgressFactory, silent
from twin.storage.timestamps import to_db, utc_now

from . import audit_integrity, audit_store, audit_terms
from .audit_archive import AuditArchive, AuditArchiveError, ArchiveRun
from .audit_codec import ACTION_CODES, compact_hash, micros, pack_id
from .audit_events import (ACTIONS, MAX_DETAILS_BYTES, MAX_QUERY_LIMIT, RECORD_FIELDS, ROLES, Actor,
                           AuditChainBrokenError, AuditError, AuditEvent, InvalidAuditEventError,
                           InvalidAuditQueryError, UnknownAuditActionError, compute_event_hash,
                           is_staged_event, stamped, to_event, validated)
from .audit_journal import AuditJournal
from .audit_seals import SealBook
from .audit_staging import StagedEvents
from .audit_vault_staging import CHAIN_LOCK, VaultStagedEvents
from .hash_chain import GENESIS_HASH, ChainVerification

__all__ = ["ACTIONS", "GENESIS_HASH", "MAX_DETAILS_BYTES", "MAX_QUERY_LIMIT", "ROLES", "Actor",
           "AuditChainBrokenError", "AuditError", "AuditEvent", "AuditTrail", "ChainVerification",
           "InvalidAuditEventError", "InvalidAuditQueryError", "UnknownAuditActionError",
           "compute_event_hash"]

log = logging.getLogger(__name__)

_MAX_ROWS_PER_INSERT = 64
T = TypeVar("T")
FLUSH_DELAY_S = 0.05


@functools.lru_cache(maxsize=None)
def _insert_sql(rows: int) -> str:
    values = "(" + ", ".join("?" for _ in audit_store.LOG_COLUMNS) + ")"
    return (f"INSERT INTO audit_log ({', '.join(audit_store.LOG_COLUMNS)}) VALUES "
            + ", ".join([values] * rows))


class AuditTrail:
    """Appends, queries, verifies and purges the audit trail in the privacy vault.

    With a ``journal``, ``stage()`` records through it (see the module docstring); call
    ``close()`` at shutdown to move the last staged events into the chain.
    """

    def __init__(self, vault: Database, clock: Callable[[], datetime] = utc_now, *,
                 journal: AuditJournal | None = None, flush_delay: float = FLUSH_DELAY_S,
                 stage_in_vault: bool = False, seals: SealBook | None = None,
                 archive: AuditArchive | None = None) -> None:
        """``stage_in_vault``: stage in the vault itself instead of a journal (replicas
        without a local disk: ``compliance.audit_vault_staging``). ``seals``: seal the chain
        (``compliance.audit_seals``). ``archive``: where old events go and are read back from
        (``compliance.audit_archive``)."""
        self.vault = vault
        self._clock = clock
        self._seals = seals
        self.archive = archive
        self._terms = audit_terms.TermCache()
        self._staging: StagedEvents | VaultStagedEvents | None = None
        if stage_in_vault:
            self._staging = VaultStagedEvents(vault, self._chain_staged, flush_delay)
        elif journal is not None:
            self._staging = StagedEvents(journal, vault, self._chain_staged, clock, flush_delay)

    # -- writing ------------------------------------------------------------------------

    def record(self, actor: Actor, action: str, *, subject_hash: str | None = None,
               resource: str | None = None, request_id: str | None = None,
               details: dict[str, Any] | None = None) -> AuditEvent:
        """Append one event and return it.

        ``details`` holds counts and opaque ids only, never personal data. Runs in one
        immediate transaction holding the chain lock (nested in the caller's if there is one),
        so concurrent appenders in any thread or process are serialised and the chain stays
        linear.
        """
        fields = validated(actor, action, dict(subject_hash=subject_hash, resource=resource,
                                               request_id=request_id, details=details))
        self._flush_before_use()
        # Concurrent appenders share one commit on a file (twin.storage.group_commit); on a
        # server each holds the chain lock, as every appender and the term prune do
        # (audit_store.CHAIN_LOCK): a SERIALIZABLE append's snapshot would predate a prune that
        # committed while it waited, and name a value the prune deleted.
        row = self._chained(lambda conn, learned: self._append_rows(conn, [fields], learned)[0], shared=True)
        return to_event(row)

    def stage(self, actor: Actor, action: str, *, subject_hash: str | None = None,
              resource: str | None = None, request_id: str | None = None,
              details: dict[str, Any] | None = None) -> str:
        """Record one event durably without waiting for a vault transaction (API requests);
        returns its ``event_id``.

        With a journal the event is on disk, encrypted, when this returns, and joins the
        chain within the flush delay; ``AuditJournalError`` means it could not be written and
        the caller must not go on. Without a journal (or after ``close()``) this is ``record()``.
        """
        if self._staging is None or self._staging.closed:
            return self.record(actor, action, subject_hash=subject_hash, resource=resource,
                               request_id=request_id, details=details).event_id
        fields = stamped(validated(actor, action, dict(subject_hash=subject_hash, resource=resource,
                                                       request_id=request_id, details=details)),
                         self._clock)
        self._staging.stage(fields)
        return fields["event_id"]

    def ensure_room(self) -> None:
        """Raise ``AuditJournalFullError`` unless the journal could stage an event now even on
        a disk that fills meanwhile (see ``AuditJournal.ensure_room``)."""
        if self._staging is not None:
            self._staging.ensure_room()

    def flush(self) -> int:
        """Move staged events into the chain now: this process's and any a dead process left
        behind. Returns how many were appended (0 without a journal, or inside this thread's
        open vault transaction)."""
        return 0 if self._staging is None else self._staging.flush()

    def close(self) -> None:
        """Stop the background flusher and flush what is staged (graceful shutdown)."""
        if self._staging is not None:
            self._staging.close()

    def _flush_before_use(self) -> None:
        # Readers and direct appends see this process's staged events first. If the vault
        # refuses the backlog, they still go on: the backlog is safe on disk.
        if self._staging is None:
            return
        try:
            self._staging.flush()
        except Exception as exc:
            log.warning("staged audit events could not be flushed first (%s); continuing",
                        type(exc).__name__)

    def _chained(self, fn: Callable[[Any, audit_terms.Learned], T], *, shared: bool = False) -> T:
        """``fn(conn, learned)`` in a write transaction holding the chain lock (``shared``: a
        group commit, ``write_shared``); the interned references it looked up join the cache
        once that has committed, not when it joined a caller's transaction that may yet roll
        back."""
        learned = audit_terms.Learned()
        nested = self.vault.connection().in_transaction

        def attempt(conn: Any) -> T:
            learned.forget()
            return fn(conn, learned)
        result = (self.vault.write_shared if shared else self.vault.write)(attempt, lock=CHAIN_LOCK)
        if not nested:
            self._terms.learn(learned)
        return result

    def _chain_staged(self, work: Callable[[Any, Callable[[list[dict[str, Any]]], int]], T]) -> T:
        """The staging's write (``compliance.audit_staging``): ``work(conn, append)`` in a
        chained write, where ``append(events)`` chains staged events (as a journal segment
        holds them) in it; malformed ones (only a forged plaintext segment could hold any) are
        skipped and logged. ``append`` returns how many it appended."""
        def chained(conn: Any, learned: audit_terms.Learned) -> T:
            def append(events: list[dict[str, Any]]) -> int:
                valid = [e for e in events if is_staged_event(e)]
                if len(valid) != len(events):
                    log.error("%d malformed staged audit events skipped", len(events) - len(valid))
                if valid:
                    self._append_rows(conn, valid, learned, rows_wanted=False)
                return len(valid)
            return work(conn, append)
        return self._chained(chained)

    def _append_rows(self, conn: Any, validated: list[dict[str, Any]],
                     learned: audit_terms.Learned | None = None, *, rows_wanted: bool = True) -> list[dict[str, Any]]:
        """Chain and insert validated events in their compact form (``compliance.audit_codec``);
        call inside the write transaction, holding the chain lock. Returns each event's fields
        as ``to_event`` reads (none unless ``rows_wanted``: staged events return nothing).
        ``learned``: see ``_chained``."""
        # The head, then every value interned: one round trip on a server.
        (head,), refs = audit_terms.resolve(conn, validated, before=[audit_store.head_statement(self.vault.dialect)],
                                            cache=self._terms, learned=learned)
        seq, prev = audit_store.head_of(head.fetchone())
        rows, params = [], []
        for fields, (actor_ref, subject_ref, resource_ref) in zip(validated, refs):
            if "event_id" not in fields:  # staged events got theirs when they happened
                fields = stamped(dict(fields), self._clock)
            at = micros(fields["occurred_at"])
            event_id, request_id = pack_id(fields["event_id"]), pack_id(fields["request_id"])
            digest = compact_hash(prev, seq, event_id, at, fields["actor_id"], fields["actor_role"],
                                  fields["action"], fields["subject_hash"], fields["resource"],
                                  request_id, fields["details"])
            params.append((seq, event_id, at, actor_ref, ACTION_CODES[fields["action"]], subject_ref,
                           resource_ref, request_id, fields["details"], digest))
            if rows_wanted:
                rows.append(dict(fields, seq=seq, prev_hash=prev.hex(), event_hash=digest.hex()))
            seq, prev = seq + 1, digest
        if self._seals is not None and params:
            self._seals.seal_due(conn, [(p[0], p[-1]) for p in params], params[-1][2])
        # Multi-row INSERTs in chunks of 64, 32, ... 1 rows: each statement is one trip through
        # the driver (which releases the GIL, costing a thread switch in a busy server), and at
        # most seven distinct statements are ever prepared. Nothing reads their results: on a
        # server they travel with the COMMIT (a failure is the commit's, rolling back all).
        start = 0
        while start < len(params):
            size = min(_MAX_ROWS_PER_INSERT, 1 << ((len(params) - start).bit_length() - 1))
            execute_at_commit(conn, _insert_sql(size), list(itertools.chain.from_iterable(params[start:start + size])))
            start += size
        return rows

    def record_many(self, events: Iterable[tuple[Actor, str, dict[str, Any]]]) -> int:
        """Append several events in one transaction; returns how many.

        Each item is ``(actor, action, fields)`` where ``fields`` holds any of ``subject_hash``,
        ``resource``, ``request_id``, ``details`` (the keyword arguments of ``record``). All
        are validated before anything is written: one bad item records none.
        """
        rows = []
        for actor, action, fields in events:
            unknown = set(fields) - RECORD_FIELDS
            if unknown:
                raise InvalidAuditEventError(
                    f"unknown event field(s): {', '.join(sorted(unknown))}")
            rows.append(validated(actor, action, fields))
        if not rows:
            return 0
        self._flush_before_use()
        self._chained(lambda conn, learned: self._append_rows(conn, rows, learned, rows_wanted=False))
        return len(rows)

    # -- reading ------------------------------------------------------------------------

    def query(self, *, subject_hash: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after_seq: int | None = None, limit: int = 100) -> list[AuditEvent]:
        """Events matching every given filter, oldest first (ascending seq).

        ``since`` is inclusive, ``until`` exclusive. Page by passing the last item's ``seq``
        as ``after_seq``. ``limit`` is 1..``MAX_QUERY_LIMIT``. Without ``subject_hash`` only
        the live trail is listed; with it, the subject's archived events come first (the
        segments the archive's subject index names, from ``after_seq`` on), so the pages are
        the subject's whole record of disclosures.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or not 1 <= limit <= MAX_QUERY_LIMIT:
            raise InvalidAuditQueryError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
        if action is not None and action not in ACTIONS:
            raise UnknownAuditActionError(f"unknown audit action {action!r}")
        self._flush_before_use()
        since_db, until_db = None if since is None else to_db(since), None if until is None else to_db(until)
        with self.vault.transaction(immediate=False) as conn:  # one snapshot for every table
            events: list[AuditEvent] = []
            if subject_hash is not None:
                for event in self._archived_of_subject(conn, subject_hash, after_seq or 0, since_db, until_db):
                    if action in (None, event.action) and (since_db is None or event.occurred_at >= since_db) \
                            and (until_db is None or event.occurred_at < until_db):
                        events.append(event)
                        if len(events) == limit:
                            return events
                after_seq = self._live_after(conn, after_seq)
            return events + audit_store.query(
                conn, subject_hash=subject_hash, action=action, since=since_db, until=until_db,
                after_seq=after_seq, limit=limit - len(events))

    def iter_subject(self, subject_hash: str, batch: int = 1000) -> Iterator[AuditEvent]:
        """Every event about one subject, oldest first, fetched ``batch`` live rows at a time.

        For DSR exports (the subject's record of disclosures): memory stays bounded by
        ``batch`` however long the live history is. Archived events come first, from the
        segments the archive's subject index names (``AuditArchiveError`` if one is missing or
        unreadable: a record of disclosures is never silently short). Each batch reads the
        archive and the live trail in one snapshot, from the last event yielded on: events an
        archive run moves between two batches are read from their new segment.
        """
        if batch < 1:
            raise InvalidAuditQueryError("batch must be at least 1")
        self._flush_before_use()
        after = 0
        while True:
            with self.vault.transaction(immediate=False) as conn:
                archived = list(self._archived_of_subject(conn, subject_hash, after))
                events = audit_store.query(conn, subject_hash=subject_hash, action=None, since=None,
                                           until=None, after_seq=self._live_after(conn, after), limit=batch)
            yield from archived
            yield from events
            if len(events) < batch:
                return
            after = events[-1].seq

    def _archived_of_subject(self, conn: Any, subject_hash: str, after: int, since: str | None = None,
                             until: str | None = None) -> Iterator[AuditEvent]:
        """The subject's archived events past seq ``after`` (those of the segments meeting
        ``since`` / ``until``), in ``conn``'s snapshot."""
        if self.archive is None or self.archive.archived_through(conn) <= after:
            return iter(())
        return self.archive.subject_events(conn, subject_hash, after=after,
                                           since_us=None if since is None else micros(since),
                                           until_us=None if until is None else micros(until))

    def _live_after(self, conn: Any, after: int | None) -> int | None:
        """Where the live events past ``after`` start in ``conn``'s snapshot: after the newest
        archived event if that is further."""
        through = 0 if self.archive is None else self.archive.archived_through(conn)
        return after if through <= (after or 0) else through

    # -- integrity ----------------------------------------------------------------------

    def verify(self, batch_size: int = 5000, *, full: bool = True) -> ChainVerification:
        """Walk the chain and report the first bad event: all of it from the latest purge
        checkpoint (``full``), or only what follows the newest seal a verification marked
        (``compliance.audit_seals``; in full when there is none, or no seal key).

        Reads one consistent snapshot, ``batch_size`` rows at a time, so memory is bounded and
        concurrent appends and purges do not cause false alarms. Seals found sound are marked.
        """
        self._flush_before_use()
        return audit_integrity.verify(self.vault, batch_size, self._seals, full=full, clock=self._clock,
                                      archive=self.archive)

    def archive_older_than(self, cutoff: datetime, *, batch_size: int = 5000,
                           progress: ProgressFactory = silent) -> ArchiveRun:
        """Move the events that occurred before ``cutoff`` into archive segments (see
        ``compliance.audit_archive``); raises ``AuditArchiveError`` without an archive."""
        if self.archive is None:
            raise AuditArchiveError("this audit trail has no archive configured")
        self._flush_before_use()
        return self.archive.archive_older_than(cutoff, batch_size=batch_size, progress=progress)

    def purge_older_than(self, cutoff: datetime, batch_size: int = 5000) -> int:
        """Delete events that occurred before ``cutoff``, keeping the rest verifiable; returns
        how many. A tampered event raises ``AuditChainBrokenError`` and is not purged, so
        retention never launders the evidence (see ``compliance.audit_integrity``). The caller
        (the retention job) records its own ``purge`` event with the count.

        Archived events go first, in whole expired segments; live events only once no
        segment is left (they are newer than any segment's). Then the actors and resources no
        live event names any more go too."""
        if batch_size < 1:
            raise InvalidAuditQueryError("batch_size must be at least 1")
        self._flush_before_use()
        total = 0 if self.archive is None else self.archive.delete_expired(cutoff, batch_size)
        total += audit_integrity.purge_older_than(self.vault, cutoff, batch_size, self._clock)
        if total:
            self.vault.write(lambda conn: audit_terms.prune_unused_terms(conn, self.vault.dialect), lock=CHAIN_LOCK)
        return total
