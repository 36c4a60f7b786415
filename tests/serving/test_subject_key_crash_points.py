"""Subject-key provisioning survives SIGKILL at every step (compliance.subject_key_lease).

A real `twin serve` on a real socket, killed with SIGKILL at one step of leasing, creating,
binding or reclaiming (``lease_crash_server.py`` plants the kill), then restarted by its
supervisor: every acknowledged profile opens with its key, every profile row names a live key
of its own (no key bound to two subjects), and a reclaim after the documented time destroys
only keys no row names. Two workers creating at once never share a key either."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from compliance.audit import Actor
from compliance.subject_key_lease import reclaim
from live_service import free_port, issue_tokens, live_service, service_environment, wait_until_healthy
from storage_backends import concurrently

HERE = Path(__file__).resolve().parent
CRASHING = HERE / "lease_crash_server.py"
ACTOR = Actor("tok_check", "admin")
# step -> on which call of it the worker dies
STEPS = {"after_lease": 1, "after_create_commit": 3, "before_binding": 1, "after_binding": 1}


def _create(conn: http.client.HTTPConnection, token: str, user: str) -> int:
    conn.request("POST", "/v1/profiles", body=f'{{"user_id": "{user}", "personal": {{"name": "{user}"}}}}',
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def _create_until(port: int, token: str, acknowledged: list[str], want: int, prefix: str,
                  crashed: Path) -> None:
    """Create profiles one at a time until ``want`` were acknowledged, across a killed worker
    (refused connections, reset requests) and its replacement. After the fourth, a wait until
    the worker has died (``crashed`` written): the lease records bindings a second after a
    create, so a binding step's kill comes only then."""
    conn, n, deadline = None, 0, time.monotonic() + 90
    while len(acknowledged) < want:
        assert time.monotonic() < deadline, f"only {len(acknowledged)} creates acknowledged"
        user = f"{prefix}-{n}"
        n += 1
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status = _create(conn, token, user)
        except (OSError, http.client.HTTPException):
            conn.close() if conn else None
            conn = None
            time.sleep(0.2)
            continue
        assert status == 201, status
        acknowledged.append(user)
        if len(acknowledged) == 4:
            while not crashed.exists():
                assert time.monotonic() < deadline, "the worker never reached its crash point"
                time.sleep(0.1)


def check_every_profile_has_a_live_key_of_its_own(runtime, acknowledged: list[str]) -> None:
    rows = runtime.twin_db.query("SELECT profile_id, user_id_hash, subject_key_id FROM learning_profiles")
    named = [r["subject_key_id"] for r in rows]
    assert None not in named and len(set(named)) == len(named)  # no key bound to two subjects
    live = {r["key_id"]: r["user_id_hash"] for r in runtime.vault_db.query(
        "SELECT key_id, user_id_hash FROM subject_keys")}
    for row in rows:
        assert row["subject_key_id"] in live
        assert live[row["subject_key_id"]] in (None, row["user_id_hash"])
        runtime.profiles.get(ACTOR, None, row["profile_id"])  # every row opens, acknowledged or not
    owners = {r["user_id_hash"] for r in rows}
    assert {runtime.hasher.hash(u) for u in acknowledged} <= owners
    for user in acknowledged:
        view, _ = runtime.profiles.lookup(ACTOR, None, user)
        assert view["personal"] == {"name": user}


def check_reclaim_keeps_exactly_the_named_keys(runtime, acknowledged: list[str]) -> None:
    named = {r[0] for r in runtime.twin_db.query("SELECT subject_key_id FROM learning_profiles")}
    reclaim(runtime.keys, now=runtime.clock() + timedelta(hours=3))
    kept = runtime.vault_db.query("SELECT key_id, user_id_hash FROM subject_keys")
    assert {r["key_id"] for r in kept} == named and None not in {r["user_id_hash"] for r in kept}
    for user in acknowledged:
        runtime.keys.forget(runtime.hasher.hash(user))
        assert runtime.profiles.lookup(ACTOR, None, user)[0]["personal"] == {"name": user}


def _serve_crashing(root: Path, step: str, after: int):
    mark = root / "crashed"
    env = service_environment(root, LEASE_CRASH_AT=step, LEASE_CRASH_AFTER=str(after),
                              LEASE_CRASH_MARK=str(mark))
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env["PYTHONPATH"]])
    [token] = issue_tokens(env, "service")
    port = free_port()
    log = open(root / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, str(CRASHING), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--threads", "4", "--no-metrics", "--no-retention"], env=env, cwd=root, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return process, port, token, env, mark


def _runtime(env):
    from twin.config import Config
    from twin.runtime import Runtime
    return Runtime.open(Config.from_env(env))


@pytest.mark.parametrize("step", STEPS)
def test_a_worker_killed_at_any_step_of_key_provisioning_loses_no_acknowledged_profile(tmp_path, step):
    process, port, token, env, mark = _serve_crashing(tmp_path, step, STEPS[step])
    acknowledged: list[str] = []
    try:
        wait_until_healthy(port, process)
        _create_until(port, token, acknowledged, 10, step, mark)
        assert mark.read_text() == step  # the worker did die there, and its replacement served on
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    runtime = _runtime(env)
    try:
        check_every_profile_has_a_live_key_of_its_own(runtime, acknowledged)
        check_reclaim_keeps_exactly_the_named_keys(runtime, acknowledged)
    finally:
        runtime.close()


@pytest.mark.parametrize("step, bound_before_the_kill", [("before_binding", 0), ("before_destroy", 5)])
def test_a_reclaim_killed_before_binding_or_destroying_leaves_every_named_key(tmp_path, step,
                                                                              bound_before_the_kill):
    env = service_environment(tmp_path)
    issue_tokens(env, "service")
    runtime = _runtime(env)
    from compliance.subject_key_lease import SubjectKeyLease
    runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys, background=False)  # bindings never flushed
    acknowledged = [f"r-{i}" for i in range(5)]
    for user in acknowledged:
        runtime.profiles.create(ACTOR, None, {"user_id": user, "personal": {"name": user}})
    runtime.close()

    env.update(LEASE_CRASH_AT=step, LEASE_CRASH_MARK=str(tmp_path / "crashed"),
               PYTHONPATH=os.pathsep.join([str(HERE), env["PYTHONPATH"]]))
    killed = subprocess.run([sys.executable, str(CRASHING), "reclaim"], env=env, cwd=tmp_path, timeout=120)
    assert killed.returncode == -signal.SIGKILL

    runtime = _runtime(env)
    try:
        bound = runtime.vault_db.query("SELECT user_id_hash FROM subject_keys WHERE user_id_hash IS NOT NULL")
        assert len(bound) == bound_before_the_kill  # what the reclaim bound before it died
        check_every_profile_has_a_live_key_of_its_own(runtime, acknowledged)
        check_reclaim_keeps_exactly_the_named_keys(runtime, acknowledged)
    finally:
        runtime.close()


def test_two_workers_creating_at_once_never_hand_one_key_to_two_subjects(tmp_path):
    with live_service(tmp_path, "--workers", "2", "--threads", "4", "--no-retention", roles=("service",),
                      metrics=False, env_extra={"TWIN_LOG_FORMAT": "json"}) as service:
        def client(n: int) -> list[str]:
            acknowledged = []
            for i in range(15):  # a connection per create: both workers accept some
                user, conn = f"w{n}-{i}", service.connect("service")
                status, _, _ = conn("POST", "/v1/profiles", {"user_id": user, "personal": {"name": user}})
                conn.close()
                assert status == 201
                acknowledged.append(user)
            return acknowledged

        # Which worker accepts a connection is the kernel's: on a loaded machine one may take
        # a whole round. Rounds of 6 clients at once until both have created (at most 5).
        acknowledged: list[str] = []
        for round_ in range(5):
            acknowledged += [u for made in concurrently(*(lambda n=n: client(6 * round_ + n) for n in range(6)))
                             for u in made]
            if len(service.access_pids("POST", "/v1/profiles", 201)) == 2:
                break
        assert service.stop() == 0
        runtime = service.runtime()
    try:
        assert len(service.access_pids("POST", "/v1/profiles", 201)) == 2  # both workers created
        assert len(acknowledged) == 90 * (round_ + 1)
        holders = {r[0] for r in runtime.vault_db.query("SELECT DISTINCT leased_to FROM subject_keys "
                                                        "WHERE leased_to IS NOT NULL")}
        assert len(holders) == 2  # each worker leased its own keys
        check_every_profile_has_a_live_key_of_its_own(runtime, acknowledged)
        check_reclaim_keeps_exactly_the_named_keys(runtime, acknowledged)
    finally:
        runtime.close()
