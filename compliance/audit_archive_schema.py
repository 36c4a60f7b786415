"""Vault migration 10: the audit archive's index (``compliance.audit_archive``).

``audit_archive_segments`` lists every archive segment: the events it holds (a run of seqs that
ends on a seal), the hashes that join it to the chain before and after it, its checksum and
size, and whether its write finished (``complete``: 0 while a run writes it, so a crashed run's
leftover is told apart from a segment the vault does not know). ``audit_archive_subjects`` says
which segments hold events about which interned subject, so a subject's record of disclosures
reads only those. ``audit_archive_blobs`` holds the segments' bytes where the vault is on
PostgreSQL (replicas share no disk); on SQLCipher each segment is a file beside the vault and
the table stays empty (one schema on both backends).
"""

from __future__ import annotations

_TABLES = """
CREATE TABLE audit_archive_segments (
    first_seq     {bigint} PRIMARY KEY,
    last_seq      {bigint} NOT NULL,   -- a sealed event
    prev_hash     {bytes} NOT NULL,    -- the hash the first event chains to
    last_hash     {bytes} NOT NULL,
    events        {bigint} NOT NULL,
    first_at      {bigint} NOT NULL,   -- microseconds since the epoch
    last_at       {bigint} NOT NULL,
    bytes         {bigint} NOT NULL,
    checksum      {bytes} NOT NULL,    -- SHA-256 of the stored segment
    archived_at   {bigint} NOT NULL,
    complete      {small} NOT NULL
);
CREATE TABLE audit_archive_subjects (
    subject_ref   {bigint} NOT NULL,
    first_seq     {bigint} NOT NULL,   -- the segment
    PRIMARY KEY (subject_ref, first_seq)
);
CREATE INDEX idx_audit_archive_subjects_segment ON audit_archive_subjects (first_seq);
CREATE TABLE audit_archive_blobs (
    first_seq     {bigint} PRIMARY KEY,
    body          {bytes} NOT NULL
);
"""
V10_UP = {
    "sqlite": _TABLES.format(bigint="INTEGER", bytes="BLOB", small="INTEGER"),
    "postgresql": _TABLES.format(bigint="BIGINT", bytes="BYTEA", small="SMALLINT"),
}
V10_DOWN = """
DROP TABLE audit_archive_blobs;
DROP TABLE audit_archive_subjects;
DROP TABLE audit_archive_segments;
"""

NO_PERSONAL_DATA = {
    "audit_archive_segments": "seq ranges, hashes and checksums of audit archive segments (no subject reference)",
    "audit_archive_subjects": "which archive segments hold events of which interned subject (a reference "
                              "into audit_subjects, which declares the hash)",
    "audit_archive_blobs": "encrypted audit archive segments (PostgreSQL); their events are exported "
                           "through audit_archive_subjects with the record of disclosures",
}
