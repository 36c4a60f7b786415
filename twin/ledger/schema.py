"""Migrations of ``ledger.db`` (SQLCipher) and the ``ledger`` schema (PostgreSQL), each step in
both dialects.

v1 is the seed's ``ledger`` table, changed where the seed could not keep its promises:

- ``prev_hash`` and ``entry_hash`` make the ledger a hash chain (see ``twin.ledger.chain``);
  ``ledger_state`` keeps the head (last id and hash) so appends need no ``MAX(id)`` scan and
  a truncated tail is detectable, plus a ``cleanup_count`` that readers compare to decide
  whether their cache is still valid (cheaply, and across processes).
- ``id`` is assigned by the ledger (head + 1, under the write lock) instead of
  AUTOINCREMENT, because the id is part of the hashed content and must be known before the
  INSERT. Ids are never reused: the head never goes back, even when cleanup deletes the tail.
- ``ledger_checkpoints`` records the id and hash of the last entry of each run that cleanup
  deleted, so the chain stays verifiable after old entries are gone.
- CHECK constraints repeat the seed's validation rules (confidence 0..1, non-empty node_id,
  valid JSON features), so a writer that bypasses the API cannot store what it refuses.
- A trigger refuses UPDATE: ledger entries are immutable; only cleanup deletes.
- ``created_at`` is ISO-8601 UTC text with a fixed width (``CURRENT_TIMESTAMP`` has no zone).
- Indexes: the seed's ``UNIQUE(timestamp, node_id)`` already indexes ``timestamp`` first, so
  ``idx_ledger_timestamp`` would be a duplicate; ``idx_ledger_node_id`` becomes
  ``(node_id, timestamp DESC, id DESC)``, which serves "a node's newest entries" without a
  sort; ``idx_ledger_confidence`` is dropped because no query filters on confidence and every
  index slows the append path.
"""

from twin.storage import Migration

from .chain import GENESIS_HASH

V1_UP = f"""
CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY,
    timestamp   REAL NOT NULL CHECK (timestamp >= 0),
    node_id     TEXT NOT NULL CHECK (length(trim(node_id)) > 0 AND length(node_id) <= 256),
    features    TEXT NOT NULL CHECK (json_valid(features)),
    confidence  REAL NOT NULL CHECK (confidence BETWEEN 0.0 AND 1.0),
    created_at  TEXT NOT NULL,
    prev_hash   TEXT NOT NULL CHECK (length(prev_hash) = 64),
    entry_hash  TEXT NOT NULL CHECK (length(entry_hash) = 64),
    UNIQUE (timestamp, node_id)
);
CREATE INDEX idx_ledger_node_time ON ledger (node_id, timestamp DESC, id DESC);

CREATE TRIGGER ledger_entries_are_immutable BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;

CREATE TABLE ledger_checkpoints (
    id          INTEGER PRIMARY KEY,
    entry_hash  TEXT NOT NULL CHECK (length(entry_hash) = 64),
    created_at  TEXT NOT NULL
);

CREATE TABLE ledger_state (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    head_id       INTEGER NOT NULL CHECK (head_id >= 0),
    head_hash     TEXT NOT NULL CHECK (length(head_hash) = 64),
    cleanup_count INTEGER NOT NULL DEFAULT 0
);
INSERT INTO ledger_state (singleton, head_id, head_hash, cleanup_count)
VALUES (1, 0, '{GENESIS_HASH}', 0);
"""

V1_DOWN = """
DROP TABLE ledger_state;
DROP TABLE ledger_checkpoints;
DROP TRIGGER ledger_entries_are_immutable;
DROP TABLE ledger;
"""

# PostgreSQL: the same tables (DIALECT.md). ``features`` is ``json``, which validates and keeps
# the text exactly as written (``jsonb`` would re-space it, and the hash covers that text); the
# immutability trigger raises integrity_constraint_violation, an IntegrityError as SQLite's
# RAISE(ABORT) is.
V1_UP_POSTGRESQL = f"""
CREATE TABLE ledger (
    id          BIGINT PRIMARY KEY,
    timestamp   DOUBLE PRECISION NOT NULL CHECK (timestamp >= 0),
    node_id     TEXT NOT NULL CHECK (length(trim(node_id)) > 0 AND length(node_id) <= 256),
    features    JSON NOT NULL,
    confidence  DOUBLE PRECISION NOT NULL CHECK (confidence BETWEEN 0.0 AND 1.0),
    created_at  TEXT NOT NULL,
    prev_hash   TEXT NOT NULL CHECK (length(prev_hash) = 64),
    entry_hash  TEXT NOT NULL CHECK (length(entry_hash) = 64),
    UNIQUE (timestamp, node_id)
);
CREATE INDEX idx_ledger_node_time ON ledger (node_id, timestamp DESC, id DESC);

CREATE FUNCTION ledger_entries_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'ledger entries are immutable' USING ERRCODE = '23000'; END $$;
CREATE TRIGGER ledger_entries_are_immutable BEFORE UPDATE ON ledger
FOR EACH ROW EXECUTE FUNCTION ledger_entries_are_immutable();

CREATE TABLE ledger_checkpoints (
    id          BIGINT PRIMARY KEY,
    entry_hash  TEXT NOT NULL CHECK (length(entry_hash) = 64),
    created_at  TEXT NOT NULL
);

CREATE TABLE ledger_state (
    singleton     BIGINT PRIMARY KEY CHECK (singleton = 1),
    head_id       BIGINT NOT NULL CHECK (head_id >= 0),
    head_hash     TEXT NOT NULL CHECK (length(head_hash) = 64),
    cleanup_count BIGINT NOT NULL DEFAULT 0
);
INSERT INTO ledger_state (singleton, head_id, head_hash, cleanup_count)
VALUES (1, 0, '{GENESIS_HASH}', 0);
"""

V1_DOWN_POSTGRESQL = """
DROP TABLE ledger_state;
DROP TABLE ledger_checkpoints;
DROP TABLE ledger;
DROP FUNCTION ledger_entries_are_immutable();
"""

MIGRATIONS = [
    Migration(1, "hash-chained ledger", {"sqlite": V1_UP, "postgresql": V1_UP_POSTGRESQL},
              {"sqlite": V1_DOWN, "postgresql": V1_DOWN_POSTGRESQL},
              "seed ledger table plus hash chain, head state, cleanup checkpoints"),
]

# Personal-data declaration (see compliance.registry): the ledger records anomaly signatures
# of platform nodes, never data about learners.
NO_PERSONAL_DATA = {
    "schema_version": "migration bookkeeping",
    "ledger": "anomaly signatures of platform nodes (node ids, features, confidence); callers must "
              "not put learner identifiers in features",
    "ledger_checkpoints": "hashes of cleaned-up ledger entries",
    "ledger_state": "head id and hash of the chain",
}
