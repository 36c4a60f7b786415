"""The nightly retention job archives old audit events, then deletes whole expired segments;
the chain verifies after each, and a DSR export still lists the archived disclosures."""

from __future__ import annotations

import dataclasses

import pytest

from archive_trail import put_back
from compliance.audit import Actor

SERVICE = Actor("tok_test_service", "service")
CAROL = "c" * 64


@pytest.fixture
def config(config, backend):  # backend named: pytest parametrises what it sees requested
    return dataclasses.replace(config, audit_seal_every=5, audit_archive_segment_events=10,
                               audit_archive_days=30, audit_retention_days=60)


def _segments(runtime) -> list[tuple[int, int]]:
    return [(r[0], r[1]) for r in runtime.vault_db.query(
        "SELECT first_seq, last_seq FROM audit_archive_segments ORDER BY first_seq")]


def test_the_job_archives_old_events_then_retention_deletes_whole_segments(runtime, clock):
    runtime.audit.record_many([(SERVICE, "read", {"subject_hash": CAROL, "request_id": f"r{i}"})
                               for i in range(22)])                                  # day 0: 1-22
    clock.advance(days=35)
    report = runtime.retention.run()
    assert report.audit_archived == 20 and _segments(runtime) == [(1, 10), (11, 20)]
    assert report.counts["audit_events"] == 0
    purge = runtime.audit.query(action="purge", limit=10)[-1]
    assert purge.details["audit_archived"] == 20
    assert runtime.audit.verify(full=True).ok
    disclosures = [e.seq for e in runtime.audit.iter_subject(CAROL)]
    assert disclosures == list(range(1, 23))

    clock.advance(days=30)  # day 65: the day-0 events are past the 60-day window
    report = runtime.retention.run()
    # Both segments go whole, then the live day-0 events 21-22 (no segment is left before them);
    # the first run's purge event (23) stays, within the window.
    assert report.audit_archived == 0 and _segments(runtime) == []
    assert report.counts["audit_events"] == 22
    assert runtime.vault_db.query_one("SELECT min(seq) FROM audit_log")[0] == 23
    assert runtime.audit.verify(full=True).ok
    assert [e.seq for e in runtime.audit.iter_subject(CAROL)] == []


def test_only_events_older_than_the_archive_window_move(runtime, clock):
    runtime.audit.record_many([(SERVICE, "read", {"subject_hash": CAROL, "request_id": f"old{i}"})
                               for i in range(22)])                                  # day 0: 1-22
    clock.advance(days=20)
    runtime.audit.record_many([(SERVICE, "read", {"subject_hash": CAROL, "request_id": f"new{i}"})
                               for i in range(10)])                                  # day 20: 23-32
    clock.advance(days=15)  # day 35: only the day-0 events are past the 30-day window

    report = runtime.retention.run()

    assert report.audit_archived == 20 and _segments(runtime) == [(1, 10), (11, 20)]
    assert runtime.vault_db.query_one("SELECT min(seq) FROM audit_log")[0] == 21


def test_a_purger_without_an_archive_window_leaves_every_event_live(runtime, clock):
    runtime.audit.record_many([(SERVICE, "read", {"subject_hash": CAROL, "request_id": f"r{i}"})
                               for i in range(22)])
    clock.advance(days=35)

    report = dataclasses.replace(runtime.retention, audit_archive_days=None).run()

    assert report.audit_archived == 0 and _segments(runtime) == []
    assert runtime.vault_db.query_one("SELECT min(seq), count(*) FROM audit_log")[:] == (1, 22)


@pytest.mark.sqlite_only("edits the vault file behind the service")
def test_an_archival_over_a_broken_chain_says_so_and_moves_nothing(runtime, clock, caplog, forge_audit_event):
    runtime.audit.record_many([(SERVICE, "read", {"subject_hash": CAROL, "request_id": f"r{i}"})
                               for i in range(22)])
    forge_audit_event(2)
    clock.advance(days=35)  # past the archive window, within the 60-day audit window (no purge)

    report = runtime.retention.run()

    assert report.audit_chain_broken == "event 2: content does not match its hash (edited?)"
    assert report.audit_archived == 0 and _segments(runtime) == []
    (purge,) = runtime.audit.query(action="purge")
    assert purge.details["audit_chain_broken"] is True and purge.details["audit_archived"] == 0
    assert "audit archival refused: the chain is broken at event 2 (content does not match its hash " \
        "(edited?))" in [r.getMessage() for r in caplog.records]


def test_an_archived_event_put_back_in_the_live_log_is_reported_and_nothing_moves(runtime, clock, caplog):
    runtime.audit.record_many([(SERVICE, "read", {"subject_hash": CAROL, "request_id": f"r{i}"})
                               for i in range(22)])                                  # day 0: 1-22
    saved = runtime.vault_db.query_one("SELECT * FROM audit_log WHERE seq = 5")
    clock.advance(days=1)
    runtime.audit.record_many([(SERVICE, "read", {"subject_hash": CAROL, "request_id": f"n{i}"})
                               for i in range(10)])                                  # day 1: 23-32
    clock.advance(days=29, hours=12)  # only the day-0 events are past the 30-day window
    assert runtime.retention.run().audit_archived == 20 and _segments(runtime) == [(1, 10), (11, 20)]
    put_back(runtime.vault_db, saved)
    clock.advance(days=20)  # day 50: 21-30 (sealed at 30) past the archive window, all within the audit window

    report = runtime.retention.run()

    reason = "event lies inside the archived or purged range (through 20); put back in the live log, " \
        "or the index or checkpoint altered?"
    assert report.audit_chain_broken == f"event 5: {reason}"
    assert report.audit_archived == 0 and _segments(runtime) == [(1, 10), (11, 20)]
    assert [r[0] for r in runtime.vault_db.query("SELECT seq FROM audit_log ORDER BY seq")][:13] == [5, *range(21, 33)]
    purge = runtime.audit.query(action="purge", limit=10)[-1]
    assert purge.details["audit_chain_broken"] is True and purge.details["audit_archived"] == 0
    assert f"audit archival refused: the chain is broken at event 5 ({reason})" in [r.getMessage() for r in caplog.records]
