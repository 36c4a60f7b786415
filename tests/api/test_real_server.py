"""The real thing: `twin serve` as a process on a free port, driven over a socket, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from api_support import assert_no_identifiers

REPO = Path(__file__).resolve().parents[2]
USER_ID = "socket-student-5531"
MARKER = "Pangolin-Over-The-Wire-8821"

pytestmark = pytest.mark.slow


def _announced_base(log_path: Path, process: subprocess.Popen, seconds: float = 120) -> str:
    """The address the server logged once it was listening: it binds port 0 itself, so no other
    process can take the port between our choosing it and its binding (a free port picked here
    first could be)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = re.search(r"serving on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            pytest.fail(f"server exited early with {process.returncode}")
        time.sleep(0.05)
    pytest.fail("server never said where it listens")


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update(TWIN_ENV="development", TWIN_DATA_DIR=str(tmp_path / "data"),
               TWIN_KEYRING_PATH=str(tmp_path / "keys" / "keyring.json"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    return env


def _issue_service_token(env: dict[str, str], cwd: Path) -> str:
    script = REPO / "scripts" / "issue_token.py"
    if script.exists():
        # Only set-up commands create a keyring; issuing a token needs one.
        keys = subprocess.run([sys.executable, str(REPO / "scripts" / "generate_keys.py")], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=60)
        assert keys.returncode == 0, keys.stderr
        done = subprocess.run([sys.executable, str(script), "--role", "service", "--label", "socket-test"],
                              env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]
    from twin.config import Config
    from twin.runtime import Runtime
    runtime = Runtime.open(Config.from_env(env))
    try:
        return runtime.tokens.issue("service").token
    finally:
        runtime.close()


class Api:
    """A tiny JSON client over urllib (a real socket, no test client)."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def __call__(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.headers, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.headers, json.loads(error.read())


def _audit_actions(tmp_path: Path, data_dir: Path) -> list[str]:
    """The actions in the audit trail, read from the stopped server's files."""
    from compliance.keyring import Keyring
    from twin.storage import open_keyed

    keyring = Keyring.from_json((tmp_path / "keys" / "keyring.json").read_text())
    conn = open_keyed(data_dir / "privacy_vault.db", keyring.database_key, read_only=True)
    try:
        from compliance.audit_codec import ACTION_NAMES

        return [ACTION_NAMES[row[0]] for row in conn.execute("SELECT action FROM audit_log ORDER BY seq")]
    finally:
        conn.close()


def _wait_until_healthy(base: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail("server did not become healthy")


@pytest.fixture
def server(tmp_path):
    """(Api, process, data dir, log path) of a running `twin serve`; killed if the test did not stop it."""
    env = _environment(tmp_path)
    token = _issue_service_token(env, tmp_path)
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            # One worker: the audit chain below lists events in the order one process chained
            # them (tests/serving covers several workers).
            [sys.executable, "-m", "twin.cli", "serve", "--host", "127.0.0.1", "--port", "0",
             "--threads", "4", "--workers", "1", "--metrics-port", "0"], env=env, cwd=tmp_path,
            stdout=log, stderr=subprocess.STDOUT)
    try:
        base = _announced_base(log_path, process)
        _wait_until_healthy(base, process)
        yield Api(base, token), process, tmp_path / "data", log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_create_session_knowledge_read_flow_over_a_socket_then_a_graceful_stop(server, tmp_path):
    api, process, data_dir, log_path = server
    from twin.catalog import DATABASES
    assert {p.name for p in data_dir.glob("*.db")} == {spec.filename for spec in DATABASES.values()}

    status, headers, profile = api("POST", "/v1/profiles", {"user_id": USER_ID, "personal": {"n": MARKER}})
    assert status == 201 and headers["Location"] == f"/v1/profiles/{profile['profile_id']}"
    pid = profile["profile_id"]
    status, _, session = api("POST", f"/v1/profiles/{pid}/sessions", {"session_type": "lesson"})
    assert status == 201
    status, _, finished = api("PATCH", f"/v1/sessions/{session['session_id']}",
                              {"completion_status": "completed", "engagement_score": 0.8})
    assert status == 200 and finished["completion_status"] == "completed"
    status, _, state = api("PUT", f"/v1/profiles/{pid}/knowledge/math/algebra", {"mastery_level": 0.7})
    assert status == 201

    reads = [api("GET", f"/v1/profiles/{pid}"), api("GET", f"/v1/profiles/{pid}/sessions"),
             api("GET", f"/v1/profiles/{pid}/knowledge"), api("POST", "/v1/profiles/lookup", {"user_id": USER_ID})]

    assert [status for status, _, _ in reads] == [200, 200, 200, 200]
    assert reads[0][2]["personal"] == {"n": MARKER} and reads[0][1]["ETag"]
    assert [s["session_id"] for s in reads[1][2]["items"]] == [session["session_id"]]
    assert reads[2][2]["items"] == [state]
    assert reads[3][2]["profile_id"] == pid
    for document in [profile, session, finished, state] + [body for _, _, body in reads]:
        assert_no_identifiers(document, USER_ID, "")
    status, _, problem = api("GET", "/v1/profiles/prf_missing")
    assert status == 404 and problem["status"] == 404

    assert any(p.stat().st_size > 0 for p in data_dir.rglob("*-wal")), "writes should sit in a WAL"

    # An operator's look inside a live server: SIGUSR1 dumps every thread's stack and it keeps serving.
    process.send_signal(signal.SIGUSR1)
    status, _, _ = api("GET", f"/v1/profiles/{pid}")
    assert status == 200 and process.poll() is None

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0

    # Graceful stop moved every staged audit event into the chain and checkpointed every WAL.
    assert all(p.stat().st_size == 0 for p in data_dir.rglob("*-wal"))
    assert [p.name for p in data_dir.glob("*.audit-journal/*")] == []
    assert _audit_actions(tmp_path, data_dir) == ["create", "create", "update", "create"] + ["read"] * 5
    log = log_path.read_text(errors="replace")
    assert "received SIGTERM" in log and "stopped" in log
    assert "most recent call first" in log  # the SIGUSR1 stack dump
    assert "POST /v1/profiles 201" in log and "GET /v1/profiles/<profile_id> 200" in log
    assert USER_ID not in log and MARKER not in log and pid not in log and api.token not in log
    with pytest.raises(OSError):
        urllib.request.urlopen(api.base + "/healthz", timeout=2)
