"""The personal-data declarations of ``privacy_vault.db`` (see ``compliance.registry``).

Apart from the migrations only for size: ``compliance.vault_schema`` exposes them, where the
catalog reads every schema module's ``PERSONAL_DATA`` / ``NO_PERSONAL_DATA``.
"""

from compliance.personal_data import (PersonalTable, SubjectVia, clear, json_text,
                                      key, other, subject_hash, timestamp)

from . import audit_archive_schema

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
    "audit_term_generation": "how many times interned audit values were deleted (one counter)",
    **audit_archive_schema.NO_PERSONAL_DATA,
}
