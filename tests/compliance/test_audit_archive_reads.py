"""A subject's archived disclosures are read from the segments that can hold them (past the
page's start, meeting its time window), so a segment outside the query is never read; one
that is read but missing, damaged or unreadable is named in the error the export or query
raises. A trail with an archive and nothing archived yet reads every event from the first."""

from __future__ import annotations

import pytest

from archive_trail import ALICE, BOB, append, at, flip_a_stored_bit, remove_segment, replace_segment, segments
from compliance.audit_archive import AuditArchiveError


@pytest.fixture
def trail(make_archiving_trail):
    return make_archiving_trail()


@pytest.fixture
def archived(trail):
    append(trail, 25)  # Alice's are the even seqs, Bob's the odd
    trail.archive_older_than(at(100))
    assert segments(trail) == [(1, 10), (11, 20)]
    return trail


def test_with_nothing_archived_yet_every_event_is_read_from_the_first(trail):
    append(trail, 5)
    assert [e.seq for e in trail.query()] == [1, 2, 3, 4, 5]
    assert [e.seq for e in trail.iter_subject(BOB)] == [1, 3, 5]
    assert [e.seq for e in trail.query(subject_hash=BOB)] == [1, 3, 5]


def test_the_archive_reads_a_subjects_events_from_the_first_seq_by_default(archived):
    events = list(archived.archive.subject_events(archived.vault.connection(), BOB))
    assert [e.seq for e in events] == list(range(1, 21, 2))
    assert events[0].prev_hash == "0" * 64 and events[0].request_id == "r0"


def test_a_query_reads_only_the_segments_past_its_start_and_within_its_window(archived):
    remove_segment(archived, 1)  # any read of 1-10 would now fail
    assert [e.seq for e in archived.query(subject_hash=ALICE, after_seq=12)] == [14, 16, 18, 20, 22, 24]
    assert [e.seq for e in archived.query(subject_hash=ALICE, since=at(15))] == [16, 18, 20, 22, 24]
    with pytest.raises(AuditArchiveError):
        archived.query(subject_hash=ALICE)


def test_a_page_of_archived_and_live_events_holds_no_more_than_its_limit(archived):
    # Alice's archived 18 and 20 fill two of the three; the live trail gives only the third
    assert [e.seq for e in archived.query(subject_hash=ALICE, after_seq=16, limit=3)] == [18, 20, 22]
    assert [e.seq for e in archived.query(subject_hash=ALICE, after_seq=22, limit=3)] == [24]


def test_a_query_ending_before_a_segment_never_reads_it(archived):
    remove_segment(archived, 11)
    assert [e.seq for e in archived.query(subject_hash=ALICE, until=at(5))] == [2, 4]
    with pytest.raises(AuditArchiveError):
        archived.query(subject_hash=ALICE, until=at(15))


@pytest.mark.parametrize("damage, reason", [
    (remove_segment, "is missing (deleted?)"),
    (flip_a_stored_bit, "fails its checksum (altered or replaced?)"),
    (lambda trail, first: replace_segment(trail, first, b"XXXX" + bytes(40)), "not an archive segment of this format"),
], ids=["missing", "altered", "not-a-segment"])
def test_an_export_reading_a_broken_segment_names_it(archived, damage, reason):
    damage(archived, 1)

    with pytest.raises(AuditArchiveError) as broken:
        list(archived.iter_subject(ALICE))

    assert str(broken.value) == f"archive segment of events 1-10 {reason}"
    with pytest.raises(AuditArchiveError) as again:
        archived.query(subject_hash=BOB)
    assert str(again.value) == f"archive segment of events 1-10 {reason}"
