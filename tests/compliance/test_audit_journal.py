"""The audit journal: staged events are on disk, encrypted, before ``stage()`` returns; they
reach the hash chain in batches; a process that dies leaves nothing behind that the next
flush does not recover, exactly once."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.audit_journal import DAMAGED_SUFFIX, SUFFIX, AuditJournal, AuditJournalError
from compliance.field_crypto import FieldCipher

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = Actor("tok_service1", "service")
ALICE = "a" * 64

pytestmark = pytest.mark.sqlite_only("the audit journal's segment files beside the vault file; "
                                     "on PostgreSQL events are staged in the vault (issue 12, replicas)")


@pytest.fixture
def vault(open_catalog_db):
    return open_catalog_db("privacy_vault")


@pytest.fixture
def cipher(keyring) -> FieldCipher:
    return FieldCipher(keyring.field_keys, keyring.active_field_key)


@pytest.fixture
def journal_dir(tmp_path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def make_trail(vault, cipher, journal_dir):
    """make_trail(flush_delay=60) -> an AuditTrail staging through a journal in journal_dir.
    The long default delay keeps the background flusher out of the way unless a test wants it."""
    trails = []

    def make(flush_delay: float = 60.0, encrypted: bool = True) -> AuditTrail:
        journal = AuditJournal(journal_dir, cipher if encrypted else None)
        trail = AuditTrail(vault, journal=journal, flush_delay=flush_delay)
        trails.append(trail)
        return trail

    yield make
    for trail in trails:
        trail.close()


def in_vault(vault) -> int:
    return vault.query_one("SELECT count(*) FROM audit_log")[0]


def segment_files(journal_dir: Path) -> list[Path]:
    return sorted(journal_dir.glob("*" + SUFFIX))


def stage_reads(trail: AuditTrail, count: int, prefix: str = "req") -> None:
    for i in range(count):
        trail.stage(SERVICE, "read", subject_hash=ALICE, resource=f"profile:prf_{prefix}{i}",
                    request_id=f"{prefix}-{i}")


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

    deadline = time.monotonic() + 5
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


# -- recovery after a crash ------------------------------------------------------------------

def run_child(tmp_path: Path, keyring, vault_path: Path, journal_dir: Path, body: str) -> None:
    """Run ``body`` in another Python process with ``trail`` (staging into journal_dir) bound,
    then let the process die without closing anything."""
    keyring_file = tmp_path / "child-keyring.json"
    keyring.save(keyring_file)
    script = textwrap.dedent("""
        import os, sys
        from pathlib import Path
        from compliance.audit import Actor, AuditTrail
        from compliance.audit_journal import AuditJournal
        from compliance.field_crypto import FieldCipher
        from compliance.keyring import Keyring
        from twin.storage import Database
        keyring = Keyring.from_json(Path(sys.argv[1]).read_text())
        cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
        vault = Database(sys.argv[2], keyring.database_key, name="privacy_vault")
        journal = AuditJournal(sys.argv[3], cipher)
        trail = AuditTrail(vault, journal=journal, flush_delay=3600)
        actor = Actor("tok_child", "service")
    """) + textwrap.dedent(body) + "\nos._exit(0)\n"
    subprocess.run([sys.executable, "-c", script, str(keyring_file), str(vault_path), str(journal_dir)],
                   cwd=REPO_ROOT, check=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


CHILD_STAGES_THREE = """
for i in range(3):
    trail.stage(actor, "read", subject_hash="c" * 64, request_id=f"child-{i}")
"""


def test_events_staged_by_a_process_that_died_are_recovered_by_the_next_flush(
        tmp_path, keyring, vault, journal_dir, make_trail, caplog):
    run_child(tmp_path, keyring, vault.path, journal_dir, CHILD_STAGES_THREE)
    assert len(segment_files(journal_dir)) == 1 and in_vault(vault) == 0

    caplog.set_level(logging.WARNING, logger="compliance.audit")
    trail = make_trail()
    assert trail.flush() == 3

    assert [e.request_id for e in trail.query()] == ["child-0", "child-1", "child-2"]
    assert segment_files(journal_dir) == []
    assert trail.verify().ok
    assert "recovered 3 staged audit events" in caplog.text


def test_a_segment_already_in_the_trail_when_its_process_died_is_not_imported_twice(
        tmp_path, keyring, vault, journal_dir, make_trail):
    # The child commits its events, then dies before deleting the segment file.
    run_child(tmp_path, keyring, vault.path, journal_dir, CHILD_STAGES_THREE + """
journal.release = lambda segment: os._exit(0)
trail.flush()
""")
    assert in_vault(vault) == 3 and len(segment_files(journal_dir)) == 1

    trail = make_trail()
    trail.flush()

    assert [e.request_id for e in trail.query()] == ["child-0", "child-1", "child-2"]
    assert segment_files(journal_dir) == []


def test_a_live_process_keeps_its_segment(tmp_path, keyring, vault, journal_dir, make_trail):
    keyring_file = tmp_path / "k.json"
    keyring.save(keyring_file)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from pathlib import Path
            from compliance.audit import Actor, AuditTrail
            from compliance.audit_journal import AuditJournal
            from compliance.field_crypto import FieldCipher
            from compliance.keyring import Keyring
            from twin.storage import Database
            keyring = Keyring.from_json(Path(sys.argv[1]).read_text())
            cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
            trail = AuditTrail(Database(sys.argv[2], keyring.database_key), flush_delay=3600,
                               journal=AuditJournal(sys.argv[3], cipher))
            trail.stage(Actor("tok_child", "service"), "read", request_id="alive")
            print("staged", flush=True)
            time.sleep(60)
        """), str(keyring_file), str(vault.path), str(journal_dir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert child.stdout.readline().strip() == "staged"
        trail = make_trail()
        assert trail.flush() == 0  # its owner holds the lock: not ours to take
        assert len(segment_files(journal_dir)) == 1
    finally:
        child.kill()
        child.wait()
    trail._staging._next_recovery = 0  # recovery runs every 30 s; the test does not wait for it
    assert trail.flush() == 1
    assert [e.request_id for e in trail.query()] == ["alive"]


def test_a_torn_last_record_ends_the_segment_and_the_rest_is_recovered(
        tmp_path, keyring, vault, journal_dir, make_trail, caplog):
    run_child(tmp_path, keyring, vault.path, journal_dir, CHILD_STAGES_THREE)
    [segment] = segment_files(journal_dir)
    os.truncate(segment, segment.stat().st_size - 5)  # the machine stopped mid-write

    caplog.set_level(logging.WARNING)
    trail = make_trail()

    assert [e.request_id for e in trail.query()] == ["child-0", "child-1"]
    assert "ends in a partial record" in caplog.text
    assert segment_files(journal_dir) == []


def test_a_tampered_record_keeps_the_events_before_it_and_the_file_for_investigation(
        tmp_path, keyring, vault, journal_dir, make_trail, caplog):
    run_child(tmp_path, keyring, vault.path, journal_dir, CHILD_STAGES_THREE)
    [segment] = segment_files(journal_dir)
    data = bytearray(segment.read_bytes())
    data[-40] ^= 0x01  # inside the last record's ciphertext
    segment.write_bytes(bytes(data))

    caplog.set_level(logging.ERROR)
    trail = make_trail()

    assert [e.request_id for e in trail.query()] == ["child-0", "child-1"]
    assert "damaged" in caplog.text
    assert [p.name for p in journal_dir.iterdir()] == [segment.name + DAMAGED_SUFFIX]
    trail.flush()  # a damaged file is never imported again
    assert in_vault(vault) == 2


def test_a_segment_under_another_keyring_is_left_for_a_process_that_holds_its_key(
        tmp_path, keyring, vault, journal_dir, make_trail):
    from dataclasses import replace

    from compliance.keyring import Keyring

    # Opens the same vault, but its field keys are not this service's: it could forge nothing.
    foreign = replace(Keyring.generate(), database_key=keyring.database_key)
    run_child(tmp_path, foreign, vault.path, journal_dir, CHILD_STAGES_THREE)

    trail = make_trail()
    trail.flush()

    # Not this process's to judge: left for a process that holds its key.
    assert in_vault(vault) == 0
    assert [p.suffix for p in journal_dir.iterdir()] == [SUFFIX]


def test_a_plaintext_segment_is_left_alone_by_an_encrypting_journal(vault, journal_dir, make_trail):
    plain = make_trail(encrypted=False)
    stage_reads(plain, 2)
    plain._staging.journal.close()  # as if its process died: the segment is left, unlocked
    plain._staging = None

    trail = make_trail()
    trail.flush()

    assert in_vault(vault) == 0
    assert [p.suffix for p in journal_dir.iterdir()] == [SUFFIX]


def test_stale_half_created_segments_are_cleaned_up_young_ones_are_not(make_trail, journal_dir):
    journal_dir.mkdir(mode=0o700)
    stale = journal_dir / ".123-1-abcd.new"
    young = journal_dir / ".456-1-efgh.new"
    stale.write_bytes(b"LTAJ")
    young.write_bytes(b"LTAJ")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))

    make_trail().flush()

    assert not stale.exists() and young.exists()


def test_a_staged_record_holds_the_whole_event(make_trail, journal_dir, cipher):
    """What recovery rebuilds is exactly what was staged (same id, time and fields)."""
    from compliance.audit_journal import Segment
    from compliance.audit_journal_recovery import read_segment

    trail = make_trail()
    trail.stage(SERVICE, "update", subject_hash=ALICE, resource="profile:p1", request_id="r1",
                details={"fields": ["personal"]})
    live = trail._staging.journal._live
    staged = live.events[0]

    copy = Segment(live.name, live.path, os.open(live.path, os.O_RDONLY))
    try:
        assert read_segment(copy, AuditJournal(journal_dir, cipher).keys) is True
    finally:
        os.close(copy.fd)

    assert copy.events == [staged]
    assert json.loads(staged["details"]) == {"fields": ["personal"]}
    [event] = trail.query()
    assert (event.event_id, event.occurred_at) == (staged["event_id"], staged["occurred_at"])


# -- failures along the way --------------------------------------------------------------------

def imported_markers(vault) -> list[str]:
    return [row[0] for row in vault.query("SELECT segment FROM audit_journal_imports")]


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
    assert "could not be flushed first" in caplog.text
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

    assert time.monotonic() - started < 5


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
