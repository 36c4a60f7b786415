"""What a verification tells an auditor when the chain is broken: the first bad event and the
reason in words, for each way someone with the database's credentials could hide events
(at the start, behind a retention checkpoint, behind a seal, at the end with the sequence's
high-water mark reset too). Then what it reads and holds: in full by default, from the newest
marked seal only when asked, the live events alone without the archive, and a read snapshot
that never waits for the appends the API keeps making meanwhile."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compliance import audit_integrity
from compliance.audit import Actor, AuditTrail, ChainVerification
from compliance.audit_seals import SealBook
from storage_backends import raw_connection
from ticking_clock import T0, TickingClock
from writer_holding import read_while_a_writer_holds

SERVICE = Actor("tok_service1", "service")
ALICE = "a" * 64


@pytest.fixture
def raw(vault, db_key):
    conn = raw_connection(vault, db_key, without_triggers=("audit_log_no_update",))
    yield conn
    conn.close()


def append(trail: AuditTrail, count: int) -> None:
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE, "request_id": f"r{i}"}) for i in range(count)])


def sealed_trail(vault, keyring) -> AuditTrail:
    return AuditTrail(vault, clock=TickingClock(), seals=SealBook(keyring.audit_seal_key, every=10))


@pytest.mark.parametrize("deleted, reason", [
    ("seq = 1", "event 1 missing at the start of the trail (deleted?)"),
    ("seq <= 2", "events 1-2 missing at the start of the trail (deleted?)"),
])
def test_events_deleted_at_the_start_are_named_as_such(vault, raw, deleted, reason):
    trail = AuditTrail(vault, clock=TickingClock())
    append(trail, 4)
    raw.execute(f"DELETE FROM audit_log WHERE {deleted}")

    assert trail.verify() == ChainVerification(False, 0, int(deleted[-1]) + 1, reason)


@pytest.mark.parametrize("deleted, reason", [
    ("seq = 5", "event 5 missing at the end of the trail (deleted?)"),
    ("seq >= 4", "events 4-5 missing at the end of the trail (deleted?)"),
])
def test_events_deleted_at_the_end_are_named_after_the_events_still_sound(vault, raw, deleted, reason):
    trail = AuditTrail(vault, clock=TickingClock())
    append(trail, 5)
    raw.execute(f"DELETE FROM audit_log WHERE {deleted}")

    first = int(deleted[-1])
    assert trail.verify() == ChainVerification(False, first - 1, first, reason)


def test_a_checkpoint_moved_past_live_events_is_named_as_altered(vault, raw):
    trail = AuditTrail(vault, clock=TickingClock())
    append(trail, 6)  # event n at T0 + n s
    assert trail.purge_older_than(T0 + timedelta(seconds=2, milliseconds=500)) == 2
    raw.execute("UPDATE audit_checkpoints SET purged_through_seq = 4")  # hides events 3 and 4

    assert trail.verify() == ChainVerification(
        False, 0, 3, "event lies inside the purged range (through 4); checkpoint altered?")


def test_an_untouched_checkpoint_is_where_the_walk_starts(vault):
    trail = AuditTrail(vault, clock=TickingClock())
    append(trail, 6)
    trail.purge_older_than(T0 + timedelta(seconds=2, milliseconds=500))

    assert trail.verify() == ChainVerification(True, 4, None, None)
    checkpoint = vault.query_one("SELECT purged_through_seq, last_hash FROM audit_checkpoints")
    assert checkpoint["purged_through_seq"] == 2
    assert trail.query()[0].prev_hash == checkpoint["last_hash"]


def test_an_event_renumbered_to_0_at_the_start_is_out_of_sequence(vault, raw):
    trail = AuditTrail(vault, clock=TickingClock())
    append(trail, 3)
    raw.execute("UPDATE audit_log SET seq = 0 WHERE seq = 1")

    assert trail.verify() == ChainVerification(False, 0, 0, "out of sequence after event 0 (renumbered?)")


def test_an_event_renumbered_into_a_one_event_cut_lies_inside_the_purged_range(vault, raw):
    trail = AuditTrail(vault, clock=TickingClock())
    append(trail, 4)
    assert trail.purge_older_than(T0 + timedelta(seconds=1, milliseconds=500)) == 1
    raw.execute("UPDATE audit_log SET seq = 1 WHERE seq = 2")

    assert trail.verify() == ChainVerification(
        False, 0, 1, "event lies inside the purged range (through 1); checkpoint altered?")


def test_a_seal_found_sound_is_marked_at_the_verifying_trails_time(vault, keyring):
    from compliance.audit_codec import micros

    clock = TickingClock()
    trail = AuditTrail(vault, clock=clock, seals=SealBook(keyring.audit_seal_key, every=10))
    append(trail, 12)
    clock.now = T0 + timedelta(days=3)  # a second before the verification reads it
    assert trail.verify(full=True).ok

    marked = vault.query("SELECT seal_seq, verified_at FROM audit_seal_marks")
    assert [tuple(r) for r in marked] == [(10, micros("2026-01-04T00:00:01.000000Z"))]


@pytest.mark.parametrize("deleted", ["seq = 20", "seq >= 20"])
def test_a_verification_from_a_seal_whose_event_was_deleted_names_the_sealed_event(vault, raw, keyring, deleted):
    trail = sealed_trail(vault, keyring)
    append(trail, 25)
    assert trail.verify(full=True).ok  # marks the seals at 10 and 20
    raw.execute(f"DELETE FROM audit_log WHERE {deleted}")

    assert trail.verify(full=False) == ChainVerification(False, 0, 20, "the sealed event is missing (deleted?)")


@pytest.mark.sqlite_only("resets sqlite_sequence, the high-water mark, as the attacker would")
def test_deleting_the_tail_and_resetting_the_high_water_mark_is_caught_by_the_seal_left(vault, raw, keyring):
    trail = sealed_trail(vault, keyring)
    append(trail, 25)
    raw.execute("DELETE FROM audit_log WHERE seq >= 20")
    raw.execute("UPDATE sqlite_sequence SET seq = 19 WHERE name = 'audit_log'")
    raw.commit()

    assert trail.verify(full=True) == ChainVerification(
        False, 19, 20, "a seal names an event past the end of the trail (deleted?)")


def test_a_sealed_event_edited_and_rehashed_consistently_is_caught_by_its_seal(vault, raw, keyring):
    from compliance.audit_codec import compact_hash, micros, pack_id

    trail = sealed_trail(vault, keyring)
    append(trail, 25)
    assert trail.verify(full=True).ok
    event = trail.query(after_seq=19, limit=1)[0]
    forged = compact_hash(bytes.fromhex(event.prev_hash), 20, pack_id(event.event_id), micros(event.occurred_at),
                          event.actor_id, event.actor_role, "export", event.subject_hash, event.resource,
                          pack_id(event.request_id), None)  # anyone can compute it: no key goes in
    raw.execute("UPDATE audit_log SET action = 4, event_hash = ? WHERE seq = 20", (forged,))  # export

    assert trail.verify(full=False) == ChainVerification(
        False, 0, 20, "event does not match its seal (edited and rehashed?)")


def test_a_sealed_event_swapped_for_a_consistent_legacy_row_is_caught_by_its_seal(vault, raw, keyring):
    import hashlib
    import json

    trail = sealed_trail(vault, keyring)
    append(trail, 25)
    assert trail.verify(full=True).ok
    before = trail.query(after_seq=18, limit=1)[0]
    row = {"seq": 20, "event_id": "forged", "occurred_at": "2026-01-01T00:00:20.000000Z", "actor_id": "tok_x",
           "actor_role": "service", "action": "read", "subject_hash": None, "resource": None,
           "request_id": None, "details": None, "prev_hash": before.event_hash}
    row["event_hash"] = hashlib.sha256(json.dumps(row, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    raw.execute("DELETE FROM audit_log WHERE seq = 20")
    raw.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", tuple(row.values()))

    assert trail.verify(full=False) == ChainVerification(
        False, 0, 20, "event does not match its seal (edited and rehashed?)")


def test_a_removed_archive_segment_is_named_by_reading_it_and_by_the_full_verify(make_archiving_trail):
    from archive_trail import remove_segment
    from compliance.audit_archive_index import listed
    from compliance.audit_integrity import ArchiveBreak

    trail = make_archiving_trail()
    append(trail, 25)
    assert trail.archive_older_than(T0 + timedelta(seconds=21)).segments == 2
    first = listed(trail.vault.connection())[0]
    remove_segment(trail, first.first_seq)

    with pytest.raises(ArchiveBreak) as caught:
        trail.archive.read(trail.vault.connection(), first)
    reason = "archive segment of events 1-10 is missing (deleted?)"
    assert (caught.value.seq, caught.value.reason, str(caught.value)) == (1, reason, reason)
    assert trail.verify(full=True) == ChainVerification(False, 0, 1, reason)


# -- what a verification reads -----------------------------------------------------------

def test_the_chain_check_walks_everything_unless_told_to_start_at_a_seal(vault, keyring, db_key):
    seals = SealBook(keyring.audit_seal_key, every=10)
    trail = AuditTrail(vault, clock=TickingClock(), seals=seals)
    append(trail, 25)
    assert trail.verify(full=True).ok  # marks the seals at 10 and 20
    raw = raw_connection(vault, db_key, without_triggers=("audit_log_no_update",))
    try:
        raw.execute("UPDATE audit_log SET details = '{}' WHERE seq = 5")  # before the marked seals
    finally:
        raw.close()

    by_default = audit_integrity.verify(vault, 5000, seals)
    assert (by_default.ok, by_default.first_bad, by_default.since) == (False, 5, None)
    quick = audit_integrity.verify(vault, 5000, seals, full=False)
    assert (quick.ok, quick.checked, quick.since) == (True, 5, 20)


def test_a_verification_does_not_wait_for_a_writer_holding_the_vault(vault):
    trail = AuditTrail(vault, clock=TickingClock())
    append(trail, 5)

    result, finished_while_held = read_while_a_writer_holds(vault, trail.verify)
    assert finished_while_held and (result.ok, result.checked) == (True, 5)


def test_a_trail_without_the_archive_verifies_the_live_events_from_the_newest_segments_end(make_archiving_trail):
    archiving = make_archiving_trail()
    append(archiving, 25)
    assert archiving.archive_older_than(T0 + timedelta(seconds=21)).segments == 2

    live_only = AuditTrail(archiving.vault).verify()  # a tool without the archive's keys
    assert (live_only.ok, live_only.checked, live_only.first_bad) == (True, 5, None)
    assert (archiving.verify(full=True).ok, archiving.verify(full=True).checked) == (True, 25)


def test_a_forged_checkpoint_at_the_archives_end_is_caught_without_the_archive(make_archiving_trail):
    archiving = make_archiving_trail()
    append(archiving, 25)
    assert archiving.archive_older_than(T0 + timedelta(seconds=21)).segments == 2
    archiving.vault.execute("INSERT INTO audit_checkpoints (purged_through_seq, last_hash, created_at) "
                            "VALUES (20, ?, '2026-01-02T00:00:00.000000Z')", ("f" * 64,))

    assert AuditTrail(archiving.vault).verify() == ChainVerification(
        False, 0, 21, "content does not match its hash (edited?)")


def test_an_altered_archive_segment_is_named_after_the_events_verified_before_it(make_archiving_trail):
    from archive_trail import flip_a_stored_bit

    trail = make_archiving_trail()
    append(trail, 25)
    assert trail.archive_older_than(T0 + timedelta(seconds=21)).segments == 2
    flip_a_stored_bit(trail, 11)

    assert trail.verify(full=True) == ChainVerification(
        False, 10, 11, "archive segment of events 11-20 fails its checksum (altered or replaced?)")
