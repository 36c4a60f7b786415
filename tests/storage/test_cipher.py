"""SQLCipher page settings: new files get the current ones, files of the former defaults keep
opening under theirs, and copies keep their source's (``twin.storage.cipher``)."""

from __future__ import annotations

import os

import pytest

from sqlcipher_pages import file_holds, page_layout
from twin.storage import Database, WrongKeyError, open_keyed
from twin.storage.backup import backup_database
from twin.storage.cipher import CURRENT, LEGACY

pytestmark = pytest.mark.sqlite_only("SQLCipher files")


def _legacy_file(path, key) -> None:
    """A file as every release before the current settings wrote it (SQLCipher 4's defaults)."""
    conn = open_keyed(path, key, cipher=LEGACY)
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
    assert page_layout(db.path.read_bytes(), db_key) == (CURRENT.page_size, 48)
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


@pytest.mark.parametrize("settings", [CURRENT, LEGACY], ids=["current", "legacy"])
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
