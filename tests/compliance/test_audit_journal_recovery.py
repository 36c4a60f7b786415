"""Recovery of what a process left when it died (``compliance.audit_journal_recovery``): the
next flush chains its staged events exactly once, keeps what a torn or tampered record leaves
readable, and leaves alone what is not its own (a live process's segment, another keyring's,
the other mode's)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest

from compliance.audit_journal import DAMAGED_SUFFIX, SUFFIX, AuditJournal
from staged_journal import (ALICE, CHILD_STAGES_THREE, REPO_ROOT, SERVICE, in_vault, run_child,
                            segment_files, stage_reads)

pytestmark = pytest.mark.sqlite_only("the audit journal's segment files beside the vault file; "
                                     "on PostgreSQL events are staged in the vault (issue 12, replicas)")


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
    # As if its process died: its flusher thread gone (left running, it would import the segment
    # a minute later, into a finished test's vault and a later test's log), the segment unlocked.
    plain._staging._flusher.stop()
    plain._staging.journal.close()
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
