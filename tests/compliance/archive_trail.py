"""What the audit-archive tests do to a trail: append events at times they can name, look at the
segments and live events, and damage a stored segment as an attacker or a key holder could."""

from __future__ import annotations

from datetime import datetime, timedelta

from compliance.audit import Actor, AuditTrail
from compliance.audit_archive_segments import archive_dir, checksum, decode, encode
from ticking_clock import T0

SERVICE = Actor("tok_service1", "service")
SCRIPT = Actor("script:import", "operator")
ALICE, BOB = "a" * 64, "b" * 64


def at(event: int) -> datetime:
    """Just after event ``event`` happened (the clock ticks a second per event)."""
    return T0 + timedelta(seconds=event, milliseconds=500)


def append(trail: AuditTrail, count: int, subject=lambda i: ALICE if i % 2 else BOB, actor=SERVICE) -> None:
    trail.record_many([(actor, "read", {"subject_hash": subject(i), "resource": f"profile:p{i % 3}",
                                        "request_id": f"r{i}"}) for i in range(count)])


def segments(trail: AuditTrail) -> list[tuple[int, int]]:
    return [(r[0], r[1]) for r in trail.vault.query(
        "SELECT first_seq, last_seq FROM audit_archive_segments ORDER BY first_seq")]


def live_seqs(trail: AuditTrail) -> list[int]:
    return [r[0] for r in trail.vault.query("SELECT seq FROM audit_log ORDER BY seq")]


def put_back(vault, row) -> None:
    """Insert a saved ``audit_log`` row again, as someone with write access could after its event
    was archived (the live log refuses an UPDATE, not an INSERT)."""
    columns = list(row.keys())
    vault.execute(f"INSERT INTO audit_log ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                  tuple(row[c] for c in columns))


def stored_bytes(trail: AuditTrail, first_seq: int) -> bytes:
    return trail.archive.store.get(trail.vault.connection(), first_seq)


def store_bytes(trail: AuditTrail, first_seq: int, body: bytes) -> None:
    """Put ``body`` where the segment starting at ``first_seq`` is kept, index untouched."""
    if trail.archive.store.in_vault:
        trail.vault.execute("DELETE FROM audit_archive_blobs WHERE first_seq = ?", (first_seq,))
        trail.vault.execute("INSERT INTO audit_archive_blobs (first_seq, body) VALUES (?, ?)", (first_seq, body))
    else:
        trail.archive.store.put(None, first_seq, body)


def replace_segment(trail: AuditTrail, first_seq: int, body: bytes) -> None:
    """What someone holding the keys could do: store other bytes as the segment, and make the
    index's checksum and size agree."""
    store = trail.archive.store
    if store.in_vault:
        trail.vault.execute("UPDATE audit_archive_blobs SET body = ? WHERE first_seq = ?", (body, first_seq))
    else:
        (archive_dir(trail.vault.path) / f"{first_seq:016d}.ltaa").write_bytes(body)
    trail.vault.execute("UPDATE audit_archive_segments SET checksum = ?, bytes = ? WHERE first_seq = ?",
                        (checksum(body), len(body), first_seq))


def edit_an_archived_event(trail: AuditTrail, first_seq: int) -> None:
    """What someone holding the keys could do: change one archived event's details and store the
    segment re-encoded, with the index's checksum and size made to agree."""
    keys = trail.archive._keys  # noqa: SLF001
    content = decode(stored_bytes(trail, first_seq), first_seq, keys)
    content.events[4][1]["details"] = '{"rows":0}'
    replace_segment(trail, first_seq, encode(content, keys))


def flip_a_stored_bit(trail: AuditTrail, first_seq: int) -> None:
    """Damage a segment's stored bytes without touching the index (its checksum now disagrees)."""
    body = bytearray(stored_bytes(trail, first_seq))
    body[-5] ^= 1
    if trail.archive.store.in_vault:
        trail.vault.execute("UPDATE audit_archive_blobs SET body = ? WHERE first_seq = ?", (bytes(body), first_seq))
    else:
        trail.archive.store.put(None, first_seq, bytes(body))


def remove_segment(trail: AuditTrail, first_seq: int) -> None:
    trail.archive.store.remove(trail.vault.connection(), first_seq)
