"""An archive run moves only evidence it can vouch for: a run of events with one deleted inside
it, a forged seal (the one ending the run, or one joining an archived segment to
the chain), events a purge takes while their segment is being written, or an archived event put
back in the live log, stop it with the event named, and nothing moves. Nor does its prune of the interned values delete one an
append starting meanwhile names (raced for real on PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from archive_trail import ALICE, BOB, SCRIPT, SERVICE, append, at, live_seqs, put_back, segments
from compliance import audit_archive, audit_terms
from compliance.audit import AuditChainBrokenError
from compliance.audit_archive import AuditArchive, AuditArchiveError
from compliance.audit_seals import SealBook
from compliance.field_crypto import FieldCipher
from racing_vault import wait_until_someone_waits_for_a_lock


@pytest.fixture
def trail(make_archiving_trail):
    return make_archiving_trail()


def _delete_live(trail, *seqs: int) -> None:
    for seq in seqs:
        trail.vault.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))


def _forge_seal(trail, seq: int) -> None:
    trail.vault.execute("UPDATE audit_seals SET mac = ? WHERE seq = ?", (bytes(32), seq))


def _nothing_moved(trail, live: list[int]) -> None:
    assert segments(trail) == [] and live_seqs(trail) == live
    assert trail.archive.store.stored(trail.vault.connection()) == []


def test_an_archive_holds_one_event_or_more_per_segment(trail, keyring):
    cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
    seals = SealBook(keyring.audit_seal_key, every=1)
    with pytest.raises(ValueError) as refused:
        AuditArchive(trail.vault, cipher, trail.archive.store, seals, segment_events=0)
    assert str(refused.value) == "a segment holds 1 or more events"
    single = AuditArchive(trail.vault, cipher, trail.archive.store, seals, segment_events=1)
    assert single.segment_events == 1


def test_an_event_deleted_inside_the_run_stops_it_naming_the_gap(trail):
    append(trail, 25)
    _delete_live(trail, 5)

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.archive_older_than(at(100))

    assert (broken.value.seq, broken.value.reason) == (6, "event 5 missing before it (deleted?)")
    _nothing_moved(trail, [s for s in range(1, 26) if s != 5])


def test_a_forged_seal_ending_the_run_stops_it(trail):
    append(trail, 25)
    _forge_seal(trail, 10)

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.archive_older_than(at(100))

    assert (broken.value.seq, broken.value.reason) == (10, "the seal of event 10 fails its HMAC (forged or edited?)")
    _nothing_moved(trail, list(range(1, 26)))


def test_a_forged_seal_joining_an_archived_segment_to_the_chain_stops_the_next_run(trail):
    append(trail, 25)
    assert trail.archive_older_than(at(11)).segments == 1
    _forge_seal(trail, 10)

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.archive_older_than(at(100))

    assert (broken.value.seq, broken.value.reason) == (
        10, "archive segment of events 1-10: the seal of event 10 fails its HMAC (forged or edited?)")
    assert segments(trail) == [(1, 10)] and live_seqs(trail) == list(range(11, 26))


def test_events_a_purge_takes_while_their_segment_is_written_stop_the_run_and_nothing_moves(trail, monkeypatch):
    append(trail, 25)
    real_encode = audit_archive.encode

    def encode_while_a_purge_commits(content, keys):
        _delete_live(trail, 1)  # another process's purge, committed between the read and the write
        return real_encode(content, keys)

    monkeypatch.setattr(audit_archive, "encode", encode_while_a_purge_commits)
    with pytest.raises(AuditArchiveError) as refused:
        trail.archive_older_than(at(100))

    assert str(refused.value) == ("the events of events 1-10 changed while being archived (a concurrent "
                                  "purge?); nothing was moved")
    _nothing_moved(trail, list(range(2, 26)))
    assert trail.vault.query("SELECT first_seq FROM audit_archive_segments") == []
    assert [e.seq for e in trail.iter_subject(ALICE)] == list(range(2, 26, 2))
    assert [e.seq for e in trail.iter_subject(BOB)] == list(range(3, 26, 2))


@pytest.mark.postgresql_only("an append racing the archive run's prune on a database server")
def test_an_append_of_a_cached_value_starting_while_the_runs_prune_is_open_names_a_value_that_exists(
        trail, monkeypatch):
    append(trail, 10, actor=SCRIPT)  # the script's reference is cached in this process now
    append(trail, 15)
    real_prune, appended = audit_terms.prune_unused_terms, []
    appender = threading.Thread(target=lambda: appended.append(trail.record(SCRIPT, "read", subject_hash=ALICE)))

    def prune_while_an_append_starts(conn, dialect):
        deleted = real_prune(conn, dialect)  # the script's actor: its events all leave
        appender.start()
        wait_until_someone_waits_for_a_lock(trail.vault)  # the append, for this prune
        return deleted

    monkeypatch.setattr(audit_terms, "prune_unused_terms", prune_while_an_append_starts)
    assert trail.archive_older_than(at(11)).segments == 1
    appender.join(30)

    assert not appender.is_alive() and len(appended) == 1
    newest = trail.query(limit=100)[-1]
    assert (newest.seq, newest.actor_id) == (26, SCRIPT.actor_id)
    assert {r[0] for r in trail.vault.query("SELECT actor_id FROM audit_actors")} == {SERVICE.actor_id,
                                                                                     SCRIPT.actor_id}
    assert trail.verify(full=True).ok


def _index(trail) -> list[tuple]:
    return [tuple(r) for r in trail.vault.query("SELECT * FROM audit_archive_segments ORDER BY first_seq")] + \
        [tuple(r) for r in trail.vault.query("SELECT * FROM audit_archive_subjects ORDER BY first_seq, subject_ref")]


@pytest.mark.parametrize("seq", [5, 10])  # inside the segment, and its last event (the archived position)
def test_an_archived_event_put_back_in_the_live_log_stops_the_next_run_and_nothing_moves(trail, seq):
    append(trail, 35)
    saved = trail.vault.query_one("SELECT * FROM audit_log WHERE seq = ?", (seq,))
    assert trail.archive_older_than(at(16)).segments == 1 and segments(trail) == [(1, 10)]
    put_back(trail.vault, saved)  # the archived event's own row, as it was
    index_before, stored_before = _index(trail), trail.archive.store.stored(trail.vault.connection())

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.archive_older_than(at(26))

    assert (broken.value.seq, broken.value.reason) == (
        seq, "event lies inside the archived or purged range (through 10); put back in the live log, "
           "or the index or checkpoint altered?")
    assert _index(trail) == index_before and segments(trail) == [(1, 10)]
    assert trail.archive.store.stored(trail.vault.connection()) == stored_before == [1]
    assert live_seqs(trail) == [seq, *range(11, 36)]
    verdict = trail.verify(full=True)
    assert not verdict.ok and verdict.first_bad == seq


def test_a_retention_cut_forged_at_an_archived_segments_end_with_another_hash_stops_the_next_run(trail):
    append(trail, 35)
    assert trail.archive_older_than(at(16)).segments == 1
    # A cut at the segment's end is what retention records when it deletes that segment; this one
    # holds another hash than the segment's, so the chain past it cannot be vouched for.
    trail.vault.execute("INSERT INTO audit_checkpoints (purged_through_seq, last_hash, created_at) "
                        "VALUES (10, ?, '2026-01-01T00:00:00.000000Z')", ("ab" * 32,))
    index_before = _index(trail)

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.archive_older_than(at(26))

    assert (broken.value.seq, broken.value.reason) == (11, "content does not match its hash (edited?)")
    assert _index(trail) == index_before and live_seqs(trail) == list(range(11, 36))
    verdict = trail.verify(full=True)
    assert (verdict.ok, verdict.first_bad, verdict.reason) == (False, 11, "content does not match its hash (edited?)")


def test_events_gone_from_the_tail_between_its_reads_stop_the_run_naming_them(trail, monkeypatch):
    """A deletion between the run choosing its segment's end (a sealed event) and reading the
    events up to it, as another writer's could land between two statements without a shared
    snapshot: the run stops at the first missing one, naming the gap, and nothing moves."""
    append(trail, 25)
    chosen, ends = audit_archive.index.segment_end, []

    def then_the_tail_deleted(conn, *args):
        end = chosen(conn, *args)
        if end is not None:
            ends.append(end)
            conn.execute("DELETE FROM audit_log WHERE seq >= ?", (end - 1,))  # inside the run's transaction
        return end
    monkeypatch.setattr(audit_archive.index, "segment_end", then_the_tail_deleted)

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.archive_older_than(at(100))

    [end] = ends
    assert (broken.value.seq, broken.value.reason) == (end - 1, f"events {end - 1}-{end} missing (deleted?)")
    monkeypatch.undo()
    _nothing_moved(trail, list(range(1, 26)))  # the deletion went back with the run's transaction
