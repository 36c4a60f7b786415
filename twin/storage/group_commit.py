"""Group commit: concurrent callers' small writes share one transaction.

Use it through ``Database.write_shared(fn)``.

Each commit of an encrypted database re-encrypts every page it dirtied; ten appends to the
same table in one transaction dirty the same few pages once instead of ten times. Callers
that arrive while a batch is being written wait and go into the next batch, written by one
of them (the leader), so there is no background thread to start, stop or lose on a crash:
every caller returns only after its own item is committed.

``GroupCommitter(db, combine=fn, lock=name)`` is the same queue for items one function writes
together (the ledger's appends: one head read, one INSERT for every caller's entries):
``combine(conn, items)`` returns each item's result, in order; when it raises, every caller of
that batch gets the exception and nothing of the batch is written. ``lock``: the batch's
transaction holds that named lock (``write(fn, lock=...)``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Sequence, TypeVar

from .errors import TransactionConflict

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot(Generic[Item]):
    __slots__ = ("item", "done", "lead", "result", "error")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[Item, Result]):
    """``submit(fn)`` runs ``fn(conn)`` in a transaction shared with whatever other threads
    submitted meanwhile, each ``fn`` in its own savepoint when it has company: one that raises
    is rolled back alone and its caller gets the exception; the others commit."""

    def __init__(self, db: Any, *, max_batch: int = 128,
                 combine: Callable[[Any, Sequence[Item]], list[Result]] | None = None,
                 lock: str | None = None) -> None:
        self.db = db
        self._max_batch = max_batch
        self._combine = combine
        self._lock_name = lock
        self._mutex = threading.Lock()
        self._pending: list[_Slot[Item]] = []
        self._leader_active = False

    def submit(self, item: Item) -> Result:
        slot: _Slot[Item] = _Slot(item)
        with self._mutex:
            self._pending.append(slot)
            lead = not self._leader_active
            self._leader_active = True
        if not lead:
            slot.done.wait()
            if not slot.lead:
                return self._outcome(slot)
        self._lead()
        return self._outcome(slot)

    def _lead(self) -> None:
        """Write one batch, then hand leadership to the oldest waiter (or give it up)."""
        with self._mutex:
            batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
        try:
            run = self._run_batch if self._combine is None else self._run_combined
            self.db.write(lambda conn: run(conn, batch), lock=self._lock_name)
        except BaseException as exc:  # the commit itself failed: every caller sees it
            for slot in batch:
                slot.error, slot.result = exc, None
        with self._mutex:
            successor = self._pending[0] if self._pending else None
            if successor is None:
                self._leader_active = False
            else:
                successor.lead = True
        for slot in batch:
            slot.lead = False
            slot.done.set()
        if successor is not None:
            successor.done.set()

    def _run_batch(self, conn: Any, batch: list[_Slot[Item]]) -> None:
        if len(batch) == 1:
            # Alone in the transaction: no savepoint needed, a failure rolls back all of it.
            slot = batch[0]
            slot.error, slot.result = None, slot.item(conn)
            return
        for slot in batch:
            slot.error = slot.result = None
            try:
                # A nested transaction() is a savepoint, whose release also sends the item's
                # statements kept for the commit: one that fails there is the item's failure.
                with self.db.transaction():
                    slot.result = slot.item(conn)
            except TransactionConflict:
                raise  # the whole transaction is aborted: write() re-runs the batch
            except Exception as exc:
                slot.result, slot.error = None, exc

    def _run_combined(self, conn: Any, batch: list[_Slot[Item]]) -> None:
        assert self._combine is not None
        for slot, result in zip(batch, self._combine(conn, [slot.item for slot in batch]), strict=True):
            slot.error, slot.result = None, result

    @staticmethod
    def _outcome(slot: _Slot[Item]) -> Any:
        if slot.error is not None:
            raise slot.error
        return slot.result
