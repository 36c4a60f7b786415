"""Segment files on a SQLCipher vault's disk: each written whole (a temporary name, flushed,
renamed) as the owner's alone (0600 in a 0700 directory), and, with ``fsync``, on the disk
before ``put`` returns; removing a segment takes its rewrapped copy and the half-written ones too; only
segment names count as stored segments. A segment format this release does not know is refused.

A segment's bytes as a key holder (or an earlier release) sealed them: its data key and its
content are bound to "learner-twin|audit_archive|segment_key|<first seq>" and
"...|segment|<first seq>" (the on-disk format: change either and every archive written before
is unreadable), and a format-2 segment that opens but does not hold a whole segment of the range
its index names is refused saying which."""

from __future__ import annotations

import os
import stat
import struct
import zlib

import pytest

from compliance import audit_archive_codec as codec
from compliance.audit_archive_segments import (LEGACY, LOG, FileSegments, SegmentContent, SegmentUnreadableError,
                                               decode, encode, rewrapped, segment_name, subject_rows, wrap_version)
from compliance.field_crypto import FieldCipher, associated_data
from compliance.keyring_watcher import field_keys
from segment_sealing import aad, opened, seal

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


# -- sealed by hand ----------------------------------------------------------------------

ALICE = "a" * 64
EVENTS = [(LEGACY, {"seq": 1, "event_id": "e1", "occurred_at": "2026-01-01T00:00:01.000000Z", "actor_id": "tok_old",
                    "actor_role": "service", "action": "read", "subject_hash": ALICE, "resource": None,
                    "request_id": None, "details": None, "prev_hash": "0" * 64, "event_hash": "1" * 64}),
          (LOG, {"seq": 2, "event_id": bytes(16), "occurred_at": 1767225602000000, "actor_id": "tok_new",
                 "actor_role": "service", "action": 3, "subject_hash": ALICE, "resource": "profile:p1",
                 "request_id": None, "details": None, "event_hash": bytes([2]) * 32})]


@pytest.fixture
def keys(keyring):
    return field_keys(FieldCipher(keyring.field_keys, keyring.active_field_key))


def test_a_segment_is_sealed_under_the_archives_own_associated_data(keys):
    assert associated_data("audit_archive", "segment", 11) == aad("segment", 11)
    events = [(form, {**row, "seq": row["seq"] + 10}) for form, row in EVENTS]
    plain = codec.pack(11, 12, bytes(32), events)
    content = SegmentContent(11, 12, bytes(32), events)

    body = encode(content, keys)

    assert zlib.decompress(opened(body, 11, keys)) == plain
    assert zlib.decompress(opened(rewrapped(body, 11, keys), 11, keys)) == plain
    by_hand = seal(zlib.compress(plain), 11, keys)
    assert decode(by_hand, 11, keys) == content
    assert [row["seq"] for _, row, _ in subject_rows(by_hand, 11, keys, ALICE)] == [11, 12]


def test_the_content_is_compressed_as_zlib_at_its_default_level(keys):
    """Level 6, at which the README's archive sizes were measured (5 and 7 differ here)."""
    events = [(LOG, {**EVENTS[1][1], "seq": seq, "details": f'{{"n":{seq}}}'}) for seq in range(1, 201)]
    plain = codec.pack(1, 200, bytes(32), events)
    assert opened(encode(SegmentContent(1, 200, bytes(32), events), keys), 1, keys) == zlib.compress(plain, 6)


@pytest.mark.parametrize("compressed, reason", [
    (b"not zlib", "cannot be decoded (error)"),
    (zlib.compress(codec.pack(1, 2, bytes(32), EVENTS)[:-1]), "cannot be decoded (ValueError)"),
    (zlib.compress(codec.pack(1, 2, bytes(32), EVENTS)[:20]), "cannot be decoded (error)"),  # struct.error
    (zlib.compress(codec.pack(1, 2, bytes(32), EVENTS) + b"\x00"), "cannot be decoded (ValueError)"),
    (zlib.compress(codec.pack(2, 2, bytes(32), EVENTS)), "holds another range than its index says"),
], ids=["not-zlib", "cut-short", "header-cut-short", "one-byte-more", "another-first-seq"])
def test_a_format_2_segment_that_opens_but_holds_no_whole_segment_of_its_range_is_named(keys, compressed, reason):
    body = seal(compressed, 1, keys)
    for read in (lambda: decode(body, 1, keys), lambda: subject_rows(body, 1, keys, ALICE)):
        with pytest.raises(SegmentUnreadableError) as refused:
            read()
        assert str(refused.value) == reason


def test_a_format_1_segment_that_opens_to_no_zlib_stream_is_named(keys):
    body = seal(b"not zlib", 1, keys, version=1)
    with pytest.raises(SegmentUnreadableError) as refused:
        decode(body, 1, keys)
    assert str(refused.value) == "cannot be decoded (error)"
    assert struct.error.__name__ == zlib.error.__name__ == "error"  # why both read "(error)"


def test_a_wrapped_key_filling_the_headers_65535_bytes_is_rewrapped_at_its_length(keyring, keys):
    """The header's u16 bounds the wrapped key (a rewrap keeps its length: the same field
    ciphertext format under another key version), so its largest still fits once rewrapped."""
    overhead = len(keys.cipher.encrypt(b"", aad("segment_key", 1)))
    wrapped = keys.cipher.encrypt(bytes(0xFFFF - overhead), aad("segment_key", 1))
    body = b"LTAA\x02" + len(wrapped).to_bytes(2, "big") + wrapped + b"sealed content"
    rotated = keyring.with_new_field_key()
    new_keys = field_keys(FieldCipher(rotated.field_keys, rotated.active_field_key))

    again = rewrapped(body, 1, new_keys)

    assert len(wrapped) == 0xFFFF and len(again) == len(body) and again.endswith(b"sealed content")
    assert (wrap_version(body), wrap_version(again)) == (keyring.active_field_key, rotated.active_field_key)
