"""The audit journal: staged events are on disk, encrypted, before ``stage()`` returns; they
reach the hash chain in batches; failures along the way (a full disk, a busy vault, a file that
cannot be deleted) lose no event and chain none twice. A process that died: the recovery
tests (``test_audit_journal_recovery.py``)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from compliance.audit import AuditTrail
from compliance.audit_journal import SUFFIX, AuditJournal, AuditJournalError
from staged_journal import (ALICE, CHILD_STAGES_THREE, SERVICE, imported_markers, in_vault, run_child,
                            segment_files, stage_reads)

pytestmark = pytest.mark.sqlite_only("the audit journal's segment files beside the vault file; "
                                     "on PostgreSQL events are staged in the vault (issue 12, replicas)")


# -- staging --------------------------------------------------------------------------------

def test_a_staged_event_is_on_disk_encrypted_before_it_reaches_the_vault(make_trail, vault, journal_dir):
    trail = make_trail()

    trail.stage(SERVICE, "read", subject_hash=ALICE, resource="profile:prf_Secretive",
                request_id="rid-Distinctive")

    assert in_vault(vault) == 0
    [segment] = segment_files(journal_dir)
    data = segment.read_bytes()
    assert len(data) > 100
    for clear in (ALICE, "prf_Secretive", "rid-Distinctive", SERVICE.actor_id, "read"):
        assert clear.encode() not in data
    assert oct(segment.stat().st_mode & 0o777) == "0o600"
    assert oct(journal_dir.stat().st_mode & 0o777) == "0o700"


def test_reading_the_trail_flushes_first_so_a_process_sees_its_own_events(make_trail, journal_dir):
    trail = make_trail()
    stage_reads(trail, 3)

    events = trail.query(subject_hash=ALICE)

    assert [e.request_id for e in events] == ["req-0", "req-1", "req-2"]
    assert segment_files(journal_dir) == []  # moved into the chain, then deleted
    assert trail.verify().ok


def test_staged_events_keep_the_time_they_happened_not_the_time_they_were_flushed(vault, cipher, journal_dir):
    from datetime import datetime, timedelta, timezone

    now = [datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)]
    trail = AuditTrail(vault, clock=lambda: now[0], flush_delay=60,
                       journal=AuditJournal(journal_dir, cipher))
    trail.stage(SERVICE, "read", subject_hash=ALICE)
    now[0] += timedelta(hours=1)

    [event] = trail.query()

    assert event.occurred_at == "2026-03-01T12:00:00.000000Z"
    trail.close()


def test_the_background_flusher_moves_events_in_without_being_asked(make_trail, vault):
    trail = make_trail(flush_delay=0.02)
    stage_reads(trail, 5)

    deadline = time.monotonic() + 60  # a loaded machine may starve the flusher's thread a while
    while in_vault(vault) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert in_vault(vault) == 5
    assert trail.verify().ok


def test_a_direct_record_comes_after_the_events_staged_before_it(make_trail):
    trail = make_trail()
    stage_reads(trail, 2)

    direct = trail.record(SERVICE, "update", subject_hash=ALICE, request_id="direct")

    assert [e.request_id for e in trail.query()] == ["req-0", "req-1", "direct"]
    assert direct.seq == 3


def test_invalid_events_are_refused_at_staging_not_at_flush(make_trail, journal_dir):
    from compliance.audit import InvalidAuditEventError, UnknownAuditActionError

    trail = make_trail()
    with pytest.raises(UnknownAuditActionError):
        trail.stage(SERVICE, "peek", subject_hash=ALICE)
    with pytest.raises(InvalidAuditEventError):
        trail.stage(SERVICE, "read", details={"blob": "x" * 10_000})

    assert segment_files(journal_dir) == []
    assert trail.flush() == 0


def test_close_flushes_and_leaves_no_segment(make_trail, vault, journal_dir):
    trail = make_trail()
    stage_reads(trail, 4)

    trail.close()

    assert in_vault(vault) == 4
    assert segment_files(journal_dir) == []


def test_without_a_journal_stage_is_record(vault):
    trail = AuditTrail(vault)

    trail.stage(SERVICE, "read", subject_hash=ALICE)

    assert in_vault(vault) == 1


def test_a_disk_that_refuses_the_write_fails_the_staging_loudly(make_trail, monkeypatch, vault):
    trail = make_trail()
    stage_reads(trail, 1, "before")

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("compliance.audit_journal.os.write", disk_full)
    with pytest.raises(AuditJournalError) as raised:
        trail.stage(SERVICE, "read", subject_hash=ALICE, request_id="lost")
    assert "audit journal" in str(raised.value) and str(trail._staging.journal.directory) not in str(raised.value)
    monkeypatch.undo()

    stage_reads(trail, 1, "after")  # a fresh segment: the failed one may end in a partial record
    assert [e.request_id for e in trail.query()] == ["before-0", "after-0"]


# -- failures along the way --------------------------------------------------------------------

def test_import_markers_go_once_their_segment_files_are_gone(make_trail, vault):
    trail = make_trail()
    stage_reads(trail, 2)
    trail.flush()
    assert len(imported_markers(vault)) == 1  # written with the events, in one transaction

    trail._staging._next_recovery = 0
    trail.flush()

    assert imported_markers(vault) == []


def test_a_segment_whose_file_cannot_be_deleted_is_still_imported_once(make_trail, vault, journal_dir,
                                                                        monkeypatch, caplog):
    trail = make_trail()
    stage_reads(trail, 2, "first")
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")))
    caplog.set_level(logging.WARNING)
    assert trail.flush() == 2
    monkeypatch.undo()
    assert "could not be deleted" in caplog.text and len(segment_files(journal_dir)) == 1

    stage_reads(trail, 1, "second")
    trail._staging._next_recovery = 0  # the left-over file is now anybody's to recover
    trail.flush()

    assert [e.request_id for e in trail.query()] == ["first-0", "first-1", "second-0"]


def test_an_unreadable_file_among_the_segments_does_not_stop_recovery(
        tmp_path, keyring, vault, journal_dir, make_trail, caplog):
    run_child(tmp_path, keyring, vault.path, journal_dir, CHILD_STAGES_THREE)
    (journal_dir / ("0000000000000-1-0badc0de" + SUFFIX)).mkdir()  # not a file at all

    caplog.set_level(logging.ERROR)
    trail = make_trail()

    assert [e.request_id for e in trail.query()] == ["child-0", "child-1", "child-2"]
    assert "cannot be recovered now" in caplog.text


def test_while_the_vault_refuses_events_stay_staged_in_one_growing_segment(make_trail, vault, journal_dir,
                                                                          monkeypatch):
    from twin.storage import DatabaseBusyError

    trail = make_trail()
    real_write = vault.write

    def busy(fn, **kwargs):
        raise DatabaseBusyError("privacy_vault: database stayed busy")

    monkeypatch.setattr(vault, "write", busy)
    for attempt in range(5):
        stage_reads(trail, 2, f"attempt{attempt}")
        with pytest.raises(DatabaseBusyError):
            trail.flush()
    assert len(segment_files(journal_dir)) == 2  # the first sealed one, and the live one
    monkeypatch.setattr(vault, "write", real_write)

    assert trail.flush() == 10
    assert segment_files(journal_dir) == []
    assert [e.request_id for e in trail.query()][:2] == ["attempt0-0", "attempt0-1"]


def test_a_direct_record_still_lands_while_the_backlog_cannot(make_trail, vault, monkeypatch, caplog):
    trail = make_trail()
    stage_reads(trail, 1, "staged")
    monkeypatch.setattr(trail._staging, "_import", lambda segment: (_ for _ in ()).throw(
        OSError(5, "Input/output error")))
    caplog.set_level(logging.WARNING)

    trail.record(SERVICE, "erase", subject_hash=ALICE, request_id="direct")

    assert [e.request_id for e in trail.query()] == ["direct"]
    # the exception's type only: its message could carry a path or a value
    assert ("compliance.audit", logging.WARNING,
            "staged audit events could not be flushed first (OSError); continuing") in caplog.record_tuples
    monkeypatch.undo()
    trail.flush()
    assert in_vault(vault) == 2


def test_close_lets_go_of_what_it_could_not_flush(tmp_path, keyring, vault, cipher, journal_dir, monkeypatch):
    from twin.storage import DatabaseBusyError

    trail = AuditTrail(vault, journal=AuditJournal(journal_dir, cipher), flush_delay=3600)
    stage_reads(trail, 2)
    monkeypatch.setattr(vault, "write", lambda fn, **kwargs: (_ for _ in ()).throw(DatabaseBusyError("busy")))
    with pytest.raises(DatabaseBusyError):
        trail.close()
    monkeypatch.undo()

    # Locks dropped, files kept: another process (here, another trail) imports them.
    other = AuditTrail(vault, journal=AuditJournal(journal_dir, cipher), flush_delay=3600)
    assert other.flush() == 2
    other.close()
    trail.stage(SERVICE, "read", request_id="after-close")  # closed: recorded directly
    assert in_vault(vault) == 3


def test_closing_does_not_wait_out_the_flush_delay(make_trail):
    trail = make_trail(flush_delay=30)
    stage_reads(trail, 1)

    started = time.monotonic()
    trail.close()

    # Under the 5 s the flusher waits at most (retry_delay's cap): a close that waited out
    # the delay would take that long.
    assert time.monotonic() - started < 4


def test_a_service_starting_up_chains_what_a_crashed_one_staged(tmp_path, config, keyring, open_catalog_db):
    from compliance.audit_journal import audit_journal_dir
    from twin.runtime import Runtime

    vault = open_catalog_db("privacy_vault")
    run_child(tmp_path, keyring, vault.path, audit_journal_dir(vault.path), CHILD_STAGES_THREE)
    keyring.save(config.keyring_path)

    runtime = Runtime.open(config)
    try:
        assert segment_files(audit_journal_dir(vault.path)) == []  # imported before serving
        assert [e.request_id for e in runtime.audit.query()] == ["child-0", "child-1", "child-2"]
    finally:
        runtime.close()


def test_the_disk_space_reserve_is_kept_by_ensure_room_and_given_back_at_close(make_trail, journal_dir):
    from compliance.audit_journal import RESERVE_BYTES, RESERVE_NAME
    trail = make_trail()

    trail.ensure_room()

    reserve = journal_dir / RESERVE_NAME
    assert reserve.stat().st_size == RESERVE_BYTES and reserve.stat().st_blocks * 512 >= RESERVE_BYTES
    assert oct(reserve.stat().st_mode & 0o777) == "0o600"
    trail.stage(SERVICE, "read", subject_hash=ALICE)
    trail.close()
    assert not reserve.exists()


def test_with_fsync_every_staged_event_is_flushed_to_the_disk_before_stage_returns(
        vault, cipher, journal_dir, monkeypatch):
    synced: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real_fdatasync(fd)))
    trail = AuditTrail(vault, journal=AuditJournal(journal_dir, cipher, fsync=True),
                       flush_delay=3600)
    try:
        for _ in range(3):
            trail.stage(SERVICE, "read", subject_hash=ALICE)
        assert len(synced) == 3
    finally:
        trail.close()
