"""A real vault that lets a test land another thread's work in the middle of a read path, or see
another thread's transaction wait for a lock the test's transaction holds."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class AfterNextRead:
    """The real vault, with ``on_read`` run once just after the next ``query_one``: another
    thread's revocation or erasure landing between a read and what the reader does with it."""

    def __init__(self, vault: Any, on_read: Callable[[], Any]) -> None:
        self._vault, self._on_read = vault, on_read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vault, name)

    def query_one(self, *args: Any, **kwargs: Any) -> Any:
        row = self._vault.query_one(*args, **kwargs)
        on_read, self._on_read = self._on_read, None
        if on_read is not None:
            on_read()
        return row


def wait_until_someone_waits_for_a_lock(vault: Any) -> None:
    """From another connection (PostgreSQL): until a transaction of the database waits for a lock
    (an append, for the prune holding it; a retention's delete, for a row a rewrap changed). By
    the waiter's pid: a wait for a row names the holder's transaction id, no database."""
    seen = []

    def poll():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if vault.query_one("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid IN "
                               "(SELECT pid FROM pg_stat_activity WHERE datname = current_database())")[0]:
                seen.append(True)
                return
            time.sleep(0.02)
    poller = threading.Thread(target=poll)
    poller.start()
    poller.join()
    assert seen, "no transaction waited for the lock held"


class BeforeNextWrite:
    """The real vault, with ``on_write`` run once just before the next ``write``: another
    thread's work landing while a writer is about to commit."""

    def __init__(self, vault: Any, on_write: Callable[[], Any]) -> None:
        self._vault, self._on_write = vault, on_write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vault, name)

    def write(self, *args: Any, **kwargs: Any) -> Any:
        on_write, self._on_write = self._on_write, None
        if on_write is not None:
            on_write()
        return self._vault.write(*args, **kwargs)
