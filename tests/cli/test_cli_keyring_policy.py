"""No accidental vaults: only set-up commands create a development keyring; every other
command that finds none exits 2 saying where it looked and how to point it elsewhere."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli_support import ROOT, operator_env
from twin.cli import cli

NOT_SET_UP = [
    ["tokens", "issue", "--role", "admin"], ["tokens", "list"], ["tokens", "revoke", "abc"],
    ["db", "status"], ["db", "migrate"], ["db", "info"], ["db", "verify"], ["db", "backup"],
    ["db", "rollback", "--database", "ledger", "--to", "0", "--yes"],
    ["db", "restore", "{tmp}/bk", "--yes"], ["dsr", "export", "--user-id", "u"],
    ["dsr", "erase", "--user-id", "u", "--yes"], ["retention", "run"], ["retention", "schedule"],
    ["audit", "verify"], ["keys", "rotate", "--rewrap"], ["keys", "rotate", "--new-field-key"],
    ["keys", "rotate", "--rekey-databases"],
    ["settings", "import-legacy", "--settings-json", "{tmp}/legacy.json"],
]


@pytest.fixture
def env(tmp_path):
    (tmp_path / "legacy.json").write_text(json.dumps({"region": "eu"}))
    return operator_env(tmp_path)


@pytest.mark.parametrize("args", NOT_SET_UP, ids=[" ".join(a[:2]) for a in NOT_SET_UP])
def test_a_command_that_finds_no_keyring_refuses_and_creates_nothing(env, tmp_path, args):
    result = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args], env=env)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"twin: error: no keyring: {tmp_path / 'keys' / 'keyring.json'} does not exist")
    assert "TWIN_KEYRING_PATH" in line and "DIGITAL_TWIN_ENCRYPTION_KEY" in line
    assert not (tmp_path / "keys").exists()
    assert not any((tmp_path / "data").glob("*.db"))  # no fresh, empty vault either


@pytest.mark.parametrize("args", [["db", "setup"], ["keys", "generate"]])
def test_set_up_commands_create_the_development_keyring(env, tmp_path, args):
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "keys" / "keyring.json").exists()


def test_production_set_up_never_generates_one(env, tmp_path):
    result = CliRunner().invoke(cli, ["db", "setup"], env={**env, "TWIN_ENV": "production"})
    assert result.exit_code == 2 and "never generates one" in result.stderr
    assert not (tmp_path / "keys").exists()


def test_each_command_logs_the_data_directory_and_keyring_it_uses(env, tmp_path, caplog):
    assert CliRunner().invoke(cli, ["keys", "generate"], env=env).exit_code == 0
    with caplog.at_level(logging.INFO, logger="twin.cli"):
        result = CliRunner().invoke(cli, ["tokens", "list"], env=env)
    assert result.exit_code == 0
    [record] = [r for r in caplog.records if r.name == "twin.cli"]
    assert record.levelno == logging.INFO
    assert str(tmp_path / "data") in record.getMessage()
    assert str(tmp_path / "keys" / "keyring.json") in record.getMessage()


def test_issue_token_from_another_directory_says_where_it_looked(tmp_path):
    """The report's case: run from elsewhere, it must not print a token that works nowhere."""
    env = {k: v for k, v in operator_env(tmp_path).items() if k not in ("TWIN_DATA_DIR", "TWIN_KEYRING_PATH")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "issue_token.py"), "--role", "service"],
                            env=env, cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert f"no keyring: {elsewhere / 'keys' / 'keyring.json'} does not exist" in result.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == []
    assert Path(elsewhere / "data").exists() is False
