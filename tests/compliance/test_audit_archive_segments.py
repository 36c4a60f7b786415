"""Segment files on a SQLCipher vault's disk: each written whole (a temporary name, flushed,
renamed) as the owner's alone (0600 in a 0700 directory), and, with ``fsync``, on the disk
before ``put`` returns; removing a segment takes its rewrapped copy and the half-written ones too; only
segment names count as stored segments. A segment format this release does not know is refused."""

from __future__ import annotations

import os
import stat
import zlib

import pytest

from compliance.audit_archive_segments import FileSegments, SegmentContent, encode, segment_name
from compliance.field_crypto import FieldCipher
from compliance.keyring_watcher import field_keys
from segment_sealing import seal

BODY = b"LTAA" + bytes(200)


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """The paths os.fsync flushes, in order."""
    paths: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_segment_is_written_whole_as_the_owners_alone(tmp_path):
    store = FileSegments(tmp_path / "vault.audit-archive", fsync=False)
    store.put(None, 11, BODY)

    directory = tmp_path / "vault.audit-archive"
    assert sorted(p.name for p in directory.iterdir()) == [segment_name(11)] == ["0000000000000011.ltaa"]
    assert (directory / segment_name(11)).read_bytes() == BODY == store.get(None, 11)
    assert (_mode(directory), _mode(directory / segment_name(11))) == (0o700, 0o600)
    assert (store.size(None, 11), store.get(None, 1), store.size(None, 1)) == (len(BODY), None, None)


def test_with_fsync_a_segment_and_its_name_are_on_the_disk_before_put_returns(tmp_path, synced):
    directory = tmp_path / "archive"
    store = FileSegments(directory)
    store.put(None, 1, BODY)
    assert synced == [str(directory / f".{segment_name(1)}.new"), str(directory)]

    synced.clear()
    store.put_rewrapped(1, BODY + b"x")
    store.settle_rewrapped(1, keep=True)
    assert synced == [str(directory / f"..{segment_name(1)}.rewrap.new"), str(directory), str(directory)]
    assert store.get(None, 1) == BODY + b"x" and store.pending_rewraps() == {}


def test_without_fsync_nothing_is_flushed(tmp_path, synced):
    store = FileSegments(tmp_path / "archive", fsync=False)
    store.put(None, 1, BODY)
    store.put_rewrapped(1, BODY)
    store.settle_rewrapped(1, keep=True)
    assert synced == []


def test_removing_a_segment_takes_its_half_written_and_rewrapped_copies(tmp_path):
    directory = tmp_path / "archive"
    store = FileSegments(directory, fsync=False)
    for first in (1, 11):
        store.put(None, first, BODY)
        store.put_rewrapped(first, BODY)
        (directory / f".{segment_name(first)}.new").write_bytes(b"half")
        (directory / f"..{segment_name(first)}.rewrap.new").write_bytes(b"half rewrapped")

    store.remove(None, 1)

    assert sorted(p.name for p in directory.iterdir()) == [
        f"..{segment_name(11)}.rewrap.new", f".{segment_name(11)}.new", f".{segment_name(11)}.rewrap",
        segment_name(11)]
    assert store.stored(None) == [11] and list(store.pending_rewraps()) == [11]


def test_only_segment_names_are_stored_segments(tmp_path):
    directory = tmp_path / "archive"
    store = FileSegments(directory, fsync=False)
    assert (store.stored(None), store.pending_rewraps()) == ([], {})  # no directory yet
    store.put(None, 21, BODY)
    store.put(None, 1, BODY)
    store.put_rewrapped(21, b"rewrapped")
    for name in ("notes.ltaa", ".0000000000000001.ltaa.new", "0000000000000031.txt", ".x.ltaa.rewrap"):
        (directory / name).write_bytes(b"?")

    assert store.stored(None) == [1, 21]
    assert store.pending_rewraps() == {21: b"rewrapped"}
    store.settle_rewrapped(21, keep=False)
    assert store.pending_rewraps() == {} and store.get(None, 21) == BODY


def test_a_segment_format_this_release_does_not_know_is_refused(keyring):
    keys = field_keys(FieldCipher(keyring.field_keys, keyring.active_field_key))
    with pytest.raises(ValueError) as refused:
        encode(SegmentContent(1, 1, bytes(32), []), keys, version=3)
    assert str(refused.value) == "no archive segment format 3"


def test_segments_are_kept_under_a_directory_made_with_its_parents_and_name_their_place(tmp_path):
    from compliance.audit_archive_segments import TableSegments
    store = FileSegments(tmp_path / "a" / "b" / "vault.audit-archive", fsync=False)
    store.remove(None, 1)  # nothing there: nothing to do
    store.settle_rewrapped(1, keep=False)
    store.put(None, 1, BODY)
    assert store.get(None, 1) == BODY
    assert repr(store) == f"FileSegments({str(tmp_path / 'a' / 'b' / 'vault.audit-archive')!r})"
    assert repr(TableSegments()) == "TableSegments()"


def test_a_header_without_its_wrapped_key_or_under_another_keyring_is_named(keyring):
    from compliance.audit_archive_segments import SegmentUnreadableError, rewrapped, wrap_version
    from compliance.keyring import Keyring
    keys = field_keys(FieldCipher(keyring.field_keys, keyring.active_field_key))
    with pytest.raises(SegmentUnreadableError) as truncated:
        wrap_version(b"LTAA\x02\x00\x00")
    assert str(truncated.value) == "holds no wrapped key (truncated?)"
    body = encode(SegmentContent(1, 1, bytes(32), []), keys)
    other = Keyring.generate()
    with pytest.raises(SegmentUnreadableError) as foreign:
        rewrapped(body, 1, field_keys(FieldCipher(other.field_keys, other.active_field_key)))
    assert str(foreign.value).startswith("fails authentication (") and str(foreign.value).endswith("Error)")
    assert str(foreign.value) != "fails authentication (NoneType)"


def test_a_vaults_archive_sits_beside_it_and_a_16_digit_seq_is_read_back_whole(tmp_path):
    from compliance.audit_archive_segments import archive_dir
    assert archive_dir(tmp_path / "privacy_vault.db") == tmp_path / "privacy_vault.audit-archive"
    store = FileSegments(tmp_path / "archive", fsync=False)
    store.put_rewrapped(1234567890123456, BODY)
    assert store.pending_rewraps() == {1234567890123456: BODY}


@pytest.mark.parametrize("plain, reason", [
    (b"not json", "cannot be decoded (JSONDecodeError)"),
    (b"[1, 2]", "holds another range than its index says"),
    (b'{"format": "twin-audit-archive/0", "first_seq": 1}', "holds another range than its index says"),
    (b'{"format": "twin-audit-archive/1", "first_seq": 2}', "holds another range than its index says"),
], ids=["not-json", "not-a-document", "another-format", "another-first-seq"])
def test_a_format_1_segment_a_key_holder_sealed_with_another_document_is_named(keyring, plain, reason):
    from compliance.audit_archive_segments import SegmentUnreadableError, decode
    keys = field_keys(FieldCipher(keyring.field_keys, keyring.active_field_key))
    with pytest.raises(SegmentUnreadableError) as refused:
        decode(seal(zlib.compress(plain), 1, keys, version=1), 1, keys)
    assert str(refused.value) == reason
