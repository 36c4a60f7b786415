"""digital_twin migration 8 (``twin.learners.schema_rowids``): the request routes' learner tables
lose AUTOINCREMENT on SQLite, keeping every row, id, index and foreign key, and an insert no
longer writes the ``sqlite_sequence`` page; on PostgreSQL nothing changes. Up and down on both
backends, on real files and a real server."""

from __future__ import annotations

import pytest

from tests.sqlcipher_pages import wal_frame_pages
from twin.learners.schema import MIGRATIONS
from twin.learners.schema_rowids import TABLES
from twin.storage import Migrator
from twin.storage.maintenance import checkpoint

_BEFORE = 7


@pytest.fixture
def db(databases):
    return databases.new("digital_twin")


def _fill(db) -> None:
    """Two learners with a row in every rebuilt table, and gaps in the ids (deleted rows)."""
    with db.transaction() as conn:
        for n in (1, 2, 3):
            conn.execute("INSERT INTO learning_profiles (profile_id, user_id_hash, preferred_difficulty, "
                         "encrypted_data) VALUES (?, ?, 'hard', ?)", (f"p{n}", f"hash-{n}", b"\x01sealed"))
            conn.execute("INSERT INTO learning_sessions (session_id, profile_id, session_type) VALUES (?, ?, ?)",
                         (f"s{n}", f"p{n}", b"\x01lesson"))
            conn.execute("INSERT INTO knowledge_states (profile_id, knowledge_domain, topic, mastery_level) "
                         "VALUES (?, 'math', 'algebra', 0.5)", (f"p{n}",))
            conn.execute("INSERT INTO evidence (profile_id, knowledge_domain, topic, kind, observed_at, content, "
                         "recorded_at, entry_key) VALUES (?, 'math', 'algebra', 'observation', "
                         "'2026-12-01T10:00:00.000000Z', ?, '2026-12-01T10:00:01.000000Z', ?)",
                         (f"p{n}", b"\x01content", f"key-{n}"))
            conn.execute("INSERT INTO consents (consent_id, profile_id, user_id_hash, consent_type, method, "
                         "details, granted_at) VALUES (?, ?, ?, 'parental', 'signed_form', ?, "
                         "'2026-12-01T10:00:00.000000Z')", (f"c{n}", f"p{n}", f"hash-{n}", b"\x01who"))
        conn.execute("DELETE FROM learning_profiles WHERE profile_id = 'p2'")  # cascades to its rows


def _snapshot(db) -> dict[str, list]:
    return {table: [tuple(r) for r in db.query(f"SELECT * FROM {table} ORDER BY id")] for table in TABLES}


def _indexes(db) -> set[tuple[str, str]]:
    if db.dialect.name == "sqlite":
        return {(r["name"], r["sql"] or "") for r in db.query(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'")}
    return {(r["indexname"], r["indexdef"]) for r in db.query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")}


def _autoincrement_tables(db) -> set[str]:
    return {r["name"] for r in db.query("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
            if "AUTOINCREMENT" in (r["sql"] or "").upper()}


def test_up_and_down_keep_every_row_id_and_index(db):
    migrator = Migrator(db, MIGRATIONS)
    migrator.migrate(to=_BEFORE)
    _fill(db)
    rows, indexes = _snapshot(db), _indexes(db)
    assert [r[0] for r in rows["learning_profiles"]] == [1, 3]  # p2's id is a gap

    migrator.migrate(to=8)
    assert _snapshot(db) == rows
    assert _indexes(db) == indexes
    if db.dialect.name == "sqlite":
        assert not set(TABLES) & _autoincrement_tables(db)
        assert "legal_holds" in _autoincrement_tables(db)  # operators' rare rows: left as they were
        assert db.query("SELECT name FROM sqlite_sequence WHERE name IN (%s)" % ", ".join("?" * len(TABLES)),
                        TABLES) == []
    # The foreign keys survived the rebuild: erasing a profile still takes its rows with it.
    db.execute("DELETE FROM learning_profiles WHERE profile_id = 'p3'")
    assert {t: len(r) for t, r in _snapshot(db).items()} == {t: 1 for t in TABLES}

    migrator.rollback(_BEFORE)
    assert _snapshot(db) == {t: [r for r in rs if "p3" not in r] for t, rs in rows.items()}
    assert _indexes(db) == indexes
    if db.dialect.name == "sqlite":
        assert set(TABLES) <= _autoincrement_tables(db)
        assert dict(db.query("SELECT name, seq FROM sqlite_sequence WHERE name = 'learning_profiles'")) == {
            "learning_profiles": 1}


def test_new_rows_number_after_every_present_row(db):
    Migrator(db, MIGRATIONS).migrate()
    _fill(db)
    db.execute("INSERT INTO learning_profiles (profile_id, user_id_hash) VALUES ('p4', 'hash-4')")
    assert [r[0] for r in db.query("SELECT id FROM learning_profiles ORDER BY id")] == [1, 3, 4]


@pytest.mark.sqlite_only("pages of a SQLCipher file")
@pytest.mark.parametrize("version", [_BEFORE, 8])
def test_a_profile_insert_writes_the_sequence_page_only_before_migration_8(databases, db_key, version):
    db = databases.new("digital_twin")
    Migrator(db, MIGRATIONS).migrate(to=version)
    _fill(db)  # sqlite_sequence exists (legal_holds keep AUTOINCREMENT) and holds rows before v8
    sequence_page = int(db.query_one("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_sequence'")[0])
    checkpoint(db)  # an empty WAL: what follows is the insert's commit alone
    db.execute("INSERT INTO learning_profiles (profile_id, user_id_hash) VALUES ('p9', 'hash-9')")
    pages = wal_frame_pages(db.path, db_key)
    assert pages, "the commit wrote no WAL frame"
    assert (sequence_page in pages) == (version == _BEFORE)
