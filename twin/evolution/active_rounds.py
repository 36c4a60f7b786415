"""The running rounds of ``EvolutionStore``, optionally through the Redis cache of active rounds
(``round_cache``): every start, finish and delete of a round moves ``evolution_state``'s
rounds version in its transaction and writes what it left running through after the commit."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from .records import Round, round_from_row

if TYPE_CHECKING:
    from twin.storage import Backend

    from .round_cache import ActiveRoundCache


class ActiveRounds:
    """Mixed into ``EvolutionStore``, which provides ``db``, ``rounds_cache`` and ``_local``."""

    db: "Backend"
    rounds_cache: "ActiveRoundCache | None"
    _local: threading.local

    def active_rounds(self) -> list[Round]:
        """The running rounds, latest first: from the Redis cache when it holds the database's
        current rounds version, else from the database (``round_cache``)."""
        if self.rounds_cache is not None:
            version = self.db.query_one("SELECT rounds_version FROM evolution_state WHERE singleton = 1")[0]
            cached = self.rounds_cache.get(version)
            if cached is not None:
                return cached
        with self.db.transaction(immediate=False) as conn:
            version, rounds = self._running(conn)
        if self.rounds_cache is not None:
            self.rounds_cache.store(version, rounds)
        return rounds

    @staticmethod
    def _running(conn: Any) -> tuple[int, list[Round]]:
        version = conn.execute("SELECT rounds_version FROM evolution_state WHERE singleton = 1").fetchone()[0]
        rows = conn.execute("SELECT * FROM evolution_rounds WHERE status = 'running' "
                            "ORDER BY round_number DESC, generation DESC").fetchall()
        return version, [round_from_row(r) for r in rows]

    def _rounds_changed(self, conn: Any) -> None:
        """Move the rounds version, and note what this transaction leaves running (written
        through to Redis after the commit by ``_write_rounds``)."""
        conn.execute("UPDATE evolution_state SET rounds_version = rounds_version + 1 WHERE singleton = 1")
        if self.rounds_cache is not None:
            self._local.committed = self._running(conn)

    def _write_rounds(self, fn: Callable[[Any], Any]) -> Any:
        self._local.committed = None
        result = self.db.write(fn)
        committed, self._local.committed = self._local.committed, None
        if committed is not None and self.rounds_cache is not None:
            self.rounds_cache.store(*committed)
        return result
