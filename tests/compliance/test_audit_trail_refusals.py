"""The audit trail's refusals as its callers read them (the API's problem details, the CLI's
one line): bad query arguments, unknown event fields, an archive run without an archive; and
what a trail without a journal does when asked to stage, flush or make room."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from compliance.audit import (MAX_QUERY_LIMIT, Actor, AuditTrail, InvalidAuditEventError,
                              InvalidAuditQueryError, UnknownAuditActionError)
from compliance.audit_archive import AuditArchiveError
from ticking_clock import TickingClock

SERVICE = Actor("tok_service1", "service")
ALICE = "a" * 64


@pytest.fixture
def vault(open_catalog_db):
    return open_catalog_db("privacy_vault")


@pytest.fixture
def trail(vault) -> AuditTrail:
    return AuditTrail(vault, clock=TickingClock())


@pytest.mark.parametrize("limit", [0, MAX_QUERY_LIMIT + 1, True, 10.0, "10"])
def test_a_query_limit_out_of_range_is_refused_with_the_range(trail, limit):
    with pytest.raises(InvalidAuditQueryError) as caught:
        trail.query(limit=limit)
    assert str(caught.value) == "limit must be between 1 and 1000"


def test_a_query_limit_at_either_end_of_the_range_is_served(trail):
    trail.record_many([(SERVICE, "read", {})] * 3)
    assert [e.seq for e in trail.query(limit=1)] == [1]
    assert [e.seq for e in trail.query(limit=MAX_QUERY_LIMIT)] == [1, 2, 3]


def test_an_unknown_action_filter_is_refused_by_name(trail):
    with pytest.raises(UnknownAuditActionError) as caught:
        trail.query(action="peek")
    assert str(caught.value) == "unknown audit action 'peek'"


def test_a_subject_stream_in_batches_under_one_is_refused(trail):
    with pytest.raises(InvalidAuditQueryError) as caught:
        next(trail.iter_subject(ALICE, batch=0))
    assert str(caught.value) == "batch must be at least 1"


def test_a_subject_stream_in_batches_of_one_yields_every_event(trail):
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE})] * 3)
    assert [e.seq for e in trail.iter_subject(ALICE, batch=1)] == [1, 2, 3]


def test_unknown_event_fields_are_named_in_order_and_nothing_is_written(trail):
    with pytest.raises(InvalidAuditEventError) as caught:
        trail.record_many([(SERVICE, "read", {"subject_hash": ALICE}),
                           (SERVICE, "read", {"user_id": "alice@example.org", "email": "a@example.org"})])
    assert str(caught.value) == "unknown event field(s): email, user_id"
    assert trail.query() == []


def test_an_archive_run_without_an_archive_is_refused(trail):
    trail.record(SERVICE, "read")
    with pytest.raises(AuditArchiveError) as caught:
        trail.archive_older_than(datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert str(caught.value) == "this audit trail has no archive configured"
    assert len(trail.query()) == 1


def test_without_a_journal_staging_records_at_once_and_there_is_nothing_to_flush(trail, vault):
    trail.ensure_room()  # nothing to reserve
    event_id = trail.stage(SERVICE, "read", subject_hash=ALICE, resource="profiles/p1",
                           request_id="req-1", details={"profiles": 1})

    assert trail.flush() == 0
    [event] = trail.query()
    assert (event.event_id, event.subject_hash, event.resource, event.request_id, event.details) == \
        (event_id, ALICE, "profiles/p1", "req-1", {"profiles": 1})
    trail.close()
    assert trail.verify().ok
