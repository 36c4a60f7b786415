"""Data-subject erasure, provably complete: nothing of the subject left in the API, the export,
the files' bytes and decrypted pages, or the vault; a held subject refused; a long reader does
not stall it; one interrupted midway (or whose key bears the erasure's very instant) is
finished at the next start. Helpers: dsr_checks.py."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

import pytest

from compliance.legal_hold import SubjectOnHoldError
from compliance.subject_keys import SubjectKeyMissingError
from dsr_checks import (ADMIN_ACTOR, SERVICE_ACTOR, assert_export_complete, assert_export_empty, export_http,
                        restart)
from storage_backends import RawPostgresConnection
from subject_key_rows import wrapped_key_of
from twin.runtime import Runtime
from twin.storage import Database, FileBacked, IntegrityError

PROFILE_ROUTES = ("/v1/profiles/{pid}", "/v1/profiles/{pid}/sessions", "/v1/profiles/{pid}/knowledge",
                  "/v1/profiles/{pid}/consents")


@pytest.mark.sqlite_only("decrypts the pages of the SQLCipher files")
def test_erasure_leaves_nothing_of_the_subject_in_api_export_files_or_vault(
        runtime, client, admin, service, make_subject, ciphertexts_of, forensics):
    subject = make_subject("erase-me@school.example", sessions=3, knowledge=2, child=True)
    bystander = make_subject("stays@school.example", sessions=2, knowledge=1)
    issued = runtime.tokens.issue("learner", subject_hash=subject.subject_hash)
    learner = {"Authorization": f"Bearer {issued.token}"}

    assert_export_complete(export_http(client, admin, subject.user_id), subject)
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
    assert_export_empty(export_http(client, admin, subject.user_id))

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
    other = export_http(client, admin, bystander.user_id)
    assert len(other["sessions"]) == 2
    assert other["profiles"][0]["personal"]["name"] == f"Name-{bystander.marker}"

    # The trail shows the erasure and verifies.
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="erase")
    assert event.details["receipt_id"] == receipt["receipt_id"] and event.actor_role == "admin"
    assert runtime.audit.verify().ok


def test_erasure_of_a_held_subject_is_refused_and_changes_nothing(runtime, make_subject):
    subject = make_subject("held")
    hold = runtime.holds.place(subject.subject_hash, "litigation", None, "tok_admin")

    with pytest.raises(SubjectOnHoldError) as raised:
        runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    assert raised.value.hold_id == hold["hold_id"]
    assert runtime.dsr.counts(subject.subject_hash)["learning_profiles"] == 1
    assert runtime.keys.has_key(subject.subject_hash)


def test_erasure_removes_the_subjects_learner_tokens(runtime, make_subject):
    subject = make_subject("token-holder", sessions=0, knowledge=0)
    issued = runtime.tokens.issue("learner", subject_hash=subject.subject_hash)

    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    assert runtime.tokens.verify(issued.token) is None


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

    assert took < 4, f"erasure waited {took:.1f}s on a reader"
    assert receipt.verified and receipt.subject_key_destroyed and receipt.wal_truncated is False
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="erase")
    assert event.details["wal_truncated"] is False
    # The next erasure (of anyone) empties the WAL once the reader is gone.
    assert runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="someone").wal_truncated
    pages = forensics.decrypted(runtime.twin_db.path, runtime.keyring.database_key)
    assert [c for c in ciphertexts if c in pages] == []


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

    restarted = restart(runtime, keyring, clock)
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

    restarted = restart(runtime, keyring, clock)
    try:
        assert not restarted.keys.has_key(subject_hash)
        assert set(restarted.dsr.counts(subject_hash).values()) == {0}
    finally:
        restarted.close()
