"""The journal's files as an auditor finds them (``compliance.audit_journal``): where they
are, their names and bytes (the documented layout, records sealed under the segment's own key
and bound to their place), what a full or failing disk leaves, and what a process keeps,
deletes and lets go of."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import struct
import time
from pathlib import Path

import pytest

from compliance import envelope
from compliance.audit_journal import (SUFFIX, AuditJournal, AuditJournalError,
                                      AuditJournalFullError, audit_journal_dir, damaged_segment_files,
                                      staged_segment_files)
from compliance.field_crypto import associated_data
from compliance.keyring_watcher import field_keys

pytestmark = pytest.mark.sqlite_only("the audit journal's segment files beside the vault file; "
                                     "on PostgreSQL events are staged in the vault (issue 12, replicas)")

EVENT = {"event_id": "e1", "action": "read", "details": "{}", "naïve": "ü"}


def records(data: bytes, offset: int) -> list[bytes]:
    out = []
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        out.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    return out


def failing_writes(monkeypatch, code: int, reason: str) -> None:
    """Every write to a journal file fails as the disk would: ``code`` (an errno), ``reason``."""
    def write(fd, data):
        raise OSError(code, reason)
    monkeypatch.setattr("compliance.audit_journal.os.write", write)


def test_the_journal_lives_beside_the_vault_named_after_it(tmp_path):
    assert audit_journal_dir(tmp_path / "privacy_vault.db") == tmp_path / "privacy_vault.audit-journal"
    assert audit_journal_dir(str(tmp_path / "v.db")) == tmp_path / "v.audit-journal"


def test_staged_and_damaged_segments_are_listed_apart_in_order(tmp_path):
    journal_dir = tmp_path / "journal"
    assert staged_segment_files(journal_dir) == [] and damaged_segment_files(journal_dir) == []  # none yet
    journal_dir.mkdir()
    for name in ("2-1-bb.seg", "1-1-aa.seg", "3-1-cc.seg.damaged", ".4-1-dd.new", ".reserve"):
        (journal_dir / name).write_bytes(b"")

    assert staged_segment_files(journal_dir) == [journal_dir / "1-1-aa.seg", journal_dir / "2-1-bb.seg"]
    assert damaged_segment_files(str(journal_dir)) == [journal_dir / "3-1-cc.seg.damaged"]
    assert AuditJournal(journal_dir, None).pending_files() == staged_segment_files(journal_dir)


def test_a_journal_says_where_it_is_and_whether_it_encrypts_never_its_keys(tmp_path, cipher):
    assert repr(AuditJournal(tmp_path / "j", cipher)) == f"AuditJournal(directory={str(tmp_path / 'j')!r}, encrypted=True)"
    assert repr(AuditJournal(tmp_path / "j", None)) == f"AuditJournal(directory={str(tmp_path / 'j')!r}, encrypted=False)"


def test_an_encrypted_segment_is_the_documented_layout_each_record_bound_to_its_place(journal_dir, cipher):
    journal = AuditJournal(journal_dir, cipher)
    journal.append(EVENT)
    journal.append({"event_id": "e2"})
    [path] = staged_segment_files(journal_dir)
    name = path.name.removesuffix(SUFFIX)
    data = path.read_bytes()

    assert re.fullmatch(r"\d{13}-%d-[0-9a-f]{8}" % os.getpid(), name)
    magic, version, key_length = struct.unpack_from(">4sBH", data)
    assert (magic, version) == (b"LTAJ", 1) and key_length > 0
    keys = field_keys(cipher)
    data_key = envelope.unwrap(keys, data[7:7 + key_length], associated_data("audit_journal", "segment_key", name))
    first, second = records(data, 7 + key_length)
    segment_cipher = envelope.data_cipher(data_key)
    assert json.loads(segment_cipher.decrypt(first, associated_data("audit_journal", name, 0))) == EVENT
    assert json.loads(segment_cipher.decrypt(second, associated_data("audit_journal", name, 1))) == {"event_id": "e2"}
    with pytest.raises(Exception):
        segment_cipher.decrypt(second, associated_data("audit_journal", name, 0))  # not movable
    journal.close()


def test_a_plaintext_segment_is_the_header_and_the_events_compact_json(journal_dir):
    journal = AuditJournal(journal_dir, None)
    journal.append(EVENT)
    [path] = staged_segment_files(journal_dir)

    text = '{"event_id":"e1","action":"read","details":"{}","naïve":"ü"}'.encode()
    assert path.read_bytes() == b"LTAJ\x01\x00\x00" + struct.pack(">I", len(text)) + text
    journal.close()


def test_seal_hands_over_each_segment_with_its_events_and_later_appends_start_another(journal_dir, cipher):
    journal = AuditJournal(journal_dir, cipher)
    assert journal.seal() == []
    journal.append({"event_id": "e1"})

    [sealed] = journal.seal()
    journal.append({"event_id": "e2"})

    assert sealed.events == [{"event_id": "e1"}] and sealed.recovered is False and sealed.keep_file is False
    assert journal.holds_file(sealed.name) and len(staged_segment_files(journal_dir)) == 2
    journal.release(sealed)
    assert not journal.holds_file(sealed.name) and not sealed.path.exists()
    journal.close()


def test_releasing_a_damaged_segment_keeps_its_file(journal_dir, cipher):
    journal = AuditJournal(journal_dir, cipher)
    journal.append({"event_id": "e1"})
    [sealed] = journal.seal()
    sealed.keep_file = True

    journal.release(sealed)

    assert sealed.path.exists()
    with pytest.raises(OSError):
        os.fstat(sealed.fd)  # its lock is let go all the same


def test_close_lets_go_of_every_segment_and_keeps_their_files(journal_dir, cipher):
    journal = AuditJournal(journal_dir, cipher)
    journal.append({"event_id": "e1"})
    [held] = journal.seal()
    journal.append({"event_id": "e2"})
    live = journal._live
    journal.ensure_room()

    journal.close([held])

    assert len(staged_segment_files(journal_dir)) == 2 and not (journal_dir / ".reserve").exists()
    for segment in (held, live):
        with pytest.raises(OSError):
            os.fstat(segment.fd)


def test_a_short_write_is_a_full_disk_the_reserve_makes_room_for(journal_dir, cipher, monkeypatch, caplog):
    journal = AuditJournal(journal_dir, cipher)
    journal.ensure_room()
    real_write = os.write
    shorts = [1]

    def short_once(fd, data):
        if shorts:
            shorts.pop()
            return real_write(fd, data[:-1])
        return real_write(fd, data)

    monkeypatch.setattr("compliance.audit_journal.os.write", short_once)
    caplog.set_level(logging.WARNING, logger="compliance.audit_journal")
    journal.append({"event_id": "e1"})  # the header wrote short: into a fresh segment

    assert not (journal_dir / ".reserve").exists()
    assert caplog.messages == ["the audit journal's disk is full: its space reserve was used; new requests "
                               "are refused until space is freed"]
    assert [s.events for s in journal.seal()] == [[{"event_id": "e1"}]]
    journal.close()


def test_a_full_disk_without_a_reserve_refuses_the_event_and_says_why(journal_dir, cipher, monkeypatch, caplog):
    journal = AuditJournal(journal_dir, cipher)
    failing_writes(monkeypatch, errno.ENOSPC, "No space left on device")
    caplog.set_level(logging.WARNING, logger="compliance.audit_journal")  # no reserve said to be used

    with pytest.raises(AuditJournalFullError) as refused:
        journal.append({"event_id": "e1"})

    assert str(refused.value) == "the access could not be recorded in the audit journal (its disk is full)"
    assert caplog.messages == [f"could not write to the audit journal in {journal_dir}: No space left on device"]
    assert list(journal_dir.iterdir()) == []  # the half-made segment is gone, no .new left
    journal.close()


def test_a_full_disk_after_the_reserve_was_used_refuses_the_event(journal_dir, cipher, monkeypatch):
    journal = AuditJournal(journal_dir, cipher)
    journal.ensure_room()
    failing_writes(monkeypatch, errno.EDQUOT, "Disk quota exceeded")

    with pytest.raises(AuditJournalFullError):
        journal.append({"event_id": "e1"})

    assert list(journal_dir.iterdir()) == []  # the reserve used, and both tries' segments gone
    monkeypatch.setattr("compliance.disk_reserve.os.posix_fallocate",
                        lambda fd, offset, size: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(AuditJournalFullError):  # refused in advance until the reserve is back
        journal.ensure_room()
    journal.close()


def test_a_disk_that_is_not_full_but_fails_is_a_plain_journal_error(journal_dir, cipher, monkeypatch):
    journal = AuditJournal(journal_dir, cipher)
    journal.ensure_room()
    failing_writes(monkeypatch, errno.EIO, "Input/output error")

    with pytest.raises(AuditJournalError) as refused:
        journal.append({"event_id": "e1"})

    assert type(refused.value) is AuditJournalError
    assert str(refused.value) == ("the access could not be recorded in the audit journal "
                                  "(its disk is full or not writable)")
    assert (journal_dir / ".reserve").exists()  # not a full disk: the reserve is kept
    journal.close()


def test_a_journal_directory_that_cannot_be_made_refuses_in_advance(tmp_path, cipher):
    blocked = tmp_path / "journal"
    blocked.write_text("a file where the directory should be")

    with pytest.raises(AuditJournalError) as refused:
        AuditJournal(blocked, cipher).ensure_room()

    assert type(refused.value) is AuditJournalError


def test_without_fsync_nothing_is_synced(journal_dir, cipher, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append("fdatasync"))
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append("fsync"))
    journal = AuditJournal(journal_dir, cipher)

    journal.append({"event_id": "e1"})

    assert synced == []
    journal.close()


def test_with_fsync_a_new_segment_and_its_directory_entry_are_synced_before_its_first_record(
        journal_dir, cipher, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(Path(f"/proc/self/fd/{fd}").resolve()),
                                                 real_fsync(fd)))
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append("record"))
    journal = AuditJournal(journal_dir, cipher, fsync=True)

    journal.append({"event_id": "e1"})

    [segment] = staged_segment_files(journal_dir)
    assert synced == [segment, journal_dir, "record"]
    journal.close()


def test_a_segment_is_named_by_the_millisecond_it_was_started_and_its_process(journal_dir, cipher):
    journal = AuditJournal(journal_dir / "not" / "yet", cipher)  # made, parents and all, on first use
    before = int(time.time() * 1000)
    journal.append({"event_id": "e1"})
    after = int(time.time() * 1000)

    [path] = staged_segment_files(journal_dir / "not" / "yet")
    started, pid, _ = path.name.removesuffix(SUFFIX).split("-")
    assert before <= int(started) <= after and len(started) == 13 and int(pid) == os.getpid()
    journal.close()


def test_a_record_that_fails_to_write_moves_later_events_to_a_new_segment(journal_dir, cipher, monkeypatch):
    journal = AuditJournal(journal_dir, cipher)
    journal.append({"event_id": "e1"})
    failing_writes(monkeypatch, errno.EIO, "Input/output error")
    with pytest.raises(AuditJournalError):
        journal.append({"event_id": "lost"})
    monkeypatch.undo()

    [abandoned] = journal.seal()  # the one that failed, with what it held; nothing live
    journal.append({"event_id": "e2"})
    [fresh] = journal.seal()

    assert abandoned.events == [{"event_id": "e1"}] and fresh.events == [{"event_id": "e2"}]
    assert abandoned.name != fresh.name
    journal.close([abandoned, fresh])


def test_short_writes_that_leave_no_room_are_logged_as_a_full_disk(journal_dir, cipher, monkeypatch, caplog):
    journal = AuditJournal(journal_dir, cipher)
    real_write = os.write
    monkeypatch.setattr("compliance.audit_journal.os.write", lambda fd, data: real_write(fd, data[:1]))
    caplog.set_level(logging.WARNING, logger="compliance.audit_journal")

    with pytest.raises(AuditJournalFullError):
        journal.append({"event_id": "e1"})

    assert caplog.messages == [f"could not write to the audit journal in {journal_dir}: short write (disk full)"]
    journal.close()


def test_a_segment_that_cannot_be_synced_after_naming_fails_the_event_with_the_reason(
        journal_dir, cipher, monkeypatch, caplog):
    journal = AuditJournal(journal_dir, cipher, fsync=True)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error")))
    caplog.set_level(logging.WARNING, logger="compliance.audit_journal")

    with pytest.raises(AuditJournalError):
        journal.append({"event_id": "e1"})

    assert caplog.messages == [f"could not write to the audit journal in {journal_dir}: Input/output error"]
    journal.close()


def test_releasing_a_segment_whose_file_was_already_removed_lets_it_go(journal_dir, cipher):
    journal = AuditJournal(journal_dir, cipher)
    journal.append({"event_id": "e1"})
    [sealed] = journal.seal()
    sealed.path.unlink()  # by hand, as an operator clearing the directory might

    journal.release(sealed)

    with pytest.raises(OSError):
        os.fstat(sealed.fd)


def test_without_a_reserve_to_use_a_full_disk_refuses_at_once_without_a_second_try(journal_dir, cipher, monkeypatch):
    journal = AuditJournal(journal_dir, cipher)
    real_write = os.write
    fails = [OSError(errno.ENOSPC, "No space left on device")]

    def full_once(fd, data):
        if fails:
            raise fails.pop()
        return real_write(fd, data)

    monkeypatch.setattr("compliance.audit_journal.os.write", full_once)

    with pytest.raises(AuditJournalFullError):
        journal.append({"event_id": "e1"})  # space came back meanwhile, but nothing made room for it

    assert journal.seal() == [] and list(journal_dir.iterdir()) == []
    journal.close()
