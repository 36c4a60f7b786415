"""load_keyring at a start: without any keyring, development generates a private one (once,
however many processes start together) and production refuses, both saying where they looked;
the process environment is read by default."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compliance.errors import KeyringError
from compliance.keyring import ENV_MASTER_SECRET, Keyring, KeyringMissingError, load_keyring
from keyring_checks import all_key_material, assert_no_key_material, mode


def test_development_set_up_generates_a_private_keyring_with_a_warning(keyring_path, caplog):
    with caplog.at_level(logging.WARNING, logger="compliance.keyring"):
        keyring = load_keyring(keyring_path, production=False, environ={}, create=True)
    assert keyring_path.exists()
    assert mode(keyring_path) == 0o600
    assert [r.getMessage() for r in caplog.records] == [
        f"no keyring found; generated a DEVELOPMENT keyring at {keyring_path}. Back it up: data "
        "written with it is unreadable without it."]
    # The next start finds the same keys instead of generating new ones.
    assert load_keyring(keyring_path, production=False, environ={}, create=True) == keyring
    assert load_keyring(keyring_path, production=False, environ={}) == keyring


def test_without_create_a_missing_keyring_is_refused_saying_where_it_looked(keyring_path):
    with pytest.raises(KeyringMissingError) as excinfo:
        load_keyring(keyring_path, production=False, environ={})
    message = str(excinfo.value)
    assert str(keyring_path.absolute()) in message and "\n" not in message
    assert "TWIN_KEYRING_PATH" in message and ENV_MASTER_SECRET in message
    assert message.endswith("or create one with `twin keys generate`")  # no production remark
    assert not keyring_path.exists() and not keyring_path.parent.exists()


# Each worker announces it is ready, waits for the starting gun, then loads (and so generates).
_RACER = """
import base64, os, sys, time
from compliance.keyring import load_keyring
path, go = sys.argv[1], sys.argv[2]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.0002)
keyring = load_keyring(path, production=False, environ={}, create=True)
print(base64.b64encode(keyring.database_key).decode(), flush=True)
"""


def test_processes_starting_together_all_end_with_the_one_same_generated_keyring(keyring_path, tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != ENV_MASTER_SECRET}
    env["PYTHONPATH"] = str(root)
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _RACER, str(keyring_path), str(go)], env=env,
                                cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(8)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    go.touch()
    results = [worker.communicate(timeout=60) for worker in workers]
    for worker, (_, err) in zip(workers, results):
        assert worker.returncode == 0, err
    keys = {out.strip() for out, _ in results}
    assert keys == {base64.b64encode(Keyring.load(keyring_path, production=False).database_key).decode()}
    assert mode(keyring_path) == 0o600
    assert sorted(p.name for p in keyring_path.parent.iterdir()) == [keyring_path.name]  # no temp left


def test_production_refuses_to_start_without_a_keyring(keyring_path):
    with pytest.raises(KeyringError, match=ENV_MASTER_SECRET) as excinfo:
        load_keyring(keyring_path, production=True, environ={}, create=True)
    assert str(excinfo.value).endswith(
        "or create one with `twin keys generate` (TWIN_ENV=production never generates one)")
    assert not keyring_path.exists()


def test_production_refuses_a_group_readable_keyring_file_it_is_pointed_at(keyring_path):
    keyring = Keyring.generate()
    keyring.save(keyring_path)
    os.chmod(keyring_path, 0o640)

    with pytest.raises(KeyringError, match="chmod 600") as excinfo:
        load_keyring(keyring_path, production=True, environ={})
    assert_no_key_material(str(excinfo.value), all_key_material(keyring))


def test_load_keyring_reads_the_process_environment_by_default(keyring_path, monkeypatch):
    secret = os.urandom(32)
    monkeypatch.setenv(ENV_MASTER_SECRET, base64.b64encode(secret).decode())
    assert load_keyring(keyring_path, production=True) == Keyring.from_master_secret(secret)


def test_a_development_start_that_loses_the_race_to_a_loose_copied_keyring_loads_it_with_a_warning(
        keyring_path, monkeypatch, caplog):
    """Between finding no keyring and publishing its own, an operator copies one in with
    `cp` (mode 0644): development loads theirs (with the mode warning), it never refuses."""
    copied = Keyring.generate()
    publish = Keyring.save_new

    def copied_in_first(self, path):
        copied.save(path)
        os.chmod(path, 0o644)
        return publish(self, path)

    monkeypatch.setattr(Keyring, "save_new", copied_in_first)
    with caplog.at_level(logging.WARNING):
        loaded = load_keyring(keyring_path, production=False, environ={}, create=True)

    assert loaded == copied
    assert any("readable by group/others (mode 644)" in r.getMessage() for r in caplog.records)
