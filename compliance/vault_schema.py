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

# Compact audit events (compliance.audit_codec): interned actors, subjects and resources, binary
# ids and hashes, integer times, no stored prev_hash. Events already in audit_events stay there as
# they are (their hashes unchanged) and are read and verified before the compact ones; the chain
# runs on across the two tables, since the next seq and prev hash are read from both.
_V6_TABLES = """
CREATE TABLE audit_actors (
    actor_ref     {ref},
    actor_id      TEXT NOT NULL,
    actor_role    TEXT NOT NULL,
    UNIQUE (actor_id, actor_role)
);
CREATE TABLE audit_subjects (
    subject_ref   {ref},
    subject_hash  TEXT NOT NULL UNIQUE
);
CREATE TABLE audit_resources (
    resource_ref  {ref},
    resource      TEXT NOT NULL UNIQUE
);
CREATE TABLE audit_log (
    seq           {seq},
    event_id      {bytes} NOT NULL,   -- audit_codec.pack_id
    occurred_at   {bigint} NOT NULL,  -- microseconds since the epoch, UTC
    actor_ref     {bigint} NOT NULL,
    action        {small} NOT NULL,   -- audit_codec.ACTION_CODES
    subject_ref   {bigint},
    resource_ref  {bigint},
    request_id    {bytes},            -- audit_codec.pack_id
    details       TEXT,
    event_hash    {bytes} NOT NULL    -- 32 bytes; prev_hash is the previous event's
);
"""
V6_UP = {
    "sqlite": _V6_TABLES.format(ref="INTEGER PRIMARY KEY", seq="INTEGER PRIMARY KEY AUTOINCREMENT",
                                bytes="BLOB", bigint="INTEGER", small="INTEGER") + """
-- The index holds the rowid (seq) already: (subject_ref) is (subject_ref, seq).
CREATE INDEX idx_audit_log_subject ON audit_log (subject_ref) WHERE subject_ref IS NOT NULL;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_actors_no_update BEFORE UPDATE ON audit_actors
BEGIN SELECT RAISE(ABORT, 'audit_actors is append-only'); END;
CREATE TRIGGER audit_subjects_no_update BEFORE UPDATE ON audit_subjects
BEGIN SELECT RAISE(ABORT, 'audit_subjects is append-only'); END;
CREATE TRIGGER audit_resources_no_update BEFORE UPDATE ON audit_resources
BEGIN SELECT RAISE(ABORT, 'audit_resources is append-only'); END;
""",
    "postgresql": _V6_TABLES.format(ref="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                                    seq="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                                    bytes="BYTEA", bigint="BIGINT",
                                    small="SMALLINT") + """
CREATE INDEX idx_audit_log_subject ON audit_log (subject_ref, seq) WHERE subject_ref IS NOT NULL;
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = '23000'; END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_actors_no_update BEFORE UPDATE ON audit_actors
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_subjects_no_update BEFORE UPDATE ON audit_subjects
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_resources_no_update BEFORE UPDATE ON audit_resources
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
""",
}


# Dropping compact events loses evidence the older code could not read anyway: `twin db rollback`
# lists them as rows it would drop and wants --force (and takes a verified backup first).
V6_DOWN = {
    "sqlite": """
DROP TABLE audit_log;
DROP TABLE audit_resources;
DROP TABLE audit_subjects;
DROP TABLE audit_actors;
""",
    "postgresql": """
DROP TABLE audit_log;
DROP TABLE audit_resources;
DROP TABLE audit_subjects;
DROP TABLE audit_actors;
DROP FUNCTION audit_append_only();
""",
}


# Chain seals (compliance.audit_seals): HMAC'd checkpoints every N events and the HMAC'd marks of
# verifications that found them sound. Not audit_checkpoints, which mark retention cuts.
_V7_TABLES = """
CREATE TABLE audit_seals (
    seq           {bigint} PRIMARY KEY,  -- the sealed event
    event_hash    {bytes} NOT NULL,
    sealed_at     {bigint} NOT NULL,     -- microseconds since the epoch
    mac           {bytes} NOT NULL       -- HMAC-SHA256 under the seal key
);
CREATE TABLE audit_seal_marks (
    id            {identity},
    seal_seq      {bigint} NOT NULL,
    verified_at   {bigint} NOT NULL,
    mac           {bytes} NOT NULL
);
CREATE INDEX idx_audit_seal_marks_seal ON audit_seal_marks (seal_seq);
"""
V7_UP = {
    "sqlite": _V7_TABLES.format(bigint="INTEGER", bytes="BLOB", identity="INTEGER PRIMARY KEY AUTOINCREMENT"),
    "postgresql": _V7_TABLES.format(bigint="BIGINT", bytes="BYTEA",
                                    identity="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
}
V7_DOWN = """
DROP TABLE audit_seal_marks;
DROP TABLE audit_seals;
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
                        audit_archive_schema.V10_DOWN)]

# -- personal data declarations (see compliance.registry) ----------------------------------

from compliance.personal_data import (PersonalTable, SubjectVia, clear, json_text,  # noqa: E402
                                      key, other, subject_hash, timestamp)

PERSONAL_DATA = [
    PersonalTable(
        database="privacy_vault", name="api_tokens", pk="token_id", order_by="created_at",
        columns=(key("token_id"), other("token_hash", why="SHA-256 of the token's secret"),
                 clear("role"), subject_hash("subject_hash"), clear("label"),
                 timestamp("created_at"), timestamp("revoked_at"), timestamp("expires_at"),
                 timestamp("last_used_at")),
        row_id=("token_id",), subject_hash_column="subject_hash"),
    PersonalTable(
        database="privacy_vault", name="subject_keys", pk="key_id",
        columns=(key("key_id"), subject_hash("user_id_hash"), clear("key_version"),
                 other("wrapped_key", why="the subject's data key, wrapped by the field key"),
                 timestamp("created_at"), clear("leased_to"), timestamp("lease_ends_at")),
        row_id=("key_id",), subject_hash_column="user_id_hash"),
    PersonalTable(
        database="privacy_vault", name="audit_events", pk="seq", export_as="disclosures",
        columns=(key("seq"), key("event_id"), timestamp("occurred_at"), clear("actor_id"),
                 clear("actor_role"), clear("action"), subject_hash("subject_hash"),
                 clear("resource"), key("request_id"), json_text("details"),
                 other("prev_hash", why="hash chain link"), other("event_hash", why="hash chain link")),
        row_id=("event_id",), subject_hash_column="subject_hash", erase=False,
        kept_reason="accountability (GDPR art. 5(2)) and FERPA record of disclosures; rows hold "
                    "only the keyed subject hash, and the trail has its own retention window"),
    PersonalTable(
        database="privacy_vault", name="audit_log", pk="seq", export_as="disclosures",
        columns=(key("seq"), key("event_id"), other("occurred_at", why="when: microseconds since the epoch"),
                 key("actor_ref"), other("action", why="the action's code (audit_codec.ACTION_CODES)"),
                 key("subject_ref"), key("resource_ref"), key("request_id"), json_text("details"),
                 other("event_hash", why="hash chain link")),
        row_id=("seq",), subject_hash_column="subject_hash",
        via=SubjectVia(parent="audit_subjects", key="subject_ref"), erase=False,
        kept_reason="the compact audit trail (compliance.audit_codec): the same record of "
                    "disclosures as audit_events, its subject interned in audit_subjects"),
    PersonalTable(
        database="privacy_vault", name="audit_subjects", pk="subject_ref",
        columns=(key("subject_ref"), subject_hash("subject_hash")),
        row_id=("subject_ref",), subject_hash_column="subject_hash", erase=False,
        kept_reason="the subject hashes the audit trail's events name (keyed hash only), deleted "
                    "by retention with the subject's last event"),
    PersonalTable(
        database="privacy_vault", name="erasure_tombstones", pk="user_id_hash",
        columns=(subject_hash("user_id_hash"), key("receipt_id"), timestamp("erased_at"),
                 json_text("counts"), timestamp("completed_at")),
        row_id=("user_id_hash",), subject_hash_column="user_id_hash", erase=False,
        kept_reason="proof of erasure, re-applied after any restore; keyed hash only"),
]

NO_PERSONAL_DATA = {
    "audit_journal_imports": "names of imported audit journal segments and their event counts",
    "schema_version": "migration bookkeeping",
    "audit_checkpoints": "hashes of purged audit events, no subject reference",
    "job_locks": "names of running jobs",
    "audit_staged_events": "audit events for the moment (a flush delay) before they join "
                           "audit_events, which declares them; every reader of the trail "
                           "chains them first",
    "erasure_state": "per data database, a random token naming its erasure history",
    "audit_actors": "token ids and roles the audit trail's events name (no subject reference)",
    "audit_resources": "opaque resource ids the audit trail's events name (no subject reference)",
    "audit_seals": "seqs, hashes and HMACs of sealed audit events (no subject reference)",
    "audit_seal_marks": "when each audit seal was verified, HMAC'd (no subject reference)",
    "keyring_record": "fingerprints of the deployment's keys (public names, never keys)",
    "identity_high_water": "the highest audit seq ever stored (PostgreSQL; empty on SQLite)",
    **audit_archive_schema.NO_PERSONAL_DATA,
}
