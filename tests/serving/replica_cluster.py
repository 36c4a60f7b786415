"""A PostgreSQL deployment served by several real `twin serve` replicas, for the replica
tests: one database pair set up by its owner, replicas serving as a role that may only read
and write rows (no DDL), each on its own empty data directory and a free port."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import psycopg

from live_service import free_port, service_environment
from storage_backends import COMPONENT_PREFIXES, PostgresServer, database_url, serving_role_environment

ROOT = Path(__file__).resolve().parents[2]


def twin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``twin ARGS`` as an operator runs it, output captured."""
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@dataclass
class Replica:
    port: int
    process: subprocess.Popen
    data_dir: Path

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Cluster:
    """Replicas of one deployment: ``env`` is the operator's (the owner role, for `twin db`
    and `twin audit`), ``serve_env`` the replicas' (a role with only row rights)."""

    env: dict[str, str]
    root: Path
    token: str
    serve_env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, slot: int | None = None, *, retention: bool = False) -> Replica:
        """A replica on a fresh, empty data directory (in ``slot``'s place, or a new one)."""
        data_dir = self.root / f"replica-{secrets.token_hex(3)}"
        env = {**(self.serve_env or self.env), "TWIN_DATA_DIR": str(data_dir)}
        port = free_port()
        log = open(data_dir.with_suffix(".log"), "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "twin.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--threads", "4", "--no-metrics",
             *([] if retention else ["--no-retention"])],
            env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        replica = Replica(port, process, data_dir)
        wait_healthy(replica)
        with self.lock:
            if slot is None:
                self.replicas.append(replica)
            else:
                self.replicas[slot] = replica
        return replica

    def start_together(self, count: int, **options: Any) -> list[Replica]:
        """``count`` new replicas started at the same moment (their start-up work races)."""
        before = len(self.replicas)
        threads = [threading.Thread(target=self.start, kwargs=options) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(self.replicas) == before + count, "a replica failed to start"
        return self.replicas[before:]

    def freeze(self, slot: int) -> Replica:
        """SIGSTOP the replica's process group: it holds its sessions (and their locks) open
        and does nothing more until killed."""
        replica = self.replicas[slot]
        os.killpg(replica.process.pid, signal.SIGSTOP)
        return replica

    def kill(self, slot: int) -> None:
        """SIGKILL the replica's whole process group (supervisor and worker), mid-request, and
        return once PostgreSQL has finished with every session the replica had open.

        A backend that already received a COMMIT carries it out after its client died; a
        client that lost its answer and reads again before that would see the state without
        the write, which then lands. So: freeze the group (it opens no more sessions and sends
        nothing more), note its sessions' backends by their client ports, kill it, and wait
        until those backends have exited (each commits or rolls back first)."""
        replica = self.freeze(slot)
        with psycopg.connect(self.env["TWIN_VAULT_DATABASE_URL"], autocommit=True) as admin:
            ports = database_client_ports(replica.process.pid,
                                          urllib.parse.urlsplit(self.env["TWIN_DATABASE_URL"]).port or 5432)
            assert ports, "a replica with no database session"
            backends = [row[0] for row in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,))]
            assert backends, ports  # (one still connecting may not be listed yet: it runs nothing)
            os.killpg(replica.process.pid, signal.SIGKILL)
            replica.process.wait(10)
            deadline = time.monotonic() + 120
            while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                                (backends,)).fetchone()[0]:
                assert time.monotonic() < deadline, "the killed replica's sessions never ended"
                threading.Event().wait(0.05)

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.alive():
                os.killpg(replica.process.pid, signal.SIGTERM)
        for replica in self.replicas:
            try:
                replica.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(replica.process.pid, signal.SIGKILL)
                replica.process.wait(10)


def database_client_ports(process_group: int, server_port: int) -> list[int]:
    """The local TCP ports of every connection to PostgreSQL (on ``server_port``) a process of
    ``process_group`` holds, from /proc (the processes should be stopped, so it holds still)."""
    inodes: set[str] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != process_group:
                continue
            for fd in (stat.parent / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (OSError, IndexError, ValueError):
            continue  # a process that exited meanwhile
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            columns = line.split()
            local, remote, inode = columns[1], columns[2], columns[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.append(int(local.rsplit(":", 1)[1], 16))
    return ports


def wait_healthy(replica: Replica) -> None:
    deadline = time.monotonic() + 60
    while True:
        if not replica.alive():
            raise AssertionError(f"replica exited: {replica.data_dir.with_suffix('.log').read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "replica never became healthy"
        threading.Event().wait(0.1)


class Client:
    """Keep-alive connections to the replicas; every request carries its own X-Request-ID."""

    def __init__(self, cluster: Cluster, token: str | None = None) -> None:
        self.cluster, self.token = cluster, token or cluster.token
        self.conns: dict[int, http.client.HTTPConnection] = {}

    def __call__(self, slot: int, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any, Any, str]:
        """(status, body, headers, request id); raises OSError if the replica is gone."""
        port = self.cluster.replicas[slot].port
        request_id = secrets.token_hex(8)
        conn = self.conns.get(port)
        if conn is None:
            conn = self.conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers={
                "Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                "X-Request-ID": request_id, **(headers or {})})
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self.conns.pop(port, None)
            raise OSError(f"replica on {port}: {exc}") from exc
        return response.status, json.loads(raw) if raw else None, response.headers, request_id



@contextmanager
def deployment(root: Path, *, replicas: int, **extra: str) -> Iterator[Cluster]:
    """A set-up database pair, an admin token, and ``replicas`` replicas started at once;
    every replica stopped and both databases (and the role) dropped at the end."""
    server = PostgresServer()
    env = service_environment(root)
    env.update(TWIN_STORAGE_BACKEND="postgresql", TWIN_DB_POOL_SIZE="2", TWIN_DB_POOL_MAX_SIZE="6",
               TWIN_DATABASE_URL=database_url(server.create_database()),
               TWIN_VAULT_DATABASE_URL=database_url(server.create_database()),
               TWIN_REPLICA_HEARTBEAT_SECONDS="1", **extra)
    env.update({f"{prefix}STORAGE_BACKEND": "sqlcipher" for prefix in COMPONENT_PREFIXES})
    made = None
    try:
        assert twin(env, "keys", "generate").returncode == 0
        setup = twin(env, "db", "setup")
        assert setup.returncode == 0, setup.stderr
        issued = twin(env, "tokens", "issue", "--role", "admin", "--label", "replicas")
        assert issued.returncode == 0, issued.stderr
        made = Cluster(env, root, issued.stdout.strip().splitlines()[0],
                       serve_env=serving_role_environment(env, server))
        made.start_together(replicas)
        yield made
    finally:
        if made is not None:
            made.stop_all()
        server.drop_all()


def vault_connection(cluster: Cluster) -> psycopg.Connection:
    """The vault as its owner sees it (autocommit)."""
    return psycopg.connect(cluster.env["TWIN_VAULT_DATABASE_URL"], autocommit=True)


def data_connection(cluster: Cluster) -> psycopg.Connection:
    return psycopg.connect(cluster.env["TWIN_DATABASE_URL"], autocommit=True)
