"""Migrations of ``evolution_metrics.db``.

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

from twin.storage import Migration

# Same fixed-width form as twin.storage.timestamps.to_db; 'now' is evaluated once per statement.
_NOW = "(strftime('%Y-%m-%dT%H:%M:%S', 'now') || substr(strftime('%f', 'now'), 3) || '000Z')"


_ISO_GLOB = ("'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T"
             "[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'")


def _iso(column: str, *, nullable: bool = False) -> str:
    if nullable:
        return f"{column} TEXT CHECK ({column} IS NULL OR {column} GLOB {_ISO_GLOB})"
    return f"{column} TEXT NOT NULL DEFAULT {_NOW} CHECK ({column} GLOB {_ISO_GLOB})"


def _json(column: str) -> str:
    return f"{column} TEXT CHECK ({column} IS NULL OR json_valid({column}))"


def _non_negative(column: str) -> str:
    return f"{column} REAL CHECK ({column} IS NULL OR {column} >= 0)"


V1_UP = f"""
CREATE TABLE evolution_rounds (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    round_number       INTEGER NOT NULL CHECK (round_number >= 0),
    generation         INTEGER NOT NULL CHECK (generation >= 0),
    {_iso("timestamp")},
    population_size    INTEGER CHECK (population_size IS NULL OR population_size >= 0),
    mutation_rate      REAL CHECK (mutation_rate IS NULL OR mutation_rate BETWEEN 0 AND 1),
    selection_pressure REAL CHECK (selection_pressure IS NULL OR selection_pressure >= 0),
    status             TEXT NOT NULL DEFAULT 'running'
                       CHECK (status IN ('running', 'completed', 'failed', 'aborted')),
    {_json("metadata")},
    {_iso("finished_at", nullable=True)}
);
CREATE UNIQUE INDEX idx_evolution_rounds_number ON evolution_rounds (round_number, generation);

CREATE TABLE fitness_metrics (
    id                  INTEGER PRIMARY KEY,
    round_id            INTEGER NOT NULL REFERENCES evolution_rounds (id) ON DELETE CASCADE,
    agent_id            TEXT NOT NULL CHECK (length(agent_id) BETWEEN 1 AND 200),
    fitness_score       REAL NOT NULL,
    {_json("performance_metrics")},
    {_json("resource_usage")},
    {_iso("timestamp")}
);
CREATE UNIQUE INDEX idx_fitness_agent ON fitness_metrics (agent_id, round_id);
CREATE INDEX idx_fitness_score ON fitness_metrics (round_id, fitness_score DESC, agent_id);

CREATE TABLE resource_metrics (
    id              INTEGER PRIMARY KEY,
    round_id        INTEGER NOT NULL REFERENCES evolution_rounds (id) ON DELETE CASCADE,
    {_non_negative("cpu_usage")},
    {_non_negative("memory_usage_mb")},
    {_non_negative("network_io_kb")},
    {_non_negative("disk_io_kb")},
    {_non_negative("gpu_usage")},
    {_iso("timestamp")}
);
CREATE INDEX idx_resource_timestamp ON resource_metrics (timestamp);
CREATE INDEX idx_resource_round ON resource_metrics (round_id, timestamp);

CREATE TABLE selection_outcomes (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    round_id         INTEGER NOT NULL REFERENCES evolution_rounds (id) ON DELETE CASCADE,
    parent_agent_id  TEXT NOT NULL CHECK (length(parent_agent_id) BETWEEN 1 AND 200),
    child_agent_id   TEXT CHECK (child_agent_id IS NULL OR length(child_agent_id) BETWEEN 1 AND 200),
    selection_method TEXT,
    {_json("crossover_points")},
    mutation_applied INTEGER NOT NULL DEFAULT 0 CHECK (mutation_applied IN (0, 1)),
    survival_reason  TEXT,
    {_iso("timestamp")},
    CHECK (child_agent_id IS NULL OR child_agent_id <> parent_agent_id)
);
CREATE INDEX idx_selection_parent ON selection_outcomes (parent_agent_id, child_agent_id);
CREATE INDEX idx_selection_child ON selection_outcomes (child_agent_id, parent_agent_id);
CREATE INDEX idx_selection_round ON selection_outcomes (round_id);
"""

V1_DOWN = """
DROP TABLE selection_outcomes;
DROP TABLE resource_metrics;
DROP TABLE fitness_metrics;
DROP TABLE evolution_rounds;
"""

# v2: how many fitness rows each round has received, moved in the same transaction as the
# rows: the generation the Redis leaderboard cache (twin.evolution.leaderboard_cache) checks,
# so rows written by any process, even while Redis was away, are never missing from it.
V2_UP = "ALTER TABLE evolution_rounds ADD COLUMN fitness_writes INTEGER NOT NULL DEFAULT 0;"
V2_DOWN = "ALTER TABLE evolution_rounds DROP COLUMN fitness_writes;"

MIGRATIONS = [
    Migration(1, "seed schema: rounds, fitness, resources, selection outcomes", V1_UP, V1_DOWN,
              "seed tables with CHECKs, cascades, ISO-8601 UTC timestamps, covering leaderboard index"),
    Migration(2, "fitness write counter", V2_UP, V2_DOWN,
              "per-round count of fitness rows, the leaderboard cache's generation"),
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
}
