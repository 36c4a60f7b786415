"""The live-service guard on PostgreSQL: replicas on any host register in the vault with a
heartbeat; a command that replaces or re-encrypts data refuses while one is live, a replica
cannot start while such a command runs, and a replica that died is forgotten after three
missed heartbeats."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storage_backends import concurrently, database_url
from twin.storage import PostgresSettings, open_postgresql
from twin.storage.postgresql.server import write_identity_marker
from twin.storage.postgresql.service_guard import GUARD_TABLE, MISSED_BEATS, PostgresServiceGuard
from twin.storage.service_guard import FilesInUseError, Holder

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 0.5  # a registration lives 1.5 s unbeaten: a loaded machine's stalls stay well inside it


@pytest.fixture
def vault(pg_server):
    db = open_postgresql(PostgresSettings(database_url(pg_server.create_database()), pool_size=2,
                                          pool_max_size=8), name="privacy_vault")
    write_identity_marker(db, "vault")  # `twin db setup` creates the registry with the marker
    yield db
    db.close_all()


def _guard(vault) -> PostgresServiceGuard:
    return PostgresServiceGuard(vault.settings, name=vault.name, interval=INTERVAL)


def test_a_command_is_refused_while_a_replica_is_registered_and_runs_once_it_has_gone(vault):
    service = Holder("service", "twin serve", host="replica-2")
    registration = _guard(vault).register(service)
    with pytest.raises(FilesInUseError) as refused:
        with _guard(vault).exclusive(Holder("command", "twin db restore")):
            pytest.fail("the command ran beside a live replica")
    assert str(refused.value) == (
        f"privacy_vault ({vault.display_url}): in use by a running service: twin serve (pid "
        f"{os.getpid()} on host replica-2, started {service.started_at}); stop it first")
    assert _guard(vault).holders() == [service]
    registration.release()
    assert _guard(vault).holders() == []
    with _guard(vault).exclusive(Holder("command", "twin db restore")):
        assert [h.role for h in _guard(vault).holders()] == ["command"]


def test_a_replica_cannot_start_while_a_command_holds_the_deployment(vault):
    with _guard(vault).exclusive(Holder("command", "twin keys rotate")):
        with pytest.raises(FilesInUseError, match="in use by a command: twin keys rotate .*start "
                                                  "the service once that command has finished"):
            _guard(vault).register(Holder("service", "twin serve"))
    _guard(vault).register(Holder("service", "twin serve")).release()


def test_every_replica_is_named_and_a_live_one_stays_registered_through_its_heartbeats(vault):
    replicas = [_guard(vault).register(Holder("service", "twin serve", host=f"host-{n}")) for n in range(3)]
    # Longer than a registration lives without heartbeats: they keep it.
    threading.Event().wait(INTERVAL * MISSED_BEATS * 2)
    assert sorted(h.host for h in _guard(vault).holders()) == ["host-0", "host-1", "host-2"]
    with pytest.raises(FilesInUseError, match="and 2 more"):
        with _guard(vault).exclusive(Holder("command", "twin db rollback")):
            pass
    for replica in replicas:
        replica.release()
    assert vault.query_one(f"SELECT count(*) FROM {GUARD_TABLE}")[0] == 0


_REPLICA = """
import sys, time
from twin.storage import PostgresSettings
from twin.storage.postgresql.service_guard import PostgresServiceGuard
from twin.storage.service_guard import Holder
guard = PostgresServiceGuard(PostgresSettings(sys.argv[1]), interval=float(sys.argv[2]))
guard.register(Holder("service", "twin serve", host=sys.argv[3]))
print("registered", flush=True)
time.sleep(600)
"""


def _killed_replica(vault, host: str) -> int:
    """A replica process registered as running on ``host``, killed with SIGKILL; its pid."""
    process = subprocess.Popen([sys.executable, "-c", _REPLICA, vault.settings.url, str(INTERVAL), host],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout.readline().strip() == "registered"
        [holder] = _guard(vault).holders()
        assert (holder.pid, holder.host) == (process.pid, host)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    return process.pid


def test_a_replica_of_another_host_killed_with_sigkill_blocks_commands_until_its_heartbeats_stop(vault):
    pid = _killed_replica(vault, "another-host")
    killed_at = time.monotonic()
    with pytest.raises(FilesInUseError, match=f"pid {pid} on host another-host"):
        with _guard(vault).exclusive(Holder("command", "twin db restore")):
            pass
    # Its last heartbeat, on the server's clock (one still committing would only be later).
    last_beat = vault.query_one(f"SELECT max(heartbeat_at) FROM {GUARD_TABLE}")[0]
    deadline = killed_at + INTERVAL * MISSED_BEATS + 30
    while True:  # the dead replica's last heartbeat ages out
        try:
            with _guard(vault).exclusive(Holder("command", "twin db restore")):
                # The command's row, stamped in the transaction that found the replica stale.
                [got_in_at] = vault.query_one(f"SELECT heartbeat_at FROM {GUARD_TABLE}")
                break
        except FilesInUseError:
            assert time.monotonic() < deadline, "a dead replica was never forgotten"
            threading.Event().wait(INTERVAL / 4)
    # Not forgotten early: the command got in no sooner than MISSED_BEATS intervals after the
    # last heartbeat (a slow machine can only add to the figure).
    assert (got_in_at - last_beat).total_seconds() >= INTERVAL * MISSED_BEATS
    assert _guard(vault).holders() == []


def test_a_killed_holder_on_this_host_is_forgotten_at_once_its_pid_being_gone(vault):
    _killed_replica(vault, socket.gethostname())
    with _guard(vault).exclusive(Holder("command", "twin db restore")):
        assert [h.command for h in _guard(vault).holders()] == ["twin db restore"]


def test_a_command_never_runs_while_a_replica_starting_at_the_same_moment_is_registered(vault):
    for _ in range(20):
        barrier = threading.Barrier(2)
        state = {"command_inside": False, "registered": False, "overlap": False}
        registrations = []

        def command() -> None:
            barrier.wait()
            try:
                with _guard(vault).exclusive(Holder("command", "twin db restore")):
                    state["command_inside"] = True
                    state["overlap"] |= state["registered"]
                    state["command_inside"] = False
            except FilesInUseError:
                pass

        def service() -> None:
            barrier.wait()
            try:
                registrations.append(_guard(vault).register(Holder("service", "twin serve")))
            except FilesInUseError:
                return
            state["registered"] = True
            state["overlap"] |= state["command_inside"]

        concurrently(command, service)
        for registration in registrations:
            registration.release()
        assert not state["overlap"]


def test_without_the_registry_a_replica_is_told_to_run_the_set_up(pg_server):
    db = open_postgresql(PostgresSettings(database_url(pg_server.create_database()), pool_size=1),
                         name="privacy_vault")
    try:
        with pytest.raises(Exception, match=r"has no service registry: run `twin db setup`"):
            _guard(db).register(Holder("service", "twin serve"))
    finally:
        db.close_all()
