"""A field-key rotation reaches the audit archive: the rewrap wraps each segment's data key under
the active field key (as subject keys are), so once the old key is retired the archive still
verifies and a subject's archived disclosures are still exported. A crash between writing a
rewrapped segment file and renaming it over the old one is settled by the next run."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest

from archive_trail import replace_segment
from compliance.audit import Actor, AuditTrail
from compliance.audit_archive import AuditArchiveError
from compliance.audit_archive_segments import (archive_dir, checksum, rewrapped, segment_name,
                                               wrap_version)
from compliance.field_crypto import FieldCipher
from compliance.job_lock import JobAlreadyRunningError
from racing_vault import wait_until_someone_waits_for_a_lock
from ticking_clock import T0

SERVICE = Actor("tok_service1", "service")
ALICE, BOB = "a" * 64, "b" * 64


@pytest.fixture
def make_trail(make_archiving_trail):
    return lambda vault, cipher: make_archiving_trail(vault, cipher)


@pytest.fixture
def archived(open_catalog_db, keyring, make_trail):
    """35 events, the first 20 in two segments under field key v1; the vault."""
    vault = open_catalog_db("privacy_vault")
    trail = make_trail(vault, FieldCipher(keyring.field_keys, keyring.active_field_key))
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE if i % 2 else BOB, "request_id": f"r{i}"})
                       for i in range(35)])
    assert trail.archive_older_than(T0 + timedelta(seconds=26, milliseconds=500)).segments == 2
    return vault


def _rotated(keyring):
    rotated = keyring.with_new_field_key()
    return rotated, FieldCipher(rotated.field_keys, rotated.active_field_key)


def _retired(rotated) -> FieldCipher:
    """The rotated keyring's keys without the old version."""
    newest = rotated.active_field_key
    return FieldCipher({newest: rotated.field_keys[newest]}, newest)


def _body(trail: AuditTrail, first_seq: int) -> bytes:
    return trail.archive.store.get(trail.vault.connection(), first_seq)


def _sealed_events(body: bytes) -> bytes:
    """What follows a segment's header and wrapped key (b"LTAA", version u8, key length u16)."""
    return body[7 + int.from_bytes(body[5:7], "big"):]


def _index_checksums(vault) -> dict[int, bytes]:
    return {r[0]: bytes(r[1]) for r in vault.query("SELECT first_seq, checksum FROM audit_archive_segments")}


def test_after_a_rewrap_the_old_field_key_can_go_and_the_archive_verifies_and_exports(
        archived, keyring, make_trail):
    rotated, cipher = _rotated(keyring)
    before = {first: _body(make_trail(archived, cipher), first) for first in (1, 11)}
    # Without the rewrap, retiring v1 makes the archive unreadable: what this test guards.
    unreadable = make_trail(archived, _retired(rotated)).verify(full=True)
    assert not unreadable.ok and unreadable.first_bad == 1 and "fails authentication" in unreadable.reason

    assert make_trail(archived, cipher).archive.rewrap() == 2

    trail = make_trail(archived, _retired(rotated))
    full = trail.verify(full=True)
    assert (full.ok, full.checked) == (True, 35)
    alice = list(trail.iter_subject(ALICE))
    assert [e.seq for e in alice] == list(range(2, 36, 2))  # archived (2..20) and live
    assert {e.request_id for e in alice if e.seq <= 20} == {f"r{i}" for i in range(1, 20, 2)}
    for first, old in before.items():
        new = _body(trail, first)
        assert wrap_version(old) == 1 and wrap_version(new) == rotated.active_field_key
        assert _index_checksums(archived)[first] == checksum(new)
        # Only the wrapped data key changed: the events' ciphertext is the same bytes.
        assert _sealed_events(new) == _sealed_events(old) and len(_sealed_events(old)) > 100
    assert make_trail(archived, cipher).archive.rewrap() == 0  # nothing left under v1


@pytest.mark.sqlite_only("segment files: a PostgreSQL vault changes a segment's bytes in the "
                         "transaction that changes its checksum")
def test_a_rewrap_interrupted_after_its_commit_is_read_from_the_new_file_and_finished_next_run(
        archived, keyring, make_trail):
    rotated, cipher = _rotated(keyring)
    trail = make_trail(archived, cipher)
    store = trail.archive.store
    old = _body(trail, 1)
    new = rewrapped(old, 1, trail.archive._keys)  # noqa: SLF001 - the keys the archive holds
    # A crash between the two steps: the new file beside the segment, the index committed.
    store.put_rewrapped(1, new)
    archived.execute("UPDATE audit_archive_segments SET checksum = ? WHERE first_seq = 1", (checksum(new),))
    # ... and one that never committed (its file only).
    store.put_rewrapped(11, rewrapped(_body(trail, 11), 11, trail.archive._keys))  # noqa: SLF001
    pending = archive_dir(archived.path) / f".{segment_name(1)}.rewrap"
    assert pending.exists()

    between = make_trail(archived, _retired(rotated)).verify(full=True)
    assert between.first_bad == 11 and "fails authentication" in between.reason  # 1 reads its new file

    assert trail.archive.rewrap() == 1  # settles 1 (renamed over), drops 11's leftover, rewraps 11
    assert not list(archive_dir(archived.path).glob(".*.rewrap"))
    assert (archive_dir(archived.path) / segment_name(1)).read_bytes() == new
    assert make_trail(archived, _retired(rotated)).verify(full=True).ok


@pytest.mark.sqlite_only("segment files: an archive run settles the rewrapped files beside them")
def test_an_archive_run_starting_while_a_rewrap_is_between_its_file_and_its_commit_is_refused(
        archived, keyring, make_trail):
    rotated, cipher = _rotated(keyring)
    rewrapping, other = make_trail(archived, cipher), make_trail(archived, cipher)  # another process's run
    store, refused = rewrapping.archive.store, []
    real_put = store.put_rewrapped

    def put_then_an_archive_run(first_seq: int, body: bytes) -> None:
        real_put(first_seq, body)  # the new file is beside the segment; its checksum not committed yet
        with pytest.raises(JobAlreadyRunningError) as raised:
            other.archive_older_than(T0 + timedelta(days=1))  # would settle (drop) that file
        refused.append(str(raised.value))

    store.put_rewrapped = put_then_an_archive_run
    assert rewrapping.archive.rewrap() == 2
    assert len(refused) == 2 and "'audit-archive' is already running" in refused[0]
    assert not list(archive_dir(archived.path).glob(".*.rewrap"))
    trail = make_trail(archived, _retired(rotated))
    assert trail.verify(full=True).ok
    assert [e.seq for e in trail.iter_subject(ALICE)] == list(range(2, 36, 2))
    assert other.archive_older_than(T0 + timedelta(days=1)).segments == 1  # once the rewrap ended: 21-30


def test_a_second_rewrap_while_one_runs_is_refused_and_changes_nothing(archived, keyring, make_trail):
    rotated, cipher = _rotated(keyring)
    first, second = make_trail(archived, cipher), make_trail(archived, cipher)
    refused = []

    class Bar:  # reports the first run's progress: it holds the lock then
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def update(self, n=1):
            before = _index_checksums(archived)
            with pytest.raises(JobAlreadyRunningError) as raised:
                second.archive.rewrap()
            refused.append(str(raised.value))
            assert _index_checksums(archived) == before

    assert first.archive.rewrap(progress=lambda *a, **k: Bar()) == 2
    assert len(refused) == 2 and "the audit archive segments are not rewrapped" in refused[0]
    assert refused[0].startswith("job 'audit-archive' is already running (") and refused[0].endswith(
        "): the audit archive segments are not rewrapped; run the rewrap again once it ends")
    assert make_trail(archived, _retired(rotated)).verify(full=True).ok
    assert second.archive.rewrap() == 0  # the lock is free again: nothing left under v1


def test_a_rewrap_reports_its_progress_a_segment_at_a_time(archived, keyring, make_trail):
    _, cipher = _rotated(keyring)
    seen: list = []

    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def update(self, n=1):
            seen.append(("update", n))

    def progress(description, total=None, unit="items"):
        seen.append((description, total, unit))
        return Bar()

    assert make_trail(archived, cipher).archive.rewrap(progress=progress) == 2
    assert seen == [("rewrap audit archive segments", 2, "segments"), ("update", 1), ("update", 1)]


@pytest.mark.parametrize("damage, reason", [
    (lambda trail: trail.archive.store.remove(trail.vault.connection(), 1), "is missing (deleted?)"),
    (lambda trail: replace_segment(trail, 1, b"XXXX" + bytes(40)), "not an archive segment of this format"),
], ids=["missing", "not-a-segment"])
def test_a_rewrap_meeting_a_broken_segment_names_it_and_rewraps_nothing(archived, keyring, make_trail,
                                                                         damage, reason):
    _, cipher = _rotated(keyring)
    trail = make_trail(archived, cipher)
    damage(trail)
    before = _index_checksums(archived)

    with pytest.raises(AuditArchiveError) as refused:
        trail.archive.rewrap()

    assert str(refused.value) == f"archive segment of events 1-10 {reason}; it is not rewrapped"
    assert _index_checksums(archived) == before and wrap_version(_body(trail, 11)) == 1


def _stored(trail: AuditTrail) -> list[int]:
    return trail.archive.store.stored(trail.vault.connection())


def _only_11_20_left_rewrapped(trail: AuditTrail, rotated, make_trail) -> None:
    """Retention took 1-10 during the rewrap: 11-20 alone is left, listed and stored, under the new
    key, nothing else in the archive's directory (no rewrapped or partial file), and the trail
    verifies with the old key retired."""
    assert _index_checksums(trail.vault).keys() == {11} and _stored(trail) == [11]
    if not trail.archive.store.in_vault:
        assert sorted(p.name for p in archive_dir(trail.vault.path).iterdir()) == [segment_name(11)]
    assert wrap_version(_body(trail, 11)) == rotated.active_field_key
    full = make_trail(trail.vault, _retired(rotated)).verify(full=True)
    assert (full.ok, full.checked) == (True, 25)


def test_a_segment_retention_deletes_while_a_rewrap_reads_it_stays_gone_and_the_rest_is_rewrapped(
        archived, keyring, make_trail):
    rotated, cipher = _rotated(keyring)
    trail, retention = make_trail(archived, cipher), make_trail(archived, cipher)  # another process's run
    purged = []

    class Bar:  # reports a segment read: the rewrap holds it in memory, its new bytes not yet written
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def update(self, n=1):
            if not purged:
                purged.append(retention.purge_older_than(T0 + timedelta(seconds=15)))  # 1-10 expired

    assert trail.archive.rewrap(progress=lambda *a, **k: Bar()) == 1  # 11-20 only: 1-10 went meanwhile
    assert purged == [10]
    _only_11_20_left_rewrapped(trail, rotated, make_trail)


@pytest.mark.sqlite_only("segment files: on PostgreSQL the new bytes go in the transaction changing the checksum")
def test_a_segment_retention_deletes_between_a_rewraps_commit_and_its_rename_stays_gone(
        archived, keyring, make_trail):
    rotated, cipher = _rotated(keyring)
    trail, retention = make_trail(archived, cipher), make_trail(archived, cipher)  # another process's run
    store, purged = trail.archive.store, []
    real_settle = store.settle_rewrapped

    def retention_then_settle(first_seq: int, *, keep: bool) -> None:
        if first_seq == 1:  # the new checksum committed; the new file not yet renamed over the old
            purged.append(retention.purge_older_than(T0 + timedelta(seconds=15)))
        real_settle(first_seq, keep=keep)

    store.settle_rewrapped = retention_then_settle
    assert trail.archive.rewrap() == 2
    assert purged == [10]  # it verified 1-10 from its rewrapped file, and deleted both
    _only_11_20_left_rewrapped(trail, rotated, make_trail)


@pytest.mark.sqlite_only("segment files: on PostgreSQL the new bytes go in the transaction changing the checksum")
@pytest.mark.parametrize("call", ["chmod", "replace"])
def test_a_segment_retention_deletes_while_a_rewrap_writes_its_new_file_stays_gone(
        archived, keyring, make_trail, monkeypatch, call):
    # Retention takes no job lock: it removes the segment's files, the rewrap's half-written one
    # (..<seg>.rewrap.new) too, while the rewrap writes it (before its chmod, or its rename).
    rotated, cipher = _rotated(keyring)
    trail, retention = make_trail(archived, cipher), make_trail(archived, cipher)  # another process's run
    purged, real = [], getattr(os, call)

    def retention_first(path, *args):
        if str(path).endswith(".rewrap.new") and not purged:
            purged.append(retention.purge_older_than(T0 + timedelta(seconds=15)))  # 1-10 expired
        return real(path, *args)

    monkeypatch.setattr(os, call, retention_first)
    assert trail.archive.rewrap() == 1  # 11-20 only: 1-10 went while its new file was written
    monkeypatch.undo()
    assert purged == [10]
    _only_11_20_left_rewrapped(trail, rotated, make_trail)


@pytest.mark.sqlite_only("segment files: on PostgreSQL the new bytes go in the transaction changing the checksum")
def test_a_rewrap_whose_new_file_goes_while_its_segment_stays_listed_names_it_and_changes_nothing(
        archived, keyring, make_trail, monkeypatch):
    rotated, cipher = _rotated(keyring)
    trail, real = make_trail(archived, cipher), os.chmod
    before = _index_checksums(archived)

    def removed_by_someone_else(path, *args):  # not retention: the segment is still listed
        if str(path).endswith(".rewrap.new"):
            os.unlink(path)
        return real(path, *args)

    monkeypatch.setattr(os, "chmod", removed_by_someone_else)
    with pytest.raises(AuditArchiveError) as refused:
        trail.archive.rewrap()
    monkeypatch.undo()
    assert str(refused.value) == ("archive segment of events 1-10: its rewrapped file went while being "
                                  "written; it is not rewrapped")
    assert _index_checksums(archived) == before and wrap_version(_body(trail, 1)) == 1
    assert sorted(p.name for p in archive_dir(archived.path).iterdir()) == [segment_name(1), segment_name(11)]
    assert trail.archive.rewrap() == 2
    assert make_trail(archived, _retired(rotated)).verify(full=True).ok


@pytest.mark.postgresql_only("the segment's row: its new bytes go in the transaction changing its checksum")
def test_a_retention_waiting_for_a_rewraps_commit_deletes_the_rewrapped_segment_after_it(
        archived, keyring, make_trail):
    # No file is written beside the row, so no window of the SQLCipher race: retention's delete
    # waits for the row the rewrap changes, then (serializable: a conflict, retried) deletes it.
    rotated, cipher = _rotated(keyring)
    trail, retention = make_trail(archived, cipher), make_trail(archived, cipher)  # another process's run
    store, purged = trail.archive.store, []
    real_replace = store.replace
    purging = threading.Thread(target=lambda: purged.append(retention.purge_older_than(T0 + timedelta(seconds=15))))

    def replace_while_retention_deletes(conn, first_seq: int, body: bytes) -> None:
        real_replace(conn, first_seq, body)
        if first_seq == 1:  # the new checksum and bytes not committed yet
            purging.start()
            wait_until_someone_waits_for_a_lock(archived)  # retention, for this row
    store.replace = replace_while_retention_deletes

    assert trail.archive.rewrap() == 2  # 1-10 rewrapped first, then deleted by retention
    purging.join(30)
    assert not purging.is_alive() and purged == [10]
    _only_11_20_left_rewrapped(trail, rotated, make_trail)
