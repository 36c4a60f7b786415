"""The vault's index of the audit archive (``compliance/audit_archive_index.py``): what it lists
of each segment, which segments a subject's reads open, where the next segment ends, and the
faults of the archive's shape it reports without reading a segment."""

from __future__ import annotations

import pytest

from archive_trail import ALICE, BOB, append, at, remove_segment, store_bytes, stored_bytes
from compliance import audit_archive_index as index
from compliance.audit_archive_segments import checksum
from compliance.audit_codec import micros
from compliance.audit_events import compute_event_hash

LEGACY_SUBJECT = "e" * 64
BOTH_BACKENDS = ["sqlcipher", pytest.param("postgresql", id="segments-in-the-vault")]


@pytest.fixture
def trail(make_archiving_trail):
    return make_archiving_trail()


def legacy_events(vault, count: int, subject=lambda seq: LEGACY_SUBJECT) -> list[str]:
    """Events as the releases before the compact form stored them (audit_events), 1..count;
    returns their times."""
    prev, rows, times = "0" * 64, [], []
    for seq in range(1, count + 1):
        times.append(f"2026-01-01T00:00:{seq:02d}.000000Z")
        row = {"seq": seq, "event_id": f"e{seq:015d}", "occurred_at": times[-1], "actor_id": "tok_old",
               "actor_role": "service", "action": "read", "subject_hash": subject(seq), "resource": None,
               "request_id": None, "details": None, "prev_hash": prev}
        row["event_hash"] = prev = compute_event_hash(row)
        rows.append(tuple(row.values()))
    vault.write(lambda conn: conn.executemany(
        "INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows))
    return times


def seal_rows(vault, *seqs: int) -> None:
    """Seals at ``seqs`` as the index reads them (their MACs are the seal book's business)."""
    vault.write(lambda conn: conn.executemany(
        "INSERT INTO audit_seals (seq, event_hash, sealed_at, mac) VALUES (?, ?, 0, ?)",
        [(seq, bytes(32), bytes(32)) for seq in seqs]))


def list_segment(vault, first: int, last: int, *, refs=(), first_at: int = 0, last_at: int = 0,
                 complete: int = 1) -> None:
    vault.execute("INSERT INTO audit_archive_segments (first_seq, last_seq, prev_hash, last_hash, events, first_at, "
                  "last_at, bytes, checksum, archived_at, complete) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 0, ?)",
                  (first, last, bytes(32), bytes([last]) * 32, last - first + 1, first_at, last_at, bytes(32),
                   complete))
    for ref in refs:
        vault.execute("INSERT INTO audit_archive_subjects (subject_ref, first_seq) VALUES (?, ?)", (ref, first))


def test_a_span_names_one_event_or_a_range():
    assert (index.span(5, 5), index.span(5, 7)) == ("event 5", "events 5-7")


def test_the_index_lists_each_segment_as_stored(trail):
    append(trail, 25)
    times = {r[0]: micros_of(r[1]) for r in trail.vault.query("SELECT seq, occurred_at FROM audit_log")}
    hashes = {r[0]: bytes(r[1]) for r in trail.vault.query("SELECT seq, event_hash FROM audit_log")}
    trail.archive_older_than(at(21))

    first, second = index.listed(trail.vault.connection())
    body = stored_bytes(trail, 11)
    assert (second.first_seq, second.last_seq, second.events) == (11, 20, 10)
    assert (second.first_at, second.last_at) == (times[11], times[20])
    assert (second.prev_hash, second.last_hash) == (hashes[10], hashes[20])
    assert (second.bytes, second.checksum) == (len(body), checksum(body))
    assert (first.first_at, first.prev_hash) == (times[1], bytes(32))


def micros_of(stored) -> int:
    return stored if isinstance(stored, int) else micros(stored)


def test_a_segment_of_legacy_events_lists_their_times_and_subjects(trail):
    times = legacy_events(trail.vault, 5, subject=lambda seq: None if seq == 3 else LEGACY_SUBJECT)
    append(trail, 17)  # 6-22 compact; the first seal is at 10
    trail.archive_older_than(at(100))

    first = index.listed(trail.vault.connection())[0]
    assert first.first_at == micros(times[0])
    subjects = sorted(r[0] for r in trail.vault.query(
        "SELECT s.subject_hash FROM audit_archive_subjects x JOIN audit_subjects s ON s.subject_ref = x.subject_ref "
        "WHERE x.first_seq = 1"))
    assert subjects == sorted([ALICE, BOB, LEGACY_SUBJECT])


def test_a_subjects_segments_are_the_complete_ones_past_a_seq_and_within_a_time(open_catalog_db):
    vault = open_catalog_db("privacy_vault")
    list_segment(vault, 1, 1, refs=(7,), first_at=100, last_at=100)
    list_segment(vault, 2, 10, refs=(7,), first_at=200, last_at=300)
    list_segment(vault, 11, 20, refs=(7, 8), first_at=400, last_at=500)
    list_segment(vault, 21, 30, refs=(7,), first_at=600, last_at=700, complete=0)  # a write in progress
    conn = vault.connection()

    def firsts(**options) -> list[int]:
        return [s.first_seq for s in index.of_subject(conn, 7, **options)]

    assert firsts() == [1, 2, 11]
    assert [s.first_seq for s in index.of_subject(conn, 8)] == [11]
    assert firsts(after=1) == [2, 11] and firsts(after=10) == [11]
    assert firsts(since_us=300) == [2, 11] and firsts(since_us=301) == [11]
    assert firsts(until_us=200) == [1] and firsts(until_us=201) == [1, 2]
    only = index.of_subject(conn, 8)[0]
    assert (only.last_seq, only.events, only.first_at, only.last_at, only.last_hash) == (20, 10, 400, 500, bytes([20]) * 32)


def test_the_next_segment_ends_on_the_furthest_seal_old_enough_and_within_its_size(open_catalog_db):
    vault = open_catalog_db("privacy_vault")
    times = [micros(t) for t in legacy_events(vault, 12)]
    seal_rows(vault, 4, 8, 12, 14)  # event 14 is in neither table
    conn = vault.connection()

    def end(after: int = 0, cutoff: int = 10**18, most: int = 100):
        return index.segment_end(conn, after, cutoff, most)

    assert end(cutoff=times[7]) == 4  # event 8 occurred at the cutoff: not before it
    assert end(cutoff=times[7] + 1) == 8
    assert end() == 12  # the seal at 14 has no event to date it
    assert end(most=9) == 8 and end(most=2) == 4  # or the first seal, even past the size
    assert end(after=4, most=4) == 8 and end(after=12) is None
    assert end(cutoff=times[3]) is None


def test_the_live_chain_starts_after_the_newest_segment_or_the_retention_cut(open_catalog_db):
    vault = open_catalog_db("privacy_vault")
    conn = vault.connection()
    assert index.chain_start(conn) == (0, bytes(32))
    vault.execute("INSERT INTO audit_checkpoints (purged_through_seq, last_hash, created_at) VALUES (5, ?, 'x')",
                  ("ab" * 32,))
    assert index.retention_cut(conn) == (5, "ab" * 32) and index.chain_start(conn) == (5, bytes([0xab]) * 32)
    list_segment(vault, 6, 10)
    assert index.archived_through(conn) == (10, bytes([10]) * 32) == index.chain_start(conn)


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_shape_faults_past_the_retention_cut_are_reported_and_the_cuts_own_are_not(trail):
    append(trail, 35)
    trail.archive_older_than(at(31))  # 1-10, 11-20, 21-30
    conn, store, seals = trail.vault.connection(), trail.archive.store, trail.archive.seals

    def problem(cut: int, with_seals=True):
        return index.shape_problem(conn, index.listed(conn), cut, store, seals if with_seals else None)

    assert problem(0) is None
    assert problem(10) is None  # a segment ending at the cut is retention's, not a gap
    trail.vault.execute("DELETE FROM audit_seals WHERE seq = 30")
    assert problem(10) == (30, "archive segment of events 21-30: the seal joining it to the chain is missing")
    assert problem(10, with_seals=False) is None
    remove_segment(trail, 11)
    assert problem(10) == (11, "archive segment of events 11-20 is missing (deleted?)")
    assert problem(20) == (30, "archive segment of events 21-30: the seal joining it to the chain is missing")


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_a_stored_segment_the_index_does_not_list_is_a_fault_only_past_the_cut(trail):
    append(trail, 25)
    trail.archive_older_than(at(21))  # 1-10, 11-20
    conn, store = trail.vault.connection(), trail.archive.store
    store_bytes(trail, 20, b"left by retention")  # a removal interrupted: at the cut

    assert index.unlisted(conn, store, index.listed(conn)) == [20]
    assert index.shape_problem(conn, index.listed(conn), 20, store, None) is None
    store_bytes(trail, 21, b"from a newer vault")
    assert index.shape_problem(conn, index.listed(conn), 20, store, None) == (
        21, "an archive segment from event 21 is not in the vault's index: a gap between the vault and its "
            "archive (an older vault restored beside newer archives?)")
