"""``twin db recipher`` on the data directory of release b8c13d3 (4096-byte pages, HMAC-SHA512),
and on the same files under the 8 KiB pages of 46d17c1 and before: every file rewritten under
the current settings, its data read back through the current services, a second run a no-op;
refused while a service holds the files."""

from __future__ import annotations

import json
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from cli_support import operator_env, twin
from compliance.audit import Actor
from compliance.keyring import Keyring
from sqlcipher_pages import page_layout
from twin.catalog import DATABASES, spec_for
from twin.config import Config
from twin.runtime import Runtime
from twin.storage import Database
from twin.storage.cipher import CURRENT, LEGACY, PAGES_8K
from twin.storage.recipher import recipher
from twin.storage.service_guard import FileServiceGuard, Holder
from twin.storage.timestamps import from_db

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_b8c13d3" / "data.tar.gz"

pytestmark = pytest.mark.sqlite_only("SQLCipher files")


@pytest.fixture
def release(tmp_path):
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    keyring = Keyring.load(tmp_path / "keys" / "keyring.json", production=False)
    files = sorted((tmp_path / "data").glob("*.db"))
    assert len(files) == len(DATABASES)
    return operator_env(tmp_path), keyring, files


@pytest.fixture(params=["b8c13d3", "46d17c1"])
def former(request, release):
    """The release's files as they are (SQLCipher's defaults), or as 46d17c1 wrote new files."""
    env, keyring, files = release
    if request.param == "b8c13d3":
        return release, LEGACY, 80
    for f in files:
        db = Database(f, keyring.database_key, name=f.stem)
        recipher(db, PAGES_8K)
        db.close_all()
    return release, PAGES_8K, 48


def test_the_former_files_are_rewritten_under_the_current_settings_and_read_back(former, tmp_path):
    (env, keyring, files), settings, reserve = former  # the IV before an HMAC-SHA512 / SHA256
    assert {page_layout(f.read_bytes(), keyring.database_key) for f in files} == {(settings.page_size, reserve)}

    result = twin(env, "db", "recipher")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(files)
    assert all(f"{settings} -> {CURRENT}: " in line and "rows verified" in line for line in lines), lines
    assert {page_layout(f.read_bytes(), keyring.database_key) for f in files} == {(4096, 48)}
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if "recipher" in p.name) == []

    expected = json.loads((tmp_path / "expected.json").read_text())
    made = from_db(expected["adult"]["created_at"])
    config = Config(env="test", data_dir=tmp_path / "data", keyring_path=tmp_path / "keys" / "keyring.json",
                    model_dir=tmp_path / "data" / "models", environ={})
    runtime = Runtime.open(config, clock=lambda: made + timedelta(days=1))
    try:
        reader = Actor("tok_release_test", "service")
        assert runtime.profiles.get(reader, None, expected["adult"]["profile_id"])[0] == expected["adult"]
        session, _ = runtime.sessions.get(reader, None, expected["session_id"])
        assert session["performance_metrics"] == {"score": 0.75}
        assert runtime.tokens.verify(expected["admin_token"]).role == "admin"
        assert runtime.audit.verify().ok
    finally:
        runtime.close()

    again = twin(env, "db", "recipher")
    assert again.returncode == 0 and all(line.endswith(f"{CURRENT} already")
                                         for line in again.stdout.splitlines()), again.stdout


def test_a_dry_run_names_each_files_settings_and_changes_nothing(release):
    env, _, files = release
    before = {f: f.read_bytes() for f in files}
    result = twin(env, "db", "recipher", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "dry run: nothing changed"
    assert result.stdout.count(str(LEGACY)) == len(files)
    assert {f: f.read_bytes() for f in files} == before


def test_it_is_refused_in_one_line_while_a_service_holds_the_files(release, tmp_path):
    env, _, files = release
    before = {f: f.read_bytes() for f in files}
    guard = FileServiceGuard([tmp_path / "data" / spec_for(n).filename for n in DATABASES])
    registration = guard.register(Holder("service", "twin serve"))
    try:
        result = twin(env, "db", "recipher")
    finally:
        registration.release()
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "in use by a running service: twin serve" in line and line.endswith("(stop it first)")
    assert {f: f.read_bytes() for f in files} == before
