"""A real `twin serve` process on free ports, for the serving tests: start, talk, stop, inspect."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_environment(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWIN_", "PROMETHEUS_"))}
    env.update(TWIN_ENV="development", TWIN_DATA_DIR=str(root / "data"),
               TWIN_KEYRING_PATH=str(root / "keys" / "keyring.json"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    env.update(extra)
    return env


def issue_tokens(env: dict[str, str], *roles: str) -> list[str]:
    """Tokens issued through the library on the service's files (creates keyring and vault)."""
    from compliance.keyring import Keyring
    from twin.config import Config
    from twin.runtime import Runtime

    keyring_path = Path(env["TWIN_KEYRING_PATH"])
    if not keyring_path.exists():
        keyring_path.parent.mkdir(parents=True, exist_ok=True)
        Keyring.generate().save(keyring_path)
    runtime = Runtime.open(Config.from_env(env))
    try:
        return [runtime.tokens.issue(role, label=f"test-{role}").token for role in roles]
    finally:
        runtime.close()


class Connection:
    """One keep-alive HTTP/1.1 connection with a bearer token."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 30) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.token = token

    def __call__(self, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any, http.client.HTTPMessage]:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
        response = self.conn.getresponse()
        data = response.read()
        try:
            document = json.loads(data) if data else None
        except ValueError:
            document = data
        return response.status, document, response.headers

    def close(self) -> None:
        self.conn.close()


@dataclass
class LiveService:
    process: subprocess.Popen
    port: int
    metrics_port: int | None
    root: Path
    env: dict[str, str]
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def connect(self, role: str | None = "service", timeout: float = 30) -> Connection:
        return Connection(self.port, self.tokens.get(role) if role else None, timeout)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def access_pids(self, method: str | None = None, route: str | None = None,
                    status: int | None = None) -> set[int]:
        """The pids of the processes whose access lines (``TWIN_LOG_FORMAT=json``) the log
        holds, of requests matching what is given; complete lines only: the service may be
        writing the last one."""
        lines = [json.loads(line) for line in self.log().split("\n")[:-1] if line.startswith("{")]
        return {line["pid"] for line in lines if line["logger"] == "twin.access"
                and method in (None, line.get("method")) and route in (None, line.get("route"))
                and status in (None, line.get("status"))}

    def children(self) -> list[int]:
        found = subprocess.run(["ps", "--ppid", str(self.process.pid), "-o", "pid="],
                               capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in found]

    def stop(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def runtime(self):  # noqa: ANN201 - a Runtime on the stopped service's files
        from twin.config import Config
        from twin.runtime import Runtime
        return Runtime.open(Config.from_env(self.env))


def wait_until_healthy(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


_WORKER_LISTENING = re.compile(r"serving on http://\S+ with \d+ threads")


def _wait_for_workers(log_path: Path, workers: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while len(_WORKER_LISTENING.findall(log_path.read_text(errors="replace"))) < workers:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"not every one of {workers} workers started listening")
        time.sleep(0.1)


@contextmanager
def live_service(root: Path, *args: str, roles: tuple[str, ...] = ("service", "admin"),
                 env_extra: dict[str, str] | None = None, metrics: bool = True) -> Iterator[LiveService]:
    """`twin serve ARGS` on free ports under ``root``; killed at the end if still running."""
    env = service_environment(root, **(env_extra or {}))
    tokens = dict(zip(roles, issue_tokens(env, *roles)))
    port = free_port()
    metrics_port = free_port() if metrics else None
    metrics_args = ["--metrics-port", str(metrics_port)] if metrics else ["--no-metrics"]
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "twin.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             *metrics_args, *args], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: the workers go with it at the end
    try:
        wait_until_healthy(port, process)
        if "--workers" in args:  # every worker listening: early clients would all go to the first
            _wait_for_workers(log_path, int(args[args.index("--workers") + 1]), process)
        yield LiveService(process, port, metrics_port, root, env, log_path, tokens)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
