"""A real vault that lets a test land another thread's work in the middle of a read path."""

from __future__ import annotations

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
