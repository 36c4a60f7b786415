"""A restore cannot resurrect an erased learner: `twin db restore` carries the erasure
tombstones of the live vault, or of an erasure log kept outside the backup sets, into the
restored pair and re-applies them before anything is served. Checked over a real server, and
in the bytes: every page of the restored files, decrypted, holds neither the subject's wrapped
data key nor their profile's ciphertext."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compliance.audit import Actor
from compliance.keyring import Keyring
from twin.config import Config
from twin.operations.backups import pending_log_path
from twin.operations.erasure_log import vault_tombstones, write_log
from twin.runtime import Runtime

from cli_support import operator_env, running_server, twin
from sqlcipher_pages import file_holds

ERASED, KEPT = "erased-after-the-backup", "kept-learner"
ADMIN = Actor("test:ops", "admin")


@pytest.fixture
def deployment(tmp_path):
    """Two learners, then a backup set of both databases."""
    env = operator_env(tmp_path)
    assert twin(env, "keys", "generate").returncode == 0
    issued = twin(env, "tokens", "issue", "--role", "admin", "--label", "ops")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    rt = _runtime(env)
    try:
        ids = {user: rt.profiles.create(ADMIN, None, {"user_id": user, "personal": {
            "name": f"Name of {user}"}})[0]["profile_id"] for user in (ERASED, KEPT)}
    finally:
        rt.close()
    held = _held_bytes(env, ids)
    backup = tmp_path / "backup-set"
    assert twin(env, "db", "backup", "--out", str(backup)).returncode == 0
    return env, token, ids, held, backup


def _runtime(env) -> Runtime:
    return Runtime.open(Config.from_env(env))


def _held_bytes(env, ids) -> dict[str, dict[str, bytes]]:
    """Per learner, the bytes only they have: their wrapped data key and profile ciphertext."""
    rt = _runtime(env)
    try:
        held = {}
        for user, profile_id in ids.items():
            subject = rt.hasher.hash(user)
            key = rt.vault_db.query_one("SELECT wrapped_key FROM subject_keys WHERE user_id_hash = ?",
                                        (subject,))[0]
            sealed = rt.twin_db.query_one("SELECT encrypted_data FROM learning_profiles "
                                          "WHERE profile_id = ?", (profile_id,))[0]
            held[user] = {"wrapped_key": bytes(key), "profile": bytes(sealed)}
        return held
    finally:
        rt.close()


def _erase(env) -> None:
    erased = twin(env, "dsr", "erase", "--user-id", ERASED, "--yes")
    assert erased.returncode == 0 and '"verified": true' in erased.stdout, erased.stderr


def _files(env) -> tuple[Path, Path]:
    data = Path(env["TWIN_DATA_DIR"])
    return data / "privacy_vault.db", data / "digital_twin.db"


def _assert_erased_everywhere(env, token, ids, held, log: Path) -> None:
    key = Keyring.load(Path(env["TWIN_KEYRING_PATH"]), production=False).database_key
    vault, data = _files(env)
    for path in (vault, data):
        assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    # The kept learner's bytes are found: the pages decrypted, so an absence means something.
    # (Booleans first: a failure must not print key material.)
    found = {(user, what): file_holds(vault if what == "wrapped_key" else data, key, held[user][what])
             for user in (ERASED, KEPT) for what in ("wrapped_key", "profile")}
    assert found == {(ERASED, "wrapped_key"): False, (ERASED, "profile"): False,
                     (KEPT, "wrapped_key"): True, (KEPT, "profile"): True}
    with running_server(env, token, log) as (api, _):
        assert api("GET", f"/v1/profiles/{ids[ERASED]}")[0] == 404
        assert api("POST", "/v1/profiles/lookup", {"user_id": ERASED})[0] == 404
        status, body = api("GET", f"/v1/profiles/{ids[KEPT]}")
        assert status == 200 and body["personal"] == {"name": f"Name of {KEPT}"}


def test_a_learner_erased_after_the_backup_is_never_served_after_a_restore_and_their_key_is_gone(
        deployment, tmp_path):
    env, token, ids, held, backup = deployment
    _erase(env)

    restored = twin(env, "db", "restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "1 erasure tombstone(s) carried" in restored.stdout
    _assert_erased_everywhere(env, token, ids, held, tmp_path / "after.log")


def test_with_the_live_vault_lost_an_erasure_log_kept_outside_the_backups_stands_in_for_it(
        deployment, tmp_path):
    env, token, ids, held, backup = deployment
    _erase(env)
    offsite = tmp_path / "offsite" / "erasure-log.json"
    written = twin(env, "db", "erasure-log", "--out", str(offsite))
    assert written.returncode == 0 and "1 erasure tombstone(s) written" in written.stdout
    assert ERASED not in offsite.read_text() and oct(offsite.stat().st_mode & 0o777) == "0o600"
    vault, _ = _files(env)
    for lost in (vault, Path(str(vault) + "-wal"), Path(str(vault) + "-shm")):
        lost.unlink(missing_ok=True)  # the disk holding the live vault is gone

    refused = twin(env, "db", "restore", str(backup), "--yes")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "no live vault" in line and "--tombstones FILE" in line
    assert not vault.exists()  # nothing was restored

    restored = twin(env, "db", "restore", str(backup), "--yes", "--tombstones", str(offsite))
    assert restored.returncode == 0, restored.stderr
    _assert_erased_everywhere(env, token, ids, held, tmp_path / "after.log")


def test_an_edited_erasure_log_is_refused_and_nothing_is_replaced(deployment, tmp_path):
    env, token, ids, held, backup = deployment
    _erase(env)
    log = tmp_path / "erasure-log.json"
    assert twin(env, "db", "erasure-log", "--out", str(log)).returncode == 0
    doc = json.loads(log.read_text())
    doc["log"]["tombstones"] = []  # someone removes the erasure
    log.write_text(json.dumps(doc))

    refused = twin(env, "db", "restore", str(backup), "--yes", "--tombstones", str(log))
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "does not authenticate under this keyring" in line
    rt = _runtime(env)
    try:  # the live vault was not replaced: the erasure stands
        assert [t.user_id_hash for t in vault_tombstones(rt.vault_db)] == [rt.hasher.hash(ERASED)]
    finally:
        rt.close()


def test_a_restore_interrupted_after_replacing_the_files_keeps_the_tombstones_it_was_carrying(
        deployment, tmp_path):
    env, token, ids, held, backup = deployment
    _erase(env)
    config = Config.from_env(env)
    rt = _runtime(env)
    carried, keyring = vault_tombstones(rt.vault_db), rt.keyring
    rt.close()
    # What a crash between replacing the files and merging leaves: the pending log, and the
    # backup's vault (without the tombstone) in place.
    write_log(pending_log_path(config), carried, keyring)
    vault, _ = _files(env)
    vault.write_bytes((backup / "privacy_vault.db").read_bytes())
    for stale in (Path(str(vault) + "-wal"), Path(str(vault) + "-shm")):
        stale.unlink(missing_ok=True)

    restored = twin(env, "db", "restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert not pending_log_path(config).exists()
    _assert_erased_everywhere(env, token, ids, held, tmp_path / "after.log")
