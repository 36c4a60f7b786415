"""The audit archive: old events leave the live vault for encrypted, checksummed segments that
end on seals; each verifies on its own and joins the chain by its seal; a subject's archived
disclosures are found through the subject index; retention deletes whole segments."""

from __future__ import annotations

import shutil

import pytest

from archive_trail import (ALICE, BOB, SCRIPT, SERVICE, append, at, edit_an_archived_event, flip_a_stored_bit,
                           live_seqs, remove_segment, replace_segment, segments, stored_bytes)
from compliance.audit import AuditChainBrokenError, AuditTrail
from compliance.audit_archive_segments import SegmentContent, archive_dir, decode, encode
from compliance.audit_seals import SealBook
from compliance.field_crypto import FieldCipher
from ticking_clock import TickingClock
from twin.catalog import audit_archive


@pytest.fixture
def cipher(keyring) -> FieldCipher:
    return FieldCipher(keyring.field_keys, keyring.active_field_key)


@pytest.fixture
def make_trail(open_catalog_db, config, keyring, cipher):
    def make(vault=None) -> AuditTrail:
        vault = vault or open_catalog_db("privacy_vault")
        seals = SealBook(keyring.audit_seal_key, every=10)
        archive = audit_archive(vault, config, cipher, seals, TickingClock())
        archive.segment_events = 10
        return AuditTrail(vault, clock=TickingClock(), seals=seals, archive=archive)
    return make


@pytest.fixture
def trail(make_trail) -> AuditTrail:
    return make_trail()


def test_old_events_move_into_segments_that_end_on_seals_and_the_chain_still_verifies(trail, cipher):
    append(trail, 35)
    run = trail.archive_older_than(at(26))

    assert (run.segments, run.events) == (2, 20)
    assert segments(trail) == [(1, 10), (11, 20)]
    assert live_seqs(trail) == list(range(21, 36))
    body = stored_bytes(trail, 11)
    assert ALICE.encode() not in body and b"profile:p" not in body  # encrypted (and compressed)
    content = decode(body, 11, trail.archive._keys)  # noqa: SLF001 - verifiable on its own, with the keys
    assert [row["seq"] for _, row in content.events] == list(range(11, 21))
    full = trail.verify(full=True)
    assert (full.ok, full.checked) == (True, 35)
    # Each subject's disclosures, archived or live, carry the hash they chain to.
    events = [*trail.iter_subject(ALICE), *trail.iter_subject(BOB)]
    hashes = {e.seq: e.event_hash for e in events}
    assert sorted(hashes) == list(range(1, 36))
    assert all(e.prev_hash == hashes.get(e.seq - 1, "0" * 64) for e in events)
    append(trail, 3)
    quick = trail.verify(full=False)
    assert (quick.ok, quick.since) == (True, 30)


def test_archiving_everything_leaves_the_next_append_chained_to_the_last_segment(trail):
    append(trail, 20)
    trail.archive_older_than(at(100))
    assert (segments(trail), live_seqs(trail)) == ([(1, 10), (11, 20)], [])

    append(trail, 5)
    assert live_seqs(trail) == [21, 22, 23, 24, 25]
    assert trail.verify(full=True).ok and trail.verify(full=True).checked == 25


def test_nothing_older_than_the_cutoff_up_to_a_seal_means_nothing_moves(trail):
    append(trail, 9)
    assert trail.archive_older_than(at(100)).segments == 0
    append(trail, 6)
    assert trail.archive_older_than(at(9)).segments == 0  # the seal at 10 is newer than the cutoff
    assert live_seqs(trail) == list(range(1, 16))


def test_a_subject_export_finds_archived_disclosures_through_the_subject_index(trail):
    append(trail, 10, subject=lambda i: ALICE)          # 1-10: only Alice
    append(trail, 10, subject=lambda i: BOB)            # 11-20: only Bob
    append(trail, 5, subject=lambda i: ALICE if i % 2 else BOB)  # 21-25 live
    trail.archive_older_than(at(100))
    assert segments(trail) == [(1, 10), (11, 20)]

    alice = list(trail.iter_subject(ALICE))
    assert [e.seq for e in alice] == [*range(1, 11), 22, 24]
    assert alice[0].prev_hash == "0" * 64 and alice[1].prev_hash == alice[0].event_hash
    assert {e.actor_id for e in alice} == {SERVICE.actor_id} and alice[0].request_id == "r0"
    # Bob's events are all in the second segment: with the first gone, his export still works,
    # so it was never read for him.
    remove_segment(trail, 1)
    assert [e.seq for e in trail.iter_subject(BOB)] == [*range(11, 21), 21, 23, 25]


def test_a_tampered_archive_segment_is_named(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    flip_a_stored_bit(trail, 11)

    result = trail.verify(full=True)
    assert (result.ok, result.first_bad) == (False, 11)
    assert result.reason == "archive segment of events 11-20 fails its checksum (altered or replaced?)"


def test_an_archived_event_edited_by_someone_with_the_keys_is_named(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    edit_an_archived_event(trail, 11)

    result = trail.verify(full=True)
    assert (result.ok, result.first_bad, result.reason) == (False, 15, "content does not match its hash (edited?)")


def test_an_archived_segment_rewritten_and_rehashed_fails_its_seal(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    keys = trail.archive._keys  # noqa: SLF001
    content = decode(stored_bytes(trail, 1), 1, keys)
    content.events = content.events[:-1]  # event 10 dropped, the range claimed shorter
    forged = SegmentContent(1, 9, content.prev_hash, content.events)
    replace_segment(trail, 1, encode(forged, keys))

    result = trail.verify(full=True)
    assert (result.ok, result.first_bad) == (False, 1)
    assert "holds another range than its index says" in result.reason


@pytest.mark.parametrize("full", [True, False])
def test_a_deleted_segment_is_named_by_every_verify(trail, full):
    append(trail, 35)
    trail.archive_older_than(at(26))
    trail.verify(full=True)  # marks the seals: the default verify starts at 30
    remove_segment(trail, 11)

    result = trail.verify(full=full)
    assert (result.ok, result.first_bad) == (False, 11)
    assert result.reason == "archive segment of events 11-20 is missing (deleted?)"


def test_a_segment_deleted_with_its_index_row_is_a_gap(trail):
    append(trail, 35)
    trail.archive_older_than(at(31))
    remove_segment(trail, 11)
    trail.vault.execute("DELETE FROM audit_archive_segments WHERE first_seq = 11")

    result = trail.verify(full=False)
    assert (result.ok, result.first_bad) == (False, 11)
    assert result.reason == "events 11-20 missing between archive segments (a segment deleted?)"


def test_a_restored_older_vault_beside_newer_archives_is_a_gap(trail, make_trail, open_catalog_db):
    vault = trail.vault
    if not hasattr(vault, "path"):
        pytest.skip("SQLCipher only: the vault file is restored beside the archive directory")
    append(trail, 35)
    trail.archive_older_than(at(11))
    vault.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = vault.path.with_name("vault-backup.db")
    shutil.copyfile(vault.path, backup)
    trail.archive_older_than(at(31))  # newer segments, 11-20 and 21-30
    vault.close_all()
    for suffix in ("-wal", "-shm"):
        vault.path.with_name(vault.path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(backup, vault.path)

    restored = make_trail(open_catalog_db("privacy_vault"))
    result = restored.verify(full=False)
    assert (result.ok, result.first_bad) == (False, 11)
    assert "not in the vault's index: a gap between the vault and its archive" in result.reason
    with pytest.raises(AuditChainBrokenError) as refused:  # never archives over the newer files
        restored.archive_older_than(at(31))
    assert refused.value.seq == 11
    assert (archive_dir(vault.path) / f"{21:016d}.ltaa").exists()


def test_retention_deletes_whole_expired_segments_and_the_chain_still_verifies(trail):
    append(trail, 35)
    trail.archive_older_than(at(31))
    files_before = trail.archive.store.stored(trail.vault.connection())

    assert trail.purge_older_than(at(15)) == 10  # segment 1-10 expired; 11-20 holds event 15
    assert segments(trail) == [(11, 20), (21, 30)]
    assert trail.archive.store.stored(trail.vault.connection()) == [s for s in files_before if s != 1]
    assert trail.verify(full=True).ok and trail.verify(full=True).checked == 25
    assert trail.purge_older_than(at(100)) == 35 - 10
    assert (segments(trail), live_seqs(trail)) == ([], [])
    append(trail, 2)
    assert trail.verify(full=True).ok


def test_retention_refuses_a_broken_segment_and_keeps_it(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    remove_segment(trail, 1)
    with pytest.raises(AuditChainBrokenError) as broken:
        trail.purge_older_than(at(100))
    assert broken.value.seq == 1 and segments(trail) == [(1, 10), (11, 20)]


def test_interned_values_go_when_their_last_event_leaves(trail):
    append(trail, 10, actor=SCRIPT, subject=lambda i: "c" * 64)
    append(trail, 15)
    trail.archive_older_than(at(11))  # events 1-10: the script's and the third subject's only
    actors = {r[0] for r in trail.vault.query("SELECT actor_id FROM audit_actors")}
    subjects = {r[0] for r in trail.vault.query("SELECT subject_hash FROM audit_subjects")}
    assert actors == {SERVICE.actor_id}
    assert "c" * 64 in subjects  # still named by an archived segment (the subject index)

    trail.purge_older_than(at(11))
    subjects = {r[0] for r in trail.vault.query("SELECT subject_hash FROM audit_subjects")}
    assert subjects == {ALICE, BOB}
    assert {r[0] for r in trail.vault.query("SELECT resource FROM audit_resources")} == \
        {"profile:p0", "profile:p1", "profile:p2"}
    assert trail.verify(full=True).ok


def test_a_crashed_run_leaves_an_incomplete_row_the_next_run_clears(trail, cipher):
    append(trail, 25)
    trail.vault.execute("INSERT INTO audit_archive_segments (first_seq, last_seq, prev_hash, last_hash, events, "
                        "first_at, last_at, bytes, checksum, archived_at, complete) "
                        "VALUES (1, 10, ?, ?, 0, 0, 0, 0, ?, 0, 0)", (bytes(32), bytes(32), bytes(32)))
    if not trail.archive.store.in_vault:
        trail.archive.store.put(None, 1, b"half-written")
    assert trail.verify(full=True).ok  # an unfinished write is no gap
    run = trail.archive_older_than(at(100))
    assert run.segments == 2 and segments(trail) == [(1, 10), (11, 20)]
    assert trail.verify(full=True).ok


def test_events_of_the_releases_before_the_compact_form_are_archived_with_the_first_seal(trail):
    from compliance.audit_events import compute_event_hash
    prev, rows = "0" * 64, []
    for seq in range(1, 6):  # as vault migration 6 found them: JSON-hashed, named in full
        row = {"seq": seq, "event_id": f"e{seq:015d}", "occurred_at": f"2026-01-01T00:00:0{seq}.000000Z",
               "actor_id": "tok_old", "actor_role": "service", "action": "read",
               "subject_hash": "e" * 64, "resource": None, "request_id": None, "details": None, "prev_hash": prev}
        row["event_hash"] = prev = compute_event_hash(row)
        rows.append(tuple(row.values()))
    trail.vault.write(lambda conn: conn.executemany(
        "INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows))
    append(trail, 17)  # 6-22, compact; the first seal is at 10

    run = trail.archive_older_than(at(100))
    assert (run.events, segments(trail)) == (20, [(1, 10), (11, 20)])
    assert trail.vault.query_one("SELECT count(*) FROM audit_events")[0] == 0
    assert [e.seq for e in trail.iter_subject("e" * 64)] == [1, 2, 3, 4, 5]
    assert trail.verify(full=True).ok and trail.verify(full=True).checked == 22
    assert trail.purge_older_than(at(100)) == 22
    assert trail.vault.query("SELECT subject_hash FROM audit_subjects WHERE subject_hash = ?", ("e" * 64,)) == []


def test_pruning_waits_for_an_appender_that_already_looked_up_the_value(trail):
    import threading

    from compliance import audit_terms
    from compliance.audit_events import validated
    from compliance.audit_vault_staging import CHAIN_LOCK
    append(trail, 10, actor=SCRIPT)
    append(trail, 15)
    trail.archive_older_than(at(11))  # the script's events all left: its actor is unused now
    vault = trail.vault
    pruner = threading.Thread(target=lambda: vault.write(
        lambda conn: audit_terms.prune_unused_terms(conn, vault.dialect), lock=CHAIN_LOCK))
    with vault.transaction() as conn:
        fields = validated(SCRIPT, "read", {"subject_hash": ALICE})
        trail._append_rows(conn, [fields])  # noqa: SLF001 - an append caught between lookup and commit
        pruner.start()
        pruner.join(timeout=1.0)
        assert pruner.is_alive()  # held back until the append commits
    pruner.join(timeout=30)
    assert not pruner.is_alive()
    assert SCRIPT.actor_id in {r[0] for r in vault.query("SELECT actor_id FROM audit_actors")}
    assert trail.verify(full=True).ok


@pytest.mark.parametrize("batch, read_first", [(1000, 1), (3, 13)])
def test_an_export_misses_no_event_a_run_archives_while_it_reads(trail, batch, read_first):
    append(trail, 22, subject=lambda i: ALICE)
    trail.archive_older_than(at(10))
    assert segments(trail) == [(1, 10)]
    export = trail.iter_subject(ALICE, batch=batch)
    seqs = [next(export).seq for _ in range(read_first)]  # the first batch read, or only the archive's

    trail.archive_older_than(at(100))  # the nightly run moves 11-20 meanwhile
    assert segments(trail) == [(1, 10), (11, 20)] and live_seqs(trail) == [21, 22]
    assert seqs + [e.seq for e in export] == list(range(1, 23))


def test_a_subject_query_pages_through_the_archived_disclosures_then_the_live_ones(trail):
    append(trail, 25)  # Alice's are the even seqs
    trail.archive_older_than(at(100))
    assert segments(trail) == [(1, 10), (11, 20)]

    first = trail.query(subject_hash=ALICE, limit=4)
    second = trail.query(subject_hash=ALICE, after_seq=first[-1].seq, limit=4)  # across two segments
    third = trail.query(subject_hash=ALICE, after_seq=second[-1].seq, limit=4)  # archive, then live
    assert [[e.seq for e in page] for page in (first, second, third)] == \
        [[2, 4, 6, 8], [10, 12, 14, 16], [18, 20, 22, 24]]
    assert trail.query(subject_hash=ALICE, after_seq=24) == []
    assert [e.seq for e in trail.query(subject_hash=ALICE, since=at(15), until=at(23))] == [16, 18, 20, 22]
    assert [e.seq for e in trail.query(subject_hash=BOB, since=at(12), until=at(14))] == [13]
    assert trail.query(subject_hash=ALICE, action="erase") == []
    assert [e.seq for e in trail.query()] == [21, 22, 23, 24, 25]  # the whole trail: the live part only


@pytest.mark.sqlite_only("on PostgreSQL a segment's bytes go in the transaction that unlists it")
@pytest.mark.parametrize("next_run", ["retention", "archive"])
def test_a_segment_file_a_crash_kept_after_retention_unlisted_it_goes_with_the_next_run(trail, monkeypatch,
                                                                                      next_run):
    append(trail, 35)
    trail.archive_older_than(at(31))

    def power_lost(conn, first_seq):
        raise RuntimeError("power lost")
    # The crash: after the commit that unlists the segment, before its file is unlinked.
    monkeypatch.setattr(trail.archive.store, "remove", power_lost)
    with pytest.raises(RuntimeError):
        trail.purge_older_than(at(15))
    monkeypatch.undo()
    leftover = archive_dir(trail.vault.path) / f"{1:016d}.ltaa"
    assert leftover.exists() and segments(trail) == [(11, 20), (21, 30)]
    assert trail.verify(full=False).ok  # below the retention cut: no gap

    if next_run == "retention":
        assert trail.purge_older_than(at(15)) == 0
    else:
        assert trail.archive_older_than(at(31)).segments == 0
    assert not leftover.exists()
    assert trail.archive.store.stored(trail.vault.connection()) == [11, 21]
    assert trail.verify(full=True).ok


def test_an_unlisted_segment_reaching_past_the_retention_cut_is_kept(trail):
    append(trail, 35)
    trail.archive_older_than(at(31))
    keys = trail.archive._keys  # noqa: SLF001
    stray = SegmentContent(5, 30, bytes(32), [])  # not retention's: reaches past 10
    assert trail.purge_older_than(at(15)) == 10
    if trail.archive.store.in_vault:
        trail.vault.execute("INSERT INTO audit_archive_blobs (first_seq, body) VALUES (5, ?)",
                            (encode(stray, keys),))
    else:
        trail.archive.store.put(None, 5, encode(stray, keys))
    assert trail.purge_older_than(at(15)) == 0
    assert 5 in trail.archive.store.stored(trail.vault.connection())


def test_retention_refuses_a_segment_holding_an_edited_event_naming_it(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    edit_an_archived_event(trail, 11)

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.purge_older_than(at(100))

    assert (broken.value.seq, broken.value.reason) == (15, "content does not match its hash (edited?)")
    assert str(broken.value) == "audit trail broken at event 15: content does not match its hash (edited?)"
    assert segments(trail) == [(11, 20)]  # the first, intact segment went; the broken one stays


def test_retention_refuses_to_go_on_when_the_oldest_segment_went_with_its_index_row(trail):
    append(trail, 35)
    trail.archive_older_than(at(31))
    remove_segment(trail, 1)
    trail.vault.execute("DELETE FROM audit_archive_segments WHERE first_seq = 1")

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.purge_older_than(at(100))

    assert (broken.value.seq, broken.value.reason) == (
        1, "events 1-10 missing before the oldest archive segment (deleted?)")
    assert segments(trail) == [(11, 20), (21, 30)]


def test_retention_refuses_a_tampered_segment_naming_its_checksum(trail):
    append(trail, 25)
    trail.archive_older_than(at(100))
    flip_a_stored_bit(trail, 1)

    with pytest.raises(AuditChainBrokenError) as broken:
        trail.purge_older_than(at(100))

    assert (broken.value.seq, broken.value.reason) == (
        1, "archive segment of events 1-10 fails its checksum (altered or replaced?)")


@pytest.mark.parametrize("damage, reason", [
    (lambda body, other: body[:5], "too short to be an archive segment (truncated?)"),
    (lambda body, other: body[:7], "fails authentication (MalformedCiphertextError: altered, or another segment's?)"),
    (lambda body, other: b"XXXX" + body[4:], "not an archive segment of this format"),
    (lambda body, other: body[:4] + bytes([3]) + body[5:], "not an archive segment of this format"),
    (lambda body, other: other, "fails authentication (DecryptionError: altered, or another segment's?)"),
], ids=["truncated", "header-only", "another-format", "another-version", "another-segments-body"])
def test_an_unreadable_segment_is_named_with_what_is_wrong_with_it(trail, damage, reason):
    append(trail, 25)
    trail.archive_older_than(at(100))
    replace_segment(trail, 1, damage(stored_bytes(trail, 1), stored_bytes(trail, 11)))

    result = trail.verify(full=True)

    assert (result.ok, result.first_bad) == (False, 1)
    assert result.reason == f"archive segment of events 1-10 {reason}"


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_an_archive_run_reports_its_segments_events_and_bytes_and_its_progress_under_its_lock(trail):
    seen: list = []

    class Bar:
        def update(self, n: int = 1) -> None:
            locks = [r[0] for r in trail.vault.query("SELECT name FROM job_locks")]
            seen.append(("update", n, locks))

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

    def progress(description, total=None, unit="items"):
        seen.append((description, total, unit))
        return Bar()

    append(trail, 25)
    run = trail.archive_older_than(at(100), progress=progress)

    stored = trail.vault.query_one("SELECT count(*), sum(bytes) FROM audit_archive_segments")
    assert (run.segments, run.events, run.bytes) == (2, 20, stored[1]) and stored[0] == 2
    assert run.bytes == sum(len(stored_bytes(trail, first)) for first in (1, 11))
    assert seen == [("archive audit events", None, "events"),
                    ("update", 10, ["audit-archive"]), ("update", 10, ["audit-archive"])]
