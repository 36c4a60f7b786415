"""The engines: SQLCipher's encrypted private files and pragmas, and on both backends
transactions, per-thread connections, rows and retries."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from storage_backends import concurrently

from compliance.field_crypto import FieldCipher, associated_data
from twin.storage import (DamagedDatabaseError, Database, DatabaseBusyError, EngineSettings,
                          IntegrityError, NotEncryptedError, StorageError, TruncatedDatabaseError,
                          WrongKeyError, execute_script, key_fingerprint)
from twin.storage.cipher import CURRENT
from twin.storage.engine import backoff

KNOWN_PLAINTEXT = b"KNOWN-PLAINTEXT-learner-goal-4711"
PLAIN_MARKER = "PLAIN-MARKER-zoe@example.org"


@pytest.fixture
def db(databases):
    return databases.new("engine")


@pytest.fixture
def db_path(db) -> Path:
    return db.path


def _id_column(db) -> str:
    return "INTEGER PRIMARY KEY" if db.dialect.name == "sqlite" else db.dialect.identity


def _make_table(db) -> None:
    with db.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items "
                     f"(id {_id_column(db)}, name TEXT, payload {db.dialect.bytes})")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _file_bytes(path: Path) -> bytes:
    """The main file and its WAL, as an attacker copying the directory would get them."""
    data = path.read_bytes()
    return data + (_wal(path).read_bytes() if _wal(path).exists() else b"")


# -- encrypted, private files ------------------------------------------------------------------

@pytest.mark.sqlite_only('database files')
def test_database_file_and_wal_are_created_mode_0600(db, db_path):
    _make_table(db)
    db.execute("INSERT INTO items (name) VALUES ('x')")
    assert _mode(db_path) == 0o600
    assert _wal(db_path).exists()
    assert _mode(_wal(db_path)) == 0o600


@pytest.mark.sqlite_only('SQLCipher page encryption')
def test_plain_sqlite_cannot_open_the_file(db, db_path):
    _make_table(db)
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not a database"):
            conn.execute("SELECT name FROM sqlite_master").fetchall()
    finally:
        conn.close()


@pytest.mark.sqlite_only('SQLCipher page encryption')
def test_no_plaintext_reaches_the_file_or_its_wal(db, db_path, keyring):
    _make_table(db)
    cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
    with db.transaction() as conn:
        for row_id in range(1, 51):
            blob = cipher.encrypt(KNOWN_PLAINTEXT, associated_data("items", "payload", row_id))
            conn.execute("INSERT INTO items (id, name, payload) VALUES (?, ?, ?)",
                         (row_id, PLAIN_MARKER, blob))
    # The WAL holds the pages now (no checkpoint yet): inspect both files.
    assert _wal(db_path).stat().st_size > 0
    raw = _file_bytes(db_path)
    assert KNOWN_PLAINTEXT not in raw
    assert PLAIN_MARKER.encode() not in raw
    assert b"CREATE TABLE" not in raw and b"SQLite format 3" not in raw
    # ... and after the WAL is folded into the main file.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = _file_bytes(db_path)
    assert PLAIN_MARKER.encode() not in raw and KNOWN_PLAINTEXT not in raw
    # The data itself is intact for whoever holds the keys.
    row = db.query_one("SELECT name, payload FROM items WHERE id = 7")
    assert row["name"] == PLAIN_MARKER
    assert cipher.decrypt(row["payload"], associated_data("items", "payload", 7)) == KNOWN_PLAINTEXT


def test_the_plaintext_scan_does_find_markers_in_an_unencrypted_file(tmp_path):
    # Control for the test above: the same scan sees plaintext when there is no page encryption.
    plain = Database(tmp_path / "plain.db", None)
    _make_table(plain)
    plain.execute("INSERT INTO items (name) VALUES (?)", (PLAIN_MARKER,))
    assert PLAIN_MARKER.encode() in _file_bytes(tmp_path / "plain.db")
    plain.close_all()


@pytest.mark.sqlite_only('SQLCipher keys')
def test_wrong_key_is_reported_as_such(db, db_path):
    _make_table(db)
    db.close_all()
    wrong = os.urandom(32)
    other = Database(db_path, wrong)
    with pytest.raises(WrongKeyError) as excinfo:
        other.connection()
    assert str(excinfo.value) == (f"{db_path}: cannot be opened with this key (wrong key, or damaged; "
                                  f"key fingerprint {key_fingerprint(wrong)})")


def test_plain_sqlite_file_opened_with_a_key_is_reported_as_not_encrypted(tmp_path, db_key):
    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(NotEncryptedError) as excinfo:
        Database(path, db_key).connection()
    assert str(excinfo.value) == f"{path}: a plain SQLite file, not encrypted"


@pytest.mark.sqlite_only('SQLCipher keys')
def test_wrong_key_error_shows_no_key_material(db, db_path, db_key):
    _make_table(db)
    db.close_all()
    wrong = os.urandom(32)
    with pytest.raises(WrongKeyError) as excinfo:
        Database(db_path, wrong).connection()
    for key in (wrong, db_key):
        assert key.hex()[:16] not in str(excinfo.value)


@pytest.mark.sqlite_only('SQLCipher files')
@pytest.mark.parametrize("size", [0, 100, 4096 + 17])
def test_an_empty_or_cut_file_is_reported_as_truncated_and_left_alone(db, db_path, db_key, size):
    _make_table(db)
    db.close_all()
    data = db_path.read_bytes()[:size]
    db_path.write_bytes(data)
    with pytest.raises(TruncatedDatabaseError) as excinfo:
        Database(db_path, db_key).connection()
    assert str(excinfo.value) == f"{db_path}: empty or truncated"
    assert db_path.read_bytes() == data  # never "repaired" into a new, empty database


@pytest.mark.sqlite_only('SQLCipher files')
def test_a_page_damaged_past_the_header_is_reported_as_damaged(db, db_path, db_key):
    _make_table(db)
    db.executemany("INSERT INTO items (name, payload) VALUES (?, ?)", [("x" * 200, b"p")] * 500)
    db.close_all()
    data = bytearray(db_path.read_bytes())
    size = db.cipher.page_size
    for page in range(2, len(data) // size):
        data[page * size + 100] ^= 0xFF
    db_path.write_bytes(bytes(data))
    damaged = Database(db_path, db_key)
    with pytest.raises(DamagedDatabaseError) as excinfo:
        damaged.query("SELECT * FROM items")
    assert str(excinfo.value) == f"{db_path}: damaged (run verify)"
    with pytest.raises(DamagedDatabaseError):
        with damaged.transaction() as conn:
            conn.execute("UPDATE items SET name = 'y'")


@pytest.mark.sqlite_only('SQLCipher files')
def test_a_new_file_is_created_complete_so_an_empty_one_never_means_new(db_path, db_key):
    db = Database(db_path, db_key)
    db.connection()
    assert db_path.stat().st_size == db.cipher.page_size == CURRENT.page_size
    assert [p.name for p in db_path.parent.iterdir() if "creating" in p.name] == []


def test_key_must_be_32_bytes(tmp_path):
    with pytest.raises(StorageError, match="32 bytes"):
        Database(tmp_path / "short.db", os.urandom(16)).connection()


@pytest.mark.sqlite_only('SQLCipher keys')
def test_repr_shows_no_key(db, db_key):
    assert db_key.hex()[:16] not in repr(db)
    assert "encrypted=True" in repr(db)


# -- pragmas ----------------------------------------------------------------------------------

@pytest.mark.sqlite_only("PRAGMAs")
@pytest.mark.parametrize("pragma, expected", [
    ("journal_mode", "wal"),
    ("foreign_keys", 1),
    ("secure_delete", 1),
    ("synchronous", 1),      # NORMAL
    ("temp_store", 2),       # MEMORY
    ("auto_vacuum", 2),      # INCREMENTAL, set before the first table
    ("busy_timeout", 5000),
])
def test_every_connection_runs_with_the_service_pragmas(db, pragma, expected):
    _make_table(db)
    assert db.query_one(f"PRAGMA {pragma}")[0] == expected
    # A connection opened later, on another thread, gets them too.
    seen = []
    thread = threading.Thread(target=lambda: seen.append(db.query_one(f"PRAGMA {pragma}")[0]))
    thread.start()
    thread.join()
    assert seen == [expected]


def test_foreign_keys_are_enforced(db):
    with db.transaction() as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(f"CREATE TABLE child (id {_id_column(db)}, "
                     "parent_id INTEGER REFERENCES parent (id) ON DELETE CASCADE)")
    with pytest.raises(IntegrityError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO child (parent_id) VALUES (99)")
    with db.transaction() as conn:
        conn.execute("INSERT INTO parent (id) VALUES (1)")
        conn.execute("INSERT INTO child (parent_id) VALUES (1)")
    db.execute("DELETE FROM parent WHERE id = 1")
    assert db.query_one("SELECT count(*) FROM child")[0] == 0


def test_rows_are_addressable_by_column_name(db):
    _make_table(db)
    db.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
    row = db.query_one("SELECT id, name FROM items")
    assert (row["id"], row["name"]) == (1, "a")
    assert db.query_one("SELECT * FROM items WHERE id = 2") is None


# -- transactions -----------------------------------------------------------------------------

def _count(db) -> int:
    # Through a separate connection: only committed rows are visible there.
    if db.dialect.name == "sqlite":
        conn = db.connect_new()
        try:
            return conn.execute("SELECT count(*) FROM items").fetchone()[0]
        finally:
            conn.close()
    with db.borrow() as conn:  # a pooled connection of its own, in autocommit mode
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]


def test_transaction_commits_on_success(db):
    _make_table(db)
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (name) VALUES ('kept')")
        assert conn.in_transaction
    assert not db.connection().in_transaction
    assert _count(db) == 1


def test_transaction_rolls_back_on_exception_and_reraises_it(db):
    _make_table(db)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with db.transaction() as conn:
            conn.execute("INSERT INTO items (name) VALUES ('lost')")
            raise Boom()
    assert _count(db) == 0
    assert not db.connection().in_transaction


def test_constraint_violation_rolls_back_the_whole_transaction(db):
    _make_table(db)
    with pytest.raises(IntegrityError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO items (id, name) VALUES (1, 'first')")
            conn.execute("INSERT INTO items (id, name) VALUES (1, 'duplicate')")
    assert _count(db) == 0


def test_nested_transaction_rollback_keeps_the_outer_work(db):
    _make_table(db)
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (name) VALUES ('outer')")
        with pytest.raises(ValueError):
            with db.transaction() as inner:
                assert inner is conn
                inner.execute("INSERT INTO items (name) VALUES ('inner')")
                raise ValueError("undo only the inner block")
        with db.transaction() as inner:
            inner.execute("INSERT INTO items (name) VALUES ('inner ok')")
    names = [r["name"] for r in db.query("SELECT name FROM items ORDER BY id")]
    assert names == ["outer", "inner ok"]


def test_failure_after_a_nested_block_undoes_it_too(db):
    _make_table(db)
    with pytest.raises(RuntimeError):
        with db.transaction():
            with db.transaction() as inner:
                inner.execute("INSERT INTO items (name) VALUES ('inner')")
            raise RuntimeError()
    assert _count(db) == 0


def test_write_returns_the_functions_result(db):
    _make_table(db)
    row_id = db.write(lambda conn: conn.execute(
        "INSERT INTO items (name) VALUES ('w') RETURNING id").fetchone()[0])
    assert db.query_one("SELECT name FROM items WHERE id = ?", (row_id,))["name"] == "w"


@pytest.mark.sqlite_only("lastrowid (PostgreSQL uses RETURNING)")
def test_write_returns_the_functions_result_with_lastrowid(db):
    _make_table(db)
    row_id = db.write(lambda conn: conn.execute("INSERT INTO items (name) VALUES ('w')").lastrowid)
    assert db.query_one("SELECT name FROM items WHERE id = ?", (row_id,))["name"] == "w"


def test_executemany_inserts_every_row(db):
    _make_table(db)
    with db.transaction():
        db.executemany("INSERT INTO items (name) VALUES (?)", ((f"n{i}",) for i in range(100)))
    assert _count(db) == 100


@pytest.mark.sqlite_only("FTS5 virtual tables")
def test_table_names_lists_user_tables_without_internals_or_fts_shadows(db):
    _make_table(db)
    db.execute("CREATE VIRTUAL TABLE docs USING fts5 (body)")
    db.execute("CREATE TABLE docs_notes (x)")  # looks like a shadow name but is a user table
    names = db.table_names()
    assert "items" in names and "docs" in names
    assert "docs_data" not in names and "docs_idx" not in names
    assert not any(n.startswith("sqlite_") for n in names)


def test_table_names_lists_user_tables_sorted(db):
    _make_table(db)
    db.execute("CREATE TABLE b_notes (x INTEGER)")
    db.execute("CREATE TABLE A_upper (x INTEGER)")
    assert db.table_names() == sorted(db.table_names())
    assert {"items", "b_notes"} <= set(db.table_names())


# -- connections ------------------------------------------------------------------------------

def test_each_thread_gets_its_own_connection_and_reuses_it(db):
    main = db.connection()
    assert db.connection() is main
    others = []
    thread = threading.Thread(target=lambda: others.append(db.connection()))
    thread.start()
    thread.join()
    assert others[0] is not main


@pytest.mark.sqlite_only("one file's writers' connection (PostgreSQL pools its connections)")
def test_every_threads_write_transactions_run_on_one_connection_and_reads_on_their_own(db):
    # SQLite drops a connection's page cache when another connection wrote the file, and
    # SQLCipher decrypts every page it reads back: one writers' connection keeps them warm.
    _make_table(db)
    seen = []

    def write(name):
        def work(conn):
            assert db.connection() is conn  # inside the write, this thread's statements join it
            conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
            return conn
        seen.append((db.write(work), db.connection()))

    threads = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    write("main")

    writers = {id(writer) for writer, _ in seen}
    readers = {id(reader) for _, reader in seen}
    assert len(seen) == 4 and len(writers) == 1 and len(readers) == 4 and not writers & readers
    assert _count(db) == 4


@pytest.mark.sqlite_only("one file's writers' connection (PostgreSQL pools its connections)")
def test_a_setting_made_while_writes_are_held_applies_to_the_next_write_transaction(db):
    _make_table(db)
    with db.writes_held() as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        with db.transaction() as inside:
            assert inside is conn and inside.execute("PRAGMA foreign_keys").fetchone()[0] == 0
        conn.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(StorageError, match="inside a write transaction"):
        with db.transaction(), db.writes_held():
            pass
    assert db.write(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0]) == 1


@pytest.mark.sqlite_only("per-thread connections (PostgreSQL pools them: see the next test)")
def test_close_all_closes_every_threads_connection_and_reuse_reopens(db):
    _make_table(db)
    db.execute("INSERT INTO items (name) VALUES ('before')")
    main = db.connection()
    others = []
    thread = threading.Thread(target=lambda: others.append(db.connection()))
    thread.start()
    thread.join()
    db.close_all()
    for conn in (main, others[0]):
        with pytest.raises(Exception, match="closed"):
            conn.execute("SELECT 1")
    assert db.connection() is not main
    db.execute("INSERT INTO items (name) VALUES ('after')")
    assert _count(db) == 2



def _server_connections(db, databases) -> int:
    """The connections the server has open to ``db``'s database, counted from another object."""
    from twin.storage import open_postgresql

    observer = open_postgresql(dataclasses.replace(db.settings, pool_size=1, pool_max_size=None))
    try:
        deadline = time.monotonic() + 60
        while True:  # a closed connection's server process takes a moment to go
            count = observer.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                       "current_database() AND pid <> pg_backend_pid()")[0]
            if count in (0, db.settings.pool_size) or time.monotonic() > deadline:
                return count
            time.sleep(0.05)
    finally:
        observer.close_all()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_close_all_closes_the_pools_server_connections_and_reuse_reopens(db, databases):
    _make_table(db)
    db.execute("INSERT INTO items (name) VALUES ('before')")
    thread = threading.Thread(target=lambda: db.execute("SELECT 1"))
    thread.start()
    thread.join()
    assert _server_connections(db, databases) == db.settings.pool_size
    db.close_all()
    assert _server_connections(db, databases) == 0
    db.execute("INSERT INTO items (name) VALUES ('after')")
    assert _count(db) == 2

# -- retries when busy ---------------------------------------------------------------------

def test_retry_delays_double_up_to_the_cap_and_spread_over_the_whole_window():
    settings = EngineSettings(retry_base_delay=0.01, retry_max_delay=0.2)
    for attempt, cap in ((0, 0.01), (1, 0.02), (3, 0.08), (5, 0.2), (30, 0.2)):
        delays = [backoff(settings, attempt) for _ in range(2000)]
        assert 0 <= min(delays) and max(delays) <= cap
        # Full jitter: writers that collided draw from all of [0, cap), not from a band of it.
        assert min(delays) < cap * 0.1 and max(delays) > cap * 0.9, attempt


@pytest.mark.sqlite_only("SQLite's busy timeout")
def test_writer_gives_up_with_a_named_error_when_the_lock_is_never_released(db_path, db_key):
    impatient = Database(db_path, db_key, settings=EngineSettings(
        busy_timeout_ms=10, max_retries=2, retry_base_delay=0.001, retry_max_delay=0.002))
    _make_table(impatient)
    holder = impatient.connect_new()
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseBusyError, match="busy after 3 attempts"):
            impatient.write(lambda conn: conn.execute("INSERT INTO items (name) VALUES ('x')"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        impatient.close_all()


@pytest.mark.sqlite_only("SQLite's write lock (BEGIN IMMEDIATE)")
def test_writer_waits_for_a_lock_that_is_released(db):
    _make_table(db)
    holder = db.connect_new()
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO items (name) VALUES ('holder')")
    releaser = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    releaser.start()
    try:
        db.write(lambda conn: conn.execute("INSERT INTO items (name) VALUES ('waiter')"))
    finally:
        releaser.join()
        holder.close()
    assert _count(db) == 2


WRITES_PER_THREAD = 300
THREADS = 2
PROCESSES = 2


def _write_rows(path: str, key: bytes | None, writer: str, count: int) -> None:
    """Each write is its own committed single-row transaction, racing the other writers."""
    database = Database(path, key)
    try:
        for i in range(count):
            database.write(lambda conn, i=i: conn.execute(
                "INSERT INTO items (name) VALUES (?)", (f"{writer}-{i}",)))
    finally:
        database.close_all()


def _write_rows_in_threads(path: str, key: bytes | None, writer: str) -> None:
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            _write_rows(path, key, name, WRITES_PER_THREAD)
        except BaseException as exc:  # reported to the parent through the exit code
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"{writer}-t{n}",)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _assert_every_row_written(db: Database, expected: int) -> None:
    rows = db.query("SELECT name FROM items")
    assert len(rows) == expected
    assert len({r["name"] for r in rows}) == expected


def test_concurrent_threads_lose_no_rows_and_see_no_lock_errors(db, databases):
    _make_table(db)

    def run(name: str) -> None:
        other = databases.again(db)  # as another process would: its own connections
        for i in range(WRITES_PER_THREAD):
            other.write(lambda conn, i=i: conn.execute(
                "INSERT INTO items (name) VALUES (?)", (f"{name}-{i}",)))

    # concurrently() re-raises any error: "database is locked", a conflict not retried...
    concurrently(*(lambda n=n: run(f"t{n}") for n in range(THREADS)))
    _assert_every_row_written(db, THREADS * WRITES_PER_THREAD)


@pytest.mark.sqlite_only('database files shared by processes')
def test_concurrent_processes_lose_no_rows_and_see_no_lock_errors(db, db_path, db_key):
    _make_table(db)
    db.close_all()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_rows_in_threads,
                                 args=(str(db_path), db_key, f"p{n}")) for n in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    _assert_every_row_written(db, PROCESSES * THREADS * WRITES_PER_THREAD)


# -- SQL scripts ------------------------------------------------------------------------------

@pytest.mark.sqlite_only('SQLite trigger syntax and its tokenizer')
def test_execute_script_runs_triggers_comments_and_several_statements_per_line(db):
    script = """
    -- a leading comment; with a semicolon
    CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT DEFAULT 'a;b');
    CREATE TABLE audit (n INTEGER); CREATE TABLE other (n INTEGER); -- two on one line
    CREATE TRIGGER log_audit AFTER INSERT ON log
    BEGIN INSERT INTO audit (n) VALUES (NEW.id); INSERT INTO audit (n) VALUES (-NEW.id); END;
    INSERT INTO log (id) VALUES (1);
    -- a trailing comment
    """
    with db.transaction() as conn:
        execute_script(conn, script)
    assert db.query_one("SELECT msg FROM log")["msg"] == "a;b"
    assert sorted(r["n"] for r in db.query("SELECT n FROM audit")) == [-1, 1]
    assert "other" in db.table_names()


def test_execute_script_stays_inside_the_callers_transaction(db):
    with pytest.raises(Exception):
        with db.transaction() as conn:
            execute_script(conn, "CREATE TABLE a (x); CREATE TABLE b (x);\n"
                                 "INSERT INTO nowhere VALUES (1);")
    assert db.table_names() == []


@pytest.mark.sqlite_only("SQLite's tokenizer")
def test_execute_script_rejects_an_incomplete_last_statement(db):
    with pytest.raises(StorageError, match="incomplete statement"):
        with db.transaction() as conn:
            execute_script(conn, "CREATE TABLE a (x);\nCREATE TABLE b (x")
    assert db.table_names() == []


def test_full_durability_makes_every_connection_fsync_its_commits(tmp_path, db_key):
    durable = Database(tmp_path / "durable.db", db_key, settings=EngineSettings(durability="full"))
    try:
        assert durable.query_one("PRAGMA synchronous")[0] == 2  # FULL: the WAL is synced per commit
    finally:
        durable.close_all()
    with pytest.raises(StorageError, match="durability"):
        EngineSettings(durability="paranoid")


def test_a_disk_full_error_is_told_apart_from_other_errors():
    from twin.storage.engine import is_full_error
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # SQLITE_FULL
    other = sqlite3.OperationalError("no such table: x")
    other.sqlite_errorcode = 1

    assert is_full_error(full) and not is_full_error(other)
    assert not is_full_error(ValueError("database or disk is full"))
