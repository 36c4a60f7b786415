"""Rewriting a SQLCipher file under other page settings (``twin db recipher``): the migration
path of files written under any other known settings than ``cipher.CURRENT``.

SQLCipher cannot change a file's page size or HMAC in place, and the backup API copies pages
as they are, so the file is exported (``sqlcipher_export``) into a new file beside it under the
new settings, under the same key; the copy is verified (it opens under the new settings, every
page authenticates, every table holds as many rows, the schema version is the same) and only
then renamed over the original, so a crash at any point leaves the original or the verified
copy in place, never half of one. The original is not kept: a copy left behind would keep what
later erasures delete (take a backup first if one is wanted). The caller holds the files
against a running service (``service_guard``): nothing may write to the original meanwhile.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .cipher import CURRENT, CipherSettings
from .engine import Database
from .errors import StorageError
from .maintenance import checkpoint, integrity_check
from .paths import fsync_path
from .progress import ProgressFactory, silent


@dataclass(frozen=True)
class Recipher:
    name: str
    before: CipherSettings
    after: CipherSettings
    tables: int = 0
    rows: int = 0

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _counts(db: Database) -> dict[str, int]:
    return {t: int(db.query_one(f'SELECT count(*) FROM "{t}"')[0]) for t in db.table_names()}


def recipher(db: Database, target: CipherSettings = CURRENT, *, dry_run: bool = False,
             progress: ProgressFactory = silent) -> Recipher:
    """Rewrite ``db``'s file under ``target`` (nothing to do when it has them already); ``db``
    is closed and reopens on the new file. ``progress`` counts export, tables verified, swap."""
    before = db.cipher
    if before is None:
        raise StorageError(f"{db.name}: an unencrypted file has no cipher settings")
    if before == target or dry_run:
        return Recipher(db.name, before, before if dry_run else target)
    source_counts = _counts(db)
    version = _schema_version(db)
    checkpoint(db, "TRUNCATE")  # the WAL folded in: the export reads the file as committed
    scratch = db.path.with_name(f".{db.path.name}.recipher-{secrets.token_hex(4)}")
    try:
        with progress(f"recipher {db.name}", len(source_counts) + 2, "steps") as bar:
            _export(db, scratch, target)
            bar.update(1)
            copy = db.sibling(scratch)
            try:
                _verify(db.name, copy, target, source_counts, version, tick=lambda: bar.update(1))
                copy.execute("PRAGMA journal_mode = DELETE")  # one file to rename, no WAL beside it
            finally:
                copy.close_all()
            fsync_path(scratch)
            db.close_all()
            for side in (Path(f"{db.path}-wal"), Path(f"{db.path}-shm")):
                side.unlink(missing_ok=True)  # empty after the checkpoint; the old file's
            os.replace(scratch, db.path)
            fsync_path(db.path.parent)
            bar.update(1)
    finally:
        for leftover in (scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm"), Path(f"{scratch}-journal")):
            leftover.unlink(missing_ok=True)
    return Recipher(db.name, before, target, len(source_counts), sum(source_counts.values()))


def _schema_version(db: Database) -> int:
    if "schema_version" not in db.table_names():
        return 0
    return int(db.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0])


def _export(db: Database, scratch: Path, target: CipherSettings) -> None:
    conn = db.connect_new()
    try:
        db.attach(conn, scratch, "recipher")
        target.apply(conn, "recipher")
        conn.execute("PRAGMA recipher.auto_vacuum = INCREMENTAL")  # before its first table
        conn.execute("SELECT sqlcipher_export('recipher')").fetchall()
        conn.execute("DETACH DATABASE recipher")
    finally:
        conn.close()


def _verify(name: str, copy: Database, target: CipherSettings, counts: dict[str, int], version: int,
            tick: Callable[[], object]) -> None:
    problems = []
    if copy.cipher != target:
        problems.append(f"opens under {copy.cipher}, not {target}")
    if integrity_check(copy) != ["ok"]:
        problems.append("integrity check failed")
    copied = _counts(copy)
    for table, rows in counts.items():
        if copied.get(table) != rows:
            problems.append(f"{table}: {copied.get(table)} rows, not {rows}")
        tick()
    if _schema_version(copy) != version:
        problems.append(f"schema version {_schema_version(copy)}, not {version}")
    if problems:
        raise StorageError(f"{name}: the rewritten copy failed verification ({'; '.join(problems)}); "
                           "the original is unchanged")
