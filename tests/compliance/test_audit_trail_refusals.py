"""The audit trail's refusals as its callers read them (the API's problem details, the CLI's
one line): bad query arguments, unknown event fields, an archive run without an archive; what
a trail without a journal does when asked to stage, flush or make room; and what its reads
and batches cost others: no wait for a writer, no second lookup of the values a batch named,
the progress of an archive run."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from compliance.audit import (MAX_QUERY_LIMIT, Actor, AuditTrail, InvalidAuditEventError,
                              InvalidAuditQueryError, UnknownAuditActionError)
from compliance.audit_archive import AuditArchiveError
from ticking_clock import T0, TickingClock
from writer_holding import read_while_a_writer_holds

SERVICE = Actor("tok_service1", "service")
ALICE = "a" * 64


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


@pytest.mark.parametrize("read", [lambda t: t.query(subject_hash=ALICE), lambda t: list(t.iter_subject(ALICE))])
def test_reading_the_trail_does_not_wait_for_a_writer_holding_the_vault(trail, vault, read):
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE})] * 3)

    events, finished_while_held = read_while_a_writer_holds(vault, lambda: read(trail))
    assert finished_while_held and [e.seq for e in events] == [1, 2, 3]


def test_a_batch_remembers_the_values_it_named_so_the_next_one_looks_none_up(trail, vault):
    vault.enable_statement_counting()
    batch = [(Actor("tok_batch", "service"), "read", {"subject_hash": "9" * 64, "resource": "profiles/b"})] * 3

    def statements_of() -> int:
        before = vault.counter.snapshot().statements
        assert trail.record_many(batch) == 3
        return vault.counter.snapshot().statements - before

    first = statements_of()
    assert statements_of() == first - 6  # an INSERT and a SELECT per kind fewer
    assert [(e.actor_id, e.resource) for e in trail.query()] == [("tok_batch", "profiles/b")] * 6


def test_an_archive_run_reports_its_progress_to_the_callers_bar(make_archiving_trail):
    trail = make_archiving_trail()
    trail.record_many([(SERVICE, "read", {})] * 25)
    bars: list = []

    class Bar:
        def __init__(self) -> None:
            self.done = 0

        def update(self, count: int) -> None:
            self.done += count

    @contextmanager
    def progress(title, total, unit):
        bars.append((title, unit, Bar()))
        yield bars[-1][2]

    run = trail.archive_older_than(T0 + timedelta(seconds=21), batch_size=7, progress=progress)

    assert (run.segments, run.events) == (2, 20)
    assert [(title, unit, bar.done) for title, unit, bar in bars] == [("archive audit events", "events", 20)]


def test_a_subjects_disclosures_list_an_archived_event_put_back_in_the_live_log_once(make_archiving_trail):
    from archive_trail import put_back

    trail = make_archiving_trail()
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE, "request_id": f"r{i}"}) for i in range(25)])
    saved = trail.vault.query_one("SELECT * FROM audit_log WHERE seq = 15")
    assert trail.archive_older_than(T0 + timedelta(seconds=21)).segments == 2
    put_back(trail.vault, saved)  # as someone with write access could

    assert [e.seq for e in trail.query(subject_hash=ALICE, limit=100)] == list(range(1, 26))
    assert [e.seq for e in trail.iter_subject(ALICE, batch=4)] == list(range(1, 26))
    assert [e.seq for e in trail.query(subject_hash=ALICE, after_seq=20)] == list(range(21, 26))


def test_a_query_without_a_limit_returns_the_first_100_events(trail):
    trail.record_many([(SERVICE, "read", {})] * 101)
    assert [e.seq for e in trail.query()] == list(range(1, 101))


def test_a_trails_verification_walks_everything_unless_told_to_start_at_a_seal(vault, keyring, db_key):
    from compliance.audit_seals import SealBook
    from storage_backends import raw_connection

    trail = AuditTrail(vault, clock=TickingClock(), seals=SealBook(keyring.audit_seal_key, every=10))
    trail.record_many([(SERVICE, "read", {"request_id": f"r{i}"}) for i in range(15)])
    assert trail.verify().ok  # marks the seal at 10
    raw = raw_connection(vault, db_key, without_triggers=("audit_log_no_update",))
    try:
        raw.execute("UPDATE audit_log SET details = '{}' WHERE seq = 5")
    finally:
        raw.close()

    assert (trail.verify().ok, trail.verify().first_bad) == (False, 5)
    assert (trail.verify(full=False).ok, trail.verify(full=False).since) == (True, 10)


def test_a_subjects_archived_events_are_filtered_from_since_inclusive(make_archiving_trail):
    trail = make_archiving_trail()  # event n at T0 + n s
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE})] * 25)
    assert trail.archive_older_than(T0 + timedelta(seconds=21)).segments == 2

    window = trail.query(subject_hash=ALICE, since=T0 + timedelta(seconds=5), until=T0 + timedelta(seconds=12))
    assert [e.seq for e in window] == [5, 6, 7, 8, 9, 10, 11]
