"""Archive segments are written in the binary format 2 and those of format 1 (JSON, the first
release's) are still read: both hold the same events, verify, export a subject's disclosures,
and rewrap; the binary one is smaller."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.audit_archive_segments import checksum, decode, encode, rewrapped, subject_rows
from compliance.field_crypto import FieldCipher
from compliance.keyring_watcher import field_keys
from ticking_clock import T0

SERVICE = Actor("tok_service1", "service")
ALICE, BOB = "a" * 64, "b" * 64


@pytest.fixture
def trail(make_archiving_trail) -> AuditTrail:
    trail = make_archiving_trail()
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE if i % 2 else BOB, "resource": f"profile:p{i % 3}",
                                          "request_id": f"r{i:03d}", "details": {"count": i} if i % 4 else None})
                       for i in range(25)])
    assert trail.archive_older_than(T0 + timedelta(seconds=21)).segments == 2
    return trail


def _as_format_1(trail: AuditTrail, first_seq: int) -> bytes:
    """What the first release stored for the same segment, in its place (index agreeing)."""
    archive, vault = trail.archive, trail.vault
    content = archive.read(vault.connection(), next(s for s in _listed(trail) if s.first_seq == first_seq))
    body = encode(content, archive._keys, version=1)  # noqa: SLF001 - the archive's keys
    if archive.store.in_vault:
        vault.execute("UPDATE audit_archive_blobs SET body = ? WHERE first_seq = ?", (body, first_seq))
    else:
        archive.store.put(None, first_seq, body)
    vault.execute("UPDATE audit_archive_segments SET checksum = ?, bytes = ? WHERE first_seq = ?",
                  (checksum(body), len(body), first_seq))
    return body


def _listed(trail):
    from compliance.audit_archive_index import listed
    return listed(trail.vault.connection())


def test_a_format_1_segment_reads_verifies_and_exports_as_the_binary_one_does(trail, keyring):
    binary = trail.archive.store.get(trail.vault.connection(), 11)
    assert binary[4] == 2  # written in format 2
    before = decode(binary, 11, trail.archive._keys)  # noqa: SLF001
    alice_before = [(e.seq, e.request_id, e.details, e.prev_hash) for e in trail.iter_subject(ALICE)]

    old = _as_format_1(trail, 11)

    assert old[4] == 1 and len(binary) < len(old)
    assert decode(old, 11, trail.archive._keys) == before  # noqa: SLF001 - same rows, same types
    full = trail.verify(full=True)
    assert (full.ok, full.checked) == (True, 25)
    assert [(e.seq, e.request_id, e.details, e.prev_hash) for e in trail.iter_subject(ALICE)] == alice_before
    assert [row["seq"] for _, row, _ in subject_rows(old, 11, trail.archive._keys, BOB)] == \
        [row["seq"] for _, row, _ in subject_rows(binary, 11, trail.archive._keys, BOB)] == [11, 13, 15, 17, 19]
    # A rotation rewraps it in its own format.
    rotated = keyring.with_new_field_key()
    keys = field_keys(FieldCipher(rotated.field_keys, rotated.active_field_key))
    again = rewrapped(old, 11, keys)
    assert again[4] == 1 and decode(again, 11, keys) == before


@pytest.mark.parametrize("cut", [1, 33, 200])
def test_a_binary_plaintext_cut_short_is_refused_not_read_as_fewer_events(trail, cut):
    import struct

    from compliance import audit_archive_codec as codec
    content = decode(trail.archive.store.get(trail.vault.connection(), 1), 1, trail.archive._keys)  # noqa: SLF001
    plain = codec.pack(content.first_seq, content.last_seq, content.prev_hash, content.events)
    assert codec.unpack(plain) == (1, 10, content.prev_hash, content.events)
    with pytest.raises((ValueError, IndexError, struct.error)):
        codec.unpack(plain[:-cut])


def test_a_format_1_segment_of_legacy_and_compact_events_reads_and_exports_as_the_binary_one(make_archiving_trail):
    from compliance.audit_events import compute_event_hash
    from datetime import timedelta as later
    trail, prev, rows = make_archiving_trail(), "0" * 64, []
    for seq in range(1, 6):  # the first release's rows (vault migration 6 found them so)
        row = {"seq": seq, "event_id": f"e{seq:015d}", "occurred_at": f"2026-01-01T00:00:0{seq}.000000Z",
               "actor_id": "tok_old", "actor_role": "service", "action": "read", "subject_hash": "e" * 64,
               "resource": None, "request_id": None, "details": None, "prev_hash": prev}
        row["event_hash"] = prev = compute_event_hash(row)
        rows.append(tuple(row.values()))
    trail.vault.write(lambda conn: conn.executemany(
        "INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows))
    trail.record_many([(SERVICE, "read", {"subject_hash": "e" * 64 if i == 0 else ALICE}) for i in range(17)])
    assert trail.archive_older_than(T0 + later(seconds=100)).segments == 2
    keys = trail.archive._keys  # noqa: SLF001
    binary = trail.archive.store.get(trail.vault.connection(), 1)
    exported = {s: [(e.seq, e.prev_hash, e.event_hash) for e in trail.iter_subject(s)] for s in ("e" * 64, ALICE)}

    old = _as_format_1(trail, 1)

    assert old[4] == 1 and decode(old, 1, keys) == decode(binary, 1, keys)
    for subject in ("e" * 64, ALICE):
        assert subject_rows(old, 1, keys, subject) == subject_rows(binary, 1, keys, subject)
    assert [seq for seq, _, _ in exported["e" * 64]] == [1, 2, 3, 4, 5, 6]
    assert {s: [(e.seq, e.prev_hash, e.event_hash) for e in trail.iter_subject(s)] for s in exported} == exported
    assert trail.verify(full=True).ok
