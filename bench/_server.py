"""Benchmark helpers: start the real server (or the peer app) in a subprocess on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _process(command: list[str], env: dict, log_path: Path, started: list | None = None) -> Iterator[str]:
    """Run a server command on a free port (``{port}`` in it) until /healthz answers; yield its base.
    ``started`` (a list) receives the process, for callers that measure its CPU."""
    port = free_port()
    # The server's log goes to a file: an unread pipe would fill up and block the server.
    log_file = open(log_path, "wb")
    proc = subprocess.Popen([part.replace("{port}", str(port)) for part in command], env=env, cwd=ROOT,
                            stdout=log_file, stderr=log_file)
    if started is not None:
        started.append(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {log_path.read_text()[-500:]}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log_file.close()


def _worker_args(workers: int | None) -> list[str]:
    return [] if workers is None else ["--workers", str(workers)]


@contextmanager
def running_server(*, plaintext: bool = False, threads: int = 8, workers: int | None = None,
                   extra_env: dict | None = None) -> Iterator[tuple[str, str, dict]]:
    """Yield (base_url, service_token, env) of a real `twin serve` on its own data directory
    (``workers`` processes, default one per CPU; no retention schedule, no /metrics port)."""
    from compliance.keyring import Keyring
    from twin.config import Config
    from twin.runtime import Runtime

    tmp = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    env = {**os.environ, "TWIN_DATA_DIR": str(tmp / "data"), "TWIN_KEYRING_PATH": str(tmp / "keyring.json"),
           "TWIN_ENV": "development", **(extra_env or {})}
    env.pop("DIGITAL_TWIN_ENCRYPTION_KEY", None)
    if plaintext:
        env["TWIN_BENCH_PLAINTEXT"] = "1"
    Keyring.generate().save(tmp / "keyring.json")
    runtime = Runtime.open(Config.from_env(env))
    token = runtime.tokens.issue("service", label="bench").token
    runtime.close()
    with _process(serve_command(threads, workers), env, tmp / "server.log") as base:
        yield base, token, env


@contextmanager
def running_peer(*, threads: int = 8, workers: int | None = None) -> Iterator[tuple[str, str]]:
    """Yield (base_url, token) of bench/peer_app.py served by the same server and workers."""
    tmp = Path(tempfile.mkdtemp(prefix="twin-peer-"))
    token = "peer-" + os.urandom(16).hex()
    env = {**os.environ, "PEER_DB_PATH": str(tmp / "peer.db"), "PEER_TOKEN": token}
    command = [sys.executable, str(ROOT / "bench" / "peer_app.py"), "--port", "{port}", "--threads",
               str(threads), *_worker_args(workers)]
    with _process(command, env, tmp / "peer.log") as base:
        yield base, token


def serve_command(threads: int, workers: int | None) -> list[str]:
    """``twin serve`` on ``{port}`` without retention or /metrics."""
    return [sys.executable, "-m", "twin.cli", "--log-level", "WARNING", "serve", "--host", "127.0.0.1",
            "--port", "{port}", "--threads", str(threads), "--no-retention", "--no-metrics",
            *_worker_args(workers)]


@contextmanager
def serving(env: dict, directory: Path, *, threads: int = 8, workers: int | None = 1,
            started: list | None = None) -> Iterator[str]:
    """A ``twin serve`` with ``env`` and its own data directory under ``directory``; its base URL."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {**env, "TWIN_DATA_DIR": str(directory / "data")}
    with _process(serve_command(threads, workers), env, directory / "server.log", started) as base:
        yield base
