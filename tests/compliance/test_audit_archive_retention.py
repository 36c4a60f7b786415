"""Retention deletes a whole segment only once its newest event is older than the cutoff and
the segment verifies from the retention cut (every event in place, ending where its index
says); the seals of what it deleted go with it. Segment files a crash kept after retention
unlisted them go with the next run, one by one, each read first: one that cannot be read, or
reaches past the cut, is kept and logged."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from archive_trail import append, at, replace_segment, segments, store_bytes, stored_bytes
from compliance.audit import AuditChainBrokenError, AuditTrail
from compliance.audit_archive_segments import SegmentContent, decode, encode
from compliance.audit_seals import SealBook
from compliance.field_crypto import FieldCipher
from ticking_clock import T0, TickingClock
from twin.catalog import audit_archive


@pytest.fixture
def trail(make_archiving_trail):
    return make_archiving_trail()


def _stored(trail) -> list[int]:
    return trail.archive.store.stored(trail.vault.connection())


def test_a_segment_whose_newest_event_is_at_the_cutoff_is_kept_and_one_a_microsecond_older_goes(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    newest = T0 + timedelta(seconds=10)  # when event 10, the first segment's last, happened
    assert [e.occurred_at for e in trail.iter_subject("a" * 64) if e.seq == 10] == ["2026-01-01T00:00:10.000000Z"]

    assert trail.purge_older_than(newest) == 0
    assert segments(trail) == [(1, 10), (11, 20)]
    assert trail.purge_older_than(newest + timedelta(microseconds=1)) == 10
    assert segments(trail) == [(11, 20)]


def test_retention_forgets_the_seals_of_the_segments_it_deletes(trail):
    append(trail, 35)
    trail.archive_older_than(at(31))
    trail.verify(full=True)  # marks the seal at 30
    assert [r[0] for r in trail.vault.query("SELECT seq FROM audit_seals ORDER BY seq")] == [10, 20, 30]

    assert trail.purge_older_than(at(15)) == 10

    assert [r[0] for r in trail.vault.query("SELECT seq FROM audit_seals ORDER BY seq")] == [20, 30]
    assert trail.verify(full=True).ok and trail.verify(full=False).ok


def test_retention_refuses_a_segment_with_an_event_taken_out_by_someone_with_the_keys(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    keys = trail.archive._keys  # noqa: SLF001 - what a key holder has
    content = decode(stored_bytes(trail, 1), 1, keys)
    del content.events[4]  # event 5; the range, its ends and its hashes unchanged
    replace_segment(trail, 1, encode(SegmentContent(1, 10, content.prev_hash, content.events), keys, version=1))

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.purge_older_than(at(100))

    assert (broken.value.seq, broken.value.reason) == (6, "event 5 missing before it (deleted?)")
    assert segments(trail) == [(1, 10), (11, 20)] and _stored(trail) == [1, 11]


def test_retention_refuses_a_segment_that_does_not_end_where_its_index_says(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    trail.vault.execute("UPDATE audit_archive_segments SET last_hash = ? WHERE first_seq = 1", (bytes(32),))

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.purge_older_than(at(100))

    assert (broken.value.seq, broken.value.reason) == (1, "archive segment does not end where its index says")
    assert segments(trail) == [(1, 10), (11, 20)] and _stored(trail) == [1, 11]


@pytest.mark.postgresql_only("on SQLCipher the file goes after the commit that unlists it (a crash there "
                             "leaves it to the next run)")
def test_on_postgresql_a_segments_bytes_go_in_the_transaction_that_unlists_it(trail, monkeypatch):
    append(trail, 35)
    trail.archive_older_than(at(31))

    def power_lost():
        raise RuntimeError("power lost")
    # The crash: once retention's transactions committed, before its sweep of leftovers.
    monkeypatch.setattr(trail.archive, "_drop_expired_leftovers", power_lost)
    with pytest.raises(RuntimeError):
        trail.purge_older_than(at(15))

    assert segments(trail) == [(11, 20), (21, 30)]
    assert [r[0] for r in trail.vault.query("SELECT first_seq FROM audit_archive_blobs ORDER BY first_seq")] == [11, 21]


@pytest.fixture
def crash_kept(trail):
    """Segments 1-10 and 11-20 retention unlisted (the cut at 20), 21-30 listed; returns the
    stored bytes of 11-20, to put back as a file a crash kept."""
    append(trail, 35)
    trail.archive_older_than(at(31))
    body = stored_bytes(trail, 11)
    assert trail.purge_older_than(at(21)) == 20 and segments(trail) == [(21, 30)]
    return body


def test_an_unreadable_leftover_below_the_cut_is_kept_and_logged_and_the_next_one_still_goes(
        trail, crash_kept, caplog):
    store_bytes(trail, 1, b"not a segment at all")
    store_bytes(trail, 11, crash_kept)
    assert _stored(trail) == [1, 11, 21]

    with caplog.at_level(logging.WARNING, logger="compliance.audit_archive"):
        assert trail.purge_older_than(at(21)) == 0

    assert _stored(trail) == [1, 21]
    assert [r.getMessage() for r in caplog.records if r.name == "compliance.audit_archive"] == [
        "an unlisted archive segment from event 1 is kept: it is not wholly below the retention cut, "
        "or cannot be read"]
    assert trail.verify(full=True).ok


def test_a_leftover_another_run_removes_meanwhile_is_passed_over_and_the_next_one_still_goes(trail, crash_kept):
    kept = stored_bytes(trail, 21)
    store_bytes(trail, 1, encode(SegmentContent(1, 10, bytes(32), []), trail.archive._keys))  # noqa: SLF001
    store_bytes(trail, 11, crash_kept)
    store = trail.archive.store
    real_get = store.get

    def get_after_another_run_removed_1(conn, first_seq):
        if first_seq == 1:
            store.remove(conn, 1)  # a second retention run got there first
        return real_get(conn, first_seq)

    store.get = get_after_another_run_removed_1
    try:
        assert trail.purge_older_than(at(21)) == 0
    finally:
        del store.get
    assert _stored(trail) == [21] and stored_bytes(trail, 21) == kept


def test_a_leftover_of_one_event_at_the_cut_goes_with_the_next_run(open_catalog_db, config, keyring, monkeypatch):
    vault, seals = open_catalog_db("privacy_vault"), SealBook(keyring.audit_seal_key, every=1)
    archive = audit_archive(vault, config, FieldCipher(keyring.field_keys, keyring.active_field_key), seals,
                            TickingClock())
    archive.segment_events = 1
    trail = AuditTrail(vault, clock=TickingClock(), seals=seals, archive=archive)  # a segment per event
    append(trail, 3)
    assert trail.archive_older_than(at(2)).segments == 2 and segments(trail) == [(1, 1), (2, 2)]

    def power_lost(conn, first_seq):
        raise RuntimeError("power lost")
    if not trail.archive.store.in_vault:  # the crash after the commit that unlisted segment 1
        monkeypatch.setattr(trail.archive.store, "remove", power_lost)
        with pytest.raises(RuntimeError):
            trail.purge_older_than(at(1))
        monkeypatch.undo()
    else:  # its row in the vault goes in that commit; one put back stands for it
        body = stored_bytes(trail, 1)
        assert trail.purge_older_than(at(1)) == 1
        store_bytes(trail, 1, body)
    assert segments(trail) == [(2, 2)] and _stored(trail) == [1, 2]

    assert trail.purge_older_than(at(1)) == 0
    assert _stored(trail) == [2]
    assert trail.verify(full=True).ok


@pytest.mark.parametrize("through", [1, 10])  # the segment's first event, and its last
def test_retention_refuses_a_listed_segment_that_a_forged_retention_cut_reaches_into(trail, through):
    append(trail, 35)
    assert trail.archive_older_than(at(16)).segments == 1
    # Retention records a cut in the transaction that unlists the segment it took: a cut into a
    # segment still listed was written by hand.
    trail.vault.execute("INSERT INTO audit_checkpoints (purged_through_seq, last_hash, created_at) "
                        "VALUES (?, ?, '2026-01-01T00:00:00.000000Z')", (through, "ab" * 32))

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.purge_older_than(at(13))

    assert (broken.value.seq, broken.value.reason) == (
        1, f"archive segment of events 1-10 reaches into the purged range (through {through}); checkpoint altered?")
    assert segments(trail) == [(1, 10)] and _stored(trail) == [1]
    assert trail.vault.query_one("SELECT min(seq) FROM audit_log")[0] == 11
