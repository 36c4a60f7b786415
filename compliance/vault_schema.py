"""Migrations of ``privacy_vault.db``: subject keys, erasure tombstones, audit trail, tokens.

v1-v3 were written in SQLite's column types; their PostgreSQL form is the same text with
PostgreSQL's types (``twin.storage.dialect.postgresql_ddl``), and v1's append-only trigger is
a PL/pgSQL function there.

These live apart from ``digital_twin.db`` on purpose. Restoring an old data backup brings back
ciphertext, but not the (destroyed) subject keys, and the tombstones that say whom to erase
again are still here to be re-applied.
"""

from datetime import timedelta

from twin.storage import Migration
from twin.storage.dialect import POSTGRESQL, postgresql_ddl
from twin.storage.timestamps import to_db, utc_now

from .vault_personal_data import NO_PERSONAL_DATA, PERSONAL_DATA  # noqa: F401 - the catalog reads them here
from .vault_schema_audit import V6_DOWN, V6_UP, V7_DOWN, V7_UP, V11_DOWN, V11_UP
from .vault_schema_keys import V9_DOWN, V9_UP
from . import audit_archive_schema

V1_UP = """
-- Per-subject data keys, wrapped (AES-GCM) by the keyring's active field key.
CREATE TABLE subject_keys (
    user_id_hash  TEXT PRIMARY KEY,
    key_version   INTEGER NOT NULL,
    wrapped_key   BLOB NOT NULL,
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX idx_subject_keys_version ON subject_keys (key_version);

-- One row per erased subject (keyed hash only): re-applied after any restore.
CREATE TABLE erasure_tombstones (
    user_id_hash  TEXT PRIMARY KEY,
    receipt_id    TEXT NOT NULL,
    erased_at     TIMESTAMP NOT NULL,
    counts        TEXT NOT NULL
);

-- Append-only, hash-chained record of every access to personal data.
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL,  -- 96 random bits; never looked up, so no index to pay for
    occurred_at   TIMESTAMP NOT NULL,
    actor_id      TEXT NOT NULL,
    actor_role    TEXT NOT NULL,
    action        TEXT NOT NULL,
    subject_hash  TEXT,
    resource      TEXT,
    request_id    TEXT,
    details       TEXT,
    prev_hash     TEXT NOT NULL,
    event_hash    TEXT NOT NULL
);
-- Only the subject index: every API read appends an event, and each index is another page
-- encrypted per commit. Filters by action or time scan in seq order (admin use, paginated).
CREATE INDEX idx_audit_subject ON audit_events (subject_hash, seq);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- Where a retention purge cut the head of the chain: the hash the next event chains to.
CREATE TABLE audit_checkpoints (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    purged_through_seq INTEGER NOT NULL,
    last_hash     TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL
);

-- API bearer tokens: only a hash of each token is stored.
CREATE TABLE api_tokens (
    token_id      TEXT PRIMARY KEY,
    token_hash    TEXT UNIQUE NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'service', 'learner')),
    subject_hash  TEXT,
    label         TEXT,
    created_at    TIMESTAMP NOT NULL,
    revoked_at    TIMESTAMP,
    CHECK ((role = 'learner') = (subject_hash IS NOT NULL))
);

-- Advisory locks shared across processes (e.g. only one retention run at a time).
CREATE TABLE job_locks (
    name          TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    acquired_at   TIMESTAMP NOT NULL,
    expires_at    TIMESTAMP NOT NULL
);
"""

_SQLITE_NO_UPDATE = """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;"""
_POSTGRESQL_NO_UPDATE = """CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN
    -- integrity_constraint_violation: an IntegrityError, as SQLite's RAISE(ABORT) is
    RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = '23000';
END $$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();"""
assert _SQLITE_NO_UPDATE in V1_UP
V1_UP_POSTGRESQL = postgresql_ddl(V1_UP.replace(_SQLITE_NO_UPDATE, _POSTGRESQL_NO_UPDATE))

V1_DOWN = """
DROP TABLE job_locks;
DROP TABLE api_tokens;
DROP TABLE audit_checkpoints;
DROP TRIGGER audit_events_no_update;
DROP TABLE audit_events;
DROP TABLE erasure_tombstones;
DROP TABLE subject_keys;
"""

V1_DOWN_POSTGRESQL = V1_DOWN.replace(
    "DROP TRIGGER audit_events_no_update;",
    "DROP TRIGGER audit_events_no_update ON audit_events;\nDROP FUNCTION audit_events_append_only();")

V2_UP = """
-- Audit journal segments whose events are in audit_events, written in the same transaction as
-- those events: a segment file that outlives its import (its process died before deleting it)
-- is never imported twice. Rows go once their file is gone.
CREATE TABLE audit_journal_imports (
    segment      TEXT PRIMARY KEY,
    events       INTEGER NOT NULL,
    imported_at  TIMESTAMP NOT NULL
);
"""

V2_DOWN = """
DROP TABLE audit_journal_imports;
"""



def _v3_up(conn, dialect) -> None:  # noqa: ANN001 - a migration step takes the driver's connection
    """Tokens end: every token gets an expiry, and a coarse record of when it was last used.
    Tokens issued before this version expire 90 days after the upgrade."""
    kind = "TIMESTAMP" if dialect.name == "sqlite" else dialect.timestamp  # SQLite's text as released
    conn.execute(f"ALTER TABLE api_tokens ADD COLUMN expires_at {kind}")
    conn.execute(f"ALTER TABLE api_tokens ADD COLUMN last_used_at {kind}")
    conn.execute("UPDATE api_tokens SET expires_at = ? WHERE expires_at IS NULL",
                 (to_db(utc_now() + timedelta(days=90)),))


V3_DOWN = """
ALTER TABLE api_tokens DROP COLUMN last_used_at;
ALTER TABLE api_tokens DROP COLUMN expires_at;
"""


def _v4_up(conn, dialect) -> None:  # noqa: ANN001 - a migration step takes the driver's connection
    """Audit events staged in the vault, for replicas without a local journal
    (``compliance.audit_vault_staging``): JSON text, chained and deleted by the flusher."""
    conn.execute(f"CREATE TABLE audit_staged_events (id {dialect.identity}, event TEXT NOT NULL)")


V4_DOWN = "DROP TABLE audit_staged_events;"


def _v5_up(timestamp: str) -> str:
    return f"""
-- When each erasure finished (NULL: it may not have; the next start finishes it). Only the
-- unfinished are looked up at start, through this partial index: no scan of the history.
ALTER TABLE erasure_tombstones ADD COLUMN completed_at {timestamp};
CREATE INDEX idx_tombstones_unfinished ON erasure_tombstones (user_id_hash) WHERE completed_at IS NULL;

-- Per data database: its erasure generation at which every tombstone was applied
-- (compliance.erasure_generation). NULL or absent: re-apply every tombstone at the next start.
CREATE TABLE erasure_state (
    database_name  TEXT PRIMARY KEY,
    generation     TEXT
);
"""


V5_DOWN = """
DROP TABLE erasure_state;
DROP INDEX idx_tombstones_unfinished;
ALTER TABLE erasure_tombstones DROP COLUMN completed_at;
"""

V8_UP = """
-- The deployment's keyring by its fingerprints (never keys): compliance/keyring_record.py.
CREATE TABLE keyring_record (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    pepper_fingerprint  TEXT NOT NULL,
    field_keys          TEXT NOT NULL,
    active_field_key    INTEGER NOT NULL,
    recorded_at         TEXT NOT NULL
);
"""

V8_DOWN = """
DROP TABLE keyring_record;
"""

# PostgreSQL: the audit trail's highest seq ever stored, which a deletion of the newest events
# does not lower (SQLite's sqlite_sequence does this for AUTOINCREMENT): see
# twin.storage.dialect.high_water_ddl. The table exists on SQLite too (empty) so both
# backends have one schema.
V8_POSTGRESQL = (V8_UP + POSTGRESQL.high_water_ddl("audit_events", "seq") + "\n"
                 + POSTGRESQL.high_water_ddl("audit_log", "seq"))
V8_SQLITE = V8_UP + """
CREATE TABLE identity_high_water (table_name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
V8_DOWN_POSTGRESQL = """
DROP TRIGGER audit_log_high_water ON audit_log;
DROP FUNCTION audit_log_high_water();
DROP TRIGGER audit_events_high_water ON audit_events;
DROP FUNCTION audit_events_high_water();
DROP TABLE identity_high_water;
""" + V8_DOWN
V8_DOWN_SQLITE = "DROP TABLE identity_high_water;\n" + V8_DOWN

MIGRATIONS = [Migration(1, "subject keys, tombstones, audit trail, tokens, job locks",
                        {"sqlite": V1_UP, "postgresql": V1_UP_POSTGRESQL},
                        {"sqlite": V1_DOWN, "postgresql": V1_DOWN_POSTGRESQL}),
              Migration(2, "audit journal import markers",
                        {"sqlite": V2_UP, "postgresql": postgresql_ddl(V2_UP)}, V2_DOWN),
              Migration(3, "token expiry and last use", _v3_up, V3_DOWN),
              Migration(4, "audit events staged in the vault", _v4_up, V4_DOWN),
              Migration(5, "erasure completion and generations (re-apply tombstones only after a restore)",
                        {"sqlite": _v5_up("TIMESTAMP"), "postgresql": _v5_up("TEXT")}, V5_DOWN),
              Migration(6, "compact audit events", V6_UP, V6_DOWN),
              Migration(7, "audit chain seals and their verification marks", V7_UP, V7_DOWN),
              Migration(8, "the deployment's keyring fingerprints; the audit seq's high-water mark",
                        {"sqlite": V8_SQLITE, "postgresql": V8_POSTGRESQL},
                        {"sqlite": V8_DOWN_SQLITE, "postgresql": V8_DOWN_POSTGRESQL}),
              Migration(9, "subject keys by key id, leased unbound (a create commits once)",
                        V9_UP,
                        V9_DOWN),
              Migration(10, "the audit archive's index", audit_archive_schema.V10_UP,
                        audit_archive_schema.V10_DOWN),
              Migration(11, "a count of deleted interned audit values (in-process reference caches)",
                        V11_UP, V11_DOWN)]
