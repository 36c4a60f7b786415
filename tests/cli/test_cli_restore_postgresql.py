"""On PostgreSQL a restore is PostgreSQL's (pg_dump / pg_restore, or a base backup and WAL
replayed to a point in time), and it rewinds the vault too: erasures since the backup are gone
from it. The erasure log kept outside the backups and `twin db reapply-tombstones` bring them
back before anything is served: the subject is not served and their key is gone, also from a
dump of the restored vault."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from subject_key_rows import wrapped_key_of

from cli_support import operator_env, twin
from compliance.audit import Actor
from storage_backends import COMPONENT_PREFIXES, database_url
from twin.config import Config
from twin.learners.errors import NotFoundError
from twin.runtime import Runtime

ADMIN = Actor("test:ops", "admin")
ERASED, KEPT = "erased-after-the-dump", "kept-learner"


@pytest.fixture
def pg_env(tmp_path, pg_server):
    env = operator_env(tmp_path)
    env.update(TWIN_STORAGE_BACKEND="postgresql", TWIN_DB_POOL_SIZE="2",
               TWIN_DATABASE_URL=database_url(pg_server.create_database()),
               TWIN_VAULT_DATABASE_URL=database_url(pg_server.create_database()))
    env.update({f"{prefix}STORAGE_BACKEND": "sqlcipher" for prefix in COMPONENT_PREFIXES})
    assert twin(env, "keys", "generate").returncode == 0
    assert twin(env, "db", "setup").returncode == 0
    return env


def _runtime(env) -> Runtime:
    return Runtime.open(Config.from_env(env))


def _dump(url: str, out: Path) -> None:
    subprocess.run(["pg_dump", "--format=custom", f"--file={out}", url], check=True, timeout=60)


def _restore(url: str, dump: Path) -> None:
    subprocess.run(["pg_restore", "--clean", "--if-exists", "--single-transaction", f"--dbname={url}",
                    str(dump)], check=True, timeout=60)


def _plain_dump(url: str) -> str:
    return subprocess.run(["pg_dump", url], check=True, capture_output=True, text=True, timeout=60).stdout


def test_a_learner_erased_after_the_dump_stays_erased_after_pg_restore_and_reapply(pg_env, tmp_path):
    rt = _runtime(pg_env)
    try:
        ids = {user: rt.profiles.create(ADMIN, None, {"user_id": user, "personal": {"n": user}})[0]["profile_id"]
               for user in (ERASED, KEPT)}
        keys = {user: wrapped_key_of(rt, rt.hasher.hash(user)) for user in (ERASED, KEPT)}
    finally:
        rt.close()
    urls = {"data": pg_env["TWIN_DATABASE_URL"], "vault": pg_env["TWIN_VAULT_DATABASE_URL"]}
    for role, url in urls.items():
        _dump(url, tmp_path / f"{role}.dump")

    erased = twin(pg_env, "dsr", "erase", "--user-id", ERASED, "--yes")
    assert erased.returncode == 0, erased.stderr
    log = tmp_path / "offsite" / "erasure-log.json"
    assert twin(pg_env, "db", "erasure-log", "--out", str(log)).returncode == 0

    for role, url in urls.items():
        _restore(url, tmp_path / f"{role}.dump")
    with psycopg.connect(urls["data"]) as conn:  # what the restore brought back
        assert conn.execute("SELECT count(*) FROM learning_profiles WHERE profile_id = %s",
                            (ids[ERASED],)).fetchone()[0] == 1

    reapplied = twin(pg_env, "db", "reapply-tombstones", "--tombstones", str(log))
    assert reapplied.returncode == 0, reapplied.stderr
    assert "1 erasure tombstone(s) from the logs merged" in reapplied.stdout

    rt = _runtime(pg_env)
    try:
        with pytest.raises(NotFoundError):
            rt.profiles.get(ADMIN, None, ids[ERASED])
        assert rt.profiles.get(ADMIN, None, ids[KEPT])[0]["personal"] == {"n": KEPT}
        assert not rt.keys.has_key(rt.hasher.hash(ERASED))
    finally:
        rt.close()
    vault_dump = _plain_dump(urls["vault"])
    assert keys[KEPT].hex() in vault_dump  # a dump shows bytea as hex: the control is found
    assert keys[ERASED].hex() not in vault_dump
    assert ids[ERASED] not in _plain_dump(urls["data"])


def test_reapplying_refuses_while_a_replica_is_registered(pg_env):
    from twin.catalog import postgres_settings_of
    from twin.storage.postgresql.service_guard import PostgresServiceGuard
    from twin.storage.service_guard import Holder

    registration = PostgresServiceGuard(postgres_settings_of("privacy_vault", Config.from_env(pg_env))) \
        .register(Holder("service", "twin serve", host="replica-1"))
    try:
        refused = twin(pg_env, "db", "reapply-tombstones")
        assert refused.returncode == 2
        assert "in use by a running service: twin serve" in refused.stderr and "replica-1" in refused.stderr
    finally:
        registration.release()
