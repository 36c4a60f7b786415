"""Work that must run once across replicas, on PostgreSQL: start-up re-application of erasure
tombstones (an interrupted erasure finished) by replicas starting at the same moment, and
retention runs started on two replicas at once. Both hold the vault's job lock, a session
advisory lock the server frees when its holder dies (SIGKILL included)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from compliance.audit_codec import ACTION_CODES
from replica_cluster import Client, deployment, data_connection, vault_connection
from twin.storage.timestamps import to_db, utc_now

SUBJECTS = 12
SESSIONS = 120


def _interrupt_erasures(cluster, client: Client, count: int) -> tuple[list[str], list[str]]:
    """``count`` learners with sessions, then each one's erasure cut short after its first step
    (the tombstone written, nothing deleted): what a replica killed mid-erasure leaves."""
    profile_ids = []
    for n in range(count):
        status, body, _, _ = client(0, "POST", "/v1/profiles", {"user_id": f"interrupted-{n}"})
        assert status == 201, body
        profile_ids.append(body["profile_id"])
        assert client(0, "POST", f"/v1/profiles/{body['profile_id']}/sessions",
                      {"session_type": "review"})[0] == 201
    with data_connection(cluster) as data:
        rows = data.execute("SELECT user_id_hash, COALESCE(subject_key_id, user_id_hash) "
                            "FROM learning_profiles").fetchall()
    hashes, key_ids = [r[0] for r in rows], [r[1] for r in rows]
    assert len(hashes) == count
    with vault_connection(cluster) as vault:
        assert vault.execute("SELECT count(*) FROM subject_keys WHERE key_id = ANY(%s)",
                             (key_ids,)).fetchone()[0] == count
        for n, subject_hash in enumerate(hashes):
            vault.execute("INSERT INTO erasure_tombstones (user_id_hash, receipt_id, erased_at, counts) "
                          "VALUES (%s, %s, %s, '{}')", (subject_hash, f"rcpt_cut_{n}", to_db(utc_now())))
    return profile_ids, key_ids


def test_replicas_starting_together_finish_interrupted_erasures_once(postgres_server, tmp_path):
    with deployment(tmp_path, replicas=1) as cluster:
        client = Client(cluster)
        profile_ids, key_ids = _interrupt_erasures(cluster, client, SUBJECTS)
        cluster.stop_all()
        cluster.replicas.clear()

        cluster.start_together(3)  # each start re-applies unfinished tombstones

        assert [client(n % 3, "GET", f"/v1/profiles/{pid}")[0] for n, pid in enumerate(profile_ids)] \
            == [404] * SUBJECTS
        cluster.stop_all()
        with data_connection(cluster) as data:
            assert data.execute("SELECT count(*) FROM learning_profiles").fetchone()[0] == 0
            assert data.execute("SELECT count(*) FROM learning_sessions").fetchone()[0] == 0
        with vault_connection(cluster) as vault:
            assert vault.execute("SELECT count(*) FROM erasure_tombstones "
                                 "WHERE completed_at IS NULL").fetchone()[0] == 0
            assert vault.execute("SELECT count(*) FROM subject_keys WHERE key_id = ANY(%s)",
                                 (key_ids,)).fetchone()[0] == 0  # their keys destroyed
            reapplied = vault.execute("SELECT subject_ref FROM audit_log WHERE action = %s",
                                      (ACTION_CODES["restore_reapply"],)).fetchall()
        # Done once: one re-application per subject, not one per replica that started.
        assert len(reapplied) == SUBJECTS and len(set(reapplied)) == SUBJECTS


def _run_retention(client: Client, slot: int, results: list, barrier: threading.Barrier) -> None:
    barrier.wait()
    status, body, _, _ = client(slot, "POST", "/v1/admin/retention/run", {})
    results[slot] = (status, body)


def test_retention_started_on_two_replicas_at_once_runs_on_one_and_the_other_gets_409(
        postgres_server, tmp_path):
    # Every session expires at once; batches of one make a run long enough to be raced.
    with deployment(tmp_path, replicas=2, TWIN_SESSION_RETENTION_DAYS="1",
                    TWIN_RETENTION_BATCH_SIZE="1") as cluster:
        client = Client(cluster)
        status, body, _, _ = client(0, "POST", "/v1/profiles", {"user_id": "many-sessions"})
        assert status == 201
        path = f"/v1/profiles/{body['profile_id']}/sessions"
        for _ in range(30):
            assert client(1, "POST", path, {"session_type": "review"})[0] == 201
        with data_connection(cluster) as data:  # a day and more ago
            data.execute("UPDATE learning_sessions SET start_time = %s",
                         (to_db(utc_now().replace(year=utc_now().year - 1)),))

        results: list = [None, None]
        barrier = threading.Barrier(2)
        racers = [threading.Thread(target=_run_retention, args=(Client(cluster), slot, results, barrier))
                  for slot in (0, 1)]
        # Every row locked: the run that takes the job lock waits at its first batch, holding
        # it, however slowly the other request arrives; released once that one was refused.
        with psycopg.connect(cluster.env["TWIN_DATABASE_URL"]) as gate:
            gate.execute("SELECT 1 FROM learning_sessions FOR UPDATE")
            for racer in racers:
                racer.start()
            deadline = time.monotonic() + 60
            while not any(result and result[0] == 409 for result in results) and \
                    any(racer.is_alive() for racer in racers):
                assert time.monotonic() < deadline, results
                time.sleep(0.02)
            gate.rollback()
        for racer in racers:
            racer.join(120)

        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 409], results
        ran = next(body for status, body in results if status == 200)
        refused = next(body for status, body in results if status == 409)
        assert ran["counts"]["learning_sessions"] == 30
        assert "already running" in refused["detail"]
        with data_connection(cluster) as data:
            assert data.execute("SELECT count(*) FROM learning_sessions").fetchone()[0] == 0
        # Released: the next run (on either replica) is allowed and finds nothing left.
        status, again, _, _ = client(1, "POST", "/v1/admin/retention/run", {})
        assert status == 200 and again["counts"]["learning_sessions"] == 0


def test_a_replica_killed_mid_retention_frees_the_lock_at_once(postgres_server, tmp_path):
    """No lease to outwait: the server ends the killed replica's session and its lock with it."""
    with deployment(tmp_path, replicas=2, TWIN_SESSION_RETENTION_DAYS="1",
                    TWIN_RETENTION_BATCH_SIZE="1") as cluster:
        client = Client(cluster)
        status, body, _, _ = client(0, "POST", "/v1/profiles", {"user_id": "killed-mid-run"})
        path = f"/v1/profiles/{body['profile_id']}/sessions"
        for _ in range(SESSIONS):  # so many one-row batches that the run is caught mid-way
            assert client(0, "POST", path, {"session_type": "review"})[0] == 201
        with data_connection(cluster) as data:
            data.execute("UPDATE learning_sessions SET start_time = %s",
                         (to_db(utc_now().replace(year=utc_now().year - 1)),))

        killed = threading.Thread(target=lambda: _swallow(Client(cluster), 0))
        killed.start()
        deadline = time.monotonic() + 60
        with data_connection(cluster) as data:  # the run is under way: rows are going
            while data.execute("SELECT count(*) FROM learning_sessions").fetchone()[0] == SESSIONS:
                assert time.monotonic() < deadline, "the first run never started purging"
                time.sleep(0.005)
        cluster.freeze(0)  # stopped mid-run, its lock session open
        assert client(1, "POST", "/v1/admin/retention/run", {})[0] == 409  # held by replica 0
        cluster.kill(0)  # returns once its sessions have ended
        killed.join(30)
        with data_connection(cluster) as data:  # what the killed run left behind
            left = data.execute("SELECT count(*) FROM learning_sessions").fetchone()[0]

        status, report, _, _ = client(1, "POST", "/v1/admin/retention/run", {})

        assert status == 200, report
        assert 0 < left < SESSIONS and report["counts"]["learning_sessions"] == left  # the rest, purged now
        with data_connection(cluster) as data:
            assert data.execute("SELECT count(*) FROM learning_sessions").fetchone()[0] == 0


def _swallow(client: Client, slot: int) -> None:
    """A request whose replica is killed under it."""
    try:
        client(slot, "POST", "/v1/admin/retention/run", {})
    except OSError:
        pass


pytestmark = pytest.mark.usefixtures("postgres_server")
