"""The ledger's read cache, validated against the database on every read.

A cached result is served only when the ledger's version read from the database (head id
and cleanup count, one primary-key lookup) equals the version it was cached at. Every write,
in this process or any other, changes that version, so a read after a write always sees it.
Entries are immutable, so single entries stay valid until a cleanup; the full ledger is
extended with just the new entries when only appends happened since it was cached.
Callers get copies: mutating a returned entry never changes what the next caller sees.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, NamedTuple

Entry = dict[str, Any]


class LedgerVersion(NamedTuple):
    """What changes on every write: appends move ``head_id``, cleanups bump ``cleanup_count``."""

    head_id: int
    cleanup_count: int


def _not_older(candidate: LedgerVersion, current: LedgerVersion | None) -> bool:
    # Both fields only ever grow, so "not older" is a per-field comparison.
    return current is None or (candidate.head_id >= current.head_id
                               and candidate.cleanup_count >= current.cleanup_count)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (several times faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def copy_entry(entry: Entry) -> Entry:
    copied = dict(entry)
    copied["features"] = copy_json(entry["features"])
    return copied


class LedgerCache:
    """Thread-safe caches of the full ledger, single entries and per-node queries."""

    def __init__(self, *, max_ledger_entries: int = 100_000, max_items: int = 256) -> None:
        self._lock = threading.Lock()
        self._max_ledger_entries = max_ledger_entries
        self._max_items = max_items
        self._ledger: tuple[LedgerVersion, list[Entry]] | None = None
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._entries_cleanup_count: int | None = None
        self._node_queries: OrderedDict[tuple[str, int | None], list[Entry]] = OrderedDict()
        self._node_queries_version: LedgerVersion | None = None
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget everything (called after this process writes, to free memory early)."""
        with self._lock:
            self._ledger = None
            self._entries.clear()
            self._node_queries.clear()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses}

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    # -- the full ledger ----------------------------------------------------------------

    def ledger(self) -> tuple[LedgerVersion, list[Entry]] | None:
        """The cached full ledger and its version, whatever that version is (caller compares)."""
        with self._lock:
            return self._ledger

    def store_ledger(self, version: LedgerVersion, entries: list[Entry], *, hit: bool) -> None:
        with self._lock:
            self._count(hit)
            if self._ledger is not None and not _not_older(version, self._ledger[0]):
                return  # a slower reader must not replace a fresher result
            self._ledger = (version, entries) if len(entries) <= self._max_ledger_entries else None

    # -- single entries -----------------------------------------------------------------

    def entry(self, version: LedgerVersion, entry_id: int) -> Entry | None:
        with self._lock:
            if self._entries_cleanup_count != version.cleanup_count:
                self._entries.clear()
                self._entries_cleanup_count = version.cleanup_count
            found = self._entries.get(entry_id)
            if found is not None:
                self._entries.move_to_end(entry_id)
            self._count(found is not None)
            return found

    def store_entry(self, version: LedgerVersion, entry: Entry) -> None:
        with self._lock:
            if self._entries_cleanup_count != version.cleanup_count:
                stale = (self._entries_cleanup_count is not None
                         and version.cleanup_count < self._entries_cleanup_count)
                if stale:
                    return
                self._entries.clear()
                self._entries_cleanup_count = version.cleanup_count
            self._entries[entry["id"]] = entry
            while len(self._entries) > self._max_items:
                self._entries.popitem(last=False)

    # -- per-node queries ---------------------------------------------------------------

    def node_query(self, version: LedgerVersion, key: tuple[str, int | None]) -> list[Entry] | None:
        with self._lock:
            if self._node_queries_version != version:
                self._node_queries.clear()
                self._node_queries_version = version
            found = self._node_queries.get(key)
            if found is not None:
                self._node_queries.move_to_end(key)
            self._count(found is not None)
            return found

    def store_node_query(self, version: LedgerVersion, key: tuple[str, int | None],
                         entries: list[Entry]) -> None:
        with self._lock:
            if self._node_queries_version != version:
                if not _not_older(version, self._node_queries_version):
                    return
                self._node_queries.clear()
                self._node_queries_version = version
            self._node_queries[key] = entries
            while len(self._node_queries) > self._max_items:
                self._node_queries.popitem(last=False)
