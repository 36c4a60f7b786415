"""Backup sets of a deployment's databases: take, check keys, verify, restore.

A backup set is the storage core's (``twin.storage.backup``) for every selected catalog
database, plus, in the manifest, the field-key versions the data needs (by fingerprint, never
the keys): the privacy vault's subject keys and settings' sensitive values are wrapped by
field keys, so a keyring that opens the files may still lack a version the data needs.

Restoring replaces live files, so the caller holds the live-service guard. The twin and the
vault are a pair (the vault holds the twin's subjects' data keys); a restore carries
erasure tombstones recorded after the backup (from the live vault, or from erasure logs:
``erasure_log``) into the restored vault, and re-applies every tombstone before anything can
be served. The vault's audit archive segments go with it (``archive_backup``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from compliance.field_crypto import key_id_of
from compliance.keyring import Keyring

from ..catalog import database_path, open_database, spec_for
from ..config import Config
from ..storage import (BackupEntry, BackupVerificationError, Database, FileBacked, Manifest, StorageError,
                       backup_database, load_manifest, restore_database, verify_backup_entry,
                       write_manifest)
from ..storage.progress import ProgressFactory, silent
from . import archive_backup
from .erasure_log import Tombstone, latest, merge_tombstones, read_log, vault_tombstones, write_log

log = logging.getLogger(__name__)

# The vault holds the twin's per-subject data keys: these two are only consistent together.
PAIRED = frozenset({"digital_twin", "privacy_vault"})

# Where field-key ciphertexts live, per database: (SQL selecting the key version, or a
# ciphertext whose header names it).
_FIELD_KEY_USERS = {
    "privacy_vault": ("SELECT DISTINCT key_version FROM subject_keys", False),
    "settings": ("SELECT value FROM configurations WHERE is_sensitive = 1", True),
}


@dataclass(frozen=True)
class TakenBackup:
    directory: Path
    entries: list[BackupEntry]
    field_key_versions: list[int]
    archive_segments: list[archive_backup.Record] | None = None  # None: no archive beside the vault


def _field_key_versions(db: Database, copy: Path) -> set[int]:
    sql, ciphertexts = _FIELD_KEY_USERS.get(db.name, (None, False))
    if sql is None:
        return set()
    conn = db.open_file(copy, read_only=True)
    try:
        rows = conn.execute(sql).fetchall()
    finally:
        conn.close()
    return {key_id_of(bytes(r[0])) if ciphertexts else int(r[0]) for r in rows if r[0] is not None}


def take_backup(config: Config, keyring: Keyring, names: Iterable[str], out: Path, *,
                progress: ProgressFactory = silent) -> TakenBackup:
    """Back up ``names`` into ``out`` and write its manifest (with the keys it needs, and the
    vault's audit archive segments)."""
    entries, versions, attached = [], set(), {}
    for name in names:
        db = open_database(name, config, keyring.database_keys)
        try:
            if name == "privacy_vault" and isinstance(db, FileBacked):
                entry, segments = _vault_with_archive(db, out, progress)
                attached[archive_backup.ATTACHED] = segments
                versions |= {seg["field_key"] for seg in segments}  # their data keys' wrapping
            else:
                entry = backup_database(db, out, progress=progress)
            versions |= _field_key_versions(db, out / entry.file)
        finally:
            db.close_all()
        entries.append(entry)
    fingerprints = keyring.field_key_fingerprints()
    write_manifest(out, entries, keys={
        "field_keys": {str(v): fingerprints.get(v) for v in sorted(versions)}}, attached=attached)
    return TakenBackup(out, entries, sorted(versions), attached.get(archive_backup.ATTACHED))


def _vault_with_archive(db: Database, out: Path, progress: ProgressFactory,
                        attempts: int = 3) -> tuple[BackupEntry, list[archive_backup.Record]]:
    """The vault's copy, then the archive segments that copy lists; taken again when retention
    or a rewrap changes a listed segment in between (a segment that still does not match its
    index on the last attempt is damaged: the backup fails naming it)."""
    for attempt in range(1, attempts + 1):
        entry = backup_database(db, out, progress=progress)
        try:
            return entry, archive_backup.back_up(db, out / entry.file, out)
        except archive_backup.ArchiveChangedError:
            if attempt == attempts:
                raise
            log.info("backup: an archive segment changed meanwhile; copying the vault again")
    raise AssertionError("unreachable")


def field_key_problems(manifest: Manifest, keyring: Keyring) -> list[str]:
    """What the backup's data needs that this keyring lacks (field-key versions), one line each."""
    held = keyring.field_key_fingerprints()
    problems = []
    needed = manifest.keys.get("field_keys", {})
    for version, fingerprint in sorted(needed.items(), key=lambda kv: int(kv[0])):
        mine = held.get(int(version))
        if mine is None:
            problems.append(f"the backup needs field key v{version} (fingerprint {fingerprint}); "
                            f"this keyring holds v{', v'.join(map(str, held))}")
        elif fingerprint and mine != fingerprint:
            problems.append(f"the backup needs field key v{version} with fingerprint {fingerprint}; "
                            f"this keyring's v{version} is {mine}")
    return problems


def backup_file_db(directory: Path, entry: BackupEntry, config: Config, keyring: Keyring) -> Database:
    """A ``Database`` over a backup copy, under the key the deployment uses."""
    key = None if config.bench_plaintext else keyring.database_key
    return Database(Path(directory) / entry.file, key, name=entry.name)


def verify_set(directory: Path, names: Sequence[str], config: Config,
               keyring: Keyring) -> list[tuple[str, str | None]]:
    """(database, problem or None) for each selected entry, then ("keys", problem) for each
    field key the set needs and this keyring lacks."""
    manifest = load_manifest(directory)
    results: list[tuple[str, str | None]] = []
    for entry in (e for e in manifest.entries if e.name in names):
        db = backup_file_db(directory, entry, config, keyring)
        try:
            verify_backup_entry(directory, entry, db)
        except BackupVerificationError as exc:
            results.append((entry.name, str(exc)))
            continue
        archive = archive_backup.problems(directory, manifest, db, entry.file) \
            if entry.name == "privacy_vault" else []
        results.extend((entry.name, problem) for problem in archive or [None])
    results.extend(("keys", problem) for problem in field_key_problems(manifest, keyring))
    return results


class RestoreRefusedError(BackupVerificationError):
    """The set cannot be restored with this keyring, or not as asked."""


def plan_restore(directory: Path, names: Sequence[str], config: Config, keyring: Keyring, *,
                 allow_half_pair: bool) -> list[BackupEntry]:
    """The entries a restore would replace, each verified (checksum, key, integrity) and the
    field keys checked, before anything is touched."""
    manifest = load_manifest(directory)
    entries = [e for e in manifest.entries if e.name in names]
    if not entries:
        raise RestoreRefusedError("the backup set holds none of the selected databases")
    half = sorted(PAIRED & {e.name for e in entries})
    if len(half) == 1 and not allow_half_pair:
        raise RestoreRefusedError(
            f"restoring {half[0]} without its pair ({' and '.join(sorted(PAIRED))} "
            "share the subjects' data keys) makes data of subjects created after the backup "
            "unreadable; restore both or pass --force")
    for entry in entries:
        db = backup_file_db(directory, entry, config, keyring)
        verify_backup_entry(directory, entry, db)
        archive = archive_backup.problems(directory, manifest, db, entry.file) \
            if entry.name == "privacy_vault" else []
        if archive:
            raise RestoreRefusedError(archive[0])
    problems = field_key_problems(manifest, keyring)
    if problems:
        raise RestoreRefusedError(f"{problems[0]}; load the keyring the backup was taken with")
    return entries


def pending_log_path(config: Config) -> Path:
    """Where a restore keeps the tombstones it is carrying until they are merged: beside the
    vault, outside every backup set."""
    vault = database_path(spec_for("privacy_vault"), config)
    return vault.with_name(vault.name + ".restore-tombstones.json")


class LiveVaultUnreadableError(RestoreRefusedError):
    """The live vault's tombstones cannot be carried, and no erasure log stands in for them."""


def carried_tombstones(config: Config, keyring: Keyring, logs: Sequence[Path] = (), *,
                       without_live_vault: bool = False) -> list[Tombstone]:
    """The tombstones a restore of the vault must keep: the live vault's, an interrupted
    restore's, and those of the erasure logs given. Refuses when the live vault cannot be read
    and neither a log nor ``without_live_vault`` says what stands in for it."""
    tombstones: list[Tombstone] = []
    vault_path = database_path(spec_for("privacy_vault"), config)
    try:
        if not vault_path.exists():
            raise StorageError(f"{vault_path}: no live vault")
        vault = open_database("privacy_vault", config, keyring.database_keys, migrate=False)
        try:
            tombstones += vault_tombstones(vault)
        finally:
            vault.close_all()
    except StorageError as exc:
        if not (logs or without_live_vault):
            raise LiveVaultUnreadableError(
                f"{exc}; its erasure tombstones cannot be carried into the restored vault, so "
                "erased learners could come back: pass --tombstones FILE (an erasure log), or "
                "--force to restore without them") from None
        log.warning("restore: the live vault's tombstones cannot be read (%s)", exc)
    pending = pending_log_path(config)
    for path in ([pending] if pending.exists() else []) + list(logs):
        tombstones += read_log(path, keyring)
    return latest(tombstones)


def restore_set(directory: Path, entries: Sequence[BackupEntry], config: Config, keyring: Keyring, *,
                tombstones: Sequence[Tombstone] = (),
                progress: ProgressFactory = silent) -> dict[str, Any]:
    """Replace the live files with ``entries`` (from ``plan_restore``), keep ``tombstones``
    (``carried_tombstones``) and re-apply every tombstone. Hold the guard around it.

    The carried tombstones are written to the pending log first, and the log is removed only
    once they are merged and re-applied, so a crash in between loses none of them."""
    names = [e.name for e in entries]
    pending = pending_log_path(config)
    manifest, archived = load_manifest(directory), None
    carried = list(tombstones) if "privacy_vault" in names else []
    if carried:
        write_log(pending, carried, keyring)
    for entry in entries:
        db = open_database(entry.name, config, keyring.database_keys, migrate=False)
        staged = archive_backup.stage(directory, manifest, db.path) \
            if entry.name == "privacy_vault" and isinstance(db, FileBacked) else None
        restore_database(directory, entry, db, progress=progress)
        db.close_all()
        if staged is not None:
            archive_backup.swap_in(staged, db.path)
            archived = len(archive_backup.records(manifest) or [])
    if carried:
        vault = open_database("privacy_vault", config, keyring.database_keys)
        try:
            merge_tombstones(vault, carried)
        finally:
            vault.close_all()
    reapply_every_tombstone(config)
    pending.unlink(missing_ok=True)
    return {"restored": names, "tombstones_carried": len(carried), "archive_segments": archived}


def reapply_in_place(config: Config, keyring: Keyring, logs: Sequence[Path]) -> dict[str, Any]:
    """Databases restored by other means (PostgreSQL's own tools): merge the tombstones of
    ``logs`` into the vault, then re-apply every tombstone (the runtime's start-up does, with
    the one re-application function). Hold the guard around it."""
    carried = latest(t for path in logs for t in read_log(path, keyring))
    vault = open_database("privacy_vault", config, keyring.database_keys, migrate=False)
    try:
        merge_tombstones(vault, carried)
    finally:
        vault.close_all()
    reapply_every_tombstone(config)
    return {"tombstones_carried": len(carried)}


def reapply_every_tombstone(config: Config) -> None:
    """After a restore (of files, or by PostgreSQL's tools): re-apply every tombstone before
    anything is served, through the start-up's one re-application function (the runtime
    migrates SQLCipher files first)."""
    from ..runtime import Runtime

    # A matched pair restored from one set agrees on its erasure generation, yet the
    # tombstones carried into it are newer than its rows: every one is re-applied.
    Runtime.open(config, reapply_every_tombstone=True).close()
