"""`twin serve --workers 2`: two processes on one socket, each with its own runtime; writes
from both land, audited, in one verified chain, across a graceful stop and a killed worker."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter

import pytest

from live_service import live_service

pytestmark = pytest.mark.slow


def _write_concurrently(service, clients: int, per_client: int) -> tuple[list[str], list[int]]:
    """Each client, on its own keep-alive connection, creates profiles with a session and a
    knowledge state; returns the acknowledged profile ids and every status seen."""
    acknowledged: list[str] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        conn = service.connect("service")
        try:
            for _ in range(per_client):
                status, profile, _ = conn("POST", "/v1/profiles", {"user_id": f"w-{uuid.uuid4()}",
                                                                   "personal": {"n": "x"}})
                seen = [status]
                if status == 201:
                    pid = profile["profile_id"]
                    seen.append(conn("POST", f"/v1/profiles/{pid}/sessions", {"session_type": "quiz"})[0])
                    seen.append(conn("PUT", f"/v1/profiles/{pid}/knowledge/math/sums",
                                     {"mastery_level": 0.5})[0])
                with lock:
                    statuses.extend(seen)
                    if status == 201:
                        acknowledged.append(pid)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return acknowledged, statuses


def _assert_every_write_kept_and_audited_once(service, acknowledged: list[str]) -> None:
    runtime = service.runtime()
    try:
        assert runtime.audit.verify().ok
        stored = {row[0] for row in runtime.twin_db.query("SELECT profile_id FROM learning_profiles")}
        assert set(acknowledged) <= stored
        sessions = Counter(row[0] for row in runtime.twin_db.query("SELECT profile_id FROM learning_sessions"))
        assert all(sessions[pid] == 1 for pid in acknowledged)
        creates = Counter(row[0] for row in runtime.vault_db.query(
            "SELECT r.resource FROM audit_log l JOIN audit_resources r ON r.resource_ref = l.resource_ref "
            "WHERE l.action = 1 AND r.resource LIKE 'profile:%'"))  # 1: create
        assert all(creates[f"profile:{pid}"] == 1 for pid in acknowledged)
    finally:
        runtime.close()


def _wait_for_new_worker(service, pids: list[int]) -> None:
    """Until every worker in ``pids`` listens (a replacement takes a moment to open its runtime)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(f'"serving on http://127.0.0.1:{service.port} with 4 threads", "pid": {pid}' in service.log()
               for pid in pids):
            return
        time.sleep(0.1)
    raise AssertionError("the replacement worker did not start listening")


def _until_two_workers_answered(service, timeout: float = 60.0) -> set[int]:
    """Requests on fresh connections until the access log shows two workers answering. Which
    worker accepts a connection is the kernel's choice: on a loaded machine one of them can take
    every connection of a short burst, so the test waits for the fact instead of expecting it
    of a burst; a worker that never accepts one fails it after ``timeout``."""
    deadline = time.monotonic() + timeout
    pids = service.access_pids()
    while len(pids) < 2 and time.monotonic() < deadline:
        conn = service.connect("service")
        try:
            assert conn("GET", "/healthz")[0] == 200
        finally:
            conn.close()
        pids = service.access_pids()
    return pids


def test_two_workers_serve_one_socket_and_every_acknowledged_write_is_kept_in_one_verified_chain(tmp_path):
    with live_service(tmp_path, "--workers", "2", "--threads", "4",
                      env_extra={"TWIN_LOG_FORMAT": "json"}) as service:
        assert len(service.children()) == 3  # two workers and the operations process

        acknowledged, statuses = _write_concurrently(service, clients=8, per_client=12)

        assert set(statuses) <= {200, 201} and len(acknowledged) == 8 * 12
        # One scrape counts the requests of both workers.
        created = re.search(r'twin_http_requests_total\{method="POST",route="/v1/profiles",status="201"\} (\S+)',
                            service.scrape())
        assert created and float(created.group(1)) == len(acknowledged)
        workers = _until_two_workers_answered(service)
        assert service.stop() == 0
        log = service.log()

    assert len(workers) == 2 and workers <= service.access_pids(), "both workers took requests from the shared socket"
    assert log.count("retention scheduled") == 1  # the nightly schedule runs once, not per worker
    assert [p.name for p in (tmp_path / "data").glob("*.audit-journal/*")] == []
    _assert_every_write_kept_and_audited_once(service, acknowledged)


def test_a_killed_worker_is_replaced_and_its_staged_audit_events_still_reach_the_chain(tmp_path):
    with live_service(tmp_path, "--workers", "2", "--threads", "4", "--no-retention",
                      env_extra={"TWIN_LOG_FORMAT": "json"}, metrics=False) as service:
        workers = service.children()
        first, _ = _write_concurrently(service, clients=4, per_client=5)

        os.kill(workers[0], signal.SIGKILL)  # no drain, no flush: its segment stays on disk
        deadline = time.monotonic() + 60
        replaced = service.children()
        while time.monotonic() < deadline and not (len(replaced) == 2 and workers[0] not in replaced):
            time.sleep(0.1)
            replaced = service.children()  # one look per round: the dead one may be reaped mid-way
        assert len(replaced) == 2 and workers[0] not in replaced, service.log()[-4000:]
        _wait_for_new_worker(service, replaced)
        second, statuses = _write_concurrently(service, clients=4, per_client=5)
        assert set(statuses) <= {200, 201}
        assert service.stop() == 0
        assert "exited with -9" in service.log()
        assert "retention scheduled" not in service.log()  # --no-retention: no schedule, no extra process

    _assert_every_write_kept_and_audited_once(service, first + second)


def test_a_revocation_and_an_erasure_in_one_worker_hold_in_every_worker(tmp_path):
    with live_service(tmp_path, "--workers", "2", "--threads", "2", "--no-retention",
                      roles=("service", "admin")) as service:
        conn = service.connect("admin")
        status, profile, _ = conn("POST", "/v1/profiles", {"user_id": "erase-me", "personal": {"a": 1}})
        assert status == 201
        pid = profile["profile_id"]
        readers = [service.connect("service") for _ in range(8)]  # spread over both workers
        assert {reader("GET", f"/v1/profiles/{pid}")[0] for reader in readers} == {200}

        assert conn("DELETE", f"/v1/profiles/{pid}")[0] == 200
        assert {reader("GET", f"/v1/profiles/{pid}")[0] for reader in readers} == {404}

        from compliance.tokens import TokenStore
        runtime = service.runtime()
        try:
            token_id = runtime.tokens.verify(service.tokens["service"]).token_id
            TokenStore(runtime.vault_db).revoke(token_id)
        finally:
            runtime.close()
        time.sleep(2.5)  # TWIN_TOKEN_CACHE_SECONDS (2) in every worker
        assert {reader("GET", "/v1/profiles/prf_none")[0] for reader in readers} == {401}
        for reader in readers:
            reader.close()
        assert service.stop() == 0
