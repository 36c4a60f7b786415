"""What the chain takes from a journal segment: only well-formed staged events. A plaintext
segment (the benchmark-only mode) can be written by anyone with the data directory, so a
forged one must neither crash the flush nor put a malformed event into the trail."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.audit_events import is_staged_event
from compliance.audit_journal import FORMAT_VERSION, MAGIC, SUFFIX, AuditJournal

pytestmark = pytest.mark.sqlite_only("the audit journal's segment files beside the vault file")

ALICE = "a" * 64


def staged(number: int, **changes) -> dict:
    event = {"actor_id": "tok_service1", "actor_role": "service", "action": "read",
             "subject_hash": ALICE, "resource": None, "request_id": f"req-{number}",
             "details": '{"profiles":1}', "event_id": f"evt{number:013d}",
             "occurred_at": f"2026-01-01T00:00:0{number % 10}.000000Z"}
    event.update(changes)
    return event


def missing(event: dict, name: str) -> dict:
    return {k: v for k, v in event.items() if k != name}


def write_dead_segment(directory: Path, records: list) -> Path:
    """A plaintext segment as a process that died left it: header, then length-prefixed JSON."""
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{1_700_000_000_000:013d}-999999-deadbeef{SUFFIX}"
    data = struct.pack(">4sBH", MAGIC, FORMAT_VERSION, 0)
    for record in records:
        payload = json.dumps(record).encode()
        data += struct.pack(">I", len(payload)) + payload
    path.write_bytes(data)
    return path


MALFORMED = [
    ["not", "an", "event"],                                   # not a dict
    missing(staged(3), "request_id"),                         # a field missing
    dict(staged(4), user_id="alice@example.org"),             # a field too many
    staged(5, subject_hash=12345),                            # a record field not text
    staged(6, details={"profiles": 1}),                       # details not JSON text
    staged(7, actor_id=None),                                 # no actor
    staged(10, event_id=None),                                # no event id
    staged(11, occurred_at=None),                             # no time
    staged(12, subject_hash=12345, resource="profiles/p1"),   # a record field not text, none None
    staged(13, actor_id=None, resource="profiles/p1"),        # no actor, every record field set
    staged(8, action="peek"),                                 # an unknown action, a known role
    staged(9, actor_role="superuser"),                        # a known action, an unknown role
]


def test_only_well_formed_events_of_a_forged_segment_join_the_chain(vault, tmp_path, caplog):
    directory = tmp_path / "journal"
    segment = write_dead_segment(directory, [staged(1), *MALFORMED, staged(2, resource=None, request_id=None)])
    trail = AuditTrail(vault, journal=AuditJournal(directory, None), flush_delay=60.0)
    try:
        with caplog.at_level(logging.ERROR, logger="compliance.audit"):
            assert trail.flush() == 2
    finally:
        trail.close()

    events = trail.query()
    assert [(e.seq, e.event_id, e.request_id, e.details) for e in events] == \
        [(1, "evt0000000000001", "req-1", {"profiles": 1}), (2, "evt0000000000002", None, {"profiles": 1})]
    assert trail.verify().ok
    assert f"{len(MALFORMED)} malformed staged audit events skipped" in caplog.messages
    assert not segment.exists()  # imported: the malformed records are not retried forever


class Text(str):
    """Text that is a str subclass: still text (the hash chain hashes it as the str it is, as
    test_hash_chain.py checks)."""


@pytest.mark.parametrize("name", ["actor_id", "subject_hash", "resource", "event_id"])
def test_a_field_holding_a_str_subclass_is_text(name):
    event = staged(1, resource="profiles/p1")
    assert is_staged_event(dict(event, **{name: Text(event[name])}))
    assert not is_staged_event(dict(event, **{name: 7}))


def test_a_segment_of_malformed_events_only_chains_nothing(vault, tmp_path, caplog):
    directory = tmp_path / "journal"
    write_dead_segment(directory, [staged(7, actor_id=None)])
    trail = AuditTrail(vault, journal=AuditJournal(directory, None), flush_delay=60.0)
    try:
        with caplog.at_level(logging.ERROR, logger="compliance.audit"):
            assert trail.flush() == 0
    finally:
        trail.close()

    assert trail.query() == [] and vault.query_one("SELECT count(*) FROM audit_log")[0] == 0
    assert "1 malformed staged audit events skipped" in caplog.messages


def test_the_values_a_flush_looked_up_are_remembered_for_the_next_append(vault, tmp_path):
    directory = tmp_path / "journal"
    write_dead_segment(directory, [staged(1), staged(2)])
    trail = AuditTrail(vault, journal=AuditJournal(directory, None), flush_delay=60.0)
    try:
        vault.enable_statement_counting()
        assert trail.flush() == 2
        before = vault.counter.snapshot().statements
        trail.record(Actor("tok_service1", "service"), "read", subject_hash=ALICE)
        cached = vault.counter.snapshot().statements - before
        before = vault.counter.snapshot().statements
        trail.record(Actor("tok_other", "service"), "read", subject_hash="b" * 64)
        new = vault.counter.snapshot().statements - before
    finally:
        trail.close()

    assert cached == new - 4  # an INSERT and a SELECT fewer for the actor and the subject
