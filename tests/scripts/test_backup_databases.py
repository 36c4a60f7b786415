"""scripts/backup_databases.py restores: erasures recorded after the backup win, and a
half restore of the twin/vault pair is refused unless forced."""

from __future__ import annotations


import pytest

from compliance.audit import Actor
from twin.config import Config
from twin.runtime import Runtime

ADMIN = Actor("t", "admin")


@pytest.fixture
def open_runtime(env, keyring):
    return lambda: Runtime.open(Config.from_env(env))


def _profiles_of(rt: Runtime, user_id: str) -> int:
    return rt.twin_db.query_one("SELECT count(*) FROM learning_profiles WHERE user_id_hash = ?",
                                (rt.hasher.hash(user_id),))[0]


def test_a_second_erasure_after_the_backup_survives_a_restore_holding_an_older_tombstone(
        open_runtime, run_script, tmp_path):
    rt = open_runtime()
    subject = rt.hasher.hash("returner")
    rt.profiles.create(ADMIN, None, {"user_id": "returner", "personal": {"x": 1}})
    rt.subject_requests.erase(ADMIN, None, user_id="returner")
    rt.profiles.create(ADMIN, None, {"user_id": "returner", "personal": {"x": 2}})  # came back
    rt.close()
    assert run_script("backup_databases.py", "--out", str(tmp_path / "bk")).returncode == 0
    rt = open_runtime()
    second = rt.subject_requests.erase(ADMIN, None, user_id="returner")
    rt.close()

    restored = run_script("backup_databases.py", "--restore", str(tmp_path / "bk"), "--yes")
    assert restored.returncode == 0, restored.stderr
    rt = open_runtime()
    try:
        assert _profiles_of(rt, "returner") == 0
        assert not rt.keys.has_key(subject)
        tombstone = rt.vault_db.query_one("SELECT receipt_id, erased_at FROM erasure_tombstones "
                                          "WHERE user_id_hash = ?", (subject,))
        assert (tombstone["receipt_id"], tombstone["erased_at"]) == (second.receipt_id, second.erased_at)
    finally:
        rt.close()


def test_a_restore_keeps_the_newer_tombstone_of_the_backup_over_an_older_live_one(
        open_runtime, run_script, tmp_path):
    rt = open_runtime()
    rt.profiles.create(ADMIN, None, {"user_id": "twice"})
    rt.subject_requests.erase(ADMIN, None, user_id="twice")
    newest = rt.vault_db.query_one("SELECT erased_at FROM erasure_tombstones")[0]
    rt.close()
    assert run_script("backup_databases.py", "--out", str(tmp_path / "bk")).returncode == 0
    rt = open_runtime()  # the live tombstone is made older than the backup's one
    rt.vault_db.execute("UPDATE erasure_tombstones SET erased_at = '2000-01-01T00:00:00.000000Z'")
    rt.close()
    assert run_script("backup_databases.py", "--restore", str(tmp_path / "bk"), "--yes").returncode == 0
    rt = open_runtime()
    try:
        assert rt.vault_db.query_one("SELECT erased_at FROM erasure_tombstones")[0] == newest
    finally:
        rt.close()


@pytest.mark.parametrize("database", ["privacy_vault", "digital_twin"])
def test_restoring_one_of_the_twin_vault_pair_alone_is_refused_without_force(
        open_runtime, run_script, tmp_path, database):
    rt = open_runtime()
    rt.profiles.create(ADMIN, None, {"user_id": "before"})
    rt.close()
    assert run_script("backup_databases.py", "--out", str(tmp_path / "bk")).returncode == 0
    rt = open_runtime()
    rt.profiles.create(ADMIN, None, {"user_id": "after-backup", "personal": {"v": "kept"}})
    rt.close()

    refused = run_script("backup_databases.py", "--restore", str(tmp_path / "bk"), "--database", database, "--yes")
    assert refused.returncode == 2
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    rt = open_runtime()
    try:  # nothing was replaced
        assert _profiles_of(rt, "after-backup") == 1 and rt.keys.has_key(rt.hasher.hash("after-backup"))
    finally:
        rt.close()

    forced = run_script("backup_databases.py", "--restore", str(tmp_path / "bk"), "--database", database,
                        "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"{database:<18} restored" in forced.stdout


def test_force_is_documented_in_the_help(run_script):
    assert "--force" in run_script("backup_databases.py", "--help").stdout
