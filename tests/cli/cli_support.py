"""Running ``twin`` as an operator does: subprocesses on real files under a temporary
directory, and a real ``twin serve`` on a free port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]


def operator_env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items()
               if not (k.startswith("TWIN_") or k.endswith("_DB_PATH") or k == "DIGITAL_TWIN_ENCRYPTION_KEY")}
    environ.update(TWIN_ENV="development", TWIN_DATA_DIR=str(tmp_path / "data"),
                   TWIN_KEYRING_PATH=str(tmp_path / "keys" / "keyring.json"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")])))
    return environ


def twin(env: dict[str, str], *args: str, stdin: str | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    """``twin ARGS`` as a process, from the data directory's parent, output captured."""
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], env=env,
                          cwd=Path(env["TWIN_DATA_DIR"]).parent, capture_output=True, text=True,
                          input=stdin, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """A JSON client over a real socket."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def __call__(self, method: str, path: str, body: dict | None = None,
                 token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


@contextmanager
def running_server(env: dict[str, str], token: str, log_path: Path) -> Iterator[tuple[Api, subprocess.Popen]]:
    """A ``twin serve`` process; stopped with SIGTERM (killed if it will not stop)."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "twin.cli", "serve", "--host", "127.0.0.1",
                                    "--port", str(port), "--threads", "4", "--metrics-port", "0"], env=env,
                                   cwd=Path(env["TWIN_DATA_DIR"]).parent, stdout=log,
                                   stderr=subprocess.STDOUT)
    api = Api(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}: {log_path.read_text()}")
            try:
                with urllib.request.urlopen(api.base + "/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("server did not become healthy") from None
                time.sleep(0.1)
        yield api, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
