"""A segment's bytes as a key holder (or an earlier release) sealed them: its data key and its
content are bound to "learner-twin|audit_archive|segment_key|<first seq>" and
"...|segment|<first seq>" (the on-disk format: change either and every archive written before
is unreadable), and a format-2 segment that opens but does not hold a whole segment of the range
its index names is refused saying which."""

from __future__ import annotations

import struct
import zlib

import pytest

from compliance import audit_archive_codec as codec
from compliance.audit_archive_segments import (LEGACY, LOG, SegmentContent, SegmentUnreadableError, decode, encode,
                                               rewrapped, subject_rows)
from compliance.field_crypto import FieldCipher, associated_data
from compliance.keyring_watcher import field_keys
from segment_sealing import aad, opened, seal

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
