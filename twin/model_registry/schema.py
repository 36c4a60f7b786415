"""Migrations of ``model_registry.db``.

v1 is the seed's three tables (``model_registry``, ``performance_metrics``,
``training_history``), changed where the seed left room for inconsistency:

- ``UNIQUE (name, version)``: the seed allowed the same version twice.
- A partial unique index allows at most one active version per name (the seed's
  ``is_active`` flag could be set on several).
- ``seq`` numbers a name's versions in the order they were saved, because version strings
  do not sort as text ("10" < "9"); "keep the N newest" in cleanup means the N highest ``seq``.
- ``model_path`` becomes ``file_name``, relative to the model directory, so the directory
  can move and a database row cannot point outside it; ``checksum_sha256`` and
  ``size_bytes`` let loading refuse a changed file. A row without a file (registered
  metadata only) has neither.
- ``ON DELETE CASCADE`` on metrics and training history: cleaning up a version removes its
  records instead of leaving orphans (the seed declared foreign keys without an action).
- Timestamps are ISO-8601 UTC text with a fixed width; JSON columns are checked with
  ``json_valid``; metrics not in the seed's columns are kept in ``extra_metrics``.
"""

import re

from twin.storage import Migration
from twin.storage.dialect import postgresql_ddl

V1_UP = """
CREATE TABLE model_registry (
    model_id        TEXT PRIMARY KEY,
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    version         TEXT NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    seq             INTEGER NOT NULL CHECK (seq >= 1),
    model_type      TEXT,
    algorithms      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(algorithms)),
    metadata        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    is_active       INTEGER NOT NULL DEFAULT 0 CHECK (is_active IN (0, 1)),
    file_name       TEXT UNIQUE,
    checksum_sha256 TEXT CHECK (checksum_sha256 IS NULL OR length(checksum_sha256) = 64),
    size_bytes      INTEGER CHECK (size_bytes IS NULL OR size_bytes >= 0),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (name, version),
    UNIQUE (name, seq),
    CHECK ((file_name IS NULL) = (checksum_sha256 IS NULL))
);
CREATE UNIQUE INDEX idx_model_registry_one_active ON model_registry (name) WHERE is_active = 1;

CREATE TABLE performance_metrics (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id         TEXT NOT NULL REFERENCES model_registry (model_id) ON DELETE CASCADE,
    mae              REAL,
    mse              REAL,
    r2               REAL,
    accuracy_score   REAL,
    confidence_score REAL,
    training_time    REAL,
    prediction_time  REAL,
    training_samples INTEGER,
    feature_count    INTEGER,
    extra_metrics    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(extra_metrics)),
    recorded_at      TEXT NOT NULL
);
CREATE INDEX idx_performance_model_time ON performance_metrics (model_id, recorded_at, id);

CREATE TABLE training_history (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id           TEXT NOT NULL REFERENCES model_registry (model_id) ON DELETE CASCADE,
    training_started   TEXT,
    training_completed TEXT,
    dataset_size       INTEGER CHECK (dataset_size IS NULL OR dataset_size >= 0),
    hyperparameters    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(hyperparameters)),
    validation_score   REAL,
    recorded_at        TEXT NOT NULL,
    CHECK (training_started IS NULL OR training_completed IS NULL
           OR training_completed >= training_started)
);
CREATE INDEX idx_training_model ON training_history (model_id, id);
"""

V1_DOWN = """
DROP TABLE training_history;
DROP TABLE performance_metrics;
DROP TABLE model_registry;
"""

# v2: how the stored bytes are read back (``twin.model_registry.formats``): ``bytes`` as given,
# or ``pickle`` (seed 002 pickled model objects; loading one needs an explicit opt-in).
V2_UP = """
ALTER TABLE model_registry ADD COLUMN format TEXT NOT NULL DEFAULT 'bytes'
    CHECK (format IN ('bytes', 'pickle'));
"""

V2_DOWN = """
ALTER TABLE model_registry DROP COLUMN format;
"""

# PostgreSQL: the same tables in its types (DIALECT.md), JSONB for the JSON columns.
_JSON_CHECKS = re.compile(r" CHECK \(json_valid\(\w+\)\)")
V1_UP_POSTGRESQL = postgresql_ddl(_JSON_CHECKS.sub("", V1_UP)).replace(
    "TEXT NOT NULL DEFAULT '[]'", "JSONB NOT NULL DEFAULT '[]'").replace(
    "TEXT NOT NULL DEFAULT '{}'", "JSONB NOT NULL DEFAULT '{}'")
assert "json_valid" not in V1_UP_POSTGRESQL

# v3: where the bytes of a version live on PostgreSQL (``twin.model_registry.blobs``): in the
# database, so every replica loads what any replica saved. SQLCipher keeps them as files
# beside the registry (nothing to add there).
V3_UP_POSTGRESQL = """
CREATE TABLE model_blobs (
    file_name TEXT PRIMARY KEY,
    data      BYTEA NOT NULL
);
"""

MIGRATIONS = [
    Migration(1, "model registry", {"sqlite": V1_UP, "postgresql": V1_UP_POSTGRESQL}, V1_DOWN,
              "seed tables plus unique versions, one active per name, checksums, cascades"),
    Migration(2, "model format", V2_UP, V2_DOWN, "bytes as given or a pickle (opt-in to load)"),
    Migration(3, "model bytes in the database", {"sqlite": "", "postgresql": V3_UP_POSTGRESQL},
              {"sqlite": "", "postgresql": "DROP TABLE model_blobs;"},
              "on PostgreSQL, model bytes in model_blobs (files stay files on SQLCipher)"),
]

# Personal-data declaration (see compliance.registry): model metadata and metrics only.
NO_PERSONAL_DATA = {
    "schema_version": "migration bookkeeping",
    "model_registry": "model names, versions, file checksums",
    "performance_metrics": "aggregate model quality metrics",
    "training_history": "training runs: dataset sizes, hyperparameters, scores",
    "model_blobs": "model bytes (PostgreSQL only)",
}
