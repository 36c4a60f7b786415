"""Statements and transactions counted at the driver, per thread, summed on demand.

A benchmark divides the difference of two ``snapshot()``s by the requests served in between
to report round trips per request. ``statements`` counts every statement the driver sends,
transaction control (BEGIN, COMMIT, SAVEPOINT...) included; an ``executemany`` is one.
``transactions`` counts top-level transactions begun. ``round_trips`` counts waits for the
server: on PostgreSQL a transaction's BEGIN travels with its first statement (one round trip
for two statements); on SQLite, in-process, it equals ``statements``.

Each thread increments its own counter (no lock on the hot path); only registering a new
thread and summing take the lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Counts:
    statements: int = 0
    transactions: int = 0
    round_trips: int = 0

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(self.statements - other.statements, self.transactions - other.transactions,
                      self.round_trips - other.round_trips)


class _ThreadCounts:
    __slots__ = ("statements", "transactions", "round_trips")

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0
        self.round_trips = 0


class StatementCounter:
    """Counts of one database object. ``enabled`` is False until ``enable()`` where counting
    costs something (SQLite: a trace callback per statement); PostgreSQL counts always."""

    def __init__(self, *, enabled: bool = False) -> None:
        self.enabled = enabled
        self._local = threading.local()
        self._all: list[_ThreadCounts] = []
        self._lock = threading.Lock()

    def enable(self) -> None:
        self.enabled = True

    def mine(self) -> _ThreadCounts:
        """This thread's counters (created on first use)."""
        counts = getattr(self._local, "counts", None)
        if counts is None:
            counts = self._local.counts = _ThreadCounts()
            with self._lock:
                self._all.append(counts)
        return counts

    def statement(self, transaction: bool = False, round_trip: bool = True) -> None:
        counts = self.mine()
        counts.statements += 1
        counts.transactions += transaction
        counts.round_trips += round_trip

    def sqlite_trace(self, sql: str) -> None:
        """A ``set_trace_callback`` hook: SQLite reports each statement it runs (statements
        inside triggers come as ``-- TRIGGER`` comments and are not round trips)."""
        if sql.startswith("--"):
            return
        self.statement(transaction=sql[:5].upper() == "BEGIN")

    def snapshot(self) -> Counts:
        """The totals over every thread so far."""
        with self._lock:
            return Counts(sum(c.statements for c in self._all), sum(c.transactions for c in self._all),
                          sum(c.round_trips for c in self._all))

    def this_thread(self) -> Counts:
        counts = self.mine()
        return Counts(counts.statements, counts.transactions, counts.round_trips)
