"""The keyring: how keys are generated, stored, loaded and derived, and what is refused."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from compliance.errors import KeyringError
from compliance.keyring import (ENV_ACTIVE_FIELD_KEY, ENV_MASTER_SECRET, Keyring, KeyringMissingError,
                                load_keyring)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _all_key_material(keyring: Keyring) -> list[bytes]:
    return [keyring.database_key, keyring.id_pepper, *keyring.field_keys.values()]


def _renderings(secret: bytes) -> list[str]:
    """The ways a key could leak into text: hex and base64."""
    return [secret.hex(), base64.b64encode(secret).decode()]


def _assert_no_key_material(text: str, secrets: list[bytes]) -> None:
    for secret in secrets:
        for rendering in _renderings(secret):
            assert rendering not in text
            assert rendering[:16] not in text


@pytest.fixture
def keyring_path(tmp_path):
    return tmp_path / "keys" / "keyring.json"


# -- generate, save, load ----------------------------------------------------------------

def test_generated_keyring_has_distinct_random_keys_and_field_key_1_active():
    keyring = Keyring.generate()
    assert keyring.active_field_key == 1
    assert sorted(keyring.field_keys) == [1]
    material = _all_key_material(keyring)
    assert all(len(k) == 32 for k in material)
    assert len(set(material)) == len(material)
    assert Keyring.generate().database_key != keyring.database_key


def test_saved_keyring_loads_back_identical(keyring_path):
    keyring = Keyring.generate().with_new_field_key()
    keyring.save(keyring_path)
    loaded = Keyring.load(keyring_path, production=True)
    assert loaded == keyring
    assert loaded.field_keys == keyring.field_keys
    assert loaded.active_field_key == 2


def test_saved_keyring_file_is_mode_0600_in_a_0700_directory(keyring_path):
    Keyring.generate().save(keyring_path)
    assert _mode(keyring_path) == 0o600
    assert _mode(keyring_path.parent) == 0o700
    assert [p.name for p in keyring_path.parent.iterdir()] == [keyring_path.name]  # no temp left


def test_saving_over_a_loose_file_tightens_it_to_0600(keyring_path):
    keyring_path.parent.mkdir()
    keyring_path.write_text("old")
    os.chmod(keyring_path, 0o644)
    Keyring.generate().save(keyring_path)
    assert _mode(keyring_path) == 0o600


@pytest.mark.parametrize("loose_mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_accessible_keyring_file_is_refused_in_production(keyring_path, loose_mode):
    keyring = Keyring.generate()
    keyring.save(keyring_path)
    os.chmod(keyring_path, loose_mode)
    with pytest.raises(KeyringError, match="chmod 600") as excinfo:
        Keyring.load(keyring_path, production=True)
    _assert_no_key_material(str(excinfo.value), _all_key_material(keyring))


def test_group_readable_keyring_file_loads_with_a_warning_in_development(keyring_path, caplog):
    keyring = Keyring.generate()
    keyring.save(keyring_path)
    os.chmod(keyring_path, 0o644)
    with caplog.at_level(logging.WARNING, logger="compliance.keyring"):
        loaded = Keyring.load(keyring_path, production=False)
    assert loaded == keyring
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "readable by group/others" in warnings[0].getMessage()


def test_private_keyring_file_loads_without_warning(keyring_path, caplog):
    Keyring.generate().save(keyring_path)
    with caplog.at_level(logging.WARNING, logger="compliance.keyring"):
        Keyring.load(keyring_path, production=True)
    assert caplog.records == []


def test_missing_keyring_file_gives_keyring_error(keyring_path):
    with pytest.raises(KeyringError, match="cannot read keyring file"):
        Keyring.load(keyring_path, production=False)


# -- malformed files -----------------------------------------------------------------------

def _malformed_documents() -> dict[str, tuple[str, list[str]]]:
    """Broken keyring files, each with the key strings it holds (which must not leak)."""
    doc = json.loads(Keyring.generate().to_json())
    keys = [doc["database_key"], doc["id_pepper"], *doc["field_keys"].values()]
    short = base64.b64encode(os.urandom(16)).decode()
    without_pepper = {k: v for k, v in doc.items() if k != "id_pepper"}
    cases = {
        "not json": "{this is not json",
        "json list": json.dumps([1, 2, 3]),
        "missing pepper": json.dumps(without_pepper),
        "bad base64": json.dumps(dict(doc, database_key="not base64 !!")),
        "short key": json.dumps(dict(doc, database_key=short)),
        "wrong format": json.dumps(dict(doc, format="something-else/9")),
        "active key absent": json.dumps(dict(doc, active_field_key=7)),
        "non-integer version": json.dumps(dict(doc, field_keys={"one": doc["field_keys"]["1"]})),
    }
    return {name: (text, keys + [short]) for name, text in cases.items()}


@pytest.mark.parametrize("case", sorted(_malformed_documents()))
def test_malformed_keyring_file_gives_keyring_error_without_key_bytes(keyring_path, case):
    text, secrets = _malformed_documents()[case]
    keyring_path.parent.mkdir(mode=0o700)
    fd = os.open(keyring_path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    with pytest.raises(KeyringError) as excinfo:
        Keyring.load(keyring_path, production=True)
    message = str(excinfo.value)
    assert message
    for secret in secrets:
        assert secret[:12] not in message


# -- the environment-variable form ------------------------------------------------------------

def _env(secret: bytes, **extra: str) -> dict[str, str]:
    return {ENV_MASTER_SECRET: base64.b64encode(secret).decode(), **extra}


def test_master_secret_derives_distinct_purpose_keys(keyring_path):
    secret = os.urandom(32)
    keyring = load_keyring(keyring_path, production=True, environ=_env(secret))
    material = _all_key_material(keyring)
    assert len(set(material)) == len(material) == 3
    assert secret not in material
    assert keyring.source == "environment"
    assert not keyring_path.exists()  # nothing is written in this form


def test_master_secret_derivation_is_deterministic(keyring_path):
    secret = os.urandom(48)
    first = load_keyring(keyring_path, production=True, environ=_env(secret))
    second = load_keyring(keyring_path, production=True, environ=_env(secret))
    assert first == second
    other = load_keyring(keyring_path, production=True, environ=_env(os.urandom(48)))
    assert other.database_key != first.database_key
    assert other.id_pepper != first.id_pepper


def test_raising_the_field_key_version_keeps_older_versions_derivable(keyring_path):
    secret = os.urandom(32)
    v1 = load_keyring(keyring_path, production=True, environ=_env(secret))
    v3 = load_keyring(keyring_path, production=True,
                      environ=_env(secret, **{ENV_ACTIVE_FIELD_KEY: "3"}))
    assert v3.active_field_key == 3
    assert sorted(v3.field_keys) == [1, 2, 3]
    assert v3.field_keys[1] == v1.field_keys[1]
    assert len(set(v3.field_keys.values())) == 3
    assert v3.database_key == v1.database_key and v3.id_pepper == v1.id_pepper


def test_master_secret_takes_precedence_over_a_keyring_file(keyring_path):
    Keyring.generate().save(keyring_path)
    secret = os.urandom(32)
    keyring = load_keyring(keyring_path, production=True, environ=_env(secret))
    assert keyring == Keyring.from_master_secret(secret)


@pytest.mark.parametrize("bad", ["not base64 at all!", "abc", "ZmFrZQ=x"])
def test_invalid_base64_master_secret_is_refused_without_echoing_it(keyring_path, bad):
    with pytest.raises(KeyringError, match="not valid base64") as excinfo:
        load_keyring(keyring_path, production=False, environ={ENV_MASTER_SECRET: bad})
    assert bad not in str(excinfo.value)


def test_short_master_secret_is_refused_without_echoing_it(keyring_path):
    secret = os.urandom(16)
    with pytest.raises(KeyringError, match="at least 32 bytes") as excinfo:
        load_keyring(keyring_path, production=False, environ=_env(secret))
    _assert_no_key_material(str(excinfo.value), [secret])


@pytest.mark.parametrize("version", ["zero", "0", "-1"])
def test_invalid_field_key_version_is_refused(keyring_path, version):
    with pytest.raises(KeyringError, match=ENV_ACTIVE_FIELD_KEY):
        load_keyring(keyring_path, production=False,
                     environ=_env(os.urandom(32), **{ENV_ACTIVE_FIELD_KEY: version}))


# -- load_keyring without any keyring ----------------------------------------------------------

def test_development_set_up_generates_a_private_keyring_with_a_warning(keyring_path, caplog):
    with caplog.at_level(logging.WARNING, logger="compliance.keyring"):
        keyring = load_keyring(keyring_path, production=False, environ={}, create=True)
    assert keyring_path.exists()
    assert _mode(keyring_path) == 0o600
    assert any("DEVELOPMENT keyring" in r.getMessage() for r in caplog.records)
    # The next start finds the same keys instead of generating new ones.
    assert load_keyring(keyring_path, production=False, environ={}, create=True) == keyring
    assert load_keyring(keyring_path, production=False, environ={}) == keyring


def test_without_create_a_missing_keyring_is_refused_saying_where_it_looked(keyring_path):
    with pytest.raises(KeyringMissingError) as excinfo:
        load_keyring(keyring_path, production=False, environ={})
    message = str(excinfo.value)
    assert str(keyring_path.absolute()) in message and "\n" not in message
    assert "TWIN_KEYRING_PATH" in message and ENV_MASTER_SECRET in message
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
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(8)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    go.touch()
    results = [worker.communicate(timeout=60) for worker in workers]
    for worker, (_, err) in zip(workers, results):
        assert worker.returncode == 0, err
    keys = {out.strip() for out, _ in results}
    assert keys == {base64.b64encode(Keyring.load(keyring_path, production=False).database_key).decode()}
    assert _mode(keyring_path) == 0o600
    assert sorted(p.name for p in keyring_path.parent.iterdir()) == [keyring_path.name]  # no temp left


def test_saving_leaves_no_temporary_file_and_replaces_an_existing_keyring(keyring_path):
    Keyring.generate().save(keyring_path)
    rotated = Keyring.generate()
    rotated.save(keyring_path)
    assert Keyring.load(keyring_path, production=False) == rotated
    assert [p.name for p in keyring_path.parent.iterdir()] == [keyring_path.name]


def test_production_refuses_to_start_without_a_keyring(keyring_path):
    with pytest.raises(KeyringError, match=ENV_MASTER_SECRET):
        load_keyring(keyring_path, production=True, environ={}, create=True)
    assert not keyring_path.exists()


def test_load_keyring_reads_the_process_environment_by_default(keyring_path, monkeypatch):
    secret = os.urandom(32)
    monkeypatch.setenv(ENV_MASTER_SECRET, base64.b64encode(secret).decode())
    assert load_keyring(keyring_path, production=True) == Keyring.from_master_secret(secret)


# -- no key material in representations --------------------------------------------------------

def test_repr_and_str_show_no_key_material():
    keyring = Keyring.generate().with_new_field_key()
    for text in (repr(keyring), str(keyring), f"{keyring}"):
        _assert_no_key_material(text, _all_key_material(keyring))
        assert "field_key_versions=[1, 2]" in text


def test_keyring_rejects_keys_of_the_wrong_length():
    with pytest.raises(KeyringError):
        Keyring(database_key=os.urandom(16), field_keys={1: os.urandom(32)}, active_field_key=1,
                id_pepper=os.urandom(32))
    with pytest.raises(KeyringError):
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(31)}, active_field_key=1,
                id_pepper=os.urandom(32))
