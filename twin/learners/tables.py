"""The learner tables of ``digital_twin.db``, one descriptor each (``compliance.personal_data``).

Each descriptor classifies every column (the coverage test compares them with the migrated
schema), and the services' statements, their row decoding, the personal-data declaration, the
DSR export and erasure and the retention rules all come from it. Columns are listed in export
order. Personal and free-text columns are sealed under the subject's key; only enums, scores,
ids and timestamps that queries filter on stay in clear.

To add a sealed column: a migration in ``schema.py`` plus one ``sealed(...)`` line here (plus the
API schema in ``twin/api/schemas.py`` if the API exposes it).
"""

from compliance.personal_data import (PersonalTable, Retention, SubjectVia, clear, key, other,
                                      sealed, subject_hash, timestamp)

_ROW_NUMBER = "internal row number (ordering and purge batches)"
_ROW_VERSION = "version counter the ETag is made from"
_OF_PROFILE = SubjectVia(parent="learning_profiles", key="profile_id")

PROFILES = PersonalTable(
    database="digital_twin", name="learning_profiles", export_as="profiles",
    columns=(
        key("profile_id"),
        sealed("learning_style"),
        clear("preferred_difficulty"),
        sealed("knowledge_domains", null_as=[]),
        sealed("learning_goals", null_as=[]),
        sealed("privacy_settings", null_as={}),
        sealed("encrypted_data", null_as={}, merged=True),  # {"personal": {...}, "birth_date": ...}
        clear("retention_days"),
        timestamp("created_at"),
        timestamp("updated_at"),
        timestamp("ttl_expires_at"),
        key("id", exported=False, why=_ROW_NUMBER),
        subject_hash("user_id_hash"),
        other("row_version", exported=False, why=_ROW_VERSION),
        key("subject_key_id", exported=False,
            why="the vault key id of the subject's data key (compliance.subject_key_lease)"),
    ),
    row_id=("profile_id",), subject_hash_column="user_id_hash", created="created_at",
    retention=Retention("ttl_expires_at", ends_subject=True),
)

SESSIONS = PersonalTable(
    database="digital_twin", name="learning_sessions", export_as="sessions",
    columns=(
        key("session_id"),
        key("profile_id"),
        sealed("session_type"),
        timestamp("start_time"),
        timestamp("end_time"),
        clear("duration_minutes"),
        sealed("topics_covered", null_as=[]),
        sealed("performance_metrics"),
        clear("engagement_score"),
        clear("completion_status"),
        key("id", exported=False, why=_ROW_NUMBER),
        other("row_version", exported=False, why=_ROW_VERSION),
    ),
    row_id=("session_id",), subject_hash_column="user_id_hash", via=_OF_PROFILE,
    retention=Retention("start_time", window="sessions"),
)

KNOWLEDGE = PersonalTable(
    database="digital_twin", name="knowledge_states", export_as="knowledge_states",
    columns=(
        key("profile_id"),
        clear("knowledge_domain"),
        clear("topic"),
        clear("mastery_level"),
        clear("confidence_score"),
        timestamp("last_accessed"),
        sealed("learning_trajectory"),
        clear("prerequisites_met"),
        clear("source"),                 # evidence | manual: what set mastery_level
        clear("parameters_version"),     # the skill parameters it was computed under
        timestamp("review_due"),         # FSRS: when the topic is next due (derived, like mastery)
        sealed("carried_over"),          # what retention kept of purged evidence (a summary)
        sealed("model_checkpoint", exported=False,
               why="the model's running summary of the evidence exported beside it (where an "
                   "in-order ingest resumes); the explanation exported with the state says the "
                   "same in words"),
        key("id", exported=False, why=_ROW_NUMBER),
    ),
    row_id=("profile_id", "knowledge_domain", "topic"), subject_hash_column="user_id_hash", via=_OF_PROFILE,
    retention=Retention("last_accessed", window="knowledge"),
)

# Evidence behind the knowledge states (an education record): observations of a learner's
# answers and manual values, one row each. Item ids, outcomes, evidence ids and manual values are
# sealed; the skill and the time stay clear (loading one skill in order, retention by age). A
# keyed hash of the client's evidence id makes retries idempotent without unsealing.
EVIDENCE = PersonalTable(
    database="digital_twin", name="evidence", export_as="evidence",
    columns=(
        key("profile_id"),
        clear("knowledge_domain"),
        clear("topic"),
        clear("kind"),                   # observation | manual
        timestamp("observed_at"),        # a manual value's set_at
        sealed("content", null_as={}, merged=True),  # {evidence_id, item_id, correct|score,
                                                     #  session_id} or {mastery_level, confidence_score}
        timestamp("recorded_at"),
        other("entry_key", exported=False,
              why="keyed hash of the evidence id (of the skill and time for a manual value): "
                  "retries are recognised without unsealing; the exported content holds the id"),
        key("id", exported=False, why=_ROW_NUMBER),
    ),
    row_id=("profile_id", "entry_key"), subject_hash_column="user_id_hash", via=_OF_PROFILE,
    retention=Retention("observed_at", window="evidence"),
)

CONSENTS = PersonalTable(
    database="digital_twin", name="consents", export_as="consents",
    columns=(
        key("consent_id"),
        key("profile_id"),
        clear("consent_type"),
        clear("method"),
        sealed("details"),  # who consented (name, relationship, contact) and when
        timestamp("granted_at"),
        timestamp("withdrawn_at"),
        key("id", exported=False, why=_ROW_NUMBER),
        subject_hash("user_id_hash"),
    ),
    row_id=("consent_id",), subject_hash_column="user_id_hash", created="granted_at",
)

HOLDS = PersonalTable(
    database="digital_twin", name="legal_holds", export_as="legal_holds",
    columns=(
        key("hold_id"),
        clear("reason"),
        timestamp("placed_at"),
        clear("placed_by"),
        timestamp("until"),
        timestamp("lifted_at"),
        clear("lifted_by"),
        key("id", exported=False, why=_ROW_NUMBER),
        subject_hash("user_id_hash"),
    ),
    row_id=("hold_id",), subject_hash_column="user_id_hash", created="placed_at",
)

# Children before parents: erasure counts and deletes in this order; the export runs backwards.
LEARNER_TABLES = [EVIDENCE, KNOWLEDGE, SESSIONS, CONSENTS, HOLDS, PROFILES]
