"""Encrypted online backups: manifest, verification, restore, and what is refused."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from twin.storage import (BackupVerificationError, Database, Migration, Migrator, backup_database,
                          key_fingerprint, read_manifest, restore_database, verify_backup_entry,
                          write_manifest)
from twin.storage.backup import MANIFEST_NAME, sha256_file

# Runs once per backend; every test here is about one SQLite file.
pytestmark = [pytest.mark.sqlite_only('file backups (PostgreSQL: pg_dump / base backups)'), pytest.mark.usefixtures("backend")]

MARKER = "BACKUP-MARKER-learner-ada"

MIGRATIONS = [Migration(1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);",
                        "DROP TABLE items;")]


@pytest.fixture
def db(tmp_path, db_key):
    database = Database(tmp_path / "live" / "app.db", db_key, name="app")
    database.path.parent.mkdir(mode=0o700)
    Migrator(database, MIGRATIONS).migrate()
    with database.transaction() as conn:
        conn.executemany("INSERT INTO items (id, name) VALUES (?, ?)",
                         [(i, f"{MARKER}-{i}") for i in range(1, 201)])
    yield database
    database.close_all()


@pytest.fixture
def backup_dir(tmp_path) -> Path:
    return tmp_path / "backups" / "2024-01-01"


def _names(db: Database) -> list[str]:
    return [r["name"] for r in db.query("SELECT name FROM items ORDER BY id")]


def _take_backup(db: Database, backup_dir: Path):
    entry = backup_database(db, backup_dir)
    write_manifest(backup_dir, [entry])
    return entry


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- backup and manifest ---------------------------------------------------------------------

def test_backup_writes_a_copy_and_a_manifest_describing_it(db, db_key, backup_dir):
    entry = _take_backup(db, backup_dir)
    copy = backup_dir / entry.file
    assert entry.name == "app" and entry.file == "app.db"
    assert entry.sha256 == sha256_file(copy)
    assert entry.size == copy.stat().st_size
    assert entry.schema_version == 1
    assert entry.page_count * int(db.query_one("PRAGMA page_size")[0]) == entry.size
    assert read_manifest(backup_dir) == [entry]
    manifest = json.loads((backup_dir / MANIFEST_NAME).read_text())
    assert manifest["format"] == "learner-twin-backup/2"
    # Which key the copy needs, by fingerprint; never the key itself.
    assert manifest["databases"][0]["key_fingerprint"] == key_fingerprint(db_key) == entry.key_fingerprint
    assert db_key.hex() not in json.dumps(manifest)
    assert sorted(p.name for p in backup_dir.iterdir()) == ["app.db", MANIFEST_NAME]


def test_a_manifest_of_the_first_format_still_reads(db, backup_dir):
    entry = _take_backup(db, backup_dir)
    doc = json.loads((backup_dir / MANIFEST_NAME).read_text())
    del doc["databases"][0]["key_fingerprint"], doc["keys"]
    (backup_dir / MANIFEST_NAME).write_text(json.dumps({**doc, "format": "learner-twin-backup/1"}))
    [old] = read_manifest(backup_dir)
    assert old.key_fingerprint is None and old.sha256 == entry.sha256
    verify_backup_entry(backup_dir, old, db)


def test_backup_files_are_private(db, backup_dir):
    entry = _take_backup(db, backup_dir)
    assert stat.S_IMODE((backup_dir / entry.file).stat().st_mode) == 0o600
    assert stat.S_IMODE((backup_dir / MANIFEST_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(backup_dir.stat().st_mode) == 0o700


def test_backup_copy_is_encrypted(db, backup_dir):
    entry = _take_backup(db, backup_dir)
    copy = backup_dir / entry.file
    assert MARKER.encode() not in copy.read_bytes()
    conn = sqlite3.connect(copy)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not a database"):
            conn.execute("SELECT * FROM sqlite_master").fetchall()
    finally:
        conn.close()


def test_backup_includes_committed_rows_still_in_the_wal(db, backup_dir):
    db.execute("INSERT INTO items (id, name) VALUES (999, 'only in the WAL')")
    assert db.path.with_name(db.path.name + "-wal").stat().st_size > 0
    entry = _take_backup(db, backup_dir)
    copy = db.open_file(backup_dir / entry.file, read_only=True)
    try:
        row = copy.execute("SELECT name FROM items WHERE id = 999").fetchone()
        assert row[0] == "only in the WAL"
    finally:
        copy.close()


def test_verify_accepts_an_intact_backup(db, backup_dir):
    _take_backup(db, backup_dir)
    for entry in read_manifest(backup_dir):
        verify_backup_entry(backup_dir, entry, db)


# -- verification failures --------------------------------------------------------------------

def test_one_flipped_byte_fails_verification(db, backup_dir):
    entry = _take_backup(db, backup_dir)
    _flip_byte(backup_dir / entry.file, entry.size // 2)
    with pytest.raises(BackupVerificationError, match="checksum mismatch"):
        verify_backup_entry(backup_dir, entry, db)


@pytest.mark.parametrize("where", ["first page", "middle page"])
def test_flipped_byte_is_caught_even_if_the_manifest_is_rewritten_to_match(db, backup_dir, where):
    entry = _take_backup(db, backup_dir)
    copy = backup_dir / entry.file
    _flip_byte(copy, 100 if where == "first page" else entry.size // 2 + 100)
    forged = [entry.__class__(**{**entry.__dict__, "sha256": sha256_file(copy)})]
    write_manifest(backup_dir, forged)
    # SQLCipher's per-page HMAC notices what the forged checksum hides.
    with pytest.raises(BackupVerificationError, match="cannot be decrypted|unreadable|integrity"):
        verify_backup_entry(backup_dir, read_manifest(backup_dir)[0], db)


def test_verify_with_the_wrong_key_fails_clearly_naming_the_key_the_backup_needs(db, db_key, backup_dir):
    entry = _take_backup(db, backup_dir)
    wrong = os.urandom(32)
    stranger = Database(db.path, wrong, name="app")
    with pytest.raises(BackupVerificationError, match="cannot be decrypted with the current key") as excinfo:
        verify_backup_entry(backup_dir, entry, stranger)
    assert str(excinfo.value) == (
        f"app: cannot be decrypted with the current key (fingerprint {key_fingerprint(wrong)}); "
        f"the backup needs the key with fingerprint {key_fingerprint(db_key)}")


def test_missing_backup_file_fails_verification(db, backup_dir):
    entry = _take_backup(db, backup_dir)
    (backup_dir / entry.file).unlink()
    with pytest.raises(BackupVerificationError, match="missing"):
        verify_backup_entry(backup_dir, entry, db)


@pytest.mark.parametrize("manifest", [
    None,
    "not json",
    '{"format": "other/1", "databases": []}',
    '{"format": "learner-twin-backup/1", "databases": [{"x": 1}]}',
])
def test_missing_or_unreadable_manifest_fails_verification(backup_dir, manifest):
    backup_dir.mkdir(parents=True)
    if manifest is not None:
        (backup_dir / MANIFEST_NAME).write_text(manifest)
    with pytest.raises(BackupVerificationError, match="manifest"):
        read_manifest(backup_dir)


# -- restore --------------------------------------------------------------------------------

def test_restore_brings_back_the_data_as_it_was_at_backup_time(db, backup_dir):
    at_backup = _names(db)
    entry = _take_backup(db, backup_dir)
    with db.transaction() as conn:
        conn.execute("DELETE FROM items WHERE id <= 100")
        conn.execute("INSERT INTO items (id, name) VALUES (500, 'after the backup')")
        conn.execute("UPDATE items SET name = 'changed' WHERE id = 150")
    restore_database(backup_dir, read_manifest(backup_dir)[0], db)
    assert _names(db) == at_backup
    assert Migrator(db, MIGRATIONS).current_version() == entry.schema_version
    # The restored file is a working live database again: encrypted, WAL, writable.
    assert db.query_one("PRAGMA journal_mode")[0] == "wal"
    db.execute("INSERT INTO items (id, name) VALUES (501, 'after restore')")
    assert MARKER.encode() not in db.path.read_bytes()
    assert stat.S_IMODE(db.path.stat().st_mode) == 0o600


def test_restore_closes_the_connections_it_replaces(db, backup_dir):
    entry = _take_backup(db, backup_dir)
    before = db.connection()
    restore_database(backup_dir, entry, db)
    assert db.connection() is not before
    assert len(_names(db)) == 200


def test_restore_of_a_corrupt_backup_refuses_and_keeps_the_live_database(db, backup_dir):
    entry = _take_backup(db, backup_dir)
    db.execute("INSERT INTO items (id, name) VALUES (300, 'newer than the backup')")
    live = _names(db)
    live_bytes = db.path.read_bytes()
    _flip_byte(backup_dir / entry.file, entry.size // 2)
    with pytest.raises(BackupVerificationError):
        restore_database(backup_dir, entry, db)
    assert db.path.read_bytes() == live_bytes
    assert _names(db) == live
    assert not db.path.with_name(db.path.name + ".restoring").exists()


def test_restore_under_the_wrong_key_refuses(db, backup_dir):
    entry = _take_backup(db, backup_dir)
    stranger = Database(db.path, os.urandom(32), name="app")
    with pytest.raises(BackupVerificationError):
        restore_database(backup_dir, entry, stranger)
    assert len(_names(db)) == 200


def test_verify_reads_the_real_file_even_when_its_path_has_uri_characters(db, tmp_path):
    odd_dir = tmp_path / "backups #1? 50%"
    entry = _take_backup(db, odd_dir)
    verify_backup_entry(odd_dir, entry, db)
    # A corrupt copy with a matching (forged) checksum must still be caught, i.e. the
    # verifier opened this file and not some other path cut short at '#' or '?'.
    copy = odd_dir / entry.file
    _flip_byte(copy, entry.size // 2 + 100)
    forged = entry.__class__(**{**entry.__dict__, "sha256": sha256_file(copy)})
    with pytest.raises(BackupVerificationError):
        verify_backup_entry(odd_dir, forged, db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups #1? 50%", "live"]
