"""The evolution-metrics store: rounds, fitness, resource samples, selection outcomes.

Writes come in batches: every ``record_*`` call validates its whole batch in Python first,
then inserts it inside one transaction with ``twin.storage.bulk.insert_rows`` (multi-row
INSERTs on SQLCipher, COPY on PostgreSQL), so a batch is written entirely or not at all and
costs one commit however many rows it holds.

    >>> store = EvolutionStore(db)
    >>> rnd = store.start_round(round_number=1, generation=0, population_size=64)
    >>> store.record_fitness(rnd.id, [("agent-1", 0.91), ("agent-2", 0.87)])
    >>> store.leaderboard(rnd.id, 10)
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from twin.storage import Backend, IntegrityError
from twin.storage.bulk import insert_rows
from twin.storage.timestamps import to_db, utc_now

from .active_rounds import ActiveRounds
from .errors import (DuplicateFitnessError, DuplicateRoundError, EvolutionValidationError,
                     UnknownRoundError)
from .records import (RESOURCE_FIELDS, round_from_row, ROUND_STATUSES, FitnessPoint, LeaderboardEntry, LineageLink,
                      ResourceSample, Round, SelectionOutcome, agent_id_param, fitness_params,
                      json_param, json_value, optional_number, resource_params, selection_params,
                      timestamp_param)

log = logging.getLogger(__name__)

_FITNESS_COLUMNS = ("round_id", "agent_id", "fitness_score", "performance_metrics",
                    "resource_usage", "timestamp")
_RESOURCE_COLUMNS = ("round_id", *RESOURCE_FIELDS, "timestamp")
_SELECTION_COLUMNS = ("round_id", "parent_agent_id", "child_agent_id", "selection_method",
                      "crossover_points", "mutation_applied", "survival_reason", "timestamp")

_LINEAGE_SQL = {
    "ancestors": """
        WITH RECURSIVE walk(parent, child, round_id, depth) AS (
            SELECT parent_agent_id, child_agent_id, round_id, 1
              FROM selection_outcomes WHERE child_agent_id = :agent
            UNION
            SELECT s.parent_agent_id, s.child_agent_id, s.round_id, walk.depth + 1
              FROM selection_outcomes s JOIN walk ON s.child_agent_id = walk.parent
             WHERE walk.depth < :max_depth
        )
        SELECT parent, child, round_id, MIN(depth) AS depth FROM walk
         GROUP BY parent, child, round_id ORDER BY depth, parent, child, round_id""",
    "descendants": """
        WITH RECURSIVE walk(parent, child, round_id, depth) AS (
            SELECT parent_agent_id, child_agent_id, round_id, 1
              FROM selection_outcomes
             WHERE parent_agent_id = :agent AND child_agent_id IS NOT NULL
            UNION
            SELECT s.parent_agent_id, s.child_agent_id, s.round_id, walk.depth + 1
              FROM selection_outcomes s JOIN walk ON s.parent_agent_id = walk.child
             WHERE s.child_agent_id IS NOT NULL AND walk.depth < :max_depth
        )
        SELECT parent, child, round_id, MIN(depth) AS depth FROM walk
         GROUP BY parent, child, round_id ORDER BY depth, parent, child, round_id""",
}


def _non_negative_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EvolutionValidationError(f"{what} must be a non-negative integer, got {value!r}")
    return value


if TYPE_CHECKING:
    from .leaderboard_cache import LeaderboardCache
    from .round_cache import ActiveRoundCache


class EvolutionStore(ActiveRounds):
    """Evolution metrics in one ``evolution_metrics`` database (already migrated)."""

    def __init__(self, db: Backend, *, cache: "LeaderboardCache | None" = None,
                 rounds_cache: "ActiveRoundCache | None" = None) -> None:
        """``cache``: the optional Redis leaderboard cache (``LeaderboardCache.from_env()``);
        ``rounds_cache``: the optional Redis cache of active rounds (``ActiveRoundCache.from_env()``)."""
        self.db = db
        self.cache = cache
        self.rounds_cache = rounds_cache
        self._local = threading.local()  # what this thread's last round write left running

    def __repr__(self) -> str:
        return f"EvolutionStore({self.db!r})"

    # -- rounds --------------------------------------------------------------------------

    def start_round(self, round_number: int, generation: int, *, population_size: int | None = None,
                    mutation_rate: float | None = None, selection_pressure: float | None = None,
                    metadata: Any = None, started_at: datetime | str | None = None) -> Round:
        """Open a round (status ``running``). ``DuplicateRoundError`` if it exists already."""
        params = (
            _non_negative_int(round_number, "round_number"),
            _non_negative_int(generation, "generation"),
            timestamp_param(started_at, to_db(utc_now())),
            None if population_size is None else _non_negative_int(population_size, "population_size"),
            optional_number(mutation_rate, "mutation_rate", minimum=0, maximum=1),
            optional_number(selection_pressure, "selection_pressure", minimum=0),
            json_param(metadata, "metadata"),
        )

        def insert(conn: Any) -> int:
            round_id = conn.execute(
                "INSERT INTO evolution_rounds (round_number, generation, timestamp, population_size, "
                "mutation_rate, selection_pressure, metadata) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                params).fetchone()[0]
            self._rounds_changed(conn)
            return round_id

        try:
            round_id = self._write_rounds(insert)
        except IntegrityError:
            raise DuplicateRoundError(
                f"round {round_number} generation {generation} exists already") from None
        return self.get_round(round_id)

    def finish_round(self, round_id: int, status: str = "completed",
                     finished_at: datetime | str | None = None) -> Round:
        """Close a round with a final status (``completed``, ``failed`` or ``aborted``)."""
        if status not in ROUND_STATUSES or status == "running":
            raise EvolutionValidationError(
                f"final status must be one of {[s for s in ROUND_STATUSES if s != 'running']}")
        moment = timestamp_param(finished_at, to_db(utc_now()))
        def finish(conn: Any) -> int:
            updated = conn.execute("UPDATE evolution_rounds SET status = ?, finished_at = ? WHERE id = ?",
                                   (status, moment, round_id)).rowcount
            if updated:
                self._rounds_changed(conn)
            return updated

        updated = self._write_rounds(finish)
        if not updated:
            raise UnknownRoundError(f"no evolution round {round_id}")
        return self.get_round(round_id)

    def get_round(self, round_id: int) -> Round:
        """One round by id (``UnknownRoundError`` if there is none)."""
        row = self.db.query_one("SELECT * FROM evolution_rounds WHERE id = ?", (round_id,))
        if row is None:
            raise UnknownRoundError(f"no evolution round {round_id}")
        return round_from_row(row)

    def find_round(self, round_number: int, generation: int) -> Round | None:
        """The round with that number and generation, or None."""
        row = self.db.query_one(
            "SELECT * FROM evolution_rounds WHERE round_number = ? AND generation = ?",
            (round_number, generation))
        return None if row is None else round_from_row(row)

    def rounds(self, *, status: str | None = None, limit: int = 100) -> list[Round]:
        """Rounds, latest (highest round number, then generation) first."""
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        rows = self.db.query(f"SELECT * FROM evolution_rounds {where} "
                             "ORDER BY round_number DESC, generation DESC LIMIT ?", (*params, limit))
        return [round_from_row(r) for r in rows]

    def delete_round(self, round_id: int) -> bool:
        """Delete a round and (by cascade) all its fitness, resource and selection rows."""
        def delete(conn: Any) -> int:
            deleted = conn.execute("DELETE FROM evolution_rounds WHERE id = ?", (round_id,)).rowcount
            if deleted:
                self._rounds_changed(conn)
            return deleted

        return bool(self._write_rounds(delete))

    # -- batched writes ------------------------------------------------------------------

    def _insert_batch(self, round_id: int, table: str, columns: tuple[str, ...],
                      params: list[tuple[Any, ...]]) -> int:
        def insert(conn: Any) -> int:
            exists = conn.execute("SELECT 1 FROM evolution_rounds WHERE id = ?", (round_id,)).fetchone()
            if exists is None:
                raise UnknownRoundError(f"no evolution round {round_id}")
            return insert_rows(conn, table, columns, params)

        if not params:
            return 0
        return self.db.write(insert)

    @staticmethod
    def _validated(round_id: int, rows: Iterable[Any],
                   to_params: Callable[[Any, int, str, int], tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        _non_negative_int(round_id, "round_id")
        now = to_db(utc_now())
        return [to_params(row, round_id, now, i) for i, row in enumerate(rows)]

    def record_fitness(self, round_id: int, rows: Iterable[Any]) -> int:
        """Insert a batch of fitness rows for one round; returns how many were written.

        A row is a ``FitnessRecord``, a tuple ``(agent_id, score[, performance_metrics[,
        resource_usage]])`` or a mapping with those keys (and optionally ``timestamp``).
        All or nothing: ``EvolutionValidationError`` (bad row, with its index),
        ``UnknownRoundError``, or ``DuplicateFitnessError`` if an agent already has a score in
        this round or appears twice in the batch.
        """
        params = self._validated(round_id, rows, fitness_params)
        # Inserting in agent_id order turns the writes into idx_fitness_agent (agent_id,
        # round_id) into appends along the index instead of random page visits: ~20% more
        # rows/s on SQLCipher. It also puts duplicates next to each other.
        params.sort(key=itemgetter(1))
        for previous, current in zip(params, params[1:]):
            if previous[1] == current[1]:
                raise DuplicateFitnessError(f"agent {current[1]!r} appears twice in the batch")
        try:
            written, writes = self._insert_fitness(round_id, params)
        except IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise DuplicateFitnessError(
                    f"an agent of this batch already has a fitness row in round {round_id}") from None
            raise
        if self.cache is not None and written:
            self.cache.store(round_id, [(p[1], p[2]) for p in params], writes - written, writes)
        return written

    def _insert_fitness(self, round_id: int, params: list[tuple[Any, ...]]) -> tuple[int, int]:
        """Insert the rows and count them on their round, in one transaction: (rows, the
        round's fitness_writes after)."""
        if not params:
            return 0, 0

        def insert(conn: Any) -> tuple[int, int]:
            row = conn.execute("UPDATE evolution_rounds SET fitness_writes = fitness_writes + ? "
                               "WHERE id = ? RETURNING fitness_writes", (len(params), round_id)).fetchone()
            if row is None:
                raise UnknownRoundError(f"no evolution round {round_id}")
            insert_rows(conn, "fitness_metrics", _FITNESS_COLUMNS, params)
            return len(params), row[0]

        return self.db.write(insert)

    def record_resources(self, round_id: int, samples: ResourceSample | Mapping[str, Any]
                         | Iterable[ResourceSample | Mapping[str, Any]]) -> int:
        """Insert one resource sample or a batch of them; returns how many were written.

        Figures are non-negative; a sample needs at least one. ``timestamp`` defaults to now.
        """
        if isinstance(samples, (ResourceSample, Mapping)):
            samples = [samples]
        return self._insert_batch(round_id, "resource_metrics", _RESOURCE_COLUMNS,
                                  self._validated(round_id, samples, resource_params))

    def record_selection(self, round_id: int, outcomes: SelectionOutcome | Mapping[str, Any]
                         | Iterable[SelectionOutcome | Mapping[str, Any]]) -> int:
        """Insert one selection outcome or a batch of them; returns how many were written."""
        if isinstance(outcomes, (SelectionOutcome, Mapping)):
            outcomes = [outcomes]
        return self._insert_batch(round_id, "selection_outcomes", _SELECTION_COLUMNS,
                                  self._validated(round_id, outcomes, selection_params))

    # -- queries -------------------------------------------------------------------------

    def leaderboard(self, round_id: int, n: int = 10) -> list[LeaderboardEntry]:
        """The ``n`` best agents of a round, best first (ties broken by agent id).

        Served entirely from the covering index ``idx_fitness_score``.
        """
        _non_negative_int(n, "n")
        if self.cache is not None and n > 0:
            return self._cached_leaderboard(round_id, n)
        rows = self.db.query(
            "SELECT agent_id, fitness_score FROM fitness_metrics WHERE round_id = ? "
            "ORDER BY fitness_score DESC, agent_id LIMIT ?", (round_id, n))
        return [LeaderboardEntry(rank, r["agent_id"], r["fitness_score"])
                for rank, r in enumerate(rows, start=1)]

    def _cached_leaderboard(self, round_id: int, n: int) -> list[LeaderboardEntry]:
        """From Redis when its set reflects every fitness row of the round, else rebuilt from
        one database snapshot (``leaderboard_cache``)."""
        assert self.cache is not None
        row = self.db.query_one("SELECT fitness_writes FROM evolution_rounds WHERE id = ?", (round_id,))
        top = None if row is None else self.cache.top(round_id, n, row[0])
        if top is None:
            with self.db.transaction(immediate=False) as conn:
                state = conn.execute("SELECT fitness_writes FROM evolution_rounds WHERE id = ?",
                                     (round_id,)).fetchone()
                scores = [(r[0], r[1]) for r in conn.execute(
                    "SELECT agent_id, fitness_score FROM fitness_metrics WHERE round_id = ? "
                    "ORDER BY fitness_score DESC, agent_id", (round_id,))]
            if state is not None:
                self.cache.store(round_id, scores, None, state[0])
            top = scores[:n]
        return [LeaderboardEntry(rank, agent_id, score) for rank, (agent_id, score) in enumerate(top, start=1)]

    def fitness_history(self, agent_id: str, *, limit: int | None = None) -> list[FitnessPoint]:
        """An agent's fitness in every round it was scored in, oldest round first."""
        agent_id_param(agent_id)
        sql = ("SELECT f.round_id, r.round_number, r.generation, f.fitness_score, f.timestamp "
               "FROM fitness_metrics f JOIN evolution_rounds r ON r.id = f.round_id "
               "WHERE f.agent_id = ? ORDER BY r.round_number, r.generation")
        rows = self.db.query(sql, (agent_id,)) if limit is None else \
            self.db.query(sql + " LIMIT ?", (agent_id, limit))
        return [FitnessPoint(r["round_id"], r["round_number"], r["generation"], r["fitness_score"],
                             r["timestamp"]) for r in rows]

    def resource_series(self, start: datetime | str, end: datetime | str, *,
                        round_id: int | None = None) -> list[ResourceSample]:
        """Resource samples with ``start <= timestamp < end``, oldest first, optionally of one round."""
        lo, hi = timestamp_param(start, ""), timestamp_param(end, "")
        if lo > hi:
            raise EvolutionValidationError("start must not be after end")
        columns = f"round_id, {', '.join(RESOURCE_FIELDS)}, timestamp"
        if round_id is None:
            rows = self.db.query(f"SELECT {columns} FROM resource_metrics "
                                 "WHERE timestamp >= ? AND timestamp < ? ORDER BY timestamp, id",
                                 (lo, hi))
        else:
            rows = self.db.query(f"SELECT {columns} FROM resource_metrics WHERE round_id = ? "
                                 "AND timestamp >= ? AND timestamp < ? ORDER BY timestamp, id",
                                 (round_id, lo, hi))
        return [ResourceSample(**{name: r[name] for name in RESOURCE_FIELDS},
                               timestamp=r["timestamp"], round_id=r["round_id"]) for r in rows]

    def selection_outcomes(self, round_id: int) -> list[SelectionOutcome]:
        """Every selection outcome recorded for a round, in insertion order."""
        rows = self.db.query("SELECT * FROM selection_outcomes WHERE round_id = ? ORDER BY id",
                             (round_id,))
        return [SelectionOutcome(parent_agent_id=r["parent_agent_id"],
                                 child_agent_id=r["child_agent_id"],
                                 selection_method=r["selection_method"],
                                 crossover_points=json_value(r["crossover_points"]),
                                 mutation_applied=bool(r["mutation_applied"]),
                                 survival_reason=r["survival_reason"], timestamp=r["timestamp"],
                                 round_id=r["round_id"]) for r in rows]

    def children_of(self, parent_agent_id: str, *, round_id: int | None = None) -> list[str]:
        """The distinct children a parent produced (optionally in one round), sorted."""
        agent_id_param(parent_agent_id, "parent_agent_id")
        sql = ("SELECT DISTINCT child_agent_id FROM selection_outcomes "
               "WHERE parent_agent_id = ? AND child_agent_id IS NOT NULL")
        params: tuple[Any, ...] = (parent_agent_id,)
        if round_id is not None:
            sql, params = sql + " AND round_id = ?", (parent_agent_id, round_id)
        return [r[0] for r in self.db.query(sql + " ORDER BY child_agent_id", params)]

    def parents_of(self, child_agent_id: str) -> list[str]:
        """The distinct parents of a child (two after a crossover), sorted."""
        agent_id_param(child_agent_id, "child_agent_id")
        return [r[0] for r in self.db.query(
            "SELECT DISTINCT parent_agent_id FROM selection_outcomes WHERE child_agent_id = ? "
            "ORDER BY parent_agent_id", (child_agent_id,))]

    def lineage(self, agent_id: str, *, direction: str = "ancestors",
                max_depth: int = 100) -> list[LineageLink]:
        """Parent -> child links reachable from an agent, nearest generation first.

        ``direction="ancestors"`` walks up (parents, grandparents, ...), ``"descendants"``
        walks down. ``max_depth`` bounds the walk, so even a corrupted cyclic lineage ends.
        """
        agent_id_param(agent_id)
        if direction not in _LINEAGE_SQL:
            raise EvolutionValidationError("direction must be 'ancestors' or 'descendants'")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise EvolutionValidationError("max_depth must be a positive integer")
        rows = self.db.query(_LINEAGE_SQL[direction], {"agent": agent_id, "max_depth": max_depth})
        return [LineageLink(r["parent"], r["child"], r["round_id"], r["depth"]) for r in rows]
