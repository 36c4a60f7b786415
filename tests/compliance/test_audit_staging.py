"""Moving staged events into the trail (``compliance.audit_staging.StagedEvents``): what a
flush reports having moved, each segment's import marker, the operator's log lines, and how
often a process looks for what dead ones left."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from compliance import audit_staging
from staged_journal import CHILD_STAGES_THREE, in_vault, run_child, segment_files, stage_reads

pytestmark = pytest.mark.sqlite_only("the audit journal's segment files beside the vault file; "
                                     "on PostgreSQL events are staged in the vault (issue 12, replicas)")


def markers(vault) -> list[tuple[str, int]]:
    return [(row[0], row[1]) for row in
            vault.query("SELECT segment, events FROM audit_journal_imports ORDER BY segment")]


def child_stages(tmp_path, keyring, vault, journal_dir, prefix: str, count: int = 3) -> None:
    run_child(tmp_path, keyring, vault.path, journal_dir, f"""
for i in range({count}):
    trail.stage(actor, "read", subject_hash="c" * 64, request_id=f"{prefix}-{{i}}")
""")


def test_a_flush_inside_an_open_vault_transaction_moves_nothing(make_trail, vault, journal_dir):
    trail = make_trail()
    stage_reads(trail, 2)

    with vault.transaction():
        assert trail.flush() == 0  # joining it, a rollback would lose the deleted segment's events

    assert in_vault(vault) == 0 and len(segment_files(journal_dir)) == 1
    assert trail.flush() == 2


def test_a_flush_reports_every_event_it_moved_across_segments(tmp_path, keyring, vault, journal_dir, make_trail):
    child_stages(tmp_path, keyring, vault, journal_dir, "first")
    child_stages(tmp_path, keyring, vault, journal_dir, "second")
    assert len(segment_files(journal_dir)) == 2

    trail = make_trail()
    assert trail.flush() == 6

    assert sorted(e.request_id for e in trail.query()) == sorted(
        [f"first-{i}" for i in range(3)] + [f"second-{i}" for i in range(3)])
    assert [events for _, events in markers(vault)] == [3, 3]
    assert trail.verify().ok


def test_a_recovered_segment_is_logged_by_name_and_marked_imported_with_its_count(
        tmp_path, keyring, vault, journal_dir, make_trail, caplog):
    run_child(tmp_path, keyring, vault.path, journal_dir, CHILD_STAGES_THREE)
    [segment] = segment_files(journal_dir)
    name = segment.name.removesuffix(segment.suffix)
    caplog.set_level(logging.WARNING, logger="compliance.audit_staging")

    assert make_trail().flush() == 3

    assert markers(vault) == [(name, 3)]
    assert [m for m in caplog.messages if name in m] == [
        f"recovered 3 staged audit events left by a stopped process (segment {name})"]


def test_a_segment_already_imported_moves_nothing_the_second_time(
        tmp_path, keyring, vault, journal_dir, make_trail, caplog):
    # The child commits its events, then dies before deleting the segment file.
    run_child(tmp_path, keyring, vault.path, journal_dir, CHILD_STAGES_THREE + """
journal.release = lambda segment: os._exit(0)
trail.flush()
""")
    [segment] = segment_files(journal_dir)
    name = segment.name.removesuffix(segment.suffix)
    caplog.set_level(logging.WARNING, logger="compliance.audit_staging")

    assert make_trail().flush() == 0

    assert in_vault(vault) == 3 and segment_files(journal_dir) == []
    assert markers(vault) == [(name, 3)]  # the child's marker, not a second one
    assert f"recovered 0 staged audit events left by a stopped process (segment {name})" in caplog.text


def test_a_segment_whose_only_record_tore_is_imported_as_empty(
        tmp_path, keyring, vault, journal_dir, make_trail):
    child_stages(tmp_path, keyring, vault, journal_dir, "torn", count=1)
    [segment] = segment_files(journal_dir)
    name = segment.name.removesuffix(segment.suffix)
    os.truncate(segment, segment.stat().st_size - 5)  # the machine stopped mid-write

    trail = make_trail()
    assert trail.flush() == 0

    assert in_vault(vault) == 0 and segment_files(journal_dir) == []
    assert markers(vault) == [(name, 0)]


def test_a_file_that_cannot_be_deleted_is_logged_by_name_and_reason(make_trail, vault, journal_dir,
                                                                    monkeypatch, caplog):
    trail = make_trail()
    stage_reads(trail, 2)
    [segment] = segment_files(journal_dir)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")))
    caplog.set_level(logging.WARNING, logger="compliance.audit_staging")

    assert trail.flush() == 2
    monkeypatch.undo()

    assert [m for m in caplog.messages if segment.stem in m] == [
        f"audit journal segment {segment.stem} is in the trail but its file could not be deleted: "
        "Permission denied"]


def test_a_process_looks_for_dead_ones_segments_again_only_after_the_recovery_interval(
        tmp_path, keyring, vault, journal_dir, make_trail, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(audit_staging, "time", SimpleNamespace(monotonic=lambda: now[0]))
    child_stages(tmp_path, keyring, vault, journal_dir, "first")
    trail = make_trail()
    assert trail.flush() == 3  # the first flush looks
    child_stages(tmp_path, keyring, vault, journal_dir, "second")

    now[0] = 1000.0 + audit_staging.RECOVERY_INTERVAL_S - 0.001
    assert trail.flush() == 0
    assert len(segment_files(journal_dir)) == 1

    now[0] = 1000.0 + audit_staging.RECOVERY_INTERVAL_S
    assert trail.flush() == 3
    assert segment_files(journal_dir) == [] and in_vault(vault) == 6
    assert trail.verify().ok
