"""SQLCipher page settings: new files get the current ones, files of the former settings (the
8 KiB pages of 46d17c1 and before, SQLCipher's defaults of b8c13d3 and before) keep opening under
theirs, and copies keep their source's (``twin.storage.cipher``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sqlcipher_pages import file_holds, page_layout
from twin.storage import Database, WrongKeyError, open_keyed
from twin.storage.backup import backup_database
from twin.storage.cipher import CURRENT, KNOWN, LEGACY, PAGES_8K, candidates

pytestmark = pytest.mark.sqlite_only("SQLCipher files")


def _legacy_file(path, key, settings=LEGACY) -> None:
    """A file as a release before the current settings wrote it (default: SQLCipher 4's)."""
    conn = open_keyed(path, key, cipher=settings)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('legacy-marker-7731')")
    conn.close()


def test_a_new_file_gets_the_current_settings_as_its_bytes_show(tmp_path, db_key):
    db = Database(tmp_path / "new.db", db_key)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('new-marker-2209')")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert db.cipher == CURRENT
    # The decrypted header of page 1 names the page size; the IV sits before a 32-byte HMAC.
    assert page_layout(db.path.read_bytes(), db_key) == (4096, 48)
    assert db.path.stat().st_size % CURRENT.page_size == 0
    assert file_holds(db.path, db_key, b"new-marker-2209")
    db.close_all()


def test_a_file_of_the_former_defaults_opens_under_them_and_stays_so(tmp_path, db_key):
    path = tmp_path / "old.db"
    _legacy_file(path, db_key)
    db = Database(path, db_key)
    assert db.query_one("SELECT body FROM notes")[0] == "legacy-marker-7731"
    db.execute("INSERT INTO notes VALUES ('written-later')")
    assert db.cipher == LEGACY
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close_all()
    assert page_layout(path.read_bytes(), db_key) == (LEGACY.page_size, 80)
    assert file_holds(path, db_key, b"written-later")


def test_a_file_of_the_8_kib_settings_opens_under_them_and_stays_so(tmp_path, db_key):
    path = tmp_path / "8k.db"
    _legacy_file(path, db_key, PAGES_8K)
    db = Database(path, db_key)
    assert db.query_one("SELECT body FROM notes")[0] == "legacy-marker-7731"
    db.executemany("INSERT INTO notes VALUES (?)", [(f"written-later-{i}",) for i in range(300)])
    assert db.cipher == PAGES_8K
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close_all()
    assert page_layout(path.read_bytes(), db_key) == (8192, 48)
    assert file_holds(path, db_key, b"written-later-299")


def test_another_process_sees_the_commits_an_8_kib_file_still_holds_in_its_wal(tmp_path, db_key):
    # The first try (4 KiB pages, this file's HMAC) must fail on page 1 alone: nothing read of
    # the WAL under the wrong page size, nothing written.
    path = tmp_path / "8k.db"
    _legacy_file(path, db_key, PAGES_8K)
    writer = Database(path, db_key)
    writer.executemany("INSERT INTO notes VALUES (?)", [(f"in-the-wal-{i}",) for i in range(200)])
    assert path.stat().st_size % 8192 == 0 and candidates(path)[0] == CURRENT  # tried first
    wal_before = Path(f"{path}-wal").read_bytes()
    reader = Database(path, db_key)
    assert reader.query_one("SELECT count(*) FROM notes")[0] == 201 and reader.cipher == PAGES_8K
    assert Path(f"{path}-wal").read_bytes() == wal_before
    reader.close_all()
    writer.close_all()


@pytest.mark.parametrize("pages, last", [(3, PAGES_8K), (4, None)], ids=["odd", "even"])
def test_settings_whose_page_does_not_divide_the_file_are_tried_last(tmp_path, pages, last):
    path = tmp_path / "f.db"
    path.write_bytes(bytes(4096 * pages))
    order = candidates(path)
    assert sorted(order, key=KNOWN.index) == list(KNOWN) and order[0] == CURRENT
    assert order == (list(KNOWN) if last is None else [c for c in KNOWN if c != last] + [last])


@pytest.mark.parametrize("settings", [CURRENT, PAGES_8K, LEGACY], ids=["current", "8k", "legacy"])
def test_a_wrong_key_is_refused_whatever_the_settings(tmp_path, db_key, settings):
    path = tmp_path / "a.db"
    open_keyed(path, db_key, cipher=settings).close()
    with pytest.raises(WrongKeyError):
        Database(path, os.urandom(32)).connection()


def test_a_backup_keeps_the_settings_of_its_source(tmp_path, db_key):
    path = tmp_path / "old.db"
    _legacy_file(path, db_key)
    db = Database(path, db_key, name="old")
    entry = backup_database(db, tmp_path / "backup")
    copy = tmp_path / "backup" / entry.file
    assert page_layout(copy.read_bytes(), db_key) == (LEGACY.page_size, 80)
    assert Database(copy, db_key).query_one("SELECT body FROM notes")[0] == "legacy-marker-7731"
    db.close_all()
