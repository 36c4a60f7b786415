"""Operator commands next to a live ``twin serve`` on a real socket that is taking writes.

Commands safe next to a service (offline DSR export and erase, retention, verify, backup,
field-key rotation, audit verify) run while clients write: no acknowledged write is lost, no
request gets a 5xx, and the audit trail verifies afterwards. Commands that replace,
re-encrypt or downgrade files (restore, rekey, rollback) are refused with one line naming the
service, and run once it has stopped.
"""

from __future__ import annotations

import socket
import threading

import pytest

from cli_support import operator_env, running_server, twin
from compliance.keyring import Keyring
from twin.config import Config
from twin.runtime import Runtime

pytestmark = pytest.mark.slow


class Writers:
    """Clients creating profiles and sessions until stopped; they keep what was acknowledged."""

    def __init__(self, api, count: int = 3) -> None:
        self.api, self.stop = api, threading.Event()
        self.acknowledged: list[str] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(count)]

    def _write(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                status, body = self.api("POST", "/v1/profiles", {"user_id": f"w{n}-{i}", "personal": {"i": i}})
                if status == 201:
                    self.acknowledged.append(body["profile_id"])
                    status, _ = self.api("POST", f"/v1/profiles/{body['profile_id']}/sessions",
                                         {"session_type": "lesson"})
                if status >= 500 or status not in (200, 201):
                    self.failures.append(f"status {status}")
            except OSError as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> "Writers":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.fixture
def deployment(tmp_path):
    env = operator_env(tmp_path)
    assert twin(env, "keys", "generate").returncode == 0
    issued = twin(env, "tokens", "issue", "--role", "service", "--label", "writers")
    assert issued.returncode == 0, issued.stderr
    return env, issued.stdout.strip()


def _refused_naming(result, pid: int) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "in use by a running service: twin serve" in line
    assert f"pid {pid} on host {socket.gethostname()}, started 20" in line and "--force" in line


def test_safe_commands_run_beside_a_writing_service_and_destructive_ones_wait_for_it_to_stop(
        deployment, tmp_path):
    env, token = deployment
    backup = tmp_path / "backup-while-serving"
    with running_server(env, token, tmp_path / "server.log") as (api, server):
        assert api("POST", "/v1/profiles", {"user_id": "export-me", "personal": {"n": "Ada"}})[0] == 201
        assert api("POST", "/v1/profiles", {"user_id": "erase-me", "personal": {"n": "Bob"}})[0] == 201
        with Writers(api) as writers:
            exported = twin(env, "dsr", "export", "--user-id", "export-me")
            erased = twin(env, "dsr", "erase", "--user-id", "erase-me", "--yes")
            purged = twin(env, "retention", "run")
            verified = twin(env, "db", "verify")
            backed_up = twin(env, "db", "backup", "--out", str(backup))
            rotated = twin(env, "keys", "rotate", "--new-field-key")
            audited = twin(env, "audit", "verify")
            refused = [twin(env, "db", "restore", str(backup), "--yes"),
                       twin(env, "keys", "rotate", "--rekey-databases"),
                       twin(env, "db", "rollback", "--database", "digital_twin", "--to", "1", "--yes")]
            replaced_keyring = twin(env, "keys", "generate", "--force")
            created_meanwhile = list(writers.acknowledged)
        assert replaced_keyring.returncode == 2, replaced_keyring.stdout + replaced_keyring.stderr
        [line] = replaced_keyring.stderr.strip().splitlines()
        assert f"the keyring of a running service: twin serve (pid {server.pid}" in line
        assert "stop it before replacing its keyring" in line
        for result in (exported, erased, purged, verified, backed_up, rotated, audited):
            assert result.returncode == 0, result.args[3:] + [result.stdout, result.stderr]
        assert '"n": "Ada"' in exported.stdout and '"verified": true' in erased.stdout
        assert "all checks passed" in verified.stdout
        for result in refused:
            _refused_naming(result, server.pid)
        assert len(created_meanwhile) > 10, "the writers should have been writing all along"
        assert writers.failures == []
        # The service answers after the rotation as before (it picked the new keyring up).
        assert api("GET", f"/v1/profiles/{created_meanwhile[0]}")[0] == 200

    rt = Runtime.open(Config.from_env(env))
    try:
        stored = {r[0] for r in rt.twin_db.query("SELECT profile_id FROM learning_profiles")}
        assert set(writers.acknowledged) <= stored  # no acknowledged write lost
        assert rt.twin_db.query_one("SELECT count(*) FROM learning_profiles WHERE user_id_hash = ?",
                                    (rt.hasher.hash("erase-me"),))[0] == 0
    finally:
        rt.close()
    audited = twin(env, "audit", "verify")
    assert audited.returncode == 0 and audited.stdout.startswith("audit trail OK"), audited.stdout

    # With the service stopped, the destructive commands run.
    rolled = twin(env, "db", "rollback", "--database", "privacy_vault", "--to", "2", "--yes", "--force")
    assert rolled.returncode == 0, rolled.stderr
    assert twin(env, "db", "migrate").returncode == 0
    restored = twin(env, "db", "restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    old_key = Keyring.load(tmp_path / "keys" / "keyring.json", production=False).database_key
    rekeyed = twin(env, "keys", "rotate", "--rekey-databases")
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert Keyring.load(tmp_path / "keys" / "keyring.json", production=False).database_key != old_key
    assert twin(env, "db", "verify").returncode == 0
