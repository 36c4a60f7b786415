"""Migrations of ``digital_twin.db``.

v1 is the seed schema, tightened: CHECK constraints on enums and 0..1 scores, a unique
subject hash (one profile per learner, which is what makes "409 duplicate" possible),
and ``ON DELETE CASCADE`` on every child so erasing a profile cannot leave orphans.
Personal and free-text columns (``encrypted_data``, ``learning_style``, ``knowledge_domains``,
``learning_goals``, ``privacy_settings``, ``session_type``, ``topics_covered``,
``performance_metrics``, ``learning_trajectory``) hold AES-GCM ciphertext under the subject's
key, never text; only enums, scores, ids and timestamps that queries filter on stay in clear.

v2 adds what the API and compliance need: per-profile ``retention_days``, row versions for
ETags, parental consents (COPPA) and legal holds.

v1 and v2 were written in SQLite's column types; their PostgreSQL form is the same text with
PostgreSQL's types (``twin.storage.dialect.postgresql_ddl``), so the two cannot drift.

v3 is the learner model (issue 16): the ``evidence`` behind knowledge states (sealed), what a
knowledge state now records about how it was computed, and the versioned skill parameters
fitted over all learners (aggregates, no personal data). Written in the storage core's dialect
vocabulary (``twin.storage.dialect``), so it runs on SQLCipher and PostgreSQL alike.
"""

from typing import Any

from compliance import erasure_generation
from twin.storage import Migration
from twin.storage.dialect import Dialect, postgresql_ddl

from . import schema_rowids

V1_UP = """
CREATE TABLE learning_profiles (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    profile_id           TEXT UNIQUE NOT NULL,
    user_id_hash         TEXT NOT NULL,
    learning_style       BLOB,
    preferred_difficulty TEXT DEFAULT 'medium'
                         CHECK (preferred_difficulty IN ('easy', 'medium', 'hard')),
    knowledge_domains    BLOB,
    learning_goals       BLOB,
    privacy_settings     BLOB,
    encrypted_data       BLOB,
    created_at           TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at           TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    ttl_expires_at       TIMESTAMP
);
CREATE UNIQUE INDEX idx_profiles_user_hash ON learning_profiles (user_id_hash);
CREATE INDEX idx_profiles_updated ON learning_profiles (updated_at);
CREATE INDEX idx_profiles_ttl ON learning_profiles (ttl_expires_at);

CREATE TABLE learning_sessions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id          TEXT UNIQUE NOT NULL,
    profile_id          TEXT NOT NULL
                        REFERENCES learning_profiles (profile_id) ON DELETE CASCADE,
    session_type        BLOB NOT NULL,
    start_time          TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    end_time            TIMESTAMP,
    duration_minutes    REAL,
    topics_covered      BLOB,
    performance_metrics BLOB,
    engagement_score    REAL CHECK (engagement_score IS NULL OR engagement_score BETWEEN 0 AND 1),
    completion_status   TEXT DEFAULT 'in_progress'
                        CHECK (completion_status IN ('in_progress', 'completed', 'abandoned'))
);
CREATE INDEX idx_sessions_profile ON learning_sessions (profile_id, id);
CREATE INDEX idx_sessions_start ON learning_sessions (start_time);

CREATE TABLE knowledge_states (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    profile_id          TEXT NOT NULL
                        REFERENCES learning_profiles (profile_id) ON DELETE CASCADE,
    knowledge_domain    TEXT NOT NULL,
    topic               TEXT NOT NULL,
    mastery_level       REAL DEFAULT 0.0 CHECK (mastery_level BETWEEN 0 AND 1),
    confidence_score    REAL DEFAULT 0.0 CHECK (confidence_score BETWEEN 0 AND 1),
    last_accessed       TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    learning_trajectory BLOB,
    prerequisites_met   BOOLEAN DEFAULT FALSE,
    UNIQUE (profile_id, knowledge_domain, topic)
);
CREATE INDEX idx_knowledge_profile ON knowledge_states (profile_id);
CREATE INDEX idx_knowledge_domain ON knowledge_states (knowledge_domain);
CREATE INDEX idx_knowledge_mastery ON knowledge_states (mastery_level);
CREATE INDEX idx_knowledge_accessed ON knowledge_states (last_accessed);
"""

V1_DOWN = """
DROP TABLE knowledge_states;
DROP TABLE learning_sessions;
DROP TABLE learning_profiles;
"""

V2_UP = """
ALTER TABLE learning_profiles ADD COLUMN retention_days INTEGER;
ALTER TABLE learning_profiles ADD COLUMN row_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE learning_sessions ADD COLUMN row_version INTEGER NOT NULL DEFAULT 1;

-- COPPA: verifiable parental consent. Details (who consented, how) are personal: encrypted.
CREATE TABLE consents (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    consent_id     TEXT UNIQUE NOT NULL,
    profile_id     TEXT REFERENCES learning_profiles (profile_id) ON DELETE CASCADE,
    user_id_hash   TEXT NOT NULL,
    consent_type   TEXT NOT NULL CHECK (consent_type IN ('parental')),
    method         TEXT NOT NULL,
    details        BLOB NOT NULL,
    granted_at     TIMESTAMP NOT NULL,
    withdrawn_at   TIMESTAMP
);
CREATE INDEX idx_consents_subject ON consents (user_id_hash);
CREATE INDEX idx_consents_profile ON consents (profile_id);

-- Legal holds suspend retention purges and erasure for one subject.
CREATE TABLE legal_holds (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    hold_id       TEXT UNIQUE NOT NULL,
    user_id_hash  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    placed_at     TIMESTAMP NOT NULL,
    placed_by     TEXT NOT NULL,
    until         TIMESTAMP,
    lifted_at     TIMESTAMP,
    lifted_by     TEXT
);
CREATE INDEX idx_holds_subject ON legal_holds (user_id_hash);
"""

V2_DOWN = """
DROP TABLE legal_holds;
DROP TABLE consents;
ALTER TABLE learning_sessions DROP COLUMN row_version;
ALTER TABLE learning_profiles DROP COLUMN row_version;
ALTER TABLE learning_profiles DROP COLUMN retention_days;
"""


def _v3_statements(d: Dialect) -> list[str]:
    return [
        # What set the mastery, and under which parameters; when FSRS says review; what
        # retention kept of purged evidence; where an in-order ingest resumes (both sealed).
        "ALTER TABLE knowledge_states ADD COLUMN source TEXT NOT NULL DEFAULT 'manual' "
        "CHECK (source IN ('evidence', 'manual'))",
        "ALTER TABLE knowledge_states ADD COLUMN parameters_version TEXT",
        f"ALTER TABLE knowledge_states ADD COLUMN review_due {d.timestamp}",
        f"ALTER TABLE knowledge_states ADD COLUMN carried_over {d.bytes}",
        f"ALTER TABLE knowledge_states ADD COLUMN model_checkpoint {d.bytes}",
        f"""CREATE TABLE evidence (
            id               {d.identity},
            profile_id       TEXT NOT NULL,
            knowledge_domain TEXT NOT NULL,
            topic            TEXT NOT NULL,
            kind             TEXT NOT NULL CHECK (kind IN ('observation', 'manual')),
            observed_at      {d.timestamp} NOT NULL,
            content          {d.bytes} NOT NULL,
            recorded_at      {d.timestamp} NOT NULL,
            entry_key        TEXT NOT NULL,
            UNIQUE (profile_id, entry_key),
            FOREIGN KEY (profile_id, knowledge_domain, topic)
                REFERENCES knowledge_states (profile_id, knowledge_domain, topic) ON DELETE CASCADE
        )""",
        # One skill's rows in order (and the foreign key's look-ups); retention by age. Fitting
        # reaches a skill's rows through its knowledge states: no third index to keep on insert.
        "CREATE INDEX idx_evidence_trace ON evidence (profile_id, knowledge_domain, topic, observed_at)",
        "CREATE INDEX idx_evidence_observed ON evidence (observed_at)",
        "CREATE INDEX idx_knowledge_skill ON knowledge_states (knowledge_domain, topic)",
        # Rows are never updated: a refit inserts a version and moves the skill's pointer.
        f"""CREATE TABLE skill_parameters (
            id               {d.identity},
            knowledge_domain TEXT NOT NULL,
            topic            TEXT NOT NULL,
            version          TEXT NOT NULL,
            prior            {d.float} NOT NULL,
            learn            {d.float} NOT NULL,
            slip             {d.float} NOT NULL,
            guess            {d.float} NOT NULL,
            forget           {d.float} NOT NULL,
            learners         {d.bigint} NOT NULL,
            observations     {d.bigint} NOT NULL,
            log_likelihood   {d.float},
            iterations       {d.bigint} NOT NULL,
            fitted_at        {d.timestamp} NOT NULL,
            UNIQUE (knowledge_domain, topic, version)
        )""",
        f"""CREATE TABLE skill_parameters_current (
            knowledge_domain TEXT NOT NULL,
            topic            TEXT NOT NULL,
            version          TEXT NOT NULL,
            since            {d.timestamp} NOT NULL,
            PRIMARY KEY (knowledge_domain, topic),
            FOREIGN KEY (knowledge_domain, topic, version)
                REFERENCES skill_parameters (knowledge_domain, topic, version)
        )""",
    ]


def _v3_up(conn: Any, dialect: Dialect) -> None:
    for statement in _v3_statements(dialect):
        conn.execute(statement)


def _v3_down(conn: Any, dialect: Dialect) -> None:
    for statement in ("DROP TABLE skill_parameters_current", "DROP TABLE skill_parameters",
                      "DROP TABLE evidence", "DROP INDEX idx_knowledge_skill"):
        conn.execute(statement)
    for column in ("model_checkpoint", "carried_over", "review_due", "parameters_version", "source"):
        conn.execute(f"ALTER TABLE knowledge_states DROP COLUMN {column}")


V5_UP = """
ALTER TABLE learning_profiles ADD COLUMN subject_key_id TEXT;
-- The reclaim of leased keys asks which are referenced: only bound rows are indexed.
CREATE INDEX idx_profiles_subject_key ON learning_profiles (subject_key_id) WHERE subject_key_id IS NOT NULL;
"""
V5_DOWN = """
DROP INDEX idx_profiles_subject_key;
ALTER TABLE learning_profiles DROP COLUMN subject_key_id;
"""

MIGRATIONS = [
    Migration(1, "seed schema: profiles, sessions, knowledge states",
              {"sqlite": V1_UP, "postgresql": postgresql_ddl(V1_UP)}, V1_DOWN),
    Migration(2, "retention, row versions, consents, legal holds",
              {"sqlite": V2_UP, "postgresql": postgresql_ddl(V2_UP)}, V2_DOWN),
    Migration(3, "learner model: evidence, how states were computed, skill parameters",
              _v3_up, _v3_down),
    # The erasure generation that tells a restored file from this one (compliance.erasure_generation).
    Migration(4, "erasure generation", {"sqlite": erasure_generation.DATA_DDL,
                                        "postgresql": erasure_generation.DATA_DDL},
              erasure_generation.DATA_DDL_DOWN),
    # The subject key a profile was created with, from its process's lease of unbound keys
    # (compliance.subject_key_lease): the binding is this row, so a create commits once. NULL: the
    # key is found by the subject hash in the vault (profiles before v5, subjects who had a key).
    Migration(5, "the subject key a profile is bound to", V5_UP, V5_DOWN),
    # No statement reads profiles by updated_at; its index was one more page every create and
    # update dirtied, each encrypted and authenticated whole at commit (SQLCipher).
    Migration(6, "no index on profiles' updated_at", "DROP INDEX idx_profiles_updated;",
              "CREATE INDEX idx_profiles_updated ON learning_profiles (updated_at);"),
    # Knowledge states: no statement reads by mastery_level (whose index every write of a state
    # rewrote), and (profile_id) and (knowledge_domain) are prefixes of the unique
    # (profile_id, knowledge_domain, topic) and of (knowledge_domain, topic): each was one more
    # page a write dirtied and SQLCipher encrypted and authenticated at commit.
    Migration(7, "no unread or duplicate indexes on knowledge states",
              "DROP INDEX idx_knowledge_mastery; DROP INDEX idx_knowledge_profile; DROP INDEX idx_knowledge_domain;",
              "CREATE INDEX idx_knowledge_profile ON knowledge_states (profile_id); "
              "CREATE INDEX idx_knowledge_domain ON knowledge_states (knowledge_domain); "
              "CREATE INDEX idx_knowledge_mastery ON knowledge_states (mastery_level);"),
    # The request routes' tables without AUTOINCREMENT: its sqlite_sequence was one more page
    # each insert dirtied (why reusable ids are safe here: ``schema_rowids``).
    Migration(8, "learner rows numbered by rowid, without sqlite_sequence", schema_rowids.up,
              schema_rowids.down, foreign_keys_off=True),
]

# -- personal data declarations (see compliance.registry) ----------------------------------

from .tables import LEARNER_TABLES  # noqa: E402

PERSONAL_DATA = LEARNER_TABLES
NO_PERSONAL_DATA = {
    "schema_version": "migration bookkeeping",
    "skill_parameters": "BKT parameters of a skill fitted over at least 50 learners and 500 "
                        "observations: five aggregate probabilities and counts, about no one",
    "skill_parameters_current": "which fitted version each skill uses now",
    **erasure_generation.DATA_NO_PERSONAL_DATA,
}
