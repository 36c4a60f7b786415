"""Bulk-built audit trails for bench/audit.py: millions of valid events in a minute or two.

Both forms are written straight into a migrated vault with the project's own encodings and
hashes (``compliance.audit_codec`` for the compact form, ``compute_event_hash`` for the legacy
``audit_events`` rows that releases before vault migration 6 wrote), so ``AuditTrail.verify``
accepts them; only the per-event Python of ``record_many`` is skipped. Events spread over
``subjects`` learners (one profile resource each) and a handful of service tokens, with client
request ids at their maximum accepted length (64 characters).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from compliance.audit_codec import ACTION_CODES, compact_hash, iso, pack_id
from compliance.audit_events import compute_event_hash
from compliance.audit_seals import SealBook
from compliance.hash_chain import GENESIS_HASH

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
STEP_US = 8_640  # 10M events a day
ACTORS = [(f"tok_{i:02d}{secrets.token_urlsafe(9)}", "service") for i in range(8)]
_CHUNK = 20_000


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


def fill_compact(vault: Any, count: int, people: Population, seals: SealBook | None = None,
                 first_seq: int = 1, progress=None) -> bytes:
    """Append ``count`` compact events after ``first_seq - 1``; returns the last hash."""
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
    for start in range(first_seq, first_seq + count, _CHUNK):
        rows = []
        for seq in range(start, min(first_seq + count, start + _CHUNK)):
            k = people.of(seq)
            actor = ACTORS[seq % len(ACTORS)]
            event_id, at = pack_id(secrets.token_urlsafe(12)), T0_US + seq * STEP_US
            request_id = pack_id(_request_id(seq))
            digest = compact_hash(prev, seq, event_id, at, actor[0], actor[1], "read",
                                  people.subjects[k], people.resources[k], request_id, None)
            rows.append((seq, event_id, at, actor_ref[actor], read, subject_ref[people.subjects[k]],
                         resource_ref[people.resources[k]], request_id, None, digest))
            prev = digest

        def insert(conn: Any, rows=rows) -> None:
            conn.executemany("INSERT INTO audit_log (seq, event_id, occurred_at, actor_ref, action, "
                             "subject_ref, resource_ref, request_id, details, event_hash) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
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
