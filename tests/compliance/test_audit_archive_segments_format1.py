"""Format 1, the first release's JSON segments: the writer the tests use to stand in for them
writes what that release wrote, byte for byte (or every "format 1 still reads" test would prove
nothing), and a format-1 document of any other shape, which only a key holder can seal, is
refused with what is wrong with it by the decoder, the export and a full verify, never raised
out of them as a bare KeyError or TypeError."""

from __future__ import annotations

import json
import zlib

import pytest

from archive_trail import ALICE, BOB, append, at, replace_segment, segments
from compliance.audit_archive import AuditArchiveError
from compliance.audit_archive_segments import (LEGACY, LOG, SegmentContent, SegmentUnreadableError, decode, encode,
                                               subject_rows)
from compliance.field_crypto import FieldCipher
from compliance.keyring_watcher import field_keys
from segment_sealing import opened, seal

_E = "e" * 64
LEGACY_ROW = {"seq": 1, "event_id": "e000000000000001", "occurred_at": "2026-01-01T00:00:01.000000Z",
              "actor_id": "tok_old", "actor_role": "service", "action": "read", "subject_hash": _E,
              "resource": None, "request_id": None, "details": None, "prev_hash": "0" * 64, "event_hash": "1" * 64}
COMPACT_ROW = {"seq": 2, "event_id": bytes(range(16)), "occurred_at": 1767225602000000, "actor_id": "tok_é",
               "actor_role": "service", "action": 3, "subject_hash": ALICE, "resource": "profile:p1",
               "request_id": b"\xff\x00", "details": '{"note":"café"}', "event_hash": bytes([2]) * 32}

# What the first release (4f06acc) sealed for these two events: compact JSON in UTF-8, non-ASCII
# characters as they are, "l" before a legacy event's fields and "c" before a compact one's.
FIRST_RELEASE = (
    '{"format":"twin-audit-archive/1","first_seq":1,"last_seq":2,"prev_hash":"' + "00" * 32 + '",'
    '"events":[["l",1,"e000000000000001","2026-01-01T00:00:01.000000Z","tok_old","service","read","' + _E + '",'
    'null,null,null,"' + "0" * 64 + '","' + "1" * 64 + '"],'
    '["c",2,"AAECAwQFBgcICQoLDA0ODw==",1767225602000000,"tok_é","service",3,"' + ALICE + '","profile:p1",'
    '"/wA=","{\\"note\\":\\"café\\"}","AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="]]}').encode("utf-8")


@pytest.fixture
def keys(keyring):
    return field_keys(FieldCipher(keyring.field_keys, keyring.active_field_key))


def test_the_format_1_writer_writes_what_the_first_release_wrote_byte_for_byte(keys):
    content = SegmentContent(1, 2, bytes(32), [(LEGACY, LEGACY_ROW), (LOG, COMPACT_ROW)])

    body = encode(content, keys, version=1)

    assert body[:5] == b"LTAA\x01"
    assert zlib.decompress(opened(body, 1, keys)) == FIRST_RELEASE
    assert decode(seal(zlib.compress(FIRST_RELEASE), 1, keys, version=1), 1, keys) == decode(body, 1, keys) == content
    assert subject_rows(body, 1, keys, ALICE) == [(LOG, COMPACT_ROW, "1" * 64)]
    assert subject_rows(body, 1, keys, _E) == [(LEGACY, LEGACY_ROW, "00" * 32)]


def _document(**changes) -> bytes:
    doc = json.loads(FIRST_RELEASE)
    for name, value in changes.items():
        if value is None:
            del doc[name]
        else:
            doc[name] = value
    return json.dumps(doc).encode("utf-8")


_GOOD = json.loads(FIRST_RELEASE)["events"]

OTHER_SHAPES = [
    (_document(last_seq=None), "KeyError"),
    (_document(prev_hash=None), "KeyError"),
    (_document(events=None), "KeyError"),
    (_document(prev_hash="not hex"), "ValueError"),
    (_document(events=7), "TypeError"),
    (_document(events=[_GOOD[0], 7]), "TypeError"),
    (_document(events=[_GOOD[0], []]), "IndexError"),
    (_document(events=[_GOOD[0], ["x", *_GOOD[1][1:]]]), "ValueError"),  # neither "l" nor "c"
    (_document(events=[_GOOD[0], _GOOD[1][:-1]]), "ValueError"),  # a field short
    (_document(events=[_GOOD[0][:-1], _GOOD[1]]), "ValueError"),
    (_document(events=[[*_GOOD[0], "more"], _GOOD[1]]), "ValueError"),  # a field too many
    (_document(events=[_GOOD[0], [*_GOOD[1], "more"]]), "ValueError"),
    (_document(events=[_GOOD[0], [*_GOOD[1][:-1], "not base64!"]]), "Error"),  # binascii.Error
]
IDS = ["no-last-seq", "no-prev-hash", "no-events", "prev-hash-not-hex", "events-not-a-list",
       "event-not-a-list", "event-empty", "event-of-another-form", "compact-event-short",
       "legacy-event-short", "legacy-event-long", "compact-event-long", "hash-not-base64"]


@pytest.mark.parametrize("plain, error", OTHER_SHAPES, ids=IDS)
def test_a_format_1_document_of_another_shape_is_refused_saying_so(keys, plain, error):
    with pytest.raises(SegmentUnreadableError) as refused:
        decode(seal(zlib.compress(plain), 1, keys, version=1), 1, keys)
    assert str(refused.value) == f"cannot be decoded ({error})"


# An export decodes only the subject's events of a format-1 document (subject_rows): one it
# reads is refused when it, or the document's shape, is not the first release's.
_ALICES = [2, 4, 5, 6, 7, 8, 11, 12]  # the document's shape, or Alice's event (the second)


@pytest.mark.parametrize("plain, error", [OTHER_SHAPES[i] for i in _ALICES], ids=[IDS[i] for i in _ALICES])
def test_a_format_1_document_of_another_shape_is_refused_by_the_export_reading_it(keys, plain, error):
    with pytest.raises(SegmentUnreadableError) as refused:
        subject_rows(seal(zlib.compress(plain), 1, keys, version=1), 1, keys, ALICE)
    assert str(refused.value) == f"cannot be decoded ({error})"


def test_an_export_of_a_format_1_segment_decodes_only_the_subjects_events(keys):
    """What makes it cheap (136M instructions for 100 events out of 10,000 where decoding them
    all takes 387M): another subject's event that would not decode is never decoded."""
    other = [*_GOOD[0][:-1], "one field too many", _GOOD[0][-1]]
    body = seal(zlib.compress(_document(last_seq=None, events=[other, _GOOD[1]])), 1, keys, version=1)
    with pytest.raises(SegmentUnreadableError):
        decode(body, 1, keys)

    assert subject_rows(body, 1, keys, ALICE) == [(LOG, COMPACT_ROW, "1" * 64)]
    assert subject_rows(body, 1, keys, "f" * 64) == []


@pytest.mark.parametrize("plain, error", [OTHER_SHAPES[2], OTHER_SHAPES[4]], ids=[IDS[2], IDS[4]])
def test_an_archived_format_1_segment_of_another_shape_is_named_by_verify_and_the_export(
        make_archiving_trail, plain, error):
    trail = make_archiving_trail()
    append(trail, 25)  # Alice's are the even seqs, Bob's the odd
    trail.archive_older_than(at(100))
    assert segments(trail) == [(1, 10), (11, 20)]
    replace_segment(trail, 1, seal(zlib.compress(plain), 1, trail.archive._keys, version=1))  # noqa: SLF001 - a key holder's

    result = trail.verify(full=True)

    assert (result.ok, result.first_bad) == (False, 1)
    assert result.reason == f"archive segment of events 1-10 cannot be decoded ({error})"
    for subject in (ALICE, BOB):
        with pytest.raises(AuditArchiveError) as broken:
            list(trail.iter_subject(subject))
        assert str(broken.value) == f"archive segment of events 1-10 cannot be decoded ({error})"
    assert [e.seq for e in trail.query(subject_hash=ALICE, after_seq=10)] == list(range(12, 25, 2))
