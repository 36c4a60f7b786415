"""Migrations of ``evolution_metrics.db`` (SQLCipher) and the ``evolution_metrics`` schema
(PostgreSQL): one ordered list, each step in both dialects.

v1 is the seed schema (rounds, fitness, resources, selection outcomes, the seed's indexes),
tightened where the seed is weak:

- Timestamps are ISO-8601 UTC text of one fixed width (``2026-11-22T02:30:00.123456Z``, the
  format of ``twin.storage.timestamps``), enforced by a CHECK. The seed's
  ``CURRENT_TIMESTAMP`` gives ``2026-11-22 02:30:00`` (no zone, second precision), which sorts
  wrongly against ISO strings and cannot order a burst of samples; with one width, text order
  is time order, so range queries are plain index range scans.
- ``ON DELETE CASCADE`` on every child of ``evolution_rounds``: deleting a round removes its
  fitness, resource and selection rows instead of failing (or leaving orphans with FKs off).
  Each child's ``round_id`` leads an index so the cascade is not a full scan.
- CHECK constraints: round/generation/population non-negative, ``mutation_rate`` in 0..1,
  ``status`` an enum, JSON columns valid JSON, resource figures non-negative,
  ``mutation_applied`` a real boolean, and a child cannot be its own parent.
- ``UNIQUE (round_number, generation)`` is the seed's ``idx_evolution_rounds_number`` made
  unique, rather than a constraint plus a second index on the same columns.
- ``finished_at`` records when a round left ``running``.
- One fitness row per (round, agent): ``UNIQUE (agent_id, round_id)``. The seed allows
  duplicates, which makes a leaderboard list the same agent twice. The unique index leads with
  ``agent_id`` so it doubles as the index of an agent's fitness history (the seed's
  ``idx_fitness_agent``), keeping the high-frequency insert path at two secondary indexes.
- The leaderboard index ``(round_id, fitness_score DESC, agent_id)`` replaces the seed's
  ``idx_fitness_score`` (on the score alone, useless for a per-round top-N): it covers the
  top-N query, which reads the first N index entries and never touches the table.
- High-volume tables (fitness, resources) use plain ``INTEGER PRIMARY KEY`` rather than
  ``AUTOINCREMENT``: it skips a ``sqlite_sequence`` update per row, and rows are never
  deleted-then-reused in a way that would matter (rows go only with their round).
"""

from twin.storage import POSTGRESQL, SQLITE, Dialect, Migration

# SQLite's text of v1 is frozen (databases were created from it): the helpers below give that
# exact text for SQLite and the same schema in PostgreSQL's terms (DIALECT.md): identity
# columns, BIGINT, DOUBLE PRECISION, JSONB (which validates itself), the dialect's ``now``
# default and a regular expression where SQLite checks the timestamp format with GLOB.
# A high-volume table's key: SQLite's rowid alias (no sqlite_sequence update per row).
_ROWID_KEY = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": POSTGRESQL.identity}


def _json(d: Dialect, column: str) -> str:
    return f"{column} TEXT CHECK ({column} IS NULL OR json_valid({column}))" if d is SQLITE \
        else f"{column} JSONB"


def _non_negative(d: Dialect, column: str) -> str:
    return f"{column} {d.float} CHECK ({column} IS NULL OR {column} >= 0)"


def _v1_up(d: Dialect) -> str:
    return f"""
CREATE TABLE evolution_rounds (
    id                 {d.identity},
    round_number       {d.bigint} NOT NULL CHECK (round_number >= 0),
    generation         {d.bigint} NOT NULL CHECK (generation >= 0),
    {d.timestamp_column("timestamp")},
    population_size    {d.bigint} CHECK (population_size IS NULL OR population_size >= 0),
    mutation_rate      {d.float} CHECK (mutation_rate IS NULL OR mutation_rate BETWEEN 0 AND 1),
    selection_pressure {d.float} CHECK (selection_pressure IS NULL OR selection_pressure >= 0),
    status             TEXT NOT NULL DEFAULT 'running'
                       CHECK (status IN ('running', 'completed', 'failed', 'aborted')),
    {_json(d, "metadata")},
    {d.timestamp_column("finished_at", nullable=True)}
);
CREATE UNIQUE INDEX idx_evolution_rounds_number ON evolution_rounds (round_number, generation);

CREATE TABLE fitness_metrics (
    id                  {_ROWID_KEY[d.name]},
    round_id            {d.bigint} NOT NULL REFERENCES evolution_rounds (id) ON DELETE CASCADE,
    agent_id            TEXT NOT NULL CHECK (length(agent_id) BETWEEN 1 AND 200),
    fitness_score       {d.float} NOT NULL,
    {_json(d, "performance_metrics")},
    {_json(d, "resource_usage")},
    {d.timestamp_column("timestamp")}
);
CREATE UNIQUE INDEX idx_fitness_agent ON fitness_metrics (agent_id, round_id);
CREATE INDEX idx_fitness_score ON fitness_metrics (round_id, fitness_score DESC, agent_id);

CREATE TABLE resource_metrics (
    id              {_ROWID_KEY[d.name]},
    round_id        {d.bigint} NOT NULL REFERENCES evolution_rounds (id) ON DELETE CASCADE,
    {_non_negative(d, "cpu_usage")},
    {_non_negative(d, "memory_usage_mb")},
    {_non_negative(d, "network_io_kb")},
    {_non_negative(d, "disk_io_kb")},
    {_non_negative(d, "gpu_usage")},
    {d.timestamp_column("timestamp")}
);
CREATE INDEX idx_resource_timestamp ON resource_metrics (timestamp);
CREATE INDEX idx_resource_round ON resource_metrics (round_id, timestamp);

CREATE TABLE selection_outcomes (
    id               {d.identity},
    round_id         {d.bigint} NOT NULL REFERENCES evolution_rounds (id) ON DELETE CASCADE,
    parent_agent_id  TEXT NOT NULL CHECK (length(parent_agent_id) BETWEEN 1 AND 200),
    child_agent_id   TEXT CHECK (child_agent_id IS NULL OR length(child_agent_id) BETWEEN 1 AND 200),
    selection_method TEXT,
    {_json(d, "crossover_points")},
    mutation_applied {d.bigint} NOT NULL DEFAULT 0 CHECK (mutation_applied IN (0, 1)),
    survival_reason  TEXT,
    {d.timestamp_column("timestamp")},
    CHECK (child_agent_id IS NULL OR child_agent_id <> parent_agent_id)
);
CREATE INDEX idx_selection_parent ON selection_outcomes (parent_agent_id, child_agent_id);
CREATE INDEX idx_selection_child ON selection_outcomes (child_agent_id, parent_agent_id);
CREATE INDEX idx_selection_round ON selection_outcomes (round_id);
"""


V1_UP = {"sqlite": _v1_up(SQLITE), "postgresql": _v1_up(POSTGRESQL)}

V1_DOWN = """
DROP TABLE selection_outcomes;
DROP TABLE resource_metrics;
DROP TABLE fitness_metrics;
DROP TABLE evolution_rounds;
"""

# v2: how many fitness rows each round has received, moved in the same transaction as the
# rows: the generation the Redis leaderboard cache (twin.evolution.leaderboard_cache) checks,
# so rows written by any process, even while Redis was away, are never missing from it.
V2_UP = {d.name: f"ALTER TABLE evolution_rounds ADD COLUMN fitness_writes {d.bigint} NOT NULL DEFAULT 0;"
         for d in (SQLITE, POSTGRESQL)}
V2_DOWN = "ALTER TABLE evolution_rounds DROP COLUMN fitness_writes;"

# v3: a version of the set of rounds, moved by every start, finish and delete of a round in
# the same transaction: the tag the Redis cache of active rounds (round_cache) is checked by.
V3_UP = {d.name: f"""CREATE TABLE evolution_state (
    singleton      {d.bigint} PRIMARY KEY CHECK (singleton = 1),
    rounds_version {d.bigint} NOT NULL CHECK (rounds_version >= 0)
);
INSERT INTO evolution_state (singleton, rounds_version) VALUES (1, 0);""" for d in (SQLITE, POSTGRESQL)}
V3_DOWN = "DROP TABLE evolution_state;"

MIGRATIONS = [
    Migration(1, "seed schema: rounds, fitness, resources, selection outcomes", V1_UP, V1_DOWN,
              "seed tables with CHECKs, cascades, ISO-8601 UTC timestamps, covering leaderboard index"),
    Migration(2, "fitness write counter", V2_UP, V2_DOWN,
              "per-round count of fitness rows, the leaderboard cache's generation"),
    Migration(3, "rounds version", V3_UP, V3_DOWN,
              "a version of the set of rounds, the active-round cache's tag"),
]

# -- personal data declarations (see compliance.registry) ----------------------------------

# Agents here are evolved software agents, not people; nothing in this database is about a
# data subject, so export, erasure and retention have nothing to do in it.
NO_PERSONAL_DATA = {
    "schema_version": "migration bookkeeping",
    "evolution_rounds": "evolution run parameters of software agents",
    "fitness_metrics": "fitness scores of software agents",
    "resource_metrics": "machine resource utilisation samples",
    "selection_outcomes": "parent/child lineage of software agents",
    "evolution_state": "a version counter of the rounds",
}
