"""Numbered, reversible migrations: up, down, atomic failure, and refusals."""

from __future__ import annotations

import pytest

from twin.learners.schema import MIGRATIONS as DIGITAL_TWIN_MIGRATIONS
from twin.storage import Database, Migration, MigrationError, Migrator, SchemaTooNewError


@pytest.fixture
def db(tmp_path, db_key):
    database = Database(tmp_path / "migrations.db", db_key, name="testdb")
    yield database
    database.close_all()


def _add_email_column(conn) -> None:
    conn.execute("ALTER TABLE people ADD COLUMN email TEXT")


def _drop_email_column(conn) -> None:
    conn.execute("ALTER TABLE people DROP COLUMN email")


SYNTHETIC = [
    Migration(1, "people", "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
              "DROP TABLE people;"),
    Migration(2, "email column (callable steps)", _add_email_column, _drop_email_column),
    Migration(3, "notes and an index",
              "CREATE TABLE notes (id INTEGER PRIMARY KEY,\n"
              "  person_id INTEGER REFERENCES people (id) ON DELETE CASCADE, body TEXT);\n"
              "CREATE INDEX idx_people_name ON people (name); -- lookups by name\n",
              "DROP TABLE notes;\nDROP INDEX idx_people_name;"),
]


def _version(db: Database) -> int:
    return Migrator(db, SYNTHETIC).current_version()


def _columns(db: Database, table: str) -> list[str]:
    return [r["name"] for r in db.query(f"PRAGMA table_info({table})")]


def _indexes(db: Database) -> set[str]:
    return {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'index' "
                                         "AND name NOT LIKE 'sqlite_%'")}


# -- synthetic migrations --------------------------------------------------------------------

def test_new_database_is_at_version_0_with_everything_pending(db):
    status = Migrator(db, SYNTHETIC).status()
    assert (status.database, status.current, status.latest) == ("testdb", 0, 3)
    assert status.pending == [1, 2, 3]
    assert not status.up_to_date


def test_migrate_applies_every_migration_in_order_and_records_it(db):
    assert Migrator(db, SYNTHETIC).migrate() == [1, 2, 3]
    assert set(db.table_names()) == {"people", "notes", "schema_version"}
    assert _columns(db, "people") == ["id", "name", "email"]
    assert "idx_people_name" in _indexes(db)
    recorded = db.query("SELECT version, name, applied_at FROM schema_version ORDER BY version")
    assert [(r["version"], r["name"]) for r in recorded] == [(m.version, m.name) for m in SYNTHETIC]
    assert all(r["applied_at"].endswith("+00:00") for r in recorded)
    assert Migrator(db, SYNTHETIC).status().up_to_date


def test_migrate_again_is_a_no_op(db):
    Migrator(db, SYNTHETIC).migrate()
    assert Migrator(db, SYNTHETIC).migrate() == []


def test_migrate_to_an_intermediate_version_stops_there(db):
    assert Migrator(db, SYNTHETIC).migrate(to=2) == [1, 2]
    assert _version(db) == 2
    assert "notes" not in db.table_names()


def test_down_to_zero_and_up_again_keeps_data_where_the_migrations_allow(db):
    migrator = Migrator(db, SYNTHETIC)
    migrator.migrate()
    with db.transaction() as conn:
        conn.execute("INSERT INTO people (id, name, email) VALUES (1, 'Ada', 'ada@example.org')")
        conn.execute("INSERT INTO notes (person_id, body) VALUES (1, 'likes proofs')")

    assert migrator.rollback(1) == [3, 2]
    assert _version(db) == 1
    assert "notes" not in db.table_names()
    assert "idx_people_name" not in _indexes(db)
    # The people table survives the rollback; only the dropped column is gone.
    assert [tuple(r) for r in db.query("SELECT * FROM people")] == [(1, "Ada")]

    assert migrator.migrate() == [2, 3]
    assert [tuple(r) for r in db.query("SELECT id, name, email FROM people")] == [(1, "Ada", None)]

    assert migrator.rollback(0) == [3, 2, 1]
    assert db.table_names() == ["schema_version"]
    assert db.query("SELECT * FROM schema_version") == []

    assert migrator.migrate() == [1, 2, 3]
    assert db.query("SELECT count(*) FROM people")[0][0] == 0


def test_failing_migration_leaves_the_previous_version_and_no_partial_schema(db):
    broken = SYNTHETIC[:1] + [Migration(
        2, "half done",
        "CREATE TABLE half (x INTEGER);\nALTER TABLE people ADD COLUMN nickname TEXT;\n"
        "INSERT INTO people (id, name) VALUES (1, 'partial');\nCREATE TABLE broken (;",
        "DROP TABLE half;")]
    migrator = Migrator(db, broken)
    with pytest.raises(MigrationError, match=r"migration 2 \(half done\) failed"):
        migrator.migrate()
    assert migrator.current_version() == 1
    assert "half" not in db.table_names()
    assert _columns(db, "people") == ["id", "name"]
    assert db.query("SELECT * FROM people") == []
    assert not db.connection().in_transaction


def test_failing_callable_migration_is_rolled_back_too(db):
    def create_then_fail(conn):
        conn.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("data check failed")

    migrator = Migrator(db, [*SYNTHETIC[:1], Migration(2, "callable", create_then_fail, "")])
    with pytest.raises(MigrationError, match="data check failed"):
        migrator.migrate()
    assert migrator.current_version() == 1
    assert "half" not in db.table_names()


def test_failing_rollback_leaves_the_version_in_place(db):
    migrations = [*SYNTHETIC[:1], Migration(2, "irreversible", "CREATE TABLE t2 (x);",
                                            "DROP TABLE t2;\nDROP TABLE no_such_table;")]
    migrator = Migrator(db, migrations)
    migrator.migrate()
    with pytest.raises(MigrationError, match="rollback of 2"):
        migrator.rollback(0)
    assert migrator.current_version() == 2
    assert "t2" in db.table_names() and "people" in db.table_names()


def test_database_newer_than_the_code_is_refused(db):
    Migrator(db, SYNTHETIC).migrate()
    older_code = Migrator(db, SYNTHETIC[:2])
    with pytest.raises(SchemaTooNewError, match="version 3 is newer than this code knows"):
        older_code.migrate()
    with pytest.raises(SchemaTooNewError):
        older_code.rollback(1)
    assert _version(db) == 3
    assert "notes" in db.table_names()


@pytest.mark.parametrize("versions", [[1, 3], [2, 3], [1, 2, 2], [2, 1], [0, 1]])
def test_migration_numbering_must_be_1_to_n_without_gaps(db, versions):
    migrations = [Migration(v, f"m{v}", "SELECT 1;", "SELECT 1;") for v in versions]
    with pytest.raises(MigrationError, match="without gaps"):
        Migrator(db, migrations)


def test_rollback_beyond_the_current_version_is_refused(db):
    migrator = Migrator(db, SYNTHETIC)
    migrator.migrate(to=1)
    with pytest.raises(MigrationError, match="cannot roll back to 2 from version 1"):
        migrator.rollback(2)
    with pytest.raises(MigrationError):
        migrator.rollback(-1)
    assert migrator.current_version() == 1


def test_migrate_to_an_unknown_or_lower_version_is_refused(db):
    migrator = Migrator(db, SYNTHETIC)
    with pytest.raises(MigrationError, match="no migration 4"):
        migrator.migrate(to=4)
    migrator.migrate()
    with pytest.raises(MigrationError, match="use rollback"):
        migrator.migrate(to=1)


# -- the real digital_twin migrations ----------------------------------------------------------

def _insert_learner(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO learning_profiles "
                     "(profile_id, user_id_hash, preferred_difficulty) "
                     "VALUES ('p1', 'hash-1', 'hard')")
        conn.execute("INSERT INTO learning_sessions (session_id, profile_id, session_type) "
                     "VALUES ('s1', 'p1', 'quiz')")
        conn.execute("INSERT INTO knowledge_states "
                     "(profile_id, knowledge_domain, topic, mastery_level) "
                     "VALUES ('p1', 'math', 'algebra', 0.5)")


def test_digital_twin_schema_goes_up_down_and_up_keeping_learner_rows(db):
    migrator = Migrator(db, DIGITAL_TWIN_MIGRATIONS)
    latest = len(DIGITAL_TWIN_MIGRATIONS)
    assert migrator.migrate() == list(range(1, latest + 1))
    assert {"learning_profiles", "learning_sessions", "knowledge_states"} <= set(db.table_names())
    _insert_learner(db)
    latest_tables = set(db.table_names())

    assert migrator.rollback(1) == list(range(latest, 1, -1))
    assert set(db.table_names()) == {"learning_profiles", "learning_sessions", "knowledge_states",
                                     "schema_version"}
    assert db.query_one("SELECT preferred_difficulty FROM learning_profiles")[0] == "hard"
    assert db.query_one("SELECT count(*) FROM learning_sessions")[0] == 1
    assert db.query_one("SELECT mastery_level FROM knowledge_states")[0] == 0.5

    assert migrator.migrate() == list(range(2, latest + 1))
    assert set(db.table_names()) == latest_tables
    assert db.query_one("SELECT count(*) FROM knowledge_states")[0] == 1

    migrator.rollback(0)
    assert db.table_names() == ["schema_version"]
    assert migrator.migrate() == list(range(1, latest + 1))
    assert set(db.table_names()) == latest_tables


def test_digital_twin_schema_cascades_profile_deletion_to_children(db):
    Migrator(db, DIGITAL_TWIN_MIGRATIONS).migrate()
    _insert_learner(db)
    db.execute("DELETE FROM learning_profiles WHERE profile_id = 'p1'")
    assert db.query_one("SELECT count(*) FROM learning_sessions")[0] == 0
    assert db.query_one("SELECT count(*) FROM knowledge_states")[0] == 0



class TestTableRebuilds:
    """Rebuilding a parent table (create new, copy, drop old, rename) must not cascade."""

    BASE = Migration(1, "parent and child", """
        CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE child (id INTEGER PRIMARY KEY,
                            parent_id INTEGER REFERENCES parent (id) ON DELETE CASCADE);
    """, "DROP TABLE child; DROP TABLE parent;")
    REBUILD_SQL = """
        CREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '');
        INSERT INTO parent_new SELECT id, COALESCE(name, '') FROM parent;
        DROP TABLE parent;
        ALTER TABLE parent_new RENAME TO parent;
    """

    def _seed(self, db):
        with db.transaction() as conn:
            conn.execute("INSERT INTO parent (id, name) VALUES (1, 'p')")
            conn.executemany("INSERT INTO child (parent_id) VALUES (?)", [(1,)] * 5)

    def test_rebuild_with_foreign_keys_off_keeps_the_children(self, tmp_path, db_key):
        db = Database(tmp_path / "fk.db", db_key)
        rebuild = Migration(2, "rebuild parent", self.REBUILD_SQL, "SELECT 1", foreign_keys_off=True)
        Migrator(db, [self.BASE]).migrate()
        self._seed(db)
        Migrator(db, [self.BASE, rebuild]).migrate()
        assert db.query_one("SELECT count(*) FROM child")[0] == 5
        assert db.query_one("PRAGMA foreign_keys")[0] == 1  # switched back on

    def test_the_same_rebuild_with_foreign_keys_on_would_lose_them(self, tmp_path, db_key):
        db = Database(tmp_path / "fk.db", db_key)
        rebuild = Migration(2, "rebuild parent", self.REBUILD_SQL, "SELECT 1")
        Migrator(db, [self.BASE]).migrate()
        self._seed(db)
        Migrator(db, [self.BASE, rebuild]).migrate()
        assert db.query_one("SELECT count(*) FROM child")[0] == 0

    def test_a_rebuild_that_breaks_references_is_refused_and_rolled_back(self, tmp_path, db_key):
        db = Database(tmp_path / "fk.db", db_key)
        breaking = Migration(2, "drop parents", "DELETE FROM parent;", "SELECT 1", foreign_keys_off=True)
        Migrator(db, [self.BASE]).migrate()
        self._seed(db)
        with pytest.raises(MigrationError, match="violating foreign keys"):
            Migrator(db, [self.BASE, breaking]).migrate()
        assert db.query_one("SELECT count(*) FROM parent")[0] == 1
        assert Migrator(db, [self.BASE, breaking]).current_version() == 1
