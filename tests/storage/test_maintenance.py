"""Routine upkeep: WAL checkpoints, returning free pages, VACUUM, and the operator's info()."""

from __future__ import annotations

import os
import sqlite3

import pytest

from twin.storage import Database, Migration, Migrator
from twin.storage import maintenance
from twin.storage.cipher import CURRENT

# Runs once per backend; every test here is about one SQLite file.
pytestmark = [pytest.mark.sqlite_only('PRAGMAs, WAL checkpoints and VACUUM of a file'), pytest.mark.usefixtures("backend")]

MIGRATIONS = [
    Migration(1, "blobs", "CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB);",
              "DROP TABLE blobs;"),
    Migration(2, "tags", "CREATE TABLE tags (name TEXT PRIMARY KEY);", "DROP TABLE tags;"),
]
ROWS = 200
BODY_BYTES = CURRENT.page_size - 400  # about one page per row


@pytest.fixture
def db(tmp_path, db_key):
    database = Database(tmp_path / "upkeep.db", db_key, name="upkeep")
    Migrator(database, MIGRATIONS).migrate()
    yield database
    database.close_all()


def _fill(db: Database, rows: int = ROWS) -> None:
    with db.transaction() as conn:
        conn.executemany("INSERT INTO blobs (body) VALUES (?)",
                         ((os.urandom(BODY_BYTES),) for _ in range(rows)))


def _wal_size(db: Database) -> int:
    wal = db.path.with_name(db.path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


# -- checkpoint -------------------------------------------------------------------------------

def test_checkpoint_truncates_the_wal(db):
    _fill(db)
    assert _wal_size(db) > ROWS * BODY_BYTES
    result = maintenance.checkpoint(db)
    assert result["busy"] == 0
    assert _wal_size(db) == 0
    assert db.query_one("SELECT count(*) FROM blobs")[0] == ROWS


def test_passive_checkpoint_copies_pages_but_keeps_the_wal_file(db):
    _fill(db, 20)
    size = _wal_size(db)
    result = maintenance.checkpoint(db, "passive")
    assert result["checkpointed_frames"] == result["log_frames"] > 0
    assert _wal_size(db) == size


def test_unknown_checkpoint_mode_is_refused(db):
    with pytest.raises(ValueError, match="checkpoint mode"):
        maintenance.checkpoint(db, "FULL; DROP TABLE blobs")


# -- info ---------------------------------------------------------------------------------------

def test_info_reports_sizes_pages_rows_schema_and_journal_mode(db):
    _fill(db, 10)
    db.execute("INSERT INTO tags (name) VALUES ('a'), ('b')")
    report = maintenance.info(db)
    assert report["name"] == "upkeep"
    assert report["path"] == str(db.path)
    assert report["encrypted"] is True
    assert report["file_size_bytes"] == db.path.stat().st_size
    assert report["wal_size_bytes"] == _wal_size(db) > 0
    assert report["page_size"] == db.cipher.page_size == CURRENT.page_size
    assert report["page_count"] >= 10
    assert report["freelist_count"] == 0
    assert report["journal_mode"] == "wal"
    assert report["auto_vacuum"] == "incremental"
    assert report["schema_version"] == 2
    assert report["tables"] == {"blobs": 10, "tags": 2, "schema_version": 2}


def test_info_after_a_checkpoint_shows_the_pages_in_the_file(db):
    _fill(db, 10)
    maintenance.checkpoint(db)
    report = maintenance.info(db)
    assert report["wal_size_bytes"] == 0
    assert report["file_size_bytes"] == report["page_count"] * report["page_size"]


def test_info_of_a_database_without_migrations_says_version_0(tmp_path, db_key):
    bare = Database(tmp_path / "bare.db", db_key)
    bare.execute("CREATE TABLE t (x)")
    assert maintenance.info(bare)["schema_version"] == 0
    bare.close_all()


# -- freeing space ------------------------------------------------------------------------------

def test_incremental_vacuum_releases_the_pages_freed_by_deletes(db):
    _fill(db)
    db.execute("DELETE FROM blobs WHERE id % 2 = 0")
    free = maintenance.freelist_count(db)
    assert free >= ROWS // 2
    pages_before = maintenance.info(db)["page_count"]

    released = maintenance.incremental_vacuum(db)

    assert released == free
    assert maintenance.freelist_count(db) == 0
    assert maintenance.info(db)["page_count"] == pages_before - free
    maintenance.checkpoint(db)
    assert db.path.stat().st_size == (pages_before - free) * db.cipher.page_size
    assert db.query_one("SELECT count(*) FROM blobs")[0] == ROWS // 2


def test_incremental_vacuum_can_release_a_limited_number_of_pages(db):
    _fill(db)
    db.execute("DELETE FROM blobs")
    free = maintenance.freelist_count(db)
    assert maintenance.incremental_vacuum(db, pages=10) == 10
    assert maintenance.freelist_count(db) == free - 10


def test_vacuum_drops_free_pages_and_keeps_data_and_encryption(db):
    _fill(db)
    db.execute("DELETE FROM blobs WHERE id > 50")
    kept = [bytes(r["body"]) for r in db.query("SELECT body FROM blobs ORDER BY id")]
    assert maintenance.freelist_count(db) > 0

    maintenance.vacuum(db)

    assert maintenance.freelist_count(db) == 0
    assert [bytes(r["body"]) for r in db.query("SELECT body FROM blobs ORDER BY id")] == kept
    maintenance.checkpoint(db)
    assert kept[0] not in db.path.read_bytes()
    conn = sqlite3.connect(db.path)
    try:
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("SELECT * FROM sqlite_master").fetchall()
    finally:
        conn.close()
    assert db.query_one("PRAGMA auto_vacuum")[0] == 2


def test_analyze_and_optimize_run(db):
    _fill(db, 10)
    maintenance.analyze(db)
    assert "sqlite_stat1" in {r[0] for r in db.query("SELECT name FROM sqlite_master")}
    maintenance.optimize(db)
