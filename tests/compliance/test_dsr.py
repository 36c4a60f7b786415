"""Data-subject requests: export (every datum, decrypted) and erasure (provably complete)."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest

from subject_key_rows import wrapped_key_of

from compliance.audit import Actor
from compliance.dsr import EXPORT_FORMAT
from compliance.legal_hold import SubjectOnHoldError
from compliance.subject_keys import SubjectKeyMissingError
from twin.runtime import Runtime
from storage_backends import RawPostgresConnection
from twin.storage import (Database, FileBacked, IntegrityError, backup_database, read_manifest,
                          restore_database, write_manifest)

ADMIN_ACTOR = Actor("tok_test_admin", "admin")
SERVICE_ACTOR = Actor("tok_test_service", "service")

PROFILE_ROUTES = ("/v1/profiles/{pid}", "/v1/profiles/{pid}/sessions", "/v1/profiles/{pid}/knowledge",
                  "/v1/profiles/{pid}/consents")


def _export_http(client, headers, user_id):
    response = client.post("/v1/dsr/export", json={"user_id": user_id}, headers=headers)
    assert response.status_code == 200
    return json.loads(response.get_data())


def _assert_export_empty(doc):
    for key in ("profiles", "sessions", "knowledge_states", "evidence", "consents", "legal_holds"):
        assert doc[key] == [], key


def _assert_export_complete(doc, subject):
    m = subject.marker
    (profile,) = doc["profiles"]
    assert profile["profile_id"] == subject.profile_id
    assert profile["personal"] == {"name": f"Name-{m}", "email": f"{m.lower()}@example.org"}
    assert profile["learning_goals"] == [f"goal-{m}"]
    assert profile["learning_style"] == f"visual-{m}"
    assert profile["knowledge_domains"] == [f"domain-{m}"]
    assert profile["privacy_settings"] == {"share": False}
    assert profile["birth_date"] is not None
    assert sorted(s["session_id"] for s in doc["sessions"]) == sorted(subject.session_ids)
    by_topic = {s["topics_covered"][0]: s for s in doc["sessions"]}
    assert by_topic[f"topic-{m}-1"]["performance_metrics"] == {"score": 1, "note": f"note-{m}-1"}
    assert {(k["knowledge_domain"], k["topic"]) for k in doc["knowledge_states"]} == set(subject.knowledge)
    assert {k["learning_trajectory"]["path"] for k in doc["knowledge_states"]} == \
        {f"traj-{m}-{i}" for i in range(len(subject.knowledge))}
    assert [c["consent_id"] for c in doc["consents"]] == subject.consent_ids
    assert doc["consents"][0]["details"]["consenter_name"] == f"Parent-{m}"
    assert {"create", "consent_grant"} <= {e["action"] for e in doc["disclosures"]}


@pytest.mark.sqlite_only("decrypts the pages of the SQLCipher files")
def test_erasure_leaves_nothing_of_the_subject_in_api_export_files_or_vault(
        runtime, client, admin, service, make_subject, ciphertexts_of, forensics):
    subject = make_subject("erase-me@school.example", sessions=3, knowledge=2, child=True)
    bystander = make_subject("stays@school.example", sessions=2, knowledge=1)
    issued = runtime.tokens.issue("learner", subject_hash=subject.subject_hash)
    learner = {"Authorization": f"Bearer {issued.token}"}

    _assert_export_complete(_export_http(client, admin, subject.user_id), subject)
    ciphertexts = ciphertexts_of(subject.subject_hash)
    # profile x2, sessions, knowledge (trajectory, model checkpoint), evidence (manual values), consent
    assert len(ciphertexts) == 2 + 3 + 2 + 2 + 2 + 1
    wrapped_key = wrapped_key_of(runtime, subject.subject_hash)
    before = forensics.decrypted(runtime.twin_db.path, runtime.keyring.database_key)
    assert subject.subject_hash.encode() in before and all(c in before for c in ciphertexts)

    response = client.post("/v1/dsr/erase", json={"user_id": subject.user_id}, headers=admin)

    assert response.status_code == 200
    receipt = response.get_json()
    assert receipt["counts"] == {"evidence": 2, "knowledge_states": 2, "learning_sessions": 3, "consents": 1,
                                 "legal_holds": 0, "learning_profiles": 1, "thread_contexts": 0,
                                 "user_preferences": 0, "api_tokens": 1, "subject_keys": 1}
    assert receipt["verified"] is True and receipt["subject_key_destroyed"] is True
    assert receipt["wal_truncated"] is True
    assert set(receipt["rescan"].values()) == {0}
    assert receipt["receipt_id"].startswith("rcpt_") and receipt["erased_at"].endswith("Z")

    # The API and the export: nothing, and the learner's own token is gone with them.
    for route in PROFILE_ROUTES:
        assert client.get(route.format(pid=subject.profile_id), headers=service).status_code == 404
    assert client.post("/v1/profiles/lookup", json={"user_id": subject.user_id},
                       headers=service).status_code == 404
    assert client.get(f"/v1/sessions/{subject.session_ids[0]}", headers=service).status_code == 404
    own_export = client.post("/v1/dsr/export", json={"user_id": subject.user_id}, headers=learner)
    assert own_export.status_code == 401
    _assert_export_empty(_export_http(client, admin, subject.user_id))

    # The files: not in the bytes on disk, nor in any decrypted page (free pages, WAL frames).
    twin_pages = forensics.decrypted(runtime.twin_db.path, runtime.keyring.database_key)
    vault_pages = forensics.decrypted(runtime.vault_db.path, runtime.keyring.database_key)
    assert bystander.profile_id.encode() in twin_pages  # the reader does see live data
    on_disk = forensics.raw(runtime.twin_db.path) + forensics.raw(runtime.vault_db.path)
    needles = {"user_id": subject.user_id.encode(), "subject hash": subject.subject_hash.encode(),
               "marker": subject.marker.encode(), "profile_id": subject.profile_id.encode(),
               "wrapped key": wrapped_key,
               **{f"session {i}": s.encode() for i, s in enumerate(subject.session_ids)},
               **{f"ciphertext {i}": c for i, c in enumerate(ciphertexts)}}
    assert [name for name, needle in needles.items() if needle in on_disk] == []
    assert [name for name, needle in needles.items() if needle in twin_pages] == []
    # The audit trail keeps the keyed hash and opaque resource ids (accountability), no more.
    audit_keeps = ("subject hash", "profile_id", "session")
    assert [name for name, needle in needles.items()
            if needle in vault_pages and not name.startswith(audit_keeps)] == []

    # Row by row over a raw keyed connection: the hash survives only where the registry says.
    twin_rows, vault_rows = forensics.rows(runtime.twin_db), forensics.rows(runtime.vault_db)
    assert forensics.tables_containing(twin_rows, subject.subject_hash) == set()
    assert forensics.tables_containing(vault_rows, subject.subject_hash) == \
        {"audit_subjects", "erasure_tombstones"}
    for blob in ciphertexts + [wrapped_key]:
        assert forensics.tables_containing(twin_rows + vault_rows, blob) == set()

    # The key is gone; the bystander is whole.
    assert not runtime.keys.has_key(subject.subject_hash)
    with pytest.raises(SubjectKeyMissingError):
        runtime.keys.writer(subject.subject_hash)
    other = _export_http(client, admin, bystander.user_id)
    assert len(other["sessions"]) == 2
    assert other["profiles"][0]["personal"]["name"] == f"Name-{bystander.marker}"

    # The trail shows the erasure and verifies.
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="erase")
    assert event.details["receipt_id"] == receipt["receipt_id"] and event.actor_role == "admin"
    assert runtime.audit.verify().ok


def test_export_holds_every_table_and_records_a_disclosure(runtime, make_subject):
    subject = make_subject("export-me", sessions=2, knowledge=2, child=True)

    doc = json.loads("".join(runtime.subject_requests.export(ADMIN_ACTOR, "req-1", subject.user_id)))

    assert doc["format"] == EXPORT_FORMAT and doc["generated_at"].endswith("Z")
    _assert_export_complete(doc, subject)
    assert doc["legal_holds"] == []
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="export")
    assert event.request_id == "req-1"
    assert event.details == {"profiles": 1, "legal_holds": 0, "consents": 1, "sessions": 2,
                             "knowledge_states": 2, "evidence": 2, "thread_contexts": 0,
                             "user_preferences": 0}


def test_export_of_an_unknown_subject_is_an_empty_document(runtime):
    doc = runtime.dsr.export(runtime.hasher.hash("nobody"))

    _assert_export_empty(doc)
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


def test_erasing_an_unknown_subject_returns_a_verified_receipt_of_zeros(runtime):
    receipt = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="never-seen")

    assert set(receipt.counts) == {"evidence", "knowledge_states", "learning_sessions", "consents", "legal_holds",
                                   "learning_profiles", "thread_contexts", "user_preferences", "api_tokens",
                                   "subject_keys"}
    assert set(receipt.counts.values()) == {0} and set(receipt.rescan.values()) == {0}
    assert receipt.verified and not receipt.subject_key_destroyed and not receipt.dry_run


def test_erasure_is_idempotent(runtime, make_subject):
    subject = make_subject("twice")
    first = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    second = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    assert first.counts["learning_profiles"] == 1 and first.verified
    assert set(second.counts.values()) == {0} and second.verified
    assert second.receipt_id != first.receipt_id
    assert len(runtime.audit.query(subject_hash=subject.subject_hash, action="erase")) == 2


def test_dry_run_counts_without_deleting_or_tombstoning(runtime, make_subject):
    subject = make_subject("dry", sessions=2, knowledge=1)

    receipt = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id, dry_run=True)

    assert receipt.dry_run
    assert receipt.counts["learning_sessions"] == 2 and receipt.counts["subject_keys"] == 1
    # A dry run proves nothing and destroys nothing: its receipt must not claim either.
    shown = receipt.to_dict()
    assert (shown["verified"], shown["subject_key_destroyed"], shown["wal_truncated"]) == (False, False, False)
    assert shown["rescan"] == {}
    assert runtime.dsr.counts(subject.subject_hash) == receipt.counts
    assert runtime.keys.has_key(subject.subject_hash)
    assert runtime.vault_db.query_one("SELECT count(*) FROM erasure_tombstones")[0] == 0
    assert runtime.audit.query(action="erase") == []


def test_erasure_of_a_held_subject_is_refused_and_changes_nothing(runtime, make_subject):
    subject = make_subject("held")
    hold = runtime.holds.place(subject.subject_hash, "litigation", None, "tok_admin")

    with pytest.raises(SubjectOnHoldError) as raised:
        runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    assert raised.value.hold_id == hold["hold_id"]
    assert runtime.dsr.counts(subject.subject_hash)["learning_profiles"] == 1
    assert runtime.keys.has_key(subject.subject_hash)


def _crash_on_delete(db: Database, table: str) -> Callable[[], None]:
    """Make the next DELETE on ``table`` fail, as a crash in the middle of an erasure would;
    returns what removes the fault again (before the restart that must finish the erasure).
    SQLite: a TEMP trigger on the connection the process's writes run on (gone with the
    connection). PostgreSQL: a trigger in the database, put there and removed by its owner."""
    if isinstance(db, FileBacked):
        with db.writes_held() as conn:
            conn.execute(f"CREATE TEMP TRIGGER crash_{table} BEFORE DELETE ON main.{table} "
                         "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END")
        return lambda: None
    owner = RawPostgresConnection(db.settings.url)
    owner.execute("CREATE FUNCTION simulated_crash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "RAISE EXCEPTION 'simulated crash' USING ERRCODE = '23000'; END $$")
    owner.execute(f"CREATE TRIGGER crash_{table} BEFORE DELETE ON {table} "
                  "FOR EACH ROW EXECUTE FUNCTION simulated_crash()")

    def disarm() -> None:
        owner.execute(f"DROP TRIGGER crash_{table} ON {table}")
        owner.execute("DROP FUNCTION simulated_crash()")
        owner.close()
    return disarm


def _restart(runtime: Runtime, keyring, clock) -> Runtime:
    runtime.close()
    keyring.save(runtime.config.keyring_path)
    return Runtime.open(runtime.config, clock=clock)


@pytest.mark.parametrize("crash_table, crashed_db", [("subject_keys", "vault_db"),
                                                     ("knowledge_states", "twin_db")])
def test_an_erasure_interrupted_midway_is_finished_at_the_next_start(
        runtime, keyring, clock, make_subject, crash_table, crashed_db):
    subject = make_subject("interrupted", sessions=2, knowledge=1)
    bystander = make_subject("bystander", sessions=1, knowledge=0)
    disarm = _crash_on_delete(getattr(runtime, crashed_db), crash_table)

    try:
        with pytest.raises(IntegrityError):
            runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)
    finally:
        disarm()
    assert runtime.keys.has_key(subject.subject_hash)  # the crash left the key (and maybe rows)

    restarted = _restart(runtime, keyring, clock)
    try:
        assert set(restarted.dsr.counts(subject.subject_hash).values()) == {0}
        assert not restarted.keys.has_key(subject.subject_hash)
        (event,) = restarted.audit.query(subject_hash=subject.subject_hash, action="restore_reapply")
        assert event.details["counts"]["subject_keys"] == 1
        assert restarted.dsr.export(bystander.subject_hash)["sessions"][0]["session_id"] \
            == bystander.session_ids[0]
        assert restarted.audit.verify().ok
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_a_restored_backup_taken_before_erasure_serves_nothing_of_the_subject(
        runtime, keyring, clock, make_subject, tmp_path):
    subject = make_subject("restored", sessions=2, knowledge=2)
    bystander = make_subject("survivor", sessions=2, knowledge=1)
    backup_dir = tmp_path / "backup"
    write_manifest(backup_dir, [backup_database(runtime.twin_db, backup_dir)])
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    (entry,) = read_manifest(backup_dir)
    runtime.close()
    restore_database(backup_dir, entry, Database(runtime.twin_db.path, keyring.database_key,
                                                 name="digital_twin"))
    restarted = _restart(runtime, keyring, clock)
    try:
        assert set(restarted.dsr.counts(subject.subject_hash).values()) == {0}
        _assert_export_empty(restarted.dsr.export(subject.subject_hash))
        assert restarted.audit.query(subject_hash=subject.subject_hash, action="restore_reapply")
        kept = restarted.dsr.export(bystander.subject_hash)
        assert len(kept["sessions"]) == 2 and len(kept["knowledge_states"]) == 1
        client = _client(restarted)
        assert client.get(f"/v1/profiles/{subject.profile_id}", headers=client.service).status_code == 404
        assert client.get(f"/v1/profiles/{bystander.profile_id}", headers=client.service).status_code == 200
    finally:
        restarted.close()


def test_a_subject_who_returns_after_erasure_keeps_their_new_data_across_restarts(
        runtime, keyring, clock, make_subject):
    first = make_subject("comeback", sessions=1)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=first.user_id)
    again = make_subject("comeback", sessions=2)

    restarted = _restart(runtime, keyring, clock)
    try:
        doc = restarted.dsr.export(again.subject_hash)
        assert [p["profile_id"] for p in doc["profiles"]] == [again.profile_id]
        assert len(doc["sessions"]) == 2
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_a_returning_subject_restored_from_an_old_backup_loses_only_the_erased_rows(
        runtime, keyring, clock, make_subject, tmp_path):
    old = make_subject("came-back", sessions=2)
    backup_dir = tmp_path / "backup"
    entry = backup_database(runtime.twin_db, backup_dir)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=old.user_id)
    make_subject("came-back", sessions=1)  # re-registers: a new key, newer than the tombstone

    runtime.close()
    restore_database(backup_dir, entry, Database(runtime.twin_db.path, keyring.database_key,
                                                 name="digital_twin"))
    restarted = _restart(runtime, keyring, clock)
    try:
        # The restored rows were sealed under the destroyed key: they must go, not break reads.
        assert restarted.twin_db.query_one("SELECT count(*) FROM learning_profiles WHERE profile_id = ?",
                                           (old.profile_id,))[0] == 0
        doc = restarted.dsr.export(old.subject_hash)
        assert doc["profiles"] == [] and doc["sessions"] == []
        client = _client(restarted)
        assert client.post("/v1/profiles/lookup", json={"user_id": "came-back"},
                           headers=client.service).status_code == 404
    finally:
        restarted.close()


def _client(rt: Runtime):
    from twin.api.app import create_app
    client = create_app(rt.config, runtime=rt).test_client()
    client.service = {"Authorization": f"Bearer {rt.tokens.issue('service').token}"}
    return client


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
    deadline = time.monotonic() + 5
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
        _assert_export_empty(doc)
    after = runtime.dsr.export(subject.subject_hash)
    _assert_export_empty(after)


def test_erasure_removes_the_subjects_learner_tokens(runtime, make_subject):
    subject = make_subject("token-holder", sessions=0, knowledge=0)
    issued = runtime.tokens.issue("learner", subject_hash=subject.subject_hash)

    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    assert runtime.tokens.verify(issued.token) is None


def test_tombstones_are_reapplied_only_where_data_remains(runtime, make_subject):
    erased = make_subject("gone")
    make_subject("alive")
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=erased.user_id)

    result = runtime.dsr.reapply_tombstones(Actor("system:test", "system"))

    # The runtime was never opened (Runtime.open), so no generation was recorded: every
    # tombstone is looked at.
    assert result == {"subjects_reapplied": 0, "tombstones": 1, "every": 1}
    assert runtime.audit.query(action="restore_reapply") == []


def test_erasure_writes_the_tombstone_with_the_receipt(runtime, make_subject):
    subject = make_subject("tombstoned", sessions=1, knowledge=0)

    receipt = runtime.subject_requests.erase(SERVICE_ACTOR, None, user_id=subject.user_id)

    row = runtime.vault_db.query_one("SELECT * FROM erasure_tombstones WHERE user_id_hash = ?",
                                     (subject.subject_hash,))
    assert row["receipt_id"] == receipt.receipt_id and row["erased_at"] == receipt.erased_at
    assert json.loads(row["counts"])["learning_sessions"] == 1
    assert receipt.duration_ms >= 0 and timedelta(milliseconds=receipt.duration_ms) < timedelta(seconds=5)


@pytest.mark.sqlite_only("the WAL of a SQLCipher file")
def test_a_long_reader_cannot_stall_an_erasure_and_the_receipt_says_the_wal_waits(
        runtime, make_subject, ciphertexts_of, forensics):
    subject = make_subject("stalled", sessions=2)
    ciphertexts = ciphertexts_of(subject.subject_hash)
    reader = runtime.twin_db.connect_new()  # e.g. a backup or a streaming export of someone else
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM learning_profiles").fetchone()
    try:
        started = time.monotonic()
        receipt = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)
        took = time.monotonic() - started
    finally:
        reader.execute("COMMIT")
        reader.close()

    assert took < 3, f"erasure waited {took:.1f}s on a reader"
    assert receipt.verified and receipt.subject_key_destroyed and receipt.wal_truncated is False
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="erase")
    assert event.details["wal_truncated"] is False
    # The next erasure (of anyone) empties the WAL once the reader is gone.
    assert runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="someone").wal_truncated
    pages = forensics.decrypted(runtime.twin_db.path, runtime.keyring.database_key)
    assert [c for c in ciphertexts if c in pages] == []


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

def _erase_then_restore_an_older_backup(runtime: Runtime, keyring, subject, tmp_path) -> None:
    """Back digital_twin.db up, erase the subject, stop the service and restore the backup."""
    backup_dir = tmp_path / "backup"
    entry = backup_database(runtime.twin_db, backup_dir)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)
    runtime.close()
    restore_database(backup_dir, entry, Database(runtime.twin_db.path, keyring.database_key,
                                                 name="digital_twin"))


@pytest.mark.sqlite_only("file backups and the SQLCipher file")
def test_after_a_restore_and_restart_the_reerased_subject_is_gone_from_the_files_bytes(
        runtime, keyring, clock, make_subject, ciphertexts_of, forensics, tmp_path):
    """Re-applying a tombstone deletes the restored rows, and then empties the WAL: otherwise
    the restored pages, with the subject's rows, stay in digital_twin.db until some later
    checkpoint, readable by anyone holding the database key."""
    subject = make_subject("restored-bytes", sessions=2, knowledge=1)
    bystander = make_subject("kept-bytes", sessions=1, knowledge=0)
    needles = {"profile_id": subject.profile_id.encode(), "subject hash": subject.subject_hash.encode(),
               **{f"session {i}": s.encode() for i, s in enumerate(subject.session_ids)},
               **{f"ciphertext {i}": c for i, c in enumerate(ciphertexts_of(subject.subject_hash))}}
    _erase_then_restore_an_older_backup(runtime, keyring, subject, tmp_path)
    restored = forensics.decrypted(runtime.twin_db.path, keyring.database_key)
    assert [name for name, needle in needles.items() if needle not in restored] == []  # it came back

    restarted = _restart(runtime, keyring, clock)
    try:
        # Read while the service runs: a graceful stop would checkpoint anyway.
        pages = forensics.decrypted(restarted.twin_db.path, keyring.database_key)
        assert bystander.profile_id.encode() in pages  # the reader does see live data
        assert [name for name, needle in needles.items() if needle in pages] == []
        assert forensics.tables_containing(forensics.rows(restarted.twin_db), subject.subject_hash) == set()
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_before_the_tombstones_are_reapplied_a_restored_subject_exports_nothing_and_nothing_breaks(
        runtime, keyring, clock, make_subject, tmp_path):
    """Between a restore and the re-application of the tombstones, the subject's rows are back
    but their key is gone: the export shows nothing of them (it cannot open them) and serves
    everyone else as usual."""
    subject = make_subject("keyless", sessions=2, knowledge=1)
    bystander = make_subject("keyed", sessions=1, knowledge=0)
    _erase_then_restore_an_older_backup(runtime, keyring, subject, tmp_path)
    keyring.save(runtime.config.keyring_path)

    restarted = Runtime.open(runtime.config, clock=clock, reapply_tombstones=False)
    try:
        assert restarted.dsr.counts(subject.subject_hash)["learning_sessions"] == 2  # rows are back
        assert not restarted.keys.has_key(subject.subject_hash)
        client = _client(restarted)
        admin = {"Authorization": f"Bearer {restarted.tokens.issue('admin').token}"}

        doc = _export_http(client, admin, subject.user_id)

        _assert_export_empty(doc)
        assert len(_export_http(client, admin, bystander.user_id)["sessions"]) == 1
        assert restarted.dsr.reapply_tombstones(ADMIN_ACTOR)["subjects_reapplied"] == 1
        assert set(restarted.dsr.counts(subject.subject_hash).values()) == {0}
    finally:
        restarted.close()


class FrozenClock:
    """A clock that does not move: every timestamp of the test is the same instant."""

    def __init__(self) -> None:
        self.now = datetime(2030, 3, 1, 9, 30, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def test_a_key_stamped_at_the_very_instant_of_its_erasure_is_destroyed_when_the_erasure_is_finished(
        config, keyring):
    """Only a key newer than the tombstone belongs to a subject who came back; one of the same
    instant (a coarse clock) cannot be told from the erased key, so finishing an interrupted
    erasure destroys it with every row (privacy wins the tie)."""
    clock = FrozenClock()
    keyring.save(config.keyring_path)
    runtime = Runtime.open(config, clock=clock)
    subject_hash = runtime.hasher.hash("same-instant")
    runtime.profiles.create(SERVICE_ACTOR, None, {"user_id": "same-instant", "personal": {"n": "x"}})
    disarm = _crash_on_delete(runtime.vault_db, "subject_keys")
    try:
        with pytest.raises(IntegrityError):
            runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="same-instant")
    finally:
        disarm()
    (tie,) = runtime.vault_db.query("SELECT t.erased_at, k.created_at FROM erasure_tombstones t "
                                    "JOIN subject_keys k USING (user_id_hash)")
    assert tie["erased_at"] == tie["created_at"]

    restarted = _restart(runtime, keyring, clock)
    try:
        assert not restarted.keys.has_key(subject_hash)
        assert set(restarted.dsr.counts(subject_hash).values()) == {0}
    finally:
        restarted.close()


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


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_restored_subjects_are_all_erased_again_whatever_order_their_tombstones_come_in(
        runtime, keyring, clock, make_subject, tmp_path):
    """Tombstones of subjects with nothing left to erase do not stop the ones after them."""
    long_gone = make_subject("erased-long-ago", sessions=1)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=long_gone.user_id)
    first, second = make_subject("restored-1", sessions=1), make_subject("restored-2", sessions=2)
    backup_dir = tmp_path / "backup"
    entry = backup_database(runtime.twin_db, backup_dir)
    for subject in (first, second):
        runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)
    runtime.close()
    restore_database(backup_dir, entry, Database(runtime.twin_db.path, keyring.database_key,
                                                 name="digital_twin"))
    keyring.save(runtime.config.keyring_path)
    restarted = Runtime.open(runtime.config, clock=clock, reapply_tombstones=False)
    try:
        result = restarted.dsr.reapply_tombstones(ADMIN_ACTOR)

        assert (result["subjects_reapplied"], result["tombstones"]) == (2, 3)
        for subject in (first, second):
            assert set(restarted.dsr.counts(subject.subject_hash).values()) == {0}
            (event,) = restarted.audit.query(subject_hash=subject.subject_hash, action="restore_reapply")
            assert event.resource == "dsr:tombstone"
    finally:
        restarted.close()


@pytest.mark.sqlite_only("file backups (PostgreSQL restore: twin db restore)")
def test_a_subject_who_came_back_keeps_their_new_key_and_token_when_an_old_backup_is_re_erased(
        runtime, keyring, clock, make_subject, tmp_path):
    """Restored rows from before the erasure go; what the returning subject was given since
    (their new data key, a learner token) stays, and the audit counts only what went."""
    old = make_subject("returns-then-restore", sessions=2, knowledge=0)
    backup_dir = tmp_path / "backup"
    entry = backup_database(runtime.twin_db, backup_dir)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=old.user_id)
    clock.advance(seconds=1)
    make_subject("returns-then-restore", sessions=1, knowledge=0)
    token = runtime.tokens.issue("learner", subject_hash=old.subject_hash).token
    runtime.close()
    restore_database(backup_dir, entry, Database(runtime.twin_db.path, keyring.database_key,
                                                 name="digital_twin"))

    restarted = _restart(runtime, keyring, clock)
    try:
        assert restarted.dsr.export(old.subject_hash)["profiles"] == []
        assert restarted.dsr.counts(old.subject_hash)["learning_sessions"] == 0
        assert restarted.keys.has_key(old.subject_hash)
        assert restarted.tokens.verify(token).subject_hash == old.subject_hash
        (event,) = restarted.audit.query(subject_hash=old.subject_hash, action="restore_reapply")
        assert event.details["counts"] == {"learning_profiles": 1}  # sessions go with their profile
    finally:
        restarted.close()


class _RecordedProgress:
    """A progress factory that remembers what it was told (as the CLI's bar would show)."""

    def __init__(self) -> None:
        self.bars: list[list] = []

    def __call__(self, description: str, total: int | None = None, unit: str = "items") -> "_RecordedProgress":
        self.bars.append([description, total, unit, 0])
        return self

    def update(self, n: int = 1) -> None:
        self.bars[-1][3] += n

    def __enter__(self) -> "_RecordedProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_an_erasure_erases_unless_told_to_dry_run_and_reports_its_progress_table_by_table(
        runtime, make_subject):
    subject = make_subject("progress", sessions=1, knowledge=0)
    progress = _RecordedProgress()

    receipt = runtime.dsr.erase(subject.subject_hash, progress=progress)

    assert not receipt.dry_run and receipt.verified and receipt.subject_key_destroyed
    assert re.fullmatch(r"rcpt_[A-Za-z0-9_-]{16}", receipt.receipt_id)
    tables = len(receipt.counts)
    assert progress.bars == [["erase subject", tables, "tables", tables]]
    assert set(runtime.dsr.counts(subject.subject_hash).values()) == {0}


@pytest.mark.sqlite_only("plants the missed row with SQLite PRAGMAs")
def test_a_row_the_erasure_missed_shows_in_the_rescan_and_the_receipt_is_not_verified(runtime, make_subject):
    """The receipt's proof is a fresh look for the subject in every table: an erasure that left
    a row behind (here a token put back as soon as it is deleted) must not be reported as done."""
    subject = make_subject("missed-row", sessions=0, knowledge=0)
    runtime.tokens.issue("learner", subject_hash=subject.subject_hash)
    columns = [r[1] for r in runtime.vault_db.query("PRAGMA table_info(api_tokens)")]
    with runtime.vault_db.writes_held() as writes:  # a TEMP trigger where the writes run
        writes.execute(
            f"CREATE TEMP TRIGGER put_back AFTER DELETE ON main.api_tokens BEGIN "
            f"INSERT INTO api_tokens ({', '.join(columns)}) VALUES ({', '.join('old.' + c for c in columns)}); END")

    receipt = runtime.dsr.erase(subject.subject_hash)

    assert receipt.rescan["api_tokens"] == 1 and receipt.verified is False
    assert receipt.rescan["learning_profiles"] == 0


# -- what an export makes of a data owner's values, and the re-application's lock ---------------

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


def test_a_re_application_with_no_tombstone_leaves_every_erasure_generation_as_it_was(runtime):
    from compliance import erasure_generation

    data = runtime.dsr._data_databases()  # noqa: SLF001 - the files whose generation is at stake
    before = {db.name: erasure_generation.current(db) for db in data}

    result = runtime.dsr.reapply_tombstones(Actor("system:test", "system"), every=True)

    assert result == {"subjects_reapplied": 0, "tombstones": 0, "every": 1}
    assert {db.name: erasure_generation.current(db) for db in data} == before
    assert runtime.vault_db.query("SELECT * FROM erasure_state") == []


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_an_unfinished_erasure_is_finished_under_the_reapply_lock_leased_for_a_minute(runtime, make_subject, clock):
    from dataclasses import replace

    from twin.storage.timestamps import from_db, to_db

    subject = make_subject("half-erased", sessions=1, knowledge=0)
    # An erasure that stopped after writing its tombstone (the process died): rows remain.
    runtime.vault_db.execute("INSERT INTO erasure_tombstones (user_id_hash, receipt_id, erased_at, counts) "
                             "VALUES (?, 'r-1', ?, '{}')", (subject.subject_hash, to_db(clock())))
    seen = []

    class Watched:
        def __init__(self, ending) -> None:
            self._ending = ending

        def __getattr__(self, name):
            return getattr(self._ending, name)

        def end(self, *args, **kwargs):
            seen.extend(tuple(r) for r in runtime.vault_db.query("SELECT name, acquired_at, expires_at FROM job_locks"))
            return self._ending.end(*args, **kwargs)

    dsr = replace(runtime.dsr, ending=Watched(runtime.dsr.ending))
    result = dsr.reapply_tombstones(Actor("system:test", "system"))

    assert result["subjects_reapplied"] == 1
    [(name, acquired, expires)] = seen
    assert name == "reapply-tombstones" and from_db(expires) - from_db(acquired) == timedelta(minutes=1)
    assert runtime.vault_db.query("SELECT * FROM job_locks") == []
    assert runtime.dsr.counts(subject.subject_hash)["learning_sessions"] == 0
