"""An audit event's stored form and the refusals a caller reads: the random event id and its
packed bytes, the details as canonical JSON text in the row, and every validation message in
full (they reach the API's problem details and the CLI's one line)."""

from __future__ import annotations

import base64
import json
import re

import pytest

from compliance.audit import Actor, AuditTrail, InvalidAuditEventError, UnknownAuditActionError
from ticking_clock import TickingClock

SERVICE = Actor("tok_service1", "service")
ALICE = "a" * 64


@pytest.fixture
def trail(vault) -> AuditTrail:
    return AuditTrail(vault, clock=TickingClock())


def stored(vault, column: str, seq: int = 1):
    value = vault.query_one(f"SELECT {column} FROM audit_log WHERE seq = ?", (seq,))[0]
    return bytes(value) if isinstance(value, (bytes, memoryview)) else value


def test_an_event_id_is_96_random_bits_spelled_in_16_url_safe_characters_and_stored_as_them(trail, vault):
    events = [trail.record(SERVICE, "read") for _ in range(2)]

    for seq, event in enumerate(events, start=1):
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}", event.event_id)
        raw = base64.urlsafe_b64decode(event.event_id)
        assert len(raw) == 12 and stored(vault, "event_id", seq) == b"\x01" + raw  # tag 1: base64url
    assert events[0].event_id != events[1].event_id


def test_details_are_stored_as_canonical_ascii_json_text(trail, vault):
    event = trail.record(SERVICE, "update", subject_hash=ALICE,
                         details={"tables": ["sessions", "profiles"], "count": 2, "note_id": "Zoë"})

    assert stored(vault, "details") == '{"count":2,"note_id":"Zo\\u00eb","tables":["sessions","profiles"]}'
    assert event.details == {"count": 2, "note_id": "Zoë", "tables": ["sessions", "profiles"]}
    assert trail.query()[0].details == event.details and trail.verify().ok


def test_details_of_exactly_the_limit_are_kept_one_byte_more_is_refused(trail, vault):
    wrapper = len(json.dumps({"x": ""}, separators=(",", ":")))
    trail.record(SERVICE, "read", details={"x": "a" * (8192 - wrapper)})
    assert len(stored(vault, "details")) == 8192

    with pytest.raises(InvalidAuditEventError) as caught:
        trail.record(SERVICE, "read", details={"x": "a" * (8193 - wrapper)})
    assert str(caught.value) == "details are 8193 bytes; keep them under 8192 (counts and ids only)"
    assert len(trail.query()) == 1


def test_an_event_without_details_reads_back_as_json_with_null_details(trail):
    event = trail.record(SERVICE, "read", subject_hash=ALICE)

    item = json.loads(json.dumps(event.to_dict()))
    assert item["details"] is None and item == trail.query()[0].to_dict()


@pytest.mark.parametrize("make, message", [
    (lambda: Actor("", "admin"), "actor_id must be a non-empty string"),
    (lambda: Actor("tok_1", "superuser"), "actor role must be one of admin, learner, operator, service, system"),
])
def test_an_actor_is_refused_with_the_whole_reason(make, message):
    with pytest.raises(InvalidAuditEventError) as caught:
        make()
    assert str(caught.value) == message


@pytest.mark.parametrize("actor, action, fields, message", [
    ("tok_service1", "read", {}, "actor must be an Actor"),
    (SERVICE, "read", {"details": ["a", "list"]}, "details must be a dict of counts and ids, or None"),
    (SERVICE, "read", {"resource": 7}, "resource must be a string or None"),
    (SERVICE, "read", {"subject_hash": b"a"}, "subject_hash must be a string or None"),
    (SERVICE, "read", {"request_id": 1.5}, "request_id must be a string or None"),
])
def test_an_event_is_refused_with_the_whole_reason_and_nothing_is_written(trail, actor, action, fields, message):
    with pytest.raises(InvalidAuditEventError) as caught:
        trail.record(actor, action, **fields)
    assert str(caught.value) == message
    with pytest.raises(InvalidAuditEventError) as caught:
        trail.record_many([(actor, action, fields)])
    assert str(caught.value) == message
    assert trail.query() == []


def test_an_unknown_action_is_refused_naming_the_known_ones(trail):
    with pytest.raises(UnknownAuditActionError) as caught:
        trail.record(SERVICE, "peek")
    assert str(caught.value) == (
        "unknown audit action 'peek'; known: consent_grant, consent_withdraw, create, delete, erase, "
        "export, hold_lift, hold_place, key_rotate, model_fit, model_recompute, purge, read, "
        "restore_reapply, update")


@pytest.mark.parametrize("edited", ["not json", "[1, 2]", '"text"'])
def test_details_edited_into_something_else_still_read_and_the_event_fails_verification(trail, vault, db_key, edited):
    from storage_backends import raw_connection

    trail.record(SERVICE, "read", details={"profiles": 1})
    trail.record(SERVICE, "read", details={"profiles": 2})
    raw = raw_connection(vault, db_key, without_triggers=("audit_log_no_update",))
    try:
        raw.execute("UPDATE audit_log SET details = ? WHERE seq = 2", (edited,))
    finally:
        raw.close()

    assert [e.details for e in trail.query()] == [{"profiles": 1}, {"_unparsed": edited}]
    result = trail.verify()
    assert (result.ok, result.first_bad, result.reason) == (False, 2, "content does not match its hash (edited?)")


def test_a_batch_of_200_events_is_stored_whole_and_in_order(trail, vault):
    # More than one multi-row INSERT (64 rows at most each) and a remainder that is no power of 2.
    count = trail.record_many([(SERVICE, "read", {"request_id": f"req-{i:03d}", "details": {"i": i}})
                               for i in range(200)])

    assert count == 200
    rows = vault.query("SELECT seq, details FROM audit_log ORDER BY seq")
    assert [(r["seq"], r["details"]) for r in rows] == [(i + 1, f'{{"i":{i}}}') for i in range(200)]
    assert [e.request_id for e in trail.query(limit=1000)] == [f"req-{i:03d}" for i in range(200)]
    assert trail.verify().checked == 200
