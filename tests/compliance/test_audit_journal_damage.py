"""What recovery makes of a segment it cannot simply read (``compliance.audit_journal_recovery``):
a header or record that fails is kept as ``*.damaged`` with the events before it; a torn end
keeps the whole records; a segment of the other mode or under a key this process lacks is left
for one that can read it; every case is named in the log, without a key or an event in it."""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from compliance.audit_journal import DAMAGED_SUFFIX, SUFFIX, AuditJournal, staged_segment_files
from compliance.audit_journal_recovery import recover
from compliance.field_crypto import FieldCipher
from compliance.keyring_watcher import field_keys

pytestmark = pytest.mark.sqlite_only("the audit journal's segment files beside the vault file; "
                                     "on PostgreSQL events are staged in the vault (issue 12, replicas)")


def left_behind(journal_dir, keys, *events: dict) -> tuple[str, bytes]:
    """A segment with ``events`` as a process leaves it when it stops: on disk, unlocked."""
    journal = AuditJournal(journal_dir, keys)
    for event in events:
        journal.append(event)
    journal.close()
    [path] = staged_segment_files(journal_dir)
    return path.name.removesuffix(SUFFIX), path.read_bytes()


def rewrite(journal_dir, name: str, data: bytes) -> None:
    (journal_dir / (name + SUFFIX)).write_bytes(data)


def release_all(segments) -> None:
    for segment in segments:
        os.close(segment.fd)


@pytest.mark.parametrize("header", [b"LTAX\x01\x00\x00", b"LTAJ\x02\x00\x00", b"LTA", b"LTAJ\x01\x01\xf4abc"],
                         ids=["magic", "version", "short", "key-longer-than-the-file"])
def test_a_segment_without_a_valid_header_is_kept_as_damaged(journal_dir, header, caplog):
    name, _ = left_behind(journal_dir, None, {"event_id": "e1"})
    rewrite(journal_dir, name, header)
    caplog.set_level(logging.ERROR, logger="compliance.audit_journal_recovery")

    [segment] = recover(journal_dir, None)

    assert segment.events == [] and segment.keep_file and segment.recovered
    assert segment.path == journal_dir / (name + SUFFIX + DAMAGED_SUFFIX)
    assert [p.name for p in journal_dir.iterdir()] == [name + SUFFIX + DAMAGED_SUFFIX]
    assert caplog.messages == [f"audit journal segment {name} is damaged (no valid header): 0 events "
                               f"before the damage recovered; the file is kept as {name}{SUFFIX}{DAMAGED_SUFFIX}"]
    release_all([segment])


def test_a_record_that_is_not_an_event_keeps_the_ones_before_it(journal_dir, caplog):
    name, data = left_behind(journal_dir, None, {"event_id": "e1"})
    rewrite(journal_dir, name, data + struct.pack(">I", 3) + b"{x}" + struct.pack(">I", 2) + b"{}")
    caplog.set_level(logging.ERROR, logger="compliance.audit_journal_recovery")

    [segment] = recover(journal_dir, None)

    assert segment.events == [{"event_id": "e1"}] and segment.keep_file
    assert caplog.messages == [f"audit journal segment {name} is damaged (record 1 does not authenticate): 1 "
                               f"events before the damage recovered; the file is kept as {name}{SUFFIX}{DAMAGED_SUFFIX}"]
    release_all([segment])


@pytest.mark.parametrize("tail", [b"\x00\x00", struct.pack(">I", 9) + b"{}"], ids=["length", "record"])
def test_a_torn_end_keeps_every_whole_record_and_is_imported(journal_dir, tail, caplog):
    name, data = left_behind(journal_dir, None, {"event_id": "e1"}, {"event_id": "e2"})
    rewrite(journal_dir, name, data + tail)
    caplog.set_level(logging.WARNING, logger="compliance.audit_journal_recovery")

    [segment] = recover(journal_dir, None)

    assert segment.events == [{"event_id": "e1"}, {"event_id": "e2"}] and not segment.keep_file
    assert caplog.messages == [f"audit journal segment {name} ends in a partial record (the machine "
                               "stopped mid-write); 2 events recovered"]
    release_all([segment])


def test_segments_of_the_other_mode_are_left_alone_and_said_so(tmp_path, cipher, caplog):
    plain_dir, encrypted_dir = tmp_path / "plain", tmp_path / "encrypted"
    plain, _ = left_behind(plain_dir, None, {"event_id": "e1"})
    encrypted, _ = left_behind(encrypted_dir, cipher, {"event_id": "e1"})
    caplog.set_level(logging.ERROR, logger="compliance.audit_journal_recovery")

    assert recover(plain_dir, field_keys(cipher)) == []
    assert recover(encrypted_dir, None) == []

    assert caplog.messages == [f"audit journal segment {plain} is not encrypted, unlike this process's; left alone",
                               f"audit journal segment {encrypted} is encrypted, unlike this process's; left alone"]
    assert [p.suffix for p in [*plain_dir.iterdir(), *encrypted_dir.iterdir()]] == [SUFFIX, SUFFIX]


def test_a_segment_under_a_key_this_process_lacks_waits_for_one_that_has_it(journal_dir, caplog):
    old, new = os.urandom(32), os.urandom(32)
    name, _ = left_behind(journal_dir, FieldCipher({1: old, 2: new}, 2), {"event_id": "e1"})
    caplog.set_level(logging.ERROR, logger="compliance.audit_journal_recovery")

    assert recover(journal_dir, field_keys(FieldCipher({1: old}, 1))) == []  # before the rotation reached it
    assert recover(journal_dir, field_keys(FieldCipher({2: os.urandom(32)}, 2))) == []  # another keyring

    assert caplog.messages == [
        f"audit journal segment {name}: its key does not open under this process's keyring (unknown key "
        "version); left for a process that holds its key",
        f"audit journal segment {name}: its key does not open under this process's keyring (wrong keyring?); "
        "left for a process that holds its key"]
    [segment] = recover(journal_dir, field_keys(FieldCipher({1: old, 2: new}, 2)))
    assert segment.events == [{"event_id": "e1"}]
    release_all([segment])


def test_a_recovered_segment_is_locked_until_released(journal_dir, cipher):
    name, _ = left_behind(journal_dir, cipher, {"event_id": "e1"})
    keys = field_keys(cipher)

    [segment] = recover(journal_dir, keys)

    assert segment.name == name and segment.path == journal_dir / (name + SUFFIX)
    assert recover(journal_dir, keys) == []  # held by the first
    release_all([segment])
    assert [s.name for s in recover(journal_dir, keys)] == [name]


def test_an_unreadable_segment_is_named_with_the_reason(journal_dir, caplog):
    journal_dir.mkdir()
    (journal_dir / ("0000000000000-1-0badc0de" + SUFFIX)).mkdir()
    caplog.set_level(logging.ERROR, logger="compliance.audit_journal_recovery")

    assert recover(journal_dir, None) == []

    assert caplog.messages == [f"audit journal segment 0000000000000-1-0badc0de{SUFFIX} cannot be recovered "
                               "now: Is a directory"]


def test_a_half_created_segment_goes_after_a_minute_unless_its_process_holds_it(journal_dir):
    journal_dir.mkdir()
    now = time.time()
    ages = {".a.new": 45, ".b.new": 75, ".c.new": 3600}  # real time: a slow machine may take seconds
    for name, age in ages.items():
        (journal_dir / name).write_bytes(b"LTAJ")
        os.utime(journal_dir / name, (now - age, now - age))
    held = os.open(journal_dir / ".c.new", os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert recover(journal_dir, None) == []
    finally:
        os.close(held)

    assert sorted(p.name for p in journal_dir.iterdir()) == [".a.new", ".c.new"]


def test_no_journal_directory_recovers_nothing(tmp_path):
    assert recover(tmp_path / "none", None) == []
    assert not (tmp_path / "none").exists()


def test_a_segment_of_its_header_alone_is_imported_as_empty(journal_dir, cipher, caplog):
    name, data = left_behind(journal_dir, cipher, {"event_id": "e1"})
    key_length = struct.unpack_from(">4sBH", data)[2]
    rewrite(journal_dir, name, data[:7 + key_length])  # its first record never reached the disk
    caplog.set_level(logging.WARNING, logger="compliance.audit_journal_recovery")

    [segment] = recover(journal_dir, field_keys(cipher))

    assert segment.events == [] and not segment.keep_file and caplog.messages == []
    release_all([segment])


def test_a_header_naming_a_one_byte_key_is_an_encrypted_segment(journal_dir, caplog):
    name, _ = left_behind(journal_dir, None, {"event_id": "e1"})
    rewrite(journal_dir, name, b"LTAJ\x01\x00\x01k" + struct.pack(">I", 2) + b"{}")
    caplog.set_level(logging.ERROR, logger="compliance.audit_journal_recovery")

    assert recover(journal_dir, None) == []  # not read as plain JSON

    assert caplog.messages == [f"audit journal segment {name} is encrypted, unlike this process's; left alone"]


def test_a_record_of_length_zero_is_damage_not_a_torn_end(journal_dir, caplog):
    name, data = left_behind(journal_dir, None, {"event_id": "e1"})
    rewrite(journal_dir, name, data + struct.pack(">I", 0))  # a torn write leaves a prefix of one write
    caplog.set_level(logging.WARNING, logger="compliance.audit_journal_recovery")

    [segment] = recover(journal_dir, None)

    assert segment.events == [{"event_id": "e1"}] and segment.keep_file
    assert "record 1 does not authenticate" in caplog.text and "partial record" not in caplog.text
    release_all([segment])


def test_a_segment_larger_than_one_read_is_read_whole(journal_dir):
    events = [{"event_id": f"e{i}", "pad": "x" * 5000} for i in range(400)]  # 2 MB
    left_behind(journal_dir, None, *events)

    [segment] = recover(journal_dir, None)

    assert segment.events == events
    release_all([segment])


def test_a_half_created_segment_exactly_a_minute_old_is_stale(journal_dir, monkeypatch):
    from compliance import audit_journal_recovery

    journal_dir.mkdir()
    partial = journal_dir / ".a.new"
    partial.write_bytes(b"LTAJ")
    os.utime(partial, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    clock = SimpleNamespace(time=lambda: 1_700_000_000.0 + 59.999)
    monkeypatch.setattr(audit_journal_recovery, "time", clock)
    recover(journal_dir, None)
    assert partial.exists()

    clock.time = lambda: 1_700_000_000.0 + 60
    recover(journal_dir, None)
    assert not partial.exists()


def racing(monkeypatch, suffix: str):
    """Locking a file whose name ends in ``suffix`` finds it removed just before, as when
    another process got there first."""
    from compliance import audit_journal_recovery

    def flock(fd, operation):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.name.endswith(suffix) and path.exists():
            path.unlink()
        return fcntl.flock(fd, operation)

    monkeypatch.setattr(audit_journal_recovery, "fcntl",
                        SimpleNamespace(flock=flock, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB))


def test_a_stale_partial_another_process_removes_meanwhile_is_passed_over(journal_dir, monkeypatch):
    journal_dir.mkdir()
    (journal_dir / ".a.new").write_bytes(b"LTAJ")
    os.utime(journal_dir / ".a.new", (time.time() - 3600,) * 2)
    racing(monkeypatch, ".new")

    assert recover(journal_dir, None) == []

    assert list(journal_dir.iterdir()) == []


def test_a_segment_imported_and_deleted_while_it_was_opened_is_passed_over_quietly(journal_dir, monkeypatch, caplog):
    left_behind(journal_dir, None, {"event_id": "e1"})
    racing(monkeypatch, SUFFIX)
    caplog.set_level(logging.WARNING, logger="compliance.audit_journal_recovery")

    assert recover(journal_dir, None) == []

    assert caplog.messages == []


def test_a_vanished_partial_does_not_stop_the_cleanup_of_the_others(journal_dir):
    journal_dir.mkdir()
    stale = [journal_dir / f".{i:02d}-stale.new" for i in range(12)]
    for path in stale:
        path.write_bytes(b"LTAJ")
        os.utime(path, (time.time() - 3600,) * 2)
    for i in range(12):  # gone by the time it is looked at: a link to nothing
        (journal_dir / f".{i:02d}-gone.new").symlink_to(journal_dir / "nothing")

    recover(journal_dir, None)

    assert [p for p in stale if p.exists()] == []


def test_a_damaged_segment_that_cannot_be_set_aside_is_logged_and_the_rest_recovered(journal_dir, monkeypatch, caplog):
    damaged, _ = left_behind(journal_dir / "one", None, {"event_id": "e1"})
    rewrite(journal_dir / "one", damaged, b"LTAX")
    sound, _ = left_behind(journal_dir / "two", None, {"event_id": "e2"})
    for path in (journal_dir / "two").iterdir():
        path.rename(journal_dir / "one" / path.name)
    monkeypatch.setattr(os, "rename", lambda src, dst: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    caplog.set_level(logging.ERROR, logger="compliance.audit_journal_recovery")

    [segment] = recover(journal_dir / "one", None)

    assert segment.name == sound and segment.events == [{"event_id": "e2"}]
    assert caplog.messages == [f"audit journal segment {damaged}{SUFFIX} cannot be recovered now: Permission denied"]
    release_all([segment])
