"""Audit events staged in the vault (replicas without a local journal): an event is a
committed vault row when ``stage()`` returns; any trail's flush chains every staged event
exactly once into one chain that verifies, including the events of a process killed right
after staging them."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.audit_codec import unpack_id
from compliance.audit_journal import AuditJournalError
from compliance.audit_vault_staging import CHAIN_LOCK, FLUSH_BATCH
from compliance.vault_schema import MIGRATIONS as VAULT_MIGRATIONS
from storage_backends import concurrently, database_url
from twin.storage import Database, Migrator, PostgresSettings, open_postgresql

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = Actor("tok_service1", "service")
SUBJECT = "b" * 64


@pytest.fixture
def vault(backend, open_catalog_db, request):
    """The vault, migrated, on this test's backend."""
    if backend == "sqlcipher":
        return open_catalog_db("privacy_vault")
    server = request.getfixturevalue("pg_server")
    db = open_postgresql(PostgresSettings(database_url(server.create_database()), pool_size=2,
                                          pool_max_size=8), name="privacy_vault")
    Migrator(db, VAULT_MIGRATIONS).migrate()
    request.addfinalizer(db.close_all)
    return db


@pytest.fixture
def reopen(vault, keyring, request):
    """reopen() -> another object on the same vault, as another process would open it."""
    def again():
        if isinstance(vault, Database):
            other = Database(vault.path, keyring.database_key, name="privacy_vault")
        else:
            other = open_postgresql(vault.settings, name="privacy_vault")
        request.addfinalizer(other.close_all)
        return other
    return again


def _address(vault) -> str:
    return str(vault.path) if isinstance(vault, Database) else vault.settings.url


@pytest.fixture
def make_trail(vault):
    """make_trail(db=vault, flush_delay=60) -> a trail staging in the vault; closed after."""
    trails = []

    def make(db=None, flush_delay: float = 60.0) -> AuditTrail:
        trail = AuditTrail(db or vault, stage_in_vault=True, flush_delay=flush_delay)
        trails.append(trail)
        return trail

    yield make
    for trail in trails:
        trail.close()


def _staged(vault) -> int:
    return vault.query_one("SELECT count(*) FROM audit_staged_events")[0]


def _chained(vault) -> list[str]:
    return [unpack_id(r[0]) for r in vault.query("SELECT request_id FROM audit_log ORDER BY seq")]


def test_a_staged_event_is_a_committed_vault_row_when_stage_returns(make_trail, vault, reopen):
    trail = make_trail()
    trail.stage(SERVICE, "read", subject_hash=SUBJECT, resource="profile:prf_1", request_id="r-1")
    # Another process's view of the vault (a connection of its own) sees it, before any flush.
    assert reopen().query_one("SELECT count(*) FROM audit_staged_events")[0] == 1
    assert _chained(vault) == []

    assert trail.flush() == 1
    assert _chained(vault) == ["r-1"] and _staged(vault) == 0
    [event] = trail.query()
    assert (event.actor_id, event.action, event.subject_hash, event.resource) == (
        "tok_service1", "read", SUBJECT, "profile:prf_1")
    assert trail.verify().ok


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_flush_is_three_round_trips_to_the_server_whatever_it_interns(make_trail, vault):
    trail = make_trail()
    trail.stage(SERVICE, "read", subject_hash=SUBJECT, resource="profile:prf_1")
    trail.flush()  # the actor, subject and resource are interned now
    spent = []
    for batch in (["profile:prf_1"], ["profile:prf_1"] * 5, ["profile:new-1", "profile:new-2"]):
        for resource in batch:
            trail.stage(SERVICE, "read", subject_hash=SUBJECT if resource.endswith("1") else "c" * 64,
                        resource=resource)
        before = vault.counter.this_thread()
        assert trail.flush() == len(batch)
        spent.append((vault.counter.this_thread() - before).round_trips)

    # BEGIN, the chain lock and the batch taken; the head and every value interned (new ones
    # added); the events' inserts and COMMIT. Whether values are new or known alike.
    assert spent == [3, 3, 3]
    assert _staged(vault) == 0 and trail.verify().ok
    assert [e.resource for e in trail.query(limit=20)][-2:] == ["profile:new-1", "profile:new-2"]


def test_reading_the_trail_chains_what_was_staged_first(make_trail):
    trail = make_trail()
    for i in range(3):
        trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id=f"r-{i}")
    assert [e.request_id for e in trail.query()] == ["r-0", "r-1", "r-2"]


def test_the_background_flusher_chains_without_being_asked(make_trail, vault):
    trail = make_trail(flush_delay=0.01)
    trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id="soon")
    pause = threading.Event()
    for _ in range(1200):  # polled for up to a minute: the flusher runs on its own thread
        if _chained(vault) == ["soon"]:
            break
        pause.wait(0.05)
    assert _chained(vault) == ["soon"] and _staged(vault) == 0


def test_replicas_staging_and_flushing_at_once_chain_every_event_once_in_one_chain(
        make_trail, vault, reopen):
    replicas = [make_trail(reopen(), flush_delay=0.005) for _ in range(3)]

    def load(n: int) -> None:
        for i in range(60):
            replicas[n].stage(SERVICE, "read", subject_hash=SUBJECT, request_id=f"replica{n}-{i}")
            if i % 20 == 19:
                replicas[n].flush()

    concurrently(*(lambda n=n: load(n) for n in range(3)))
    replicas[0].flush()
    chained = _chained(vault)
    assert sorted(chained) == sorted(f"replica{n}-{i}" for n in range(3) for i in range(60))
    assert _staged(vault) == 0
    assert replicas[1].verify().ok
    for n in range(3):  # each replica's own events stay in the order it staged them
        mine = [r for r in chained if r.startswith(f"replica{n}-")]
        assert mine == [f"replica{n}-{i}" for i in range(60)]


_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from compliance.audit import Actor, AuditTrail
    from compliance.keyring import Keyring
    from twin.storage import Database, PostgresSettings, open_postgresql
    keyring = Keyring.from_json(Path(sys.argv[1]).read_text())
    where = sys.argv[2]
    vault = (open_postgresql(PostgresSettings(where, pool_size=1), name="privacy_vault")
             if where.startswith("postgresql:") else
             Database(where, keyring.database_key, name="privacy_vault"))
    trail = AuditTrail(vault, stage_in_vault=True, flush_delay=3600)
    for i in range(5):
        trail.stage(Actor("tok_child", "service"), "read", subject_hash="c" * 64, request_id=f"child-{i}")
        print(f"acknowledged child-{i}", flush=True)
    time.sleep(600)
""")


def test_events_a_replica_acknowledged_before_it_was_killed_are_chained_by_another(
        tmp_path, keyring, vault, make_trail):
    keyring_file = tmp_path / "child-keyring.json"
    keyring.save(keyring_file)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(keyring_file), _address(vault)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        acknowledged = [child.stdout.readline().split()[1] for _ in range(5)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert acknowledged == [f"child-{i}" for i in range(5)]

    trail = make_trail()
    assert trail.flush() == 5
    assert _chained(vault) == acknowledged and _staged(vault) == 0
    assert trail.verify().ok


def test_a_direct_record_comes_after_the_events_staged_before_it(make_trail, vault):
    trail = make_trail()
    trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id="staged")
    trail.record(SERVICE, "update", subject_hash=SUBJECT, request_id="recorded")
    assert _chained(vault) == ["staged", "recorded"]


def test_a_staged_event_is_stored_as_compact_json(make_trail, vault):
    make_trail().stage(SERVICE, "read", subject_hash=SUBJECT, request_id="compact")
    [text] = [r[0] for r in vault.query("SELECT event FROM audit_staged_events")]

    assert text == json.dumps(json.loads(text), separators=(",", ":"))  # no space per field


def test_a_flush_with_nothing_staged_or_inside_a_vault_transaction_chains_nothing(make_trail, vault):
    trail = make_trail()
    assert trail.flush() == 0

    trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id="later")
    with vault.transaction():
        assert trail.flush() == 0
    assert _staged(vault) == 1 and _chained(vault) == []
    assert trail.flush() == 1


def test_a_flush_takes_batch_after_batch_until_nothing_is_left(make_trail, vault):
    trail = make_trail()
    trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id="first")
    [text] = [r[0] for r in vault.query("SELECT event FROM audit_staged_events")]
    # Two full batches in all, as replicas that never flushed would leave them.
    vault.write(lambda conn: conn.executemany("INSERT INTO audit_staged_events (event) VALUES (?)",
                                              [(text,)] * (2 * FLUSH_BATCH - 1)))

    assert trail.flush() == 2 * FLUSH_BATCH
    assert _staged(vault) == 0 and len(_chained(vault)) == 2 * FLUSH_BATCH


def test_a_staged_row_that_is_not_json_is_dropped_and_logged_by_its_id(make_trail, vault, caplog):
    trail = make_trail()
    trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id="good")
    vault.write(lambda conn: conn.execute("INSERT INTO audit_staged_events (event) VALUES ('{broken')"))
    [bad_id] = [r[0] for r in vault.query("SELECT max(id) FROM audit_staged_events")]

    with caplog.at_level(logging.ERROR, logger="compliance.audit_vault_staging"):
        assert trail.flush() == 2  # both rows taken

    assert _chained(vault) == ["good"] and _staged(vault) == 0 and trail.verify().ok
    assert [r.getMessage() for r in caplog.records] == [f"staged audit event {bad_id} is not JSON; dropped"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_vault_that_cannot_take_the_row_refuses_the_event_naming_only_the_error(make_trail, vault):
    trail = make_trail()
    vault.write(lambda conn: conn.execute("ALTER TABLE audit_staged_events RENAME TO staged_away"))
    try:
        with pytest.raises(AuditJournalError) as refused:
            trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id="lost")
    finally:
        vault.write(lambda conn: conn.execute("ALTER TABLE staged_away RENAME TO audit_staged_events"))

    assert str(refused.value) == "audit event could not be staged in the vault (StatementError)"
    assert type(refused.value.__cause__).__name__ == "StatementError"


def test_after_close_an_event_is_chained_at_once(make_trail, vault):
    trail = make_trail()
    trail.close()

    trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id="after-close")

    assert _staged(vault) == 0 and _chained(vault) == ["after-close"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_flush_waits_for_the_chain_lock_another_replica_holds(make_trail, vault, reopen):
    trail = make_trail()
    trail.stage(SERVICE, "read", subject_hash=SUBJECT, request_id="waited")
    holding, release = threading.Event(), threading.Event()

    def hold(conn) -> None:
        conn.execute("SELECT 1")  # the lock is taken with the transaction's first statement
        holding.set()
        release.wait(60)

    holder = threading.Thread(target=lambda: reopen().write(hold, lock=CHAIN_LOCK))
    holder.start()
    flushed: list[int] = []
    flusher = threading.Thread(target=lambda: flushed.append(trail.flush()))
    try:
        assert holding.wait(60)
        flusher.start()
        waiting = 0
        for _ in range(600):  # polled until the flush waits on the server for the lock
            assert not flushed, "the flush went on while another replica held the chain lock"
            waiting = vault.query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")[0]
            if waiting:
                break
            release.wait(0.05)
        assert waiting == 1
    finally:
        release.set()
        holder.join(60)
        if flusher.is_alive() or flusher.ident:
            flusher.join(60)
    assert flushed == [1] and _chained(vault) == ["waited"] and trail.verify().ok
