"""Data-subject export: every datum of the subject, decrypted, streamed a batch per chunk, and
recorded as a disclosure before its first byte (or not given out at all); an export racing the
subject's erasure sees all or nothing. Helpers: dsr_checks.py."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from compliance.dsr import EXPORT_FORMAT
from dsr_checks import ADMIN_ACTOR, assert_export_complete, assert_export_empty


def test_export_holds_every_table_and_records_a_disclosure(runtime, make_subject):
    subject = make_subject("export-me", sessions=2, knowledge=2, child=True)

    doc = json.loads("".join(runtime.subject_requests.export(ADMIN_ACTOR, "req-1", subject.user_id)))

    assert doc["format"] == EXPORT_FORMAT and doc["generated_at"].endswith("Z")
    assert_export_complete(doc, subject)
    assert doc["legal_holds"] == []
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="export")
    assert event.request_id == "req-1"
    assert event.details == {"profiles": 1, "legal_holds": 0, "consents": 1, "sessions": 2,
                             "knowledge_states": 2, "evidence": 2, "thread_contexts": 0,
                             "user_preferences": 0}


def test_export_of_an_unknown_subject_is_an_empty_document(runtime):
    doc = runtime.dsr.export(runtime.hasher.hash("nobody"))

    assert_export_empty(doc)
    assert doc["disclosures"] == []


def test_export_streams_thousands_of_sessions_one_batch_per_chunk(runtime, make_subject):
    subject = make_subject("busy-learner", sessions=0, knowledge=0)
    sealer = runtime.keys.writer(subject.subject_hash)
    def sealed(i: int, column: str, value):
        return sealer.seal("learning_sessions", column, f"ses_bulk{i:05d}", value)

    rows = [(f"ses_bulk{i:05d}", subject.profile_id, sealed(i, "session_type", "drill"),
             f"2030-01-01T00:00:{i % 60:02d}.000000Z", sealed(i, "topics_covered", [f"t{i}"]),
             sealed(i, "performance_metrics", {"i": i}))
            for i in range(3000)]
    with runtime.twin_db.transaction() as conn:
        conn.executemany("INSERT INTO learning_sessions (session_id, profile_id, session_type, start_time, "
                         "topics_covered, performance_metrics) VALUES (?, ?, ?, ?, ?, ?)", rows)

    chunks = list(runtime.subject_requests.export(ADMIN_ACTOR, None, subject.user_id, batch=200))

    # One chunk per batch of 200 rows (each row well under 1 kB): 15 of sessions, none large.
    session_chunks = [c for c in chunks if '"session_id": "ses_bulk' in c]
    assert len(session_chunks) == 15
    assert max(len(c) for c in chunks) < 200 * 1000
    doc = json.loads("".join(chunks))
    assert len(doc["sessions"]) == 3000
    assert [s["performance_metrics"]["i"] for s in doc["sessions"]] == list(range(3000))


def test_an_export_counts_the_rows_it_sends_per_section_even_when_stopped_early(runtime, make_subject):
    subject = make_subject("counted", sessions=3, knowledge=1)
    counts: dict[str, int] = {}

    whole = json.loads("".join(runtime.dsr.export_chunks(subject.subject_hash, counts=counts, batch=1)))

    assert counts == runtime.dsr.export_counts(subject.subject_hash)
    assert (counts["profiles"], counts["sessions"], counts["knowledge_states"], counts["consents"]) == (1, 3, 1, 0)
    assert "disclosures" not in counts  # the record of disclosures is sent, not counted
    assert len(whole["sessions"]) == 3
    stopped: dict[str, int] = {}
    chunks = runtime.dsr.export_chunks(subject.subject_hash, counts=stopped, batch=1)
    while stopped.get("sessions", 0) < 1:
        next(chunks)
    chunks.close()  # the reader went away after the first session
    assert stopped == {"profiles": 1, "legal_holds": 0, "consents": 0, "sessions": 1}


def test_an_export_is_recorded_as_a_disclosure_before_its_first_byte(runtime, make_subject):
    subject = make_subject("recorded-first", sessions=2, knowledge=0)

    export = runtime.subject_requests.export(ADMIN_ACTOR, "req-first", subject.user_id, batch=1)

    # Nothing has been read out yet, and the disclosure is already in the trail.
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="export")
    assert event.request_id == "req-first"
    assert event.details == {"profiles": 1, "legal_holds": 0, "consents": 0, "sessions": 2,
                             "knowledge_states": 0, "evidence": 0, "thread_contexts": 0,
                             "user_preferences": 0}
    assert len(json.loads("".join(export))["sessions"]) == 2


@pytest.mark.sqlite_only("the audit journal files")
def test_an_export_that_cannot_be_recorded_gives_nothing_out(runtime, make_subject):
    from compliance.audit_journal import AuditJournalError, audit_journal_dir
    subject = make_subject("unrecordable", sessions=1)
    runtime.audit.flush()  # the live segment is imported: the next event needs a new one
    journal = audit_journal_dir(runtime.vault_db.path)
    journal.rename(journal.with_name("journal-moved-away"))
    journal.write_text("a file where the journal directory should be")

    with pytest.raises(AuditJournalError):
        runtime.subject_requests.export(ADMIN_ACTOR, "req-refused", subject.user_id)

    journal.unlink()
    assert runtime.audit.query(subject_hash=subject.subject_hash, action="export") == []


def test_an_export_stopped_midway_is_still_recorded_as_a_disclosure(runtime, make_subject):
    subject = make_subject("dropped-connection", sessions=3)
    export = runtime.subject_requests.export(ADMIN_ACTOR, "req-drop", subject.user_id, batch=1)
    sent = [next(export) for _ in range(6)]  # header, profile, then into the sessions

    export.close()  # the client went away

    assert subject.profile_id in "".join(sent)
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="export")
    assert event.request_id == "req-drop"
    # Recorded before the first byte, with what the export was about to disclose.
    assert event.details["profiles"] == 1 and event.details["sessions"] == 3


@pytest.mark.parametrize("chunks_before_erase, sees", [(1, "nothing"), (4, "all")])
def test_an_export_running_while_the_subject_is_erased_sees_all_or_nothing(
        runtime, make_subject, chunks_before_erase, sees):
    subject = make_subject("racing", sessions=5, knowledge=3, child=True)
    export = runtime.subject_requests.export(ADMIN_ACTOR, None, subject.user_id, batch=1)
    # After 1 chunk the key is in hand but no row read; after 4 the profile row is out.
    head = [next(export) for _ in range(chunks_before_erase)]
    erased = threading.Event()
    eraser = threading.Thread(target=lambda: (runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id),
                                              erased.set()))

    eraser.start()
    deadline = time.monotonic() + 60
    while runtime.dsr.counts(subject.subject_hash)["learning_profiles"] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert runtime.dsr.counts(subject.subject_hash)["learning_profiles"] == 0  # committed meanwhile
    doc = json.loads("".join(head) + "".join(export))
    eraser.join(10)

    assert erased.is_set()
    if sees == "all":
        assert len(doc["profiles"]) == 1 and len(doc["sessions"]) == 5
        assert len(doc["knowledge_states"]) == 3 and len(doc["consents"]) == 1
    else:
        assert_export_empty(doc)
    after = runtime.dsr.export(subject.subject_hash)
    assert_export_empty(after)


class _ComponentNotes:
    """A component store's provider whose export rows carry values JSON has no spelling for
    (a driver's datetime and Decimal): what any owner's ``export_rows`` may hand back."""

    holds_subject_keys = False
    tables: list = []

    def __init__(self, db) -> None:
        self.db = db

    def export(self, subject_hash, reader, batch):
        from decimal import Decimal
        yield "component_notes", iter([[{"noted_at": datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                                         "score": Decimal("0.50")}]])

    def export_counts(self, subject_hash):
        return {"component_notes": 1}

    def count(self, subject_hash, created_before=None):
        return {}


def test_an_export_spells_a_data_owners_non_json_values_as_their_text(runtime, make_subject):
    from dataclasses import replace

    subject = make_subject("noted", sessions=0, knowledge=0)
    dsr = replace(runtime.dsr, providers=[*runtime.dsr.providers, _ComponentNotes(runtime.twin_db)])

    doc = dsr.export(subject.subject_hash)

    assert doc["component_notes"] == [{"noted_at": "2030-01-02 03:04:05+00:00", "score": "0.50"}]
    assert doc["profiles"][0]["profile_id"] == subject.profile_id
