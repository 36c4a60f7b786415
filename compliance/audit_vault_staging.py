"""Staging audit events in the vault itself: for replicas that share a database server and no
local disk (PostgreSQL), in place of the local journal (``compliance.audit_journal``).

``stage()`` inserts the event into ``audit_staged_events`` and returns once that insert has
committed (``execute_shared``: on PostgreSQL one statement in autocommit, one round trip), so an
acknowledged request's event survives the replica being killed right after. A background
flusher (the journal's ``Flusher``) moves staged events into the hash chain in batches: one
transaction under the ``audit-chain`` lock takes a batch (deleting exactly the rows it returns)
and chains it, so every event is chained once, in one linear chain, whichever replica
flushes. On PostgreSQL a flush is three round trips: BEGIN, the lock and the batch; the
chain's head and the interned values not cached in this process (``compliance.audit_terms``); the
events' inserts with COMMIT. Events a killed replica staged need no recovery: they are rows every other replica's
next flush takes.

The same code runs on SQLCipher (the lock is the file's one writer there), which is how the
tests compare it with the journal; a deployment on files keeps the journal, which costs no
vault transaction per request.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from twin.storage import Backend, StorageError

from .audit_journal import AuditJournalError
from .audit_staging import Flusher
from .audit_store import CHAIN_LOCK

log = logging.getLogger(__name__)

__all__ = ["CHAIN_LOCK", "FLUSH_BATCH", "VaultStagedEvents"]

FLUSH_BATCH = 500


class VaultStagedEvents:
    """Stages events as vault rows and moves them into the trail (see the module docstring).

    ``chain(work)`` is the trail's: it runs ``work(conn, append)`` in a write transaction
    holding the chain lock, where ``append(events)`` chains and inserts staged events.
    """

    def __init__(self, vault: Backend,
                 chain: Callable[[Callable[[Any, Callable[[list[dict[str, Any]]], int]], int]], int],
                 flush_delay: float) -> None:
        self._vault = vault
        self._chain = chain
        self._flusher = Flusher(self.flush, flush_delay)
        self._lock = threading.Lock()
        self.closed = False

    def stage(self, event: dict[str, Any]) -> None:
        """Insert the event (committed at return) and have it chained soon."""
        text = json.dumps(event, separators=(",", ":"))
        try:
            self._vault.execute_shared("INSERT INTO audit_staged_events (event) VALUES (?)", (text,))
        except StorageError as exc:
            raise AuditJournalError(f"audit event could not be staged in the vault "
                                    f"({type(exc).__name__})") from exc
        self._flusher.wake()

    def ensure_room(self) -> None:
        """Nothing to check here: a vault that cannot take the row fails ``stage()``."""

    def flush(self) -> int:
        """Chain every staged event now (any replica's). Returns how many this call chained.
        Does nothing inside this thread's open vault transaction (a rollback of that
        transaction would take the chaining with it while the caller thinks it is done)."""
        if self._vault.connection().in_transaction:
            return 0
        moved = 0
        with self._lock:
            while True:
                chained = self._chain(self._chain_batch)
                moved += chained
                if chained < FLUSH_BATCH:
                    return moved

    def close(self) -> None:
        """Stop the flusher and chain what is staged (graceful shutdown). What cannot be
        chained now stays staged for whichever replica flushes next."""
        if self.closed:
            return
        self.closed = True
        self._flusher.stop()
        self.flush()

    def _chain_batch(self, conn: Any, append: Callable[[list[dict[str, Any]]], int]) -> int:
        # Taken and deleted in one statement: exactly the rows read (a lower id committed
        # after it is taken next time), gone only if this transaction commits their chaining.
        rows = sorted(conn.execute(
            "DELETE FROM audit_staged_events WHERE id IN "
            "(SELECT id FROM audit_staged_events ORDER BY id LIMIT ?) RETURNING id, event",
            (FLUSH_BATCH,)).fetchall(), key=lambda row: row["id"])
        if not rows:
            return 0
        events = []
        for row in rows:
            try:
                events.append(json.loads(row["event"]))
            except ValueError:
                log.error("staged audit event %s is not JSON; dropped", row["id"])
        append(events)
        return len(rows)
