"""Every command, and ``twin serve``, on each kind of bad database file: one line naming the
file and what is wrong with it, exit 2, never a traceback (``db verify`` reports it as a FAIL
line and exits 1: finding problems is its job)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli_support import operator_env
from compliance.keyring import Keyring
from twin.cli import cli
from twin.storage.cipher import KNOWN

KINDS = ["wrong key", "plain", "empty", "truncated", "damaged"]

# (arguments, the database they read)
COMMANDS = [
    (["db", "setup"], "digital_twin.db"),
    (["db", "status"], "digital_twin.db"),
    (["db", "migrate"], "digital_twin.db"),
    (["db", "info"], "digital_twin.db"),
    (["db", "backup", "--out", "{tmp}/bk"], "digital_twin.db"),
    (["db", "rollback", "--database", "digital_twin", "--to", "1", "--yes"], "digital_twin.db"),
    (["dsr", "export", "--user-id", "u-1"], "digital_twin.db"),
    (["dsr", "erase", "--user-id", "u-1", "--yes"], "digital_twin.db"),
    (["retention", "run"], "digital_twin.db"),
    (["keys", "rotate", "--rekey-databases"], "digital_twin.db"),
    (["tokens", "issue", "--role", "admin"], "privacy_vault.db"),
    (["tokens", "list"], "privacy_vault.db"),
    (["tokens", "revoke", "0123456789abcdef"], "privacy_vault.db"),
    (["audit", "verify"], "privacy_vault.db"),
    (["keys", "rotate", "--rewrap"], "privacy_vault.db"),
    (["settings", "import-legacy", "--settings-json", "{tmp}/legacy.json"], "settings.db"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A set-up deployment (every database, some data), copied for each test."""
    root = tmp_path_factory.mktemp("template")
    env = operator_env(root)
    Keyring.generate().save(Path(env["TWIN_KEYRING_PATH"]))
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "setup"], env=env).exit_code == 0
    from twin.config import Config
    from twin.runtime import Runtime
    from compliance.audit import Actor
    rt = Runtime.open(Config.from_env(env))
    for i in range(300):
        rt.profiles.create(Actor("t", "admin"), None, {"user_id": f"u-{i}", "personal": {"pad": "x" * 300}})
    rt.tokens.issue("admin")
    rt.close()
    (root / "legacy.json").write_text('{"region": "eu"}')
    return root


@pytest.fixture
def deployment(template, tmp_path):
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    return operator_env(tmp_path), Keyring.load(tmp_path / "keys" / "keyring.json", production=False)


def spoil(path: Path, kind: str) -> None:
    """Make ``path`` the kind of bad file named."""
    for side in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        side.unlink(missing_ok=True)
    data = path.read_bytes()
    if kind == "wrong key":
        from twin.storage import Database
        path.unlink()
        other = Database(path, Keyring.generate().database_key)
        other.execute("CREATE TABLE t (x)")
        other.close_all()
    elif kind == "plain":
        path.unlink()
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[:len(data) // 2 + 100])
    else:  # every 4 KiB past the largest first page of any cipher setting: the header opens,
        # the data does not
        spoiled = bytearray(data)
        for offset in range(max(c.page_size for c in KNOWN), len(data), 4096):
            spoiled[offset + 200] ^= 0xFF
        path.write_bytes(bytes(spoiled))


def expected(path: Path, kind: str, keyring: Keyring) -> str:
    return {"wrong key": f"{path}: cannot be opened with this key (wrong key, or damaged; key "
                         f"fingerprint {keyring.database_key_fingerprint})",
            "plain": f"{path}: a plain SQLite file, not encrypted",
            "empty": f"{path}: empty or truncated",
            "truncated": f"{path}: empty or truncated",
            "damaged": f"{path}: damaged (run verify)"}[kind]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("args, database", COMMANDS, ids=[" ".join(c[0][:2]) for c in COMMANDS])
def test_a_command_on_a_bad_file_says_which_and_what_in_one_line(deployment, tmp_path, args, database, kind):
    env, keyring = deployment
    path = tmp_path / "data" / database
    spoil(path, kind)
    before = path.read_bytes()
    result = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args], env=env)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.splitlines() == [f"twin: error: {expected(path, kind, keyring)}"]
    assert path.read_bytes() == before  # nothing "repaired" away


@pytest.mark.parametrize("kind", KINDS)
def test_verify_reports_the_bad_file_as_a_fail_line_and_checks_the_others(deployment, tmp_path, kind):
    env, keyring = deployment
    path = tmp_path / "data" / "digital_twin.db"
    spoil(path, kind)
    result = CliRunner().invoke(cli, ["db", "verify"], env=env)
    assert result.exit_code == 1, result.output
    assert f"FAIL digital_twin: {expected(path, kind, keyring)}" in result.stdout.splitlines()
    assert "ok   privacy_vault" in result.stdout and "1 problem(s) found" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_twin_serve_on_a_bad_file_exits_2_with_one_line(deployment, tmp_path, kind):
    env, keyring = deployment
    path = tmp_path / "data" / "digital_twin.db"
    spoil(path, kind)
    result = subprocess.run([sys.executable, "-m", "twin.cli", "--log-level", "WARNING", "serve",
                             "--port", "0"], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"twin: error: {expected(path, kind, keyring)}"]
