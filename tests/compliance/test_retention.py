"""Storage limitation: expired data vanishes from the API at once and from the file after the job."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from compliance import retention
from compliance.audit import Actor
from compliance.job_lock import JobAlreadyRunningError, JobLock
from twin.learners.errors import NotFoundError
from storage_backends import end_lock_session, lock_holders, wait_until_lock_free
from twin.storage import DatabaseUnavailableError
from twin.storage.timestamps import to_db

SERVICE = Actor("tok_test_service", "service")


@pytest.fixture
def config(config, backend):  # backend named: pytest parametrises what it sees requested
    """Short windows so a few clock moves cross them; tiny batches so purges take several; a
    token cache that outlives any test, so only an explicit forget can end a remembered token."""
    return dataclasses.replace(config, session_retention_days=30, knowledge_retention_days=60,
                               audit_retention_days=50, retention_batch_size=2,
                               token_cache_seconds=3600)


@pytest.fixture
def timeline(runtime, make_subject, clock):
    """Day 0: A (45-day profile) and B each get a session and a knowledge state. Day 40: B gets
    fresh ones. Day 61: A's profile, day-0 sessions and day-0 knowledge have expired."""
    a = make_subject("expiring", sessions=1, knowledge=1, retention_days=45)
    b = make_subject("staying", sessions=1, knowledge=1)
    clock.advance(days=40)
    fresh_session, _ = runtime.sessions.start(SERVICE, None, b.profile_id, {"session_type": "review"})
    runtime.knowledge.upsert(SERVICE, None, b.profile_id, "fresh", "topic", {"mastery_level": 0.9})
    clock.advance(days=21)
    return a, b, fresh_session["session_id"]


def _rows(runtime, table: str) -> int:
    return runtime.twin_db.query_one(f"SELECT count(*) FROM {table}")[0]


def test_expired_data_is_hidden_from_the_api_before_the_job_runs(runtime, timeline):
    a, b, fresh = timeline

    with pytest.raises(NotFoundError):
        runtime.profiles.get(SERVICE, None, a.profile_id)
    with pytest.raises(NotFoundError):
        runtime.sessions.get(SERVICE, None, b.session_ids[0])
    page = runtime.sessions.list(SERVICE, None, b.profile_id, limit=10, cursor=None)
    assert [s["session_id"] for s in page["items"]] == [fresh]
    assert [k["domain"] for k in runtime.knowledge.list(SERVICE, None, b.profile_id)] == ["fresh"]
    assert (_rows(runtime, "learning_profiles"), _rows(runtime, "learning_sessions"),
            _rows(runtime, "knowledge_states")) == (2, 3, 3)  # still in the file


@pytest.mark.sqlite_only("reads the SQLCipher file")
def test_the_job_purges_expired_rows_from_the_file_and_leaves_the_rest(
        runtime, timeline, ciphertexts_of, forensics):
    a, b, fresh = timeline
    a_ciphertexts = ciphertexts_of(a.subject_hash)

    report = runtime.retention.run()

    assert report.counts["knowledge_states"] == 2 and report.counts["learning_sessions"] == 2
    assert report.counts["learning_profiles"] == 1 and report.subject_keys_destroyed == 1
    assert not report.dry_run and report.sample_row_ids == {}
    assert set(runtime.dsr.counts(a.subject_hash).values()) == {0}
    assert not runtime.keys.has_key(a.subject_hash)
    assert runtime.profiles.get(SERVICE, None, b.profile_id)[0]["personal"]["name"] == f"Name-{b.marker}"
    assert [s["session_id"] for s in runtime.sessions.list(SERVICE, None, b.profile_id, limit=10,
                                                           cursor=None)["items"]] == [fresh]
    pages = forensics.decrypted(runtime.twin_db.path, runtime.keyring.database_key)
    gone = [a.profile_id.encode(), b.session_ids[0].encode(), *a_ciphertexts]
    assert [n for n in gone if n in pages] == []
    assert b.profile_id.encode() in pages


def test_a_purged_profile_takes_its_learner_tokens_along_at_once(runtime, timeline, client):
    """A's token was in use just before the purge (so the process remembers it as verified):
    it is refused right after, not only once the token cache would have expired."""
    a, b, _ = timeline
    a_token = runtime.tokens.issue("learner", subject_hash=a.subject_hash).token
    b_token = runtime.tokens.issue("learner", subject_hash=b.subject_hash).token
    export = {"Authorization": f"Bearer {a_token}"}
    assert client.post("/v1/dsr/export", json={"user_id": a.user_id}, headers=export).status_code == 200
    assert runtime.tokens.verify(b_token).subject_hash == b.subject_hash

    runtime.retention.run()

    assert client.post("/v1/dsr/export", json={"user_id": a.user_id}, headers=export).status_code == 401
    assert runtime.tokens.verify(a_token) is None
    assert runtime.tokens.verify(b_token).subject_hash == b.subject_hash


def test_the_purge_is_audited_and_the_trail_stays_verifiable(runtime, timeline, clock):
    report = runtime.retention.run()

    (event,) = runtime.audit.query(action="purge")
    assert event.actor_id == "system:retention" and event.actor_role == "system"
    assert event.details["counts"] == report.counts and event.details["subject_keys_destroyed"] == 1
    assert event.details["audit_chain_broken"] is False and report.audit_chain_broken is None
    assert event.resource == "retention"
    assert report.counts["audit_events"] > 0  # day-0 events are past the 50-day window
    oldest = min(e.occurred_at for e in runtime.audit.query(limit=1000))
    assert oldest >= to_db(clock() - timedelta(days=50))
    assert runtime.audit.verify().ok


def test_a_dry_run_counts_and_samples_without_deleting(runtime, timeline):
    a, b, _ = timeline

    report = runtime.retention.run(dry_run=True)

    assert report.dry_run
    assert report.counts == {"evidence": 0, "knowledge_states": 2, "learning_sessions": 2,
                             "learning_profiles": 1, "thread_contexts": 0, "user_preferences": 0,
                             "audit_events": 0}
    assert report.sample_row_ids["learning_profiles"] == [a.profile_id]
    assert sorted(report.sample_row_ids["learning_sessions"]) == \
        sorted([a.session_ids[0], b.session_ids[0]])
    assert len(report.sample_row_ids["knowledge_states"]) == 2
    assert (_rows(runtime, "learning_profiles"), _rows(runtime, "learning_sessions")) == (2, 3)
    assert runtime.keys.has_key(a.subject_hash)
    assert runtime.audit.query(action="purge") == []


def test_a_held_subject_is_skipped_by_every_purge(runtime, timeline):
    a, b, _ = timeline
    runtime.holds.place(a.subject_hash, "litigation", None, "tok_admin")

    report = runtime.retention.run()

    assert report.counts["learning_profiles"] == 0 and report.subject_keys_destroyed == 0
    assert report.counts["learning_sessions"] == 1 and report.counts["knowledge_states"] == 1  # B's only
    held = runtime.dsr.counts(a.subject_hash)
    assert (held["learning_profiles"], held["learning_sessions"], held["knowledge_states"]) == (1, 1, 1)
    assert runtime.keys.has_key(a.subject_hash)


def test_nothing_expired_means_nothing_purged(runtime, make_subject):
    subject = make_subject("fresh")

    report = runtime.retention.run()

    assert set(report.counts.values()) == {0}
    assert runtime.dsr.counts(subject.subject_hash)["learning_sessions"] == 2
    assert runtime.audit.query(action="purge") == []


def test_a_second_run_while_one_is_running_is_refused(runtime, timeline):
    refused = []

    def start_another(table: str, purged: int) -> None:
        if not refused:
            with pytest.raises(JobAlreadyRunningError) as raised:
                runtime.retention.run()
            refused.append(raised.value)

    report = runtime.retention.run(progress=start_another)

    assert refused and "already running" in str(refused[0])
    assert report.counts["learning_profiles"] == 1  # the first run finished its work
    assert runtime.retention.run().counts["learning_profiles"] == 0  # and released its lease


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the server frees a dead holder's lock")
def test_a_crashed_runs_lease_expires_by_itself(runtime, clock):
    JobLock(runtime.vault_db, "retention", clock).acquire()  # a holder that never releases

    with pytest.raises(JobAlreadyRunningError):
        runtime.retention.run()
    clock.advance(minutes=11)

    assert not runtime.retention.run().dry_run


@pytest.mark.postgresql_only("a session advisory lock")
def test_a_lock_held_by_another_process_refuses_until_that_process_dies(runtime, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, runtime.vault_db.settings.url],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(JobAlreadyRunningError) as refused:
            runtime.retention.run()
        assert "another process holds its lock" in str(refused.value)
        assert lock_holders(runtime.vault_db.settings.url, "job:retention") == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)

    wait_until_lock_free(runtime.vault_db.settings.url, "job:retention")  # the server ends the dead session
    assert not runtime.retention.run().dry_run  # and its lock with it


@pytest.mark.postgresql_only("a session advisory lock")
def test_a_run_whose_lock_session_is_lost_stops_at_the_next_batch(runtime, make_subject, clock):
    make_subject("lost-lock", sessions=5, knowledge=0)
    clock.advance(days=31)

    ended = []

    def terminate_lock_session(table: str, purged: int) -> None:
        if not ended:  # the run's lock session, after its first batch
            ended.append(end_lock_session(runtime.vault_db.settings.url, "job:retention"))

    with pytest.raises(DatabaseUnavailableError, match="lost"):
        runtime.retention.run(progress=terminate_lock_session)
    assert ended == [1]
    assert runtime.retention.run().counts["learning_sessions"] == 3  # the rest, by the next run


# Another process (a replica) taking the vault's retention lock and keeping it until killed.
HOLD_THE_LOCK = """
import sys, time
from datetime import datetime, timezone
from compliance.job_lock import JobLock
from twin.storage import PostgresSettings, open_postgresql
vault = open_postgresql(PostgresSettings(sys.argv[1], pool_size=1), name="privacy_vault")
lock = JobLock(vault, "retention", lambda: datetime.now(timezone.utc))
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_purges_go_in_batches_and_report_progress(runtime, make_subject, clock):
    subject = make_subject("many-sessions", sessions=5, knowledge=0)
    clock.advance(days=31)
    seen = []

    report = runtime.retention.run(progress=lambda table, total: seen.append((table, total)))

    assert report.counts["learning_sessions"] == 5
    assert seen == [("learning_sessions", 2), ("learning_sessions", 4), ("learning_sessions", 5)]
    assert runtime.dsr.counts(subject.subject_hash)["learning_profiles"] == 1


@pytest.mark.sqlite_only("simulates the stop with a TEMP trigger")
def test_a_purge_stopped_between_key_and_rows_leaves_only_unreadable_rows_for_the_next_run(runtime, timeline):
    """Retention ends a subject key first (it has no tombstone to finish with): a crash after
    the key leaves expired rows nobody can read, which the next run deletes."""
    from twin.storage import IntegrityError

    a, b, _ = timeline
    crash = "CREATE TEMP TRIGGER crash_profiles BEFORE DELETE ON main.learning_profiles " \
            "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
    with runtime.twin_db.writes_held() as writes:  # a TEMP trigger where the writes run
        writes.execute(crash)
    with pytest.raises(IntegrityError):
        runtime.retention.run()

    assert not runtime.keys.has_key(a.subject_hash) and runtime.keys.has_key(b.subject_hash)
    assert runtime.dsr.counts(a.subject_hash)["learning_profiles"] == 1  # still in the file
    with runtime.twin_db.writes_held() as writes:
        writes.execute("DROP TRIGGER temp.crash_profiles")
    report = runtime.retention.run()
    assert report.counts["learning_profiles"] == 1 and report.subject_keys_destroyed == 0
    assert set(runtime.dsr.counts(a.subject_hash).values()) == {0}


@pytest.mark.sqlite_only("edits the vault file behind the service")
def test_retention_over_a_broken_audit_chain_says_so_and_keeps_the_old_events_as_evidence(
        runtime, timeline, client, admin, caplog, forge_audit_event):
    forge_audit_event(2)
    old_events = runtime.vault_db.query_one("SELECT count(*) FROM audit_log")[0]

    response = client.post("/v1/admin/retention/run", json={}, headers=admin)

    assert response.status_code == 200
    report = response.get_json()
    assert report["audit_chain_broken"] == "event 2: content does not match its hash (edited?)"
    assert report["counts"]["audit_events"] == 0
    assert report["counts"]["learning_profiles"] == 1  # the personal data still goes
    assert runtime.audit.query(after_seq=1, limit=1)[0].actor_id == "tok_forged"
    assert runtime.vault_db.query_one("SELECT count(*) FROM audit_log")[0] >= old_events
    (event,) = runtime.audit.query(action="purge")
    assert event.details["audit_chain_broken"] is True
    assert "audit purge refused: the chain is broken at event 2 (content does not match its hash (edited?))" \
        in [r.getMessage() for r in caplog.records]


@pytest.mark.sqlite_only("edits the vault file behind the service")
def test_a_broken_chain_is_recorded_even_when_nothing_else_expired(runtime, make_subject, clock,
                                                                   forge_audit_event):
    make_subject("only-old-events", sessions=0, knowledge=0)
    clock.advance(days=51)  # past the audit window, no personal data window
    forge_audit_event(1)

    report = runtime.retention.run()

    assert set(report.counts.values()) == {0}
    assert report.audit_chain_broken.startswith("event 1: ")
    (event,) = runtime.audit.query(action="purge")
    assert event.details["audit_chain_broken"] is True and set(event.details["counts"].values()) == {0}


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_a_long_purge_keeps_its_lease_from_batch_to_batch(runtime, make_subject, clock):
    """Each batch extends the lease: a run slower than the lease is never joined by another."""
    make_subject("slow-purge", sessions=5, knowledge=0)
    clock.advance(days=31)
    refusals = []

    def slow_batch(table: str, purged: int) -> None:
        clock.advance(minutes=6)  # over two batches, more than the 10-minute lease
        with pytest.raises(JobAlreadyRunningError):
            runtime.retention.run()
        refusals.append(purged)

    report = runtime.retention.run(progress=slow_batch)

    assert refusals == [2, 4, 5] and report.counts["learning_sessions"] == 5


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_a_purge_writes_its_lease_again_once_a_tenth_of_it_has_passed_not_every_batch(
        runtime, make_subject, clock):
    make_subject("quick-purge", sessions=9, knowledge=0)
    clock.advance(days=31)
    expiries = []

    def batch_done(table: str, purged: int) -> None:
        if table == "learning_sessions":
            expiries.append(runtime.vault_db.query_one(
                "SELECT expires_at FROM job_locks WHERE name = 'retention'")[0])
            clock.advance(seconds=20)

    report = runtime.retention.run(progress=batch_done)

    # Five batches of two, 20 s apart: the 10-minute lease is written when taken and once more,
    # before the batch that starts a minute (a tenth of it) later.
    assert report.counts["learning_sessions"] == 9 and len(expiries) == 5
    assert len(set(expiries)) == 2 and expiries[2] < expiries[3]


def test_expired_profiles_end_in_batches_of_the_configured_size(runtime, make_subject, clock):
    subjects = [make_subject(f"batch-{i}", sessions=0, knowledge=0, retention_days=10) for i in range(5)]
    clock.advance(days=11)
    seen = []

    report = runtime.retention.run(progress=lambda table, total: seen.append((table, total)))

    assert [total for table, total in seen if table == "learning_profiles"] == [2, 4, 5]
    assert report.counts["learning_profiles"] == 5 and report.subject_keys_destroyed == 5
    assert not any(runtime.keys.has_key(s.subject_hash) for s in subjects)



def _bulky_sessions(runtime, make_subject, count: int) -> None:
    """``count`` sessions of about 3 kB each, of one subject, on day 0."""
    subject = make_subject("bulky", sessions=0, knowledge=0)
    for i in range(count):
        started, _ = runtime.sessions.start(SERVICE, None, subject.profile_id, {"session_type": "lesson"})
        runtime.sessions.update(SERVICE, None, started["session_id"],
                                {"performance_metrics": {"log": f"{i}-" + "x" * 3000}}, None)
@pytest.mark.sqlite_only("free pages of a SQLCipher file")
def test_the_pages_a_purge_frees_go_back_to_the_file_system(runtime, make_subject, clock):
    _bulky_sessions(runtime, make_subject, 40)
    clock.advance(days=31)
    pages_before = runtime.twin_db.query_one("PRAGMA page_count")[0]

    report = runtime.retention.run(batch_size=50)

    assert report.counts["learning_sessions"] == 40
    assert runtime.twin_db.query_one("PRAGMA freelist_count")[0] == 0
    released = pages_before - runtime.twin_db.query_one("PRAGMA page_count")[0]
    assert released * runtime.twin_db.cipher.page_size > 80_000  # most of the 40 sessions' ~120 kB


@pytest.mark.sqlite_only("free pages of a SQLCipher file")
def test_the_freed_pages_go_back_in_steps_so_a_writer_waits_for_one_step_only(
        runtime, make_subject, clock, monkeypatch):
    monkeypatch.setattr(retention, "VACUUM_STEP_PAGES", 1)  # a few sessions free several pages
    _bulky_sessions(runtime, make_subject, 8)
    clock.advance(days=31)
    statements: list[str] = []
    own = runtime.twin_db.connection()
    with runtime.twin_db.writes_held() as writes:  # the purge's writes run there, its reads here
        connections = (own, writes)
    for conn in connections:
        conn.set_trace_callback(statements.append)
    try:
        runtime.retention.run(batch_size=50)
    finally:
        for conn in connections:
            conn.set_trace_callback(None)

    steps = [s for s in statements if s.startswith("PRAGMA incremental_vacuum")]
    assert len(steps) >= 3 and set(steps) == {"PRAGMA incremental_vacuum(1)"}
    assert runtime.twin_db.query_one("PRAGMA freelist_count")[0] == 0


def test_the_report_gives_how_long_the_run_took_in_seconds_to_the_millisecond(runtime):
    for _ in range(5):  # one duration in ten ends in a 0 at the fourth decimal: five rule a finer one out
        started = time.perf_counter()
        report = runtime.retention.run(dry_run=True)
        took = time.perf_counter() - started
        assert type(report.duration_s) is float and 0 <= report.duration_s <= took + 0.0005
        assert round(report.duration_s, 3) == report.duration_s

def test_several_held_subjects_are_left_out_of_the_preview_and_the_purge(runtime, make_subject, clock):
    held = [make_subject(f"held-{i}", sessions=1, knowledge=0, retention_days=10) for i in range(2)]
    free = make_subject("not-held", sessions=1, knowledge=0, retention_days=10)
    for subject in held:
        runtime.holds.place(subject.subject_hash, "litigation", None, "tok_admin")
    clock.advance(days=11)

    preview = runtime.retention.run(dry_run=True)
    report = runtime.retention.run()

    assert preview.counts["learning_profiles"] == 1 and preview.sample_row_ids["learning_profiles"] == [free.profile_id]
    assert report.counts["learning_profiles"] == 1 and not runtime.keys.has_key(free.subject_hash)
    assert all(runtime.keys.has_key(s.subject_hash) for s in held)


@pytest.mark.sqlite_only("a write-ahead log file is SQLite's")
def test_a_purge_says_when_a_reader_kept_it_from_emptying_the_wal(runtime, timeline, clock, caplog):
    reader = runtime.twin_db.connect_new()  # e.g. a backup or a long export
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM learning_profiles").fetchone()
    try:
        report = runtime.retention.run()
    finally:
        reader.execute("COMMIT")
        reader.close()

    assert report.started_at.endswith("Z") and report.started_at <= to_db(clock())
    assert "WAL of digital_twin not emptied after the purge (a reader held it)" in \
        [r.getMessage() for r in caplog.records]
    caplog.clear()
    clock.advance(days=31)
    runtime.retention.run()  # no reader now: nothing to say
    assert "not emptied" not in caplog.text
