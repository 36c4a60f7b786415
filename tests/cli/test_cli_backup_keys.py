"""Backup sets say which keys they need: the manifest records the database key's fingerprint
and the field-key versions the data is wrapped under (never a key); verify and restore name
what is missing when the current keyring cannot open a set."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli_support import operator_env
from compliance.audit import Actor
from compliance.keyring import Keyring
from twin.cli import cli
from twin.config import Config
from twin.runtime import Runtime


@pytest.fixture
def env(tmp_path):
    env = operator_env(tmp_path)
    Keyring.generate().save(tmp_path / "keys" / "keyring.json")
    rt = Runtime.open(Config.from_env(env))
    rt.profiles.create(Actor("t", "admin"), None, {"user_id": "u-1", "personal": {"n": "Ada"}})
    rt.close()
    return env


def _keyring(tmp_path: Path) -> Keyring:
    return Keyring.load(tmp_path / "keys" / "keyring.json", production=False)


def _invoke(env, *args: str):
    return CliRunner().invoke(cli, list(args), env=env)


def test_the_manifest_names_the_keys_a_set_needs_by_fingerprint_only(env, tmp_path):
    assert _invoke(env, "db", "backup", "--out", str(tmp_path / "bk1")).exit_code == 0
    assert _invoke(env, "keys", "rotate", "--new-field-key").exit_code == 0
    done = _invoke(env, "db", "backup", "--out", str(tmp_path / "bk2"))
    assert done.exit_code == 0, done.output
    keyring = _keyring(tmp_path)
    first = json.loads((tmp_path / "bk1" / "manifest.json").read_text())
    second = json.loads((tmp_path / "bk2" / "manifest.json").read_text())
    assert {e["key_fingerprint"] for e in first["databases"]} == {keyring.database_key_fingerprint}
    fingerprints = keyring.field_key_fingerprints()
    assert first["keys"] == {"field_keys": {"1": fingerprints[1]}}
    assert second["keys"] == {"field_keys": {"2": fingerprints[2]}}  # everything was rewrapped
    assert f"database key {keyring.database_key_fingerprint}, field keys v2" in done.stdout
    text = json.dumps([first, second])
    for key in [keyring.database_key, keyring.id_pepper, *keyring.field_keys.values()]:
        assert key.hex() not in text and key.hex()[:16] not in text


def test_another_keyring_is_told_which_key_the_set_needs_and_nothing_is_replaced(env, tmp_path):
    assert _invoke(env, "db", "backup", "--out", str(tmp_path / "bk")).exit_code == 0
    taken_with = _keyring(tmp_path)
    stranger = Keyring.generate()
    stranger.save(tmp_path / "keys" / "keyring.json")

    verified = _invoke(env, "db", "verify", "--backup-check", str(tmp_path / "bk"), "--database", "privacy_vault")
    assert verified.exit_code == 1
    assert (f"FAIL backup privacy_vault: cannot be decrypted with the current key (fingerprint "
            f"{stranger.database_key_fingerprint}); the backup needs the key with fingerprint "
            f"{taken_with.database_key_fingerprint}") in verified.stdout.splitlines()
    assert any("the backup needs field key v1 with fingerprint" in line for line in verified.stdout.splitlines())

    live = (tmp_path / "data" / "privacy_vault.db").read_bytes()
    restored = _invoke(env, "db", "restore", str(tmp_path / "bk"), "--yes")
    assert restored.exit_code == 2
    [line] = restored.stderr.splitlines()
    assert f"the backup needs the key with fingerprint {taken_with.database_key_fingerprint}" in line
    assert (tmp_path / "data" / "privacy_vault.db").read_bytes() == live


def test_a_keyring_without_the_field_key_version_the_data_needs_cannot_restore(env, tmp_path):
    assert _invoke(env, "keys", "rotate", "--new-field-key").exit_code == 0
    assert _invoke(env, "db", "backup", "--out", str(tmp_path / "bk")).exit_code == 0
    full = _keyring(tmp_path)
    replace(full, field_keys={1: full.field_keys[1]}, active_field_key=1).save(tmp_path / "keys" / "keyring.json")

    verified = _invoke(env, "db", "verify", "--backup-check", str(tmp_path / "bk"))
    assert verified.exit_code == 1
    needs = (f"the backup needs field key v2 (fingerprint {full.field_key_fingerprints()[2]}); "
             "this keyring holds v1")
    assert f"FAIL backup {needs}" in verified.stdout.splitlines()
    restored = _invoke(env, "db", "restore", str(tmp_path / "bk"), "--yes", "--dry-run")
    assert restored.exit_code == 2
    assert restored.stderr.strip() == f"twin: error: {needs}; load the keyring the backup was taken with"
