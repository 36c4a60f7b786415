"""Bulk-built audit trails for bench/audit.py: millions of valid events in a minute or two.

Both forms are written straight into a migrated vault with the project's own encodings and
hashes (``compliance.audit_codec.compact_hash`` for the compact form, ``compute_event_hash``
for the legacy ``audit_events`` rows that releases before vault migration 6 wrote) and seals
(``SealBook.seal_due``), so ``AuditTrail.verify`` accepts them; only the per-event Python of
``record_many`` is skipped. Events spread over
``subjects`` learners (one profile resource each) and a handful of service tokens, with client
request ids at their maximum accepted length (64 characters).
"""

from __future__ import annotations

import base64
import os
import secrets
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator

from compliance.audit_codec import ACTION_CODES, compact_hash, iso, pack_id
from compliance.audit_events import compute_event_hash
from compliance.audit_seals import SealBook
from compliance.hash_chain import GENESIS_HASH
from twin.storage.bulk import insert_rows

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
STEP_US = 8_640  # 10M events a day
ACTORS = [(f"tok_{i:02d}{secrets.token_urlsafe(9)}", "service") for i in range(8)]
_CHUNK = 20_000  # legacy rows per transaction
_TRANSACTION_ROWS = 250_000  # compact rows per transaction: few commits, a WAL of tens of MB
_SUBJECT_INDEX = "idx_audit_log_subject"
_SORT_CACHE_KIB = 512 * 1024


@dataclass
class Population:
    subjects: list[str]
    resources: list[str]

    @classmethod
    def make(cls, count: int) -> "Population":
        subjects = [secrets.token_hex(32) for _ in range(count)]
        return cls(subjects, [f"profile:prof_{secrets.token_urlsafe(16)}" for _ in subjects])

    def of(self, i: int) -> int:
        return (i * 2_654_435_761) % len(self.subjects)  # spread, deterministic


def _request_id(i: int) -> str:
    return f"{i:016x}" + "R" * 48  # 64 characters of the accepted alphabet, base64url-shaped


_REQUEST_ID_TAIL = pack_id(_request_id(0))[13:]  # the bytes "R" * 48 spells
# Base64url: each 4 characters of the id spell 3 bytes, so the 16 hex digits of i are four
# table look-ups of 4 digits each.
_QUAD = [base64.urlsafe_b64decode(f"{q:04x}") for q in range(1 << 16)]


def _packed_request_id(i: int) -> bytes:
    """``pack_id(_request_id(i))`` spelt from the table, without ``pack_id``'s round-trip
    checks per event (the verify of every trail recomputes each hash from these bytes)."""
    q = _QUAD
    return b"".join((b"\x01", q[(i >> 48) & 0xFFFF], q[(i >> 32) & 0xFFFF], q[(i >> 16) & 0xFFFF],
                     q[i & 0xFFFF], _REQUEST_ID_TAIL))


@contextmanager
def _subject_index_after(vault: Any) -> Iterator[None]:
    """Build the log's subject index once after the rows, as a bulk load does, instead of
    one random B-tree insert per row (at 10M events those miss SQLCipher's page cache, each
    miss a page decrypted and re-encrypted). The index is made again from its own SQL, so the
    schema is the migrations' (its pages come out fuller than grown ones: bytes per event are
    measured on a trail filled with the index in place). SQLite only: PostgreSQL keeps it."""
    if vault.dialect.name != "sqlite":
        yield
        return
    (sql,) = vault.query_one("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (_SUBJECT_INDEX,))
    vault.execute(f"DROP INDEX {_SUBJECT_INDEX}")
    try:
        yield
    finally:
        conn = vault.connection()
        conn.execute(f"PRAGMA cache_size = {-_SORT_CACHE_KIB}")  # the sort's memory
        try:
            vault.write(lambda c: c.execute(sql))
        finally:
            conn.execute(f"PRAGMA cache_size = {-vault.settings.cache_size_kib}")  # the engine's


def fill_compact(vault: Any, count: int, people: Population, seals: SealBook | None = None,
                 first_seq: int = 1, progress=None, *, index_after: bool = False) -> bytes:
    """Append ``count`` compact events after ``first_seq - 1``; returns the last hash.

    Each event's hash is the codec's own (``compact_hash``) and every ``SEAL_EVERY``-th its seal
    (``SealBook.seal_due``), so ``AuditTrail.verify`` (which the benchmark runs over every
    trail) accepts them; what is skipped is ``record_many``'s per-event validation and its
    interning round trips (the values are interned once, up front). Rows go in transactions of
    ``_TRANSACTION_ROWS``; ``index_after`` builds the subject index after the rows
    (``_subject_index_after``), for the 10M-event trails."""
    def terms(conn: Any) -> tuple[dict, dict, dict]:
        conn.executemany("INSERT INTO audit_actors (actor_id, actor_role) VALUES (?, ?) "
                         "ON CONFLICT DO NOTHING", ACTORS)
        conn.executemany("INSERT INTO audit_subjects (subject_hash) VALUES (?) ON CONFLICT DO NOTHING",
                         [(s,) for s in people.subjects])
        conn.executemany("INSERT INTO audit_resources (resource) VALUES (?) ON CONFLICT DO NOTHING",
                         [(r,) for r in people.resources])
        actor = {(r[1], r[2]): r[0] for r in conn.execute("SELECT actor_ref, actor_id, actor_role FROM audit_actors")}
        subject = {r[1]: r[0] for r in conn.execute("SELECT subject_ref, subject_hash FROM audit_subjects")}
        resource = {r[1]: r[0] for r in conn.execute("SELECT resource_ref, resource FROM audit_resources")}
        return actor, subject, resource

    actor_ref, subject_ref, resource_ref = vault.write(terms)
    prev = bytes.fromhex(GENESIS_HASH) if first_seq == 1 else bytes(vault.query_one(
        "SELECT event_hash FROM audit_log WHERE seq = ?", (first_seq - 1,))[0])
    read = ACTION_CODES["read"]
    actor_refs = [actor_ref[a] for a in ACTORS]
    person_refs = [(subject_ref[s], resource_ref[r]) for s, r in zip(people.subjects, people.resources)]
    subjects, resources = people.subjects, people.resources
    with _subject_index_after(vault) if index_after else nullcontext():
        for start in range(first_seq, first_seq + count, _TRANSACTION_ROWS):
            stop = min(first_seq + count, start + _TRANSACTION_ROWS)
            randomness = os.urandom(9 * (stop - start))
            rows = []
            for n, seq in enumerate(range(start, stop)):
                k, a = people.of(seq), seq % len(ACTORS)
                event_id = b"\x01" + randomness[9 * n:9 * n + 9]  # pack_id(secrets.token_urlsafe(12))
                at = T0_US + seq * STEP_US
                request_id = _packed_request_id(seq)
                prev = compact_hash(prev, seq, event_id, at, ACTORS[a][0], ACTORS[a][1], "read", subjects[k],
                                    resources[k], request_id, None)
                subject, resource = person_refs[k]
                rows.append((seq, event_id, at, actor_refs[a], read, subject, resource, request_id, None, prev))

            def insert(conn: Any, rows=rows) -> None:
                insert_rows(conn, "audit_log", ("seq", "event_id", "occurred_at", "actor_ref", "action",
                                                "subject_ref", "resource_ref", "request_id", "details",
                                                "event_hash"), rows)
                if seals is not None:
                    seals.seal_due(conn, [(r[0], r[-1]) for r in rows], rows[-1][2])
            vault.write(insert)
            if progress:
                progress(len(rows))
    return prev


def fill_legacy(vault: Any, count: int, people: Population) -> None:
    """``count`` events as the releases before vault migration 6 stored them."""
    prev = GENESIS_HASH
    for start in range(1, count + 1, _CHUNK):
        rows = []
        for seq in range(start, min(count + 1, start + _CHUNK)):
            k = people.of(seq)
            actor = ACTORS[seq % len(ACTORS)]
            row = {"seq": seq, "event_id": secrets.token_urlsafe(12), "occurred_at": iso(T0_US + seq * STEP_US),
                   "actor_id": actor[0], "actor_role": actor[1], "action": "read",
                   "subject_hash": people.subjects[k], "resource": people.resources[k],
                   "request_id": _request_id(seq), "details": None, "prev_hash": prev}
            row["event_hash"] = prev = compute_event_hash(row)
            rows.append(tuple(row.values()))
        vault.write(lambda conn, rows=rows: conn.executemany(
            "INSERT INTO audit_events (seq, event_id, occurred_at, actor_id, actor_role, action, subject_hash, "
            "resource, request_id, details, prev_hash, event_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows))
