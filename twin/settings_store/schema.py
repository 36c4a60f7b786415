"""Migrations of ``settings.db`` (SQLCipher) and the ``settings`` schema (PostgreSQL), each
step in both dialects.

v1 holds the OpsBrain seed's tables ``configurations``, ``business_goals``, ``app_settings``,
``config_audit`` and ``performance_metrics``. v2 adds the seed's ``thread_contexts``
(conversation messages with an expiry) and ``user_preferences`` (per-user overrides): both hold
personal data, sealed, and are declared in ``tables.py`` so DSR export, erasure and retention
reach them through the providers mechanism like the learner tables.

Where v1 departs from the seed, and why:

- Sensitive configuration values are AES-256-GCM ciphertext (``compliance.field_crypto``,
  associated data bound to ``configurations.value.<key>``) in the same ``value`` column, and a
  CHECK ties the storage class to the flag: a sensitive row can only hold a BLOB, a plain row
  only TEXT. A bug that wrote a secret in clear fails the INSERT instead of leaking.
- ``config_audit`` records every create/update/delete of a configuration or app setting (the
  ``scope`` column), with who and when. For sensitive keys the old/new values are keyed
  hashes (``hmac-sha256:<hex>``, or ``sha256:<hex>`` without an audit key), and a CHECK
  refuses anything else, so the audit trail can show *that* a secret changed without holding
  it. Audit rows are never updated (a trigger aborts UPDATE); deleting old rows for retention
  stays possible. No foreign key to ``configurations``: history must outlive a deleted key.
- ``app_settings`` stores a ``value_type`` tag (bool/int/float/str/json) so values come back
  as the type they went in; CHECKs keep bools to ``true``/``false`` and JSON valid.
- ``business_goals`` has CHECKs on ``status`` (an enum), ``priority`` (1..5), ``progress``
  (a percentage, 0..100) and on its JSON columns (``weekly_actions`` an array,
  ``success_metrics`` and ``metadata`` objects); ``metadata`` keeps legacy fields that have no
  column so an import never drops data silently.
- Every timestamp is ISO-8601 UTC text of one fixed width (``2026-11-22T02:30:00.123456Z``,
  the format of ``twin.storage.timestamps``), enforced by CHECK, so text order is time order
  and the performance-metrics window query is an index range scan. The seed's
  ``CURRENT_TIMESTAMP`` (``2026-11-22 02:30:00``) has no zone and only second precision.
- Indexes serve the documented queries: configurations by category, audit history by key,
  goals by status or area in priority order, metrics by name and time window.
"""

import re

from compliance import erasure_generation
from compliance.field_crypto import NONCE_BYTES
from twin.storage import POSTGRESQL, SQLITE, Migration
from twin.storage.dialect import postgresql_ddl


def _iso(column: str) -> str:
    return SQLITE.timestamp_column(column)


def _hashed_or_null(column: str) -> str:
    return f"({column} IS NULL OR {column} GLOB 'hmac-sha256:*' OR {column} GLOB 'sha256:*')"


V1_UP = f"""
CREATE TABLE configurations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    key          TEXT NOT NULL UNIQUE CHECK (length(key) BETWEEN 1 AND 200),
    value        TEXT NOT NULL,  -- TEXT when plain, BLOB (AES-GCM ciphertext) when sensitive
    category     TEXT NOT NULL DEFAULT 'general' CHECK (length(category) BETWEEN 1 AND 100),
    description  TEXT,
    is_sensitive INTEGER NOT NULL DEFAULT 0 CHECK (is_sensitive IN (0, 1)),
    {_iso("created_at")},
    {_iso("updated_at")},
    updated_by   TEXT NOT NULL CHECK (length(updated_by) BETWEEN 1 AND 200),
    CHECK ((is_sensitive = 1 AND typeof(value) = 'blob')
        OR (is_sensitive = 0 AND typeof(value) = 'text'))
);
CREATE INDEX idx_configurations_category ON configurations (category, key);

CREATE TABLE config_audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    scope        TEXT NOT NULL CHECK (scope IN ('configuration', 'app_setting')),
    config_key   TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    old_value    TEXT,
    new_value    TEXT,
    is_sensitive INTEGER NOT NULL DEFAULT 0 CHECK (is_sensitive IN (0, 1)),
    changed_by   TEXT NOT NULL CHECK (length(changed_by) BETWEEN 1 AND 200),
    {_iso("changed_at")},
    CHECK (is_sensitive = 0 OR ({_hashed_or_null("old_value")} AND {_hashed_or_null("new_value")}))
);
CREATE INDEX idx_config_audit_key ON config_audit (config_key, id);
CREATE INDEX idx_config_audit_changed ON config_audit (changed_at);
CREATE TRIGGER config_audit_no_update BEFORE UPDATE ON config_audit
BEGIN
    SELECT RAISE(ABORT, 'config_audit is append-only');
END;

CREATE TABLE app_settings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL UNIQUE CHECK (length(key) BETWEEN 1 AND 200),
    value       TEXT NOT NULL,
    value_type  TEXT NOT NULL CHECK (value_type IN ('bool', 'int', 'float', 'str', 'json')),
    description TEXT,
    {_iso("updated_at")},
    updated_by  TEXT NOT NULL CHECK (length(updated_by) BETWEEN 1 AND 200),
    CHECK (value_type <> 'bool' OR value IN ('true', 'false')),
    CHECK (value_type <> 'json' OR json_valid(value))
);

CREATE TABLE business_goals (
    id              TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    title           TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    description     TEXT,
    area            TEXT,
    status          TEXT NOT NULL DEFAULT 'not_started'
                    CHECK (status IN ('not_started', 'planned', 'in_progress', 'on_hold',
                                      'completed', 'cancelled')),
    priority        INTEGER NOT NULL DEFAULT 3 CHECK (priority BETWEEN 1 AND 5),
    progress        REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    weekly_actions  TEXT NOT NULL DEFAULT '[]'
                    CHECK (json_valid(weekly_actions) AND json_type(weekly_actions) = 'array'),
    success_metrics TEXT NOT NULL DEFAULT '{{}}'
                    CHECK (json_valid(success_metrics) AND json_type(success_metrics) = 'object'),
    target_date     TEXT,
    metadata        TEXT NOT NULL DEFAULT '{{}}'
                    CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    {_iso("created_at")},
    {_iso("updated_at")}
);
CREATE INDEX idx_business_goals_status ON business_goals (status, priority DESC);
CREATE INDEX idx_business_goals_area ON business_goals (area, priority DESC);

CREATE TABLE performance_metrics (
    id              INTEGER PRIMARY KEY,
    metric_name     TEXT NOT NULL CHECK (length(metric_name) BETWEEN 1 AND 200),
    metric_value    REAL NOT NULL,
    metric_unit     TEXT,
    additional_data TEXT CHECK (additional_data IS NULL OR json_valid(additional_data)),
    {_iso("recorded_at")}
);
CREATE INDEX idx_performance_metrics_name ON performance_metrics (metric_name, recorded_at);
CREATE INDEX idx_performance_metrics_time ON performance_metrics (recorded_at);
"""

V1_DOWN = """
DROP TABLE performance_metrics;
DROP TABLE business_goals;
DROP TABLE app_settings;
DROP TRIGGER config_audit_no_update;
DROP TABLE config_audit;
DROP TABLE configurations;
"""

# v2: seed 001's thread contexts and user preferences (see tables.py). A thread's messages are
# a BLOB (sealed JSON); ``user_id_hash`` is NULL for a thread that belongs to no one.
V2_UP = f"""
CREATE TABLE thread_contexts (
    id           INTEGER PRIMARY KEY,
    thread_key   TEXT NOT NULL UNIQUE CHECK (length(thread_key) BETWEEN 1 AND 200),
    channel_id   TEXT CHECK (channel_id IS NULL OR length(channel_id) <= 200),
    thread_ts    TEXT CHECK (thread_ts IS NULL OR length(thread_ts) <= 200),
    messages     BLOB NOT NULL CHECK (typeof(messages) = 'blob'),
    user_id_hash TEXT,
    {_iso("created_at")},
    {_iso("updated_at")},
    {_iso("expires_at")}
);
CREATE INDEX idx_thread_contexts_expires ON thread_contexts (expires_at);
CREATE INDEX idx_thread_contexts_subject ON thread_contexts (user_id_hash) WHERE user_id_hash IS NOT NULL;

CREATE TABLE user_preferences (
    id             INTEGER PRIMARY KEY,
    user_id_hash   TEXT NOT NULL,
    preference_key TEXT NOT NULL CHECK (length(preference_key) BETWEEN 1 AND 200),
    value          BLOB NOT NULL CHECK (typeof(value) = 'blob'),
    {_iso("created_at")},
    {_iso("updated_at")},
    UNIQUE (user_id_hash, preference_key)
);
CREATE INDEX idx_user_preferences_updated ON user_preferences (updated_at);
"""

V2_DOWN = """
DROP TABLE user_preferences;
DROP TABLE thread_contexts;
"""

# PostgreSQL: the same tables in its terms (DIALECT.md), derived from SQLite's text above (which
# stays as released) by ``_postgresql``, so a table cannot differ between the two:
# - A column has one type, so ``configurations.value`` is BYTEA on both kinds of row: a plain
#   value is its UTF-8 text, a sensitive one the field cipher's ciphertext. The CHECK that
#   keeps a secret from being stored in clear asks a sensitive row for the ciphertext's shape
#   (format byte 1, at least header + nonce + tag long) where SQLite asks for a BLOB.
# - JSON stays TEXT, kept exactly as written (the no-op comparisons of goals compare it), and
#   is checked by ``settings_json_type`` (jsonb_typeof, NULL for text that is not JSON): a CHECK
#   violation, an IntegrityError as on SQLite, rather than the cast's own error.
# - The append-only trigger raises integrity_constraint_violation, as the ledger's does.
_MIN_CIPHERTEXT = 1 + 4 + NONCE_BYTES + 16  # format byte, key id, nonce, GCM tag

_JSON_TYPE_FUNCTION = """
CREATE FUNCTION settings_json_type(document TEXT) RETURNS TEXT LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_typeof(document::jsonb);
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END $$;
"""
_TIMESTAMP = re.compile(re.escape(SQLITE.timestamp_column("COLUMN")).replace("COLUMN", r"(\w+)", 1)
                        .replace("COLUMN", r"\1"))
_APPEND_ONLY = re.compile(r"CREATE TRIGGER (\w+) BEFORE UPDATE ON (\w+)\nBEGIN\n"
                          r"    SELECT RAISE\(ABORT, '([^']*)'\);\nEND;")
_SQLITE_ONLY = re.compile(r"GLOB|typeof|\bjson_valid|\bjson_type|RAISE\(ABORT|strftime|BLOB")


def _append_only(match: re.Match[str]) -> str:
    trigger, table, message = match.groups()
    return (f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '23000'; END $$;\n"
            f"CREATE TRIGGER {trigger} BEFORE UPDATE ON {table}\n"
            f"FOR EACH ROW EXECUTE FUNCTION {trigger}();")


def _postgresql(sqlite_ddl: str) -> str:
    """A step's PostgreSQL form, derived from its SQLite text so the two cannot drift."""
    ddl = _TIMESTAMP.sub(lambda m: POSTGRESQL.timestamp_column(m.group(1)), sqlite_ddl)
    ddl = re.sub(r"GLOB '([\w:-]+)\*'", r"LIKE '\1%'", ddl)
    ddl = _APPEND_ONLY.sub(_append_only, ddl)
    ddl = ddl.replace("value        TEXT NOT NULL,  -- TEXT when plain, BLOB (AES-GCM ciphertext) when sensitive",
                      "value        BYTEA NOT NULL,  -- UTF-8 text when plain, AES-GCM ciphertext when sensitive")
    ddl = ddl.replace("CHECK ((is_sensitive = 1 AND typeof(value) = 'blob')\n"
                      "        OR (is_sensitive = 0 AND typeof(value) = 'text'))",
                      f"CHECK (is_sensitive = 0 OR (length(value) >= {_MIN_CIPHERTEXT}\n"
                      "                                AND substring(value FROM 1 FOR 1) = '\\x01'::bytea))")
    ddl = re.sub(r"json_valid\((\w+)\) AND json_type\(\1\) = '(\w+)'", r"settings_json_type(\1) = '\2'", ddl)
    ddl = re.sub(r"json_valid\((\w+)\)", r"settings_json_type(\1) IS NOT NULL", ddl)
    ddl = re.sub(r" CHECK \(typeof\(\w+\) = 'blob'\)", "", ddl)  # BYTEA holds nothing else
    # A rowid alias is an identity column there (postgresql_ddl then spells the types).
    ddl = postgresql_ddl(re.sub(r"\bINTEGER PRIMARY KEY\b(?! AUTOINCREMENT)",
                                "INTEGER PRIMARY KEY AUTOINCREMENT", ddl))
    left = _SQLITE_ONLY.search(ddl)
    if left is not None:  # a released text this does not know how to translate: fail at import
        raise RuntimeError(f"SQLite-only {left.group(0)!r} in a PostgreSQL step")
    return ddl


V1_UP_POSTGRESQL = _JSON_TYPE_FUNCTION + _postgresql(V1_UP)

V1_DOWN_POSTGRESQL = """
DROP TABLE performance_metrics;
DROP TABLE business_goals;
DROP TABLE app_settings;
DROP TABLE config_audit;
DROP FUNCTION config_audit_no_update();
DROP TABLE configurations;
DROP FUNCTION settings_json_type(TEXT);
"""

V2_UP_POSTGRESQL = _postgresql(V2_UP)

MIGRATIONS = [
    Migration(1, "seed schema: configurations, audit, app settings, goals, performance metrics",
              {"sqlite": V1_UP, "postgresql": V1_UP_POSTGRESQL},
              {"sqlite": V1_DOWN, "postgresql": V1_DOWN_POSTGRESQL},
              "sensitive values encrypted, hashed audit of secrets, typed settings, ISO-8601 UTC"),
    Migration(2, "thread contexts and user preferences",
              {"sqlite": V2_UP, "postgresql": V2_UP_POSTGRESQL}, V2_DOWN,
              "seed 001's personal tables: sealed values, owned by a keyed user hash, expiring"),
    # Holding personal data makes this a data database of the erasure mechanism: its erasure
    # generation tells a restored settings file from this one (compliance.erasure_generation).
    Migration(3, "erasure generation", erasure_generation.DATA_DDL, erasure_generation.DATA_DDL_DOWN,
              "the erasure generation of a data database"),
]

# -- personal data declarations (see compliance.registry) ----------------------------------

# Operator-facing configuration. ``updated_by``/``changed_by`` name operators, services or
# scripts acting on the platform (staff accountability), never learners.
from .tables import SETTINGS_PERSONAL_TABLES  # noqa: E402

PERSONAL_DATA = SETTINGS_PERSONAL_TABLES
NO_PERSONAL_DATA = {
    "schema_version": "migration bookkeeping",
    **erasure_generation.DATA_NO_PERSONAL_DATA,
    "configurations": "platform configuration; secrets field-encrypted; no learner data",
    "config_audit": "who changed which setting (operators and scripts, not learners)",
    "app_settings": "feature flags and application settings",
    "business_goals": "organisational objectives, not about individuals",
    "performance_metrics": "system performance measurements (timings, resource use)",
}
