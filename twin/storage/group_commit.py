"""Group commit: concurrent callers' small writes share one transaction.

Each commit of an encrypted database re-encrypts every page it dirtied; ten appends to the
same table in one transaction dirty the same few pages once instead of ten times. Callers
that arrive while a batch is being written wait and go into the next batch, written by one
of them (the leader), so there is no background thread to start, stop or lose on a crash:
every caller returns only after its own item is committed.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Sequence, TypeVar

from .engine import Database

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
    """``submit(item)`` writes ``item`` with ``write_batch(conn, items) -> results`` in a
    transaction shared with whatever other threads submitted meanwhile."""

    def __init__(self, db: Database, write_batch: Callable[[Any, Sequence[Item]], Sequence[Result]],
                 *, max_batch: int = 128) -> None:
        self.db = db
        self._write_batch = write_batch
        self._max_batch = max_batch
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
            results = self.db.write(lambda conn: self._write_batch(conn, [s.item for s in batch]))
            for slot, result in zip(batch, results):
                slot.result = result
        except BaseException as exc:  # every caller of the failed batch sees the error
            for slot in batch:
                slot.error = exc
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

    @staticmethod
    def _outcome(slot: _Slot[Item]) -> Any:
        if slot.error is not None:
            raise slot.error
        return slot.result
