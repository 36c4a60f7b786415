"""Moving staged audit events into the trail: shortly after they are staged, whenever the
trail is read, and at shutdown.

The journal (``compliance.audit_journal``) holds each process's staged events in segment files
(those of a process that died: ``compliance.audit_journal_recovery``);
``StagedEvents`` imports a segment's events into the chain in one vault transaction that also
records the segment as imported (``audit_journal_imports``), then deletes the file: a file that
outlives its import is never imported twice. A background ``Flusher`` thread gathers what was
staged during ``flush_delay`` into one batch. Segments a dead process left are picked up by
whichever process flushes next (at most every ``RECOVERY_INTERVAL_S``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from twin.storage.timestamps import to_db

from .audit_journal import AuditJournal, Segment
from .audit_journal_recovery import recover

log = logging.getLogger(__name__)

RECOVERY_INTERVAL_S = 30.0  # how often a flushing process looks for segments of dead ones


def retry_delay(delay: float, failures: int) -> float:
    """How long the flusher waits before flushing: ``delay`` (to gather a batch), doubled for
    each flush in a row that failed, at most 5 s (the vault may be busy for a while)."""
    return min(delay * 2 ** failures, 5.0)


class Flusher:
    """Calls ``flush`` on a background thread ``delay`` seconds after being woken, so the
    events staged meanwhile go into the trail together. A failed flush is retried with
    backoff; the thread starts on the first ``wake()`` (again if it ever died)."""

    def __init__(self, flush: Callable[[], Any], delay: float) -> None:
        self._flush = flush
        self._delay = delay
        self._cond = threading.Condition()
        self._armed = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        if self._armed:  # a flush is due, and it will take what was staged before this call
            return
        with self._cond:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-flusher", daemon=True)
                self._thread.start()
            self._armed = True
            self._cond.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the flush it may be running); the caller flushes last."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        try:
            while True:
                with self._cond:
                    while not self._armed and not self._stopped:
                        self._cond.wait()
                    # Gather a batch; stop() cuts the wait short (wake() does not: armed).
                    if self._cond.wait_for(lambda: self._stopped,
                                           timeout=retry_delay(self._delay, failures)):
                        return
                    self._armed = False
                try:
                    self._flush()
                    failures = 0
                except Exception as exc:  # the events stay staged on disk; try again, backing off
                    failures += 1
                    log.warning("staged audit events not moved into the trail yet (%s, attempt "
                                "%d); retrying", type(exc).__name__, failures)
                    with self._cond:
                        self._armed = True
        finally:
            with self._cond:
                self._thread = None


class StagedEvents:
    """Moves a journal's staged events into the audit trail: in the background shortly after
    they are staged (``flush_delay``), whenever the trail is read, and at ``close()``.

    ``chain`` is the trail's: ``chain(work)`` runs ``work(conn, append)`` in a write
    transaction holding the chain lock, where ``append(events) -> int`` chains and inserts
    staged events and returns how many it inserted.
    """

    def __init__(self, journal: AuditJournal, vault: Any,
                 chain: Callable[[Callable[[Any, Callable[[list[dict[str, Any]]], int]], int]], int],
                 clock: Callable[[], Any], flush_delay: float) -> None:
        self.journal = journal
        self._vault = vault
        self._chain = chain
        self._clock = clock
        self._flusher = Flusher(self.flush, flush_delay)
        self._lock = threading.Lock()
        self._backlog: list[Segment] = []  # sealed segments a failed flush left: first next time
        self._next_recovery = 0.0
        self.closed = False

    def stage(self, event: dict[str, Any]) -> None:
        """Append the event to the journal (on disk at return) and have it flushed soon."""
        self.journal.append(event)
        self._flusher.wake()

    def ensure_room(self) -> None:
        """``AuditJournal.ensure_room``: could an event be staged now, even on a filling disk."""
        self.journal.ensure_room()

    def flush(self) -> int:
        """Import every staged event now: this process's, then any a dead process left behind.
        Returns how many reached the trail.

        Does nothing inside this thread's open vault transaction: the import would join it,
        and a rollback after the segment file was deleted would lose the events.
        """
        if self._vault.connection().in_transaction:
            return 0
        with self._lock:
            backlog, self._backlog = self._backlog + self._recover_if_due(), []
            moved = self._import_all(backlog)
            # Only once the backlog is in: while the vault refuses, appends keep going to the
            # live segment instead of piling up a new file (and descriptor) per attempt.
            return moved + self._import_all(self.journal.seal())

    def close(self) -> None:
        """Stop the background flusher, flush, and let go of every segment (graceful
        shutdown). What could not be flushed stays on disk for the next start."""
        if self.closed:
            return
        self.closed = True
        self._flusher.stop()
        try:
            self.flush()
        finally:
            with self._lock:
                held, self._backlog = self._backlog, []
            self.journal.close(held)

    def _import_all(self, segments: list[Segment]) -> int:
        moved = 0
        for i, segment in enumerate(segments):
            try:
                moved += self._import(segment)
            except BaseException:
                self._backlog = segments[i:]
                raise
            try:
                self.journal.release(segment)
            except OSError as exc:  # imported: its marker keeps it from being imported again
                log.warning("audit journal segment %s is in the trail but its file could not be "
                            "deleted: %s", segment.name, exc.strerror or exc)
        return moved

    def _import(self, segment: Segment) -> int:
        """The segment's events into the trail, with its import marker, in one transaction."""
        def work(conn: Any, append: Callable[[list[dict[str, Any]]], int]) -> int:
            if conn.execute("SELECT 1 FROM audit_journal_imports WHERE segment = ?",
                            (segment.name,)).fetchone() is not None:
                return 0  # imported before, by a process that died before deleting the file
            moved = append(segment.events)  # none: a recovered segment whose first record tore
            conn.execute("INSERT INTO audit_journal_imports (segment, events, imported_at) "
                         "VALUES (?, ?, ?)", (segment.name, moved, to_db(self._clock())))
            return moved

        moved = self._chain(work)
        if segment.recovered:
            log.warning("recovered %d staged audit events left by a stopped process (segment %s)",
                        moved, segment.name)
        return moved

    def _recover_if_due(self) -> list[Segment]:
        now = time.monotonic()
        if now < self._next_recovery:
            return []
        self._next_recovery = now + RECOVERY_INTERVAL_S
        # Markers of segments whose files are gone have done their job.
        names = [row[0] for row in self._vault.query("SELECT segment FROM audit_journal_imports")]
        gone = [(name,) for name in names if not self.journal.holds_file(name)]
        if gone:
            self._vault.write(lambda conn: conn.executemany(
                "DELETE FROM audit_journal_imports WHERE segment = ?", gone))
        return recover(self.journal.directory, self.journal.keys)
