"""A small in-memory map whose entries expire, for what a process may remember of the vault
for a short while (verified tokens, unwrapped subject keys).

The one subtle part is a race with revocation: a thread reads a row, another thread deletes
or revokes it and forgets the entry, then the first thread stores what it read. ``put`` takes
the ``token()`` its caller took before reading, and stores nothing if anything was forgotten
since, so a forgotten entry never comes back from a read that predates the forgetting.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """At most ``max_entries`` entries, each kept ``seconds`` after it was put; when full, the
    entry put longest ago goes first. Safe to share between threads."""

    def __init__(self, seconds: float, max_entries: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()  # value, kept until
        self._lock = threading.Lock()
        self._forgets = 0

    def __repr__(self) -> str:  # never the keys or values: they may be key material
        return f"ExpiringCache({len(self._entries)} entries)"

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))

    def items(self) -> list[tuple[K, V]]:
        """Every entry, expired ones included (tests and inspection)."""
        return [(key, value) for key, (value, _) in list(self._entries.items())]

    def get(self, key: K) -> V | None:
        """The value put under ``key``, unless it has expired."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None and entry[1] > self._monotonic() else None

    def token(self) -> int:
        """Take before reading what ``put`` will store."""
        return self._forgets

    def put(self, key: K, value: V, token: int) -> None:
        """Remember ``value`` unless something was forgotten since ``token`` was taken (it may
        be this entry, revoked or destroyed meanwhile), or the cache keeps nothing."""
        if self._seconds <= 0 or self._max_entries <= 0:
            return
        with self._lock:
            if token != self._forgets:
                return
            self._entries.pop(key, None)
            while len(self._entries) >= self._max_entries:
                self._entries.popitem(last=False)
            self._entries[key] = (value, self._monotonic() + self._seconds)

    def forget(self, key: K) -> None:
        """Drop the entry under ``key``, and make earlier tokens stale."""
        with self._lock:
            self._forgets += 1
            self._entries.pop(key, None)

    def forget_matching(self, matches: Callable[[K, V], bool]) -> None:
        """Drop every entry ``matches`` accepts (one pass), and make earlier tokens stale."""
        with self._lock:
            self._forgets += 1
            for key in [k for k, (v, _) in self._entries.items() if matches(k, v)]:
                del self._entries[key]
