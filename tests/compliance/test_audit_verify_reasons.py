"""What a verification tells an auditor when the chain is broken: the first bad event and the
reason in words, for each way someone with the database's credentials could hide events
(at the start, behind a retention checkpoint, behind a seal, at the end with the sequence's
high-water mark reset too)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compliance.audit import Actor, AuditTrail, ChainVerification
from compliance.audit_seals import SealBook
from storage_backends import raw_connection
from ticking_clock import T0, TickingClock

SERVICE = Actor("tok_service1", "service")
ALICE = "a" * 64


@pytest.fixture
def vault(open_catalog_db):
    return open_catalog_db("privacy_vault")


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
