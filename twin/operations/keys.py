"""Key rotation: a new field key (online), rewrapping (online), a database rekey (offline).

- Replicas sharing one vault rotate in two steps (``distribute_field_key``, then
  ``activate_field_key``; see compliance/keyring_record.py), so no replica meets a ciphertext
  under a key it does not hold yet.
- A field-key rotation adds a version to the keyring and makes it active; the rewrap then
  re-encrypts every subject key and sensitive setting under it, batch by batch. A running
  service reads old and new versions throughout and picks the new keyring up by itself.
- A database rekey gives every file a new SQLCipher key. A running service would find its
  files under a key it does not hold, so the caller holds the live-service guard. The new
  key is saved (with the old one as ``previous_database_key``) before any file changes, so a
  crash midway leaves every file openable and a second run finishes the job.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from compliance import keyring_record
from compliance.audit_seals import SealBook
from compliance.field_crypto import FieldCipher
from compliance.keyring import Keyring
from compliance.subject_keys import SubjectKeyStore

from ..catalog import audit_archive, open_database
from ..config import Config
from ..storage import DamagedDatabaseError, Database, WrongKeyError
from ..storage.maintenance import checkpoint, integrity_check
from ..storage.progress import ProgressFactory, silent

log = logging.getLogger(__name__)


def distribute_field_key(keyring: Keyring, keyring_path: Path, config: Config) -> Keyring:
    """Step 1 of a two-step rotation: add a field-key version that no one encrypts under yet,
    save the keyring and record it in the vault. Copy the keyring to every replica next."""
    added = replace(keyring.with_new_field_key(), active_field_key=keyring.active_field_key)
    _record(added, config)
    added.save(keyring_path)
    return added


def activate_field_key(keyring: Keyring, keyring_path: Path, config: Config) -> Keyring:
    """Step 2: encrypt under the newest field-key version from now on (it must have been
    distributed: recorded in the vault by step 1); save and record the keyring."""
    newest = max(keyring.field_keys)
    activated = replace(keyring, active_field_key=newest)

    def check_distributed(vault: Any) -> None:
        record = keyring_record.recorded(vault)
        if record is None or str(newest) not in record["field_keys"]:
            raise keyring_record.KeyringMismatchError(
                f"field key v{newest} was never distributed: run `twin keys rotate "
                "--distribute-field-key` and copy the keyring to every replica first")
        keyring_record.record(vault, activated)
    _with_vault(config, keyring, check_distributed)
    activated.save(keyring_path)
    return activated


def _record(keyring: Keyring, config: Config) -> None:
    _with_vault(config, keyring, lambda vault: keyring_record.record(vault, keyring))


def _with_vault(config: Config, keyring: Keyring, fn: Callable[[Any], None]) -> None:
    vault = open_database("privacy_vault", config, keyring.database_keys)
    try:
        fn(vault)
    finally:
        vault.close_all()


def add_field_key(keyring: Keyring, keyring_path: Path) -> Keyring:
    """Add a field-key version, make it active and save the keyring."""
    rotated = keyring.with_new_field_key()
    rotated.save(keyring_path)
    return rotated


@dataclass(frozen=True)
class Rewrapped:
    subject_keys: int
    settings: int
    archive_segments: int  # audit archive segments whose data key was rewrapped


def rewrap(config: Config, keyring: Keyring, batch_size: int, *,
           progress: ProgressFactory = silent) -> Rewrapped:
    """Re-wrap what is not under the active field key: subject keys, settings values, and the
    data keys of the audit archive's segments (all through ``compliance.envelope.rewrap``), so
    no older field key is needed afterwards. A damaged segment raises ``AuditArchiveError``
    after the rest."""
    from ..settings_store.store import SettingsStore

    cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
    vault = open_database("privacy_vault", config, keyring.database_keys)
    try:
        keys = SubjectKeyStore(vault, cipher)
        done = 0
        with progress("rewrap subject keys", keys.count_needing_rewrap(), "keys") as bar:
            while n := keys.rewrap_batch(batch_size):
                done += n
                bar.update(n)
        settings_db = open_database("settings", config, keyring.database_keys)
        try:
            settings = SettingsStore(settings_db, cipher).rewrap_sensitive(batch_size)
        finally:
            settings_db.close_all()
        archive = audit_archive(vault, config, cipher, SealBook(keyring.audit_seal_key, config.audit_seal_every))
        segments = archive.rewrap(progress=progress)
    finally:
        vault.close_all()
    return Rewrapped(done, settings, segments)


@dataclass(frozen=True)
class RekeyStep:
    name: str
    path: Path
    outcome: str  # "rekeyed", "already under the new key", "would be rekeyed"


def rekey_databases(keyring: Keyring, keyring_path: Path, files: Sequence[tuple[str, Path]], *,
                    dry_run: bool = False, progress: ProgressFactory = silent) -> list[RekeyStep]:
    """Give every existing file in ``files`` a new SQLCipher key; resumes an interrupted run."""
    existing = [(name, path) for name, path in files if path.exists()]
    for name, path in existing:  # every file must open before the keyring changes
        _probe(name, path, [k for k in (keyring.database_key, keyring.previous_database_key) if k])
    if dry_run:
        return [RekeyStep(name, path, "would be rekeyed") for name, path in existing]
    if keyring.previous_database_key is None:
        # 1. Save the new key with the old one kept as "previous" before touching any file: a
        #    crash below leaves every file openable (open_database falls back to "previous"),
        #    and running this again resumes with the same new key.
        keyring = replace(keyring, database_key=os.urandom(32),
                          previous_database_key=keyring.database_key)
        keyring.save(keyring_path)
    old, new = keyring.previous_database_key, keyring.database_key
    steps = []
    with progress("rekey databases", len(existing), "files") as bar:
        for name, path in existing:
            db = Database(path, old, name=name)
            try:
                checkpoint(db, "TRUNCATE")
            except WrongKeyError:
                db.close_all()
                steps.append(RekeyStep(name, path, "already under the new key"))
                bar.update(1)
                continue
            db.connection().execute(f"PRAGMA rekey = \"x'{new.hex()}'\"")
            db.close_all()
            log.info("%s: rekeyed", path)
            steps.append(RekeyStep(name, path, "rekeyed"))
            bar.update(1)
    # 2. Every file is under the new key: forget the old one.
    replace(keyring, previous_database_key=None).save(keyring_path)
    return steps


def _probe(name: str, path: Path, keys: list[bytes]) -> None:
    """Raise the bad-file error of ``path`` (under the first key) unless a key opens it and
    every page authenticates: ``PRAGMA rekey`` would re-encrypt a damaged page under the new
    key without a word, so damage must stop the rekey before it starts."""
    first: WrongKeyError | None = None
    for key in keys:
        db = Database(path, key, name=name)
        try:
            db.query_one("SELECT count(*) FROM sqlite_master")
            if integrity_check(db) != ["ok"]:
                raise DamagedDatabaseError(path)
            return
        except WrongKeyError as exc:
            first = first or exc
        finally:
            db.close_all()
    assert first is not None
    raise first
