"""Retention of the trail itself, as the vault records it: one checkpoint row per purge run
(where the surviving chain starts, and when the cut was made), the batches it deletes in, and
the refusals of a batch size that could not make progress."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from compliance import audit_integrity
from compliance.audit import Actor, AuditTrail, ChainVerification, InvalidAuditQueryError

SERVICE = Actor("tok_service1", "service")
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def append_minutes(trail: AuditTrail, clock: Clock, count: int) -> None:
    for i in range(count):
        trail.record(SERVICE, "read", request_id=f"r{i}")
        clock.now += timedelta(minutes=1)


def checkpoints(vault) -> list[tuple]:
    return [tuple(r) for r in vault.query(
        "SELECT id, purged_through_seq, last_hash, created_at FROM audit_checkpoints ORDER BY id")]


def test_each_purge_run_leaves_one_checkpoint_naming_its_cut_its_hash_and_its_time(vault):
    clock = Clock()
    trail = AuditTrail(vault, clock=clock)
    append_minutes(trail, clock, 8)                        # events 1-8 at 00:00 .. 00:07
    hashes = {e.seq: e.event_hash for e in trail.query()}

    clock.now = datetime(2026, 2, 1, 3, 0, tzinfo=timezone.utc)
    assert trail.purge_older_than(T0 + timedelta(minutes=5), batch_size=2) == 5    # three batches
    clock.now += timedelta(hours=1)
    assert trail.purge_older_than(T0 + timedelta(minutes=7), batch_size=2) == 2    # a run of its own

    assert checkpoints(vault) == [(1, 5, hashes[5], "2026-02-01T03:00:00.000000Z"),
                                  (2, 7, hashes[7], "2026-02-01T04:00:00.000000Z")]
    assert [e.seq for e in trail.query()] == [8]
    assert trail.verify() == ChainVerification(True, 1, None, None)


def test_a_run_whose_last_batch_is_full_ends_on_the_empty_one_after_it(vault):
    clock = Clock()
    trail = AuditTrail(vault, clock=clock)
    append_minutes(trail, clock, 6)

    assert trail.purge_older_than(T0 + timedelta(minutes=4), batch_size=2) == 4
    assert [c[1] for c in checkpoints(vault)] == [4]
    assert [e.seq for e in trail.query()] == [5, 6] and trail.verify().ok


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_under_one_is_refused_and_nothing_is_purged(vault, batch_size):
    clock = Clock()
    trail = AuditTrail(vault, clock=clock)
    append_minutes(trail, clock, 3)
    later = T0 + timedelta(days=1)

    with pytest.raises(InvalidAuditQueryError) as by_trail:
        trail.purge_older_than(later, batch_size=batch_size)
    with pytest.raises(InvalidAuditQueryError) as by_module:
        audit_integrity.purge_older_than(vault, later, batch_size, clock)

    assert str(by_trail.value) == str(by_module.value) == "batch_size must be at least 1"
    assert len(trail.query()) == 3 and checkpoints(vault) == []


def test_a_batch_of_one_event_at_a_time_is_allowed(vault):
    clock = Clock()
    trail = AuditTrail(vault, clock=clock)
    append_minutes(trail, clock, 3)

    assert trail.purge_older_than(T0 + timedelta(minutes=2), batch_size=1) == 2
    assert [c[1] for c in checkpoints(vault)] == [2] and trail.verify().ok


def test_the_actors_and_resources_only_purged_events_named_leave_the_vault(vault):
    clock = Clock()
    trail = AuditTrail(vault, clock=clock)
    trail.record(Actor("tok_gone", "admin"), "export", resource="dsr/export/gone")
    clock.now += timedelta(minutes=1)
    trail.record(SERVICE, "read", resource="profiles/kept")

    assert trail.purge_older_than(T0 + timedelta(seconds=30)) == 1

    assert [r[0] for r in vault.query("SELECT actor_id FROM audit_actors")] == ["tok_service1"]
    assert [r[0] for r in vault.query("SELECT resource FROM audit_resources")] == ["profiles/kept"]
    assert [(e.actor_id, e.resource) for e in trail.query()] == [("tok_service1", "profiles/kept")]
