"""Rewriting a file of a former cipher settings under the current ones (``twin db recipher``):
the same rows in a file whose bytes show the new page layout, verified before it replaces the
original, and nothing left beside it."""

from __future__ import annotations

import pytest

from sqlcipher_pages import file_holds, page_layout
from twin.storage import Database, Migration, Migrator, open_keyed
from twin.storage.cipher import CURRENT, KNOWN
from twin.storage.maintenance import integrity_check
from twin.storage.recipher import recipher

pytestmark = pytest.mark.sqlite_only("SQLCipher files")

MIGRATIONS = [Migration(1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n"
                                    "CREATE INDEX idx_notes_body ON notes (body);", "DROP TABLE notes;")]


FORMER = [c for c in KNOWN if c != CURRENT]  # the 8 KiB pages of 46d17c1, SQLCipher's defaults


@pytest.fixture(params=FORMER, ids=lambda c: f"{c.page_size}-{c.hmac}")
def legacy(request, tmp_path, db_key):
    path = tmp_path / "old.db"
    open_keyed(path, db_key, cipher=request.param).close()
    db = Database(path, db_key, name="old")
    Migrator(db, MIGRATIONS).migrate()
    db.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note-{i}-marker",) for i in range(3000)])
    yield db
    db.close_all()


def test_a_former_file_is_rewritten_under_the_current_settings_with_every_row(legacy, db_key):
    former = legacy.cipher
    assert page_layout(legacy.path.read_bytes(), db_key)[0] == former.page_size

    done = recipher(legacy)

    assert (done.before, done.after, done.changed) == (former, CURRENT, True)
    assert done.rows == 3000 + 1  # the notes and the schema_version row
    legacy.close_all()
    assert page_layout(legacy.path.read_bytes(), db_key) == (4096, 48)
    reopened = Database(legacy.path, db_key)
    assert reopened.cipher == CURRENT and integrity_check(reopened) == ["ok"]
    assert reopened.query_one("SELECT count(*), max(body) FROM notes")[:] == (3000, "note-999-marker")
    assert reopened.query_one("PRAGMA auto_vacuum")[0] == 2  # incremental, as every file is created
    assert reopened.query_one("PRAGMA journal_mode")[0] == "wal"
    assert Migrator(reopened, MIGRATIONS).current_version() == 1
    reopened.close_all()
    assert file_holds(legacy.path, db_key, b"note-2999-marker")
    assert sorted(p.name for p in legacy.path.parent.iterdir()) == ["old.db"]


def test_a_file_under_the_current_settings_is_left_as_it_is(legacy):
    recipher(legacy)
    legacy.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # reopened (in WAL mode again), settled
    before = legacy.path.read_bytes()
    again = recipher(legacy)
    assert not again.changed and legacy.path.read_bytes() == before


def test_a_dry_run_only_says_what_the_file_has(legacy, db_key):
    before = legacy.path.read_bytes()
    assert recipher(legacy, dry_run=True).before == legacy.cipher != CURRENT
    assert legacy.path.read_bytes() == before
