"""A redis-server of a test's own, on its own port, stopped and restarted at the test's command."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    """``start()`` returns when the server says it accepts connections; ``stop()`` when it exited."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        for line in self.process.stdout:  # synchronise on the server's own readiness line
            if "Ready to accept connections" in line:
                return
        raise RuntimeError(f"redis-server exited with {self.process.wait()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


class FakeClock:
    """A backoff clock the test moves (no sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flushed_redis(db_number: int):
    """Fixture body: (url, client) of the test's own database on the shared Redis, flushed
    before and after; skips without Redis (fails under CI=true)."""
    import pytest
    import redis

    import storage_backends

    problem = storage_backends.redis_problem()
    if problem:
        if storage_backends.in_ci():
            pytest.fail(problem)
        pytest.skip(problem)
    url = f"{storage_backends.REDIS_URL.rstrip('/')}/{db_number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


def cache_warnings(caplog) -> list[str]:
    """The warnings the Redis fallback logged."""
    import logging

    return [r.getMessage() for r in caplog.records
            if r.name == "twin.cache.redis_client" and r.levelno == logging.WARNING]


@contextlib.contextmanager
def restarted_around(server: "OwnRedis", clock: "FakeClock"):
    """An outage around the block: ``server`` stopped, then started again empty (what it held
    is gone too), and ``clock`` moved past any reconnection backoff."""
    server.stop()
    yield
    server.start()
    clock.now += 3600
