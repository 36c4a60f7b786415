"""Encrypted online backups with a checksum manifest; verify and restore.

A backup set is a directory holding one encrypted copy per database (taken with SQLite's
online backup API while the service runs, so readers and writers are not stopped) and a
``manifest.json`` with each file's SHA-256, size, schema version and the fingerprint of the key
it is encrypted under (never the key), plus whatever the caller records about the keys the
data needs (``keys``: e.g. field-key versions) and about files it stored beside the databases
(``attached``: e.g. their checksums; the caller copies and checks those). Copies stay encrypted
under the same SQLCipher key: a backup on another disk is as unreadable as the original.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlcipher3

from .engine import Database, bad_file_error
from .errors import BackupError, BackupVerificationError, StorageError, WrongKeyError
from .paths import fsync_path
from .progress import ProgressFactory, silent

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "learner-twin-backup/2"
READABLE_FORMATS = ("learner-twin-backup/1", MANIFEST_FORMAT)  # /1: no key fingerprints


@dataclass(frozen=True)
class BackupEntry:
    name: str
    file: str
    sha256: str
    size: int
    schema_version: int
    page_count: int
    key_fingerprint: str | None = None  # the SQLCipher key's fingerprint (None: unencrypted)


@dataclass(frozen=True)
class Manifest:
    entries: list[BackupEntry]
    created_at: str | None = None
    keys: dict[str, Any] = field(default_factory=dict)  # what the caller recorded (no key bytes)
    attached: dict[str, Any] = field(default_factory=dict)  # files the caller stored beside them


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _schema_version(conn: Any) -> int:
    try:
        return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])
    except (sqlcipher3.OperationalError,):
        return 0


def backup_database(db: Database, dest_dir: Path, *, pages_per_step: int = 4096,
                    progress: ProgressFactory = silent) -> BackupEntry:
    """Copy ``db`` into ``dest_dir/<name>.db`` with the online backup API.

    The copy is written to a ``.partial`` file and renamed only when complete, so an
    interrupted backup never looks like a finished one.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = dest_dir / f"{db.name}.db"
    partial = dest_dir / f"{db.name}.db.partial"
    for leftover in (partial, Path(str(partial) + "-wal"), Path(str(partial) + "-shm")):
        leftover.unlink(missing_ok=True)
    source = db.connect_new()
    try:
        target = db.open_file(partial)
        try:
            total = int(source.execute("PRAGMA page_count").fetchone()[0])
            with progress(f"backup {db.name}", total, "pages") as bar:
                copied = [0]

                def step(_status: int, remaining: int, pages: int) -> None:
                    bar.update(pages - remaining - copied[0])
                    copied[0] = pages - remaining
                source.backup(target, pages=pages_per_step, progress=step)
            # A standalone copy: fold any WAL into the file and leave rollback-journal mode.
            target.execute("PRAGMA journal_mode = DELETE")
            schema_version = _schema_version(target)
            page_count = int(target.execute("PRAGMA page_count").fetchone()[0])
        finally:
            target.close()
    except sqlcipher3.Error as exc:
        partial.unlink(missing_ok=True)
        bad = bad_file_error(db.path, db._key, exc)  # noqa: SLF001 - the same classification
        raise (bad or BackupError(f"backup of {db.name} failed: {exc}")) from None
    finally:
        source.close()
    fsync_path(partial)
    os.replace(partial, final)
    return BackupEntry(db.name, final.name, sha256_file(final), final.stat().st_size,
                       schema_version, page_count, db.key_fingerprint)


def write_manifest(dest_dir: Path, entries: list[BackupEntry],
                   keys: dict[str, Any] | None = None, attached: dict[str, Any] | None = None) -> Path:
    """Write the manifest of a backup set atomically. ``keys``: what the data needs besides
    the files' own keys (fingerprints and versions only, never key bytes); ``attached``: what
    the caller records about files it stored in the set besides the databases."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "databases": [asdict(e) for e in entries],
        "keys": keys or {},
    }
    if attached:
        manifest["attached"] = attached
    path = Path(dest_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_manifest(backup_dir: Path) -> Manifest:
    path = Path(backup_dir) / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") not in READABLE_FORMATS:
            raise BackupVerificationError(f"{path}: not a {MANIFEST_FORMAT} manifest")
        return Manifest([BackupEntry(**e) for e in doc["databases"]], doc.get("created_at"),
                        dict(doc.get("keys") or {}), dict(doc.get("attached") or {}))
    except FileNotFoundError:
        raise BackupVerificationError(f"{path}: manifest missing") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupVerificationError(f"{path}: manifest unreadable ({type(exc).__name__})") from None


def read_manifest(backup_dir: Path) -> list[BackupEntry]:
    return load_manifest(backup_dir).entries


def verify_backup_entry(backup_dir: Path, entry: BackupEntry, db: Database) -> None:
    """Check one backed-up file: checksum, then decryptability and ``PRAGMA integrity_check``."""
    path = Path(backup_dir) / entry.file
    if not path.exists():
        raise BackupVerificationError(f"{entry.name}: backup file {entry.file} is missing")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise BackupVerificationError(f"{entry.name}: checksum mismatch (file changed since backup)")
    try:
        conn = db.open_file(path, read_only=True)
        try:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except WrongKeyError:
        needed = (f"; the backup needs the key with fingerprint {entry.key_fingerprint}"
                  if entry.key_fingerprint and entry.key_fingerprint != db.key_fingerprint else
                  " (the key it was taken under: the copy is damaged)" if entry.key_fingerprint else "")
        raise BackupVerificationError(
            f"{entry.name}: cannot be decrypted with the current key (fingerprint "
            f"{db.key_fingerprint}){needed}") from None
    except (sqlcipher3.Error, StorageError) as exc:
        raise BackupVerificationError(f"{entry.name}: unreadable ({exc})") from None
    if result != ["ok"]:
        raise BackupVerificationError(f"{entry.name}: integrity_check failed: {'; '.join(result[:3])}")


def restore_database(backup_dir: Path, entry: BackupEntry, db: Database, *,
                     progress: ProgressFactory = silent) -> None:
    """Replace ``db``'s file with a verified backup copy.

    The service must not be writing to ``db`` (callers hold the live-service guard,
    ``twin.storage.service_guard``); this object's own connections are closed. The copy
    lands under a temporary name and is renamed into place atomically.
    """
    verify_backup_entry(backup_dir, entry, db)
    db.close_all()
    source = Path(backup_dir) / entry.file
    tmp = db.path.with_name(db.path.name + ".restoring")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    mib = -(-entry.size // (1 << 20))
    with open(source, "rb") as src, open(fd, "wb") as dst, progress(f"restore {db.name}", mib, "MiB") as bar:
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
            bar.update(1)
        dst.flush()
        os.fsync(dst.fileno())
    for suffix in ("-wal", "-shm"):
        Path(str(db.path) + suffix).unlink(missing_ok=True)
    os.replace(tmp, db.path)
    log.info("%s: restored from backup %s", db.name, Path(backup_dir).name)
