"""Bulk-built audit trails for bench/audit.py: millions of valid events in a minute or two.

Both forms are written straight into a migrated vault with the project's own encodings and
hashes (``compliance.audit_codec`` for the compact form, ``compute_event_hash`` for the legacy
``audit_events`` rows that releases before vault migration 6 wrote), so ``AuditTrail.verify``
accepts them; only the per-event Python of ``record_many`` is skipped. Events spread over
``subjects`` learners (one profile resource each) and a handful of service tokens, with client
request ids at their maximum accepted length (64 characters).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from compliance.audit_codec import ACTION_CODES, HASH_DOMAIN, iso, pack_id
from compliance.audit_events import compute_event_hash
from compliance.audit_seals import SealBook
from compliance.hash_chain import GENESIS_HASH
from twin.storage.bulk import insert_rows

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
STEP_US = 8_640  # 10M events a day
ACTORS = [(f"tok_{i:02d}{secrets.token_urlsafe(9)}", "service") for i in range(8)]
_CHUNK = 20_000
_POSITION, _LENGTH = struct.Struct(">q"), struct.Struct(">I")  # compliance.hash_chain's encoding


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


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return b"S" + _LENGTH.pack(len(raw)) + raw


def _blob(value: bytes) -> bytes:
    return b"B" + _LENGTH.pack(len(value)) + value


def fill_compact(vault: Any, count: int, people: Population, seals: SealBook | None = None,
                 first_seq: int = 1, progress=None) -> bytes:
    """Append ``count`` compact events after ``first_seq - 1``; returns the last hash.

    Each hash is ``compact_hash``'s, spelt out here with the constant parts of an event
    (actor, action, subject, resource) encoded once per value instead of once per event, so
    10M events fill in minutes; ``AuditTrail.verify`` (which the benchmark runs over every
    trail) recomputes every hash the project's way, so a mismatch here would fail the run."""
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
    head = HASH_DOMAIN + b"\0"
    actor_parts = [_text(a[0]) + _text(a[1]) + _text("read") for a in ACTORS]
    actor_refs = [actor_ref[a] for a in ACTORS]
    person_parts = [_text(s) + _text(r) for s, r in zip(people.subjects, people.resources)]
    person_refs = [(subject_ref[s], resource_ref[r]) for s, r in zip(people.subjects, people.resources)]
    sha, pack_q = hashlib.sha256, _POSITION.pack
    for start in range(first_seq, first_seq + count, _CHUNK):
        stop = min(first_seq + count, start + _CHUNK)
        randomness = os.urandom(9 * (stop - start))
        rows = []
        for n, seq in enumerate(range(start, stop)):
            k = people.of(seq)
            a = seq % len(ACTORS)
            event_id = b"\x01" + randomness[9 * n:9 * n + 9]  # pack_id(secrets.token_urlsafe(12))
            at = T0_US + seq * STEP_US
            request_id = pack_id(_request_id(seq))
            digest = sha(b"".join((head, prev, pack_q(seq), _blob(event_id), b"I", pack_q(at), actor_parts[a],
                                   person_parts[k], _blob(request_id), b"N"))).digest()
            subject, resource = person_refs[k]
            rows.append((seq, event_id, at, actor_refs[a], read, subject, resource, request_id, None, digest))
            prev = digest

        def insert(conn: Any, rows=rows) -> None:
            insert_rows(conn, "audit_log", ("seq", "event_id", "occurred_at", "actor_ref", "action", "subject_ref",
                                            "resource_ref", "request_id", "details", "event_hash"), rows)
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
