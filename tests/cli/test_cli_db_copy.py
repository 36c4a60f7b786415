"""`twin db copy --to postgresql`: a deployment of release b8c13d3 (the fixture) moves into an
empty PostgreSQL pair; every table's count and the audit chain are verified, the copy serves
what the files held, an interrupted copy resumes without copying anything twice, and a target
that holds other data is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from cli_support import ROOT, operator_env, twin
from compliance.audit import Actor
from twin.config import Config
from twin.learners.errors import NotFoundError
from twin.runtime import Runtime
from storage_backends import COMPONENT_PREFIXES, database_url, wait_until_no_other_session

READER = Actor("tok_copy_test", "service")
FIXTURE = ROOT / "tests" / "fixtures" / "release_b8c13d3" / "data.tar.gz"


@pytest.fixture
def release_env(tmp_path, pg_server):
    """The fixture's data directory and keyring, with an empty PostgreSQL pair to copy into."""
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    env = operator_env(tmp_path)
    env.update(TWIN_DATABASE_URL=database_url(pg_server.create_database()),
               TWIN_VAULT_DATABASE_URL=database_url(pg_server.create_database()),
               TWIN_DB_POOL_SIZE="2")
    return env, json.loads((tmp_path / "expected.json").read_text())


def _on_postgresql(env):
    served = {**env, "TWIN_STORAGE_BACKEND": "postgresql"}
    served.update({f"{prefix}STORAGE_BACKEND": "sqlcipher" for prefix in COMPONENT_PREFIXES})
    return served


def _counts(url: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def test_the_release_fixture_copies_into_postgresql_verified_and_serves_from_there(release_env):
    env, expected = release_env
    copied = twin(env, "db", "copy", "--to", "postgresql")
    assert copied.returncode == 0, copied.stderr
    lines = copied.stdout.splitlines()
    assert any(line.split()[:2] == ["digital_twin", "learning_profiles"] and line.endswith("verified")
               for line in lines)
    assert "audit trail: " in lines[-1] and "chain verified on postgresql" in lines[-1]
    profiles = _counts(env["TWIN_DATABASE_URL"], ["learning_profiles"])["learning_profiles"]
    assert profiles == 2  # the adult and the child; the erased learner stays erased

    served = _on_postgresql(env)
    assert twin(served, "audit", "verify").returncode == 0
    rt = Runtime.open(Config.from_env(served))  # as `twin serve` on PostgreSQL opens it
    try:
        view, _ = rt.profiles.get(READER, None, expected["adult"]["profile_id"])
        assert view == expected["adult"]
        assert rt.tokens.verify(expected["admin_token"]).role == "admin"
        with pytest.raises(NotFoundError):
            rt.profiles.get(READER, None, expected["erased_profile_id"])
        created, _ = rt.profiles.create(READER, None, {"user_id": "after-the-move"})
        assert created["profile_id"]  # new rows get ids the source never gave
        assert rt.audit.verify().ok
    finally:
        rt.close()


def _add_audit_events(env, count: int) -> None:
    """More events in the release's vault, so a copy in batches of one takes a while."""
    rt = Runtime.open(Config.from_env(env))
    try:
        rt.audit.record_many((Actor("tok_load", "service"), "read", {"request_id": f"r{i}"})
                             for i in range(count))
    finally:
        rt.close()


def test_an_interrupted_copy_resumes_where_it_stopped_and_copies_nothing_twice(release_env):
    env, _ = release_env
    _add_audit_events(env, 400)
    process = subprocess.Popen([sys.executable, "-m", "twin.cli", "db", "copy", "--to", "postgresql",
                                "--batch-size", "1"], env=env, cwd=Path(env["TWIN_DATA_DIR"]).parent,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    vault_url = env["TWIN_VAULT_DATABASE_URL"]
    deadline = time.monotonic() + 120
    try:
        while True:  # until some audit events are in, then kill it mid-table
            assert process.poll() is None, process.stderr.read()
            try:
                with psycopg.connect(vault_url) as conn:
                    row = conn.execute("SELECT last_rowid, done FROM storage_copy_progress "
                                       "WHERE table_name = 'audit_log'").fetchone()
            except psycopg.Error:
                row = None
            if row is not None and row[0] >= 50:
                break
            assert time.monotonic() < deadline, "the copy never reached the audit trail"
            threading.Event().wait(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    for url in (env["TWIN_DATABASE_URL"], vault_url):  # its sessions over, their last statements settled
        wait_until_no_other_session(url)
    assert row[1] is False
    with psycopg.connect(vault_url) as conn:
        partial = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    assert 0 < partial < 400  # stopped part-way through the table

    resumed = twin(env, "db", "copy", "--to", "postgresql")
    assert resumed.returncode == 0, resumed.stderr
    assert "chain verified" in resumed.stdout
    with psycopg.connect(vault_url) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM audit_log ORDER BY seq")]
    assert len(seqs) == len(set(seqs)) and len(seqs) >= 400


def test_a_target_holding_other_data_is_refused_and_left_alone(release_env, tmp_path):
    env, _ = release_env
    served = _on_postgresql(env)
    assert twin(served, "db", "setup").returncode == 0
    with psycopg.connect(env["TWIN_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("INSERT INTO learning_profiles (profile_id, user_id_hash, created_at, updated_at) "
                     "VALUES ('prf_other', 'other-hash', '2026-01-01T00:00:00.000000Z', "
                     "'2026-01-01T00:00:00.000000Z')")
    refused = twin(env, "db", "copy", "--to", "postgresql")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "not empty" in line and "learning_profiles" in line
    assert _counts(env["TWIN_DATABASE_URL"], ["learning_profiles"]) == {"learning_profiles": 1}


def test_the_audit_archive_moves_with_the_vault_and_the_copy_verifies_through_it(release_env, tmp_path):
    from datetime import datetime, timedelta, timezone

    env, _ = release_env
    env = {**env, "TWIN_AUDIT_SEAL_EVERY": "5", "TWIN_AUDIT_ARCHIVE_SEGMENT_EVENTS": "10"}
    then = datetime.now(timezone.utc) - timedelta(days=40)
    rt = Runtime.open(Config.from_env({**env, "TWIN_STORAGE_BACKEND": "sqlcipher"}), clock=lambda: then)
    rt.audit.record_many([(READER, "read", {"subject_hash": "d" * 64})] * 23)
    run = rt.audit.archive_older_than(then + timedelta(seconds=1))
    rt.close()
    files = sorted((tmp_path / "data" / "privacy_vault.audit-archive").glob("*.ltaa"))
    assert run.segments >= 2 and len(files) == run.segments

    copied = twin(env, "db", "copy", "--to", "postgresql")
    assert copied.returncode == 0, copied.stderr
    with psycopg.connect(env["TWIN_VAULT_DATABASE_URL"]) as conn:
        blobs = conn.execute("SELECT first_seq, body FROM audit_archive_blobs ORDER BY first_seq").fetchall()
    assert [bytes(b) for _, b in blobs] == [f.read_bytes() for f in files]
    verified = twin(_on_postgresql(env), "audit", "verify", "--full")
    assert verified.returncode == 0 and verified.stdout.startswith("audit trail OK"), verified.stdout
