"""Run a read while another thread holds the vault's write lock in an open write transaction,
and say whether the read finished before the writer let go (synchronised by events; the
writer's timeout is a safety release only, so a read that waits for it is a failure)."""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def read_while_a_writer_holds(vault: Any, read: Callable[[], T]) -> tuple[T, bool]:
    """(what ``read()`` returned, whether it returned while the writer still held the vault)."""
    holding, done, released = threading.Event(), threading.Event(), threading.Event()

    def writer() -> None:
        with vault.transaction() as conn:  # a write in progress, holding the write lock
            conn.execute("DELETE FROM audit_checkpoints")
            holding.set()
            done.wait(timeout=10)
            released.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        result = read()
        return result, not released.is_set()
    finally:
        done.set()
        thread.join()
