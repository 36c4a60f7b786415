"""What every backend promises alike: placeholders, rows, bytes, JSON, constraint errors,
named locks, retries of conflicting writers, and statement counts at the driver."""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager

import pytest

from storage_backends import concurrently, held_elsewhere
from twin.storage import (Counts, DatabaseBusyError, IntegrityError, RawSQL, StorageError,
                          StorageFullError)


@pytest.fixture
def db(databases):
    database = databases.new("contract")
    d = database.dialect
    id_column = "INTEGER PRIMARY KEY" if d.name == "sqlite" else d.identity
    with database.transaction() as conn:
        conn.execute(f"CREATE TABLE items (id {id_column}, name TEXT UNIQUE, body {d.bytes}, "
                     f"doc {d.json}, score {d.float} CHECK (score IS NULL OR score >= 0), "
                     "parent INTEGER REFERENCES items (id), label TEXT NOT NULL DEFAULT 'x')")
        conn.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
        conn.execute("INSERT INTO counter (id, value) VALUES (1, 0), (2, 0)")
    return database


# -- placeholders ----------------------------------------------------------------------------

def test_qmark_and_named_placeholders_work_and_literals_stay_literal(db):
    db.execute("INSERT INTO items (name, label) VALUES (?, ?)", ("a?b", "50% :off"))
    db.execute("INSERT INTO items (name, label) VALUES (:name, :label)", {"name": "c", "label": "it's"})
    rows = db.query("SELECT name, label, 'lit ? :x %' AS lit FROM items WHERE name IN (?, ?) "
                    "ORDER BY name", ("a?b", "c"))
    assert [(r["name"], r["label"], r["lit"]) for r in rows] == [
        ("a?b", "50% :off", "lit ? :x %"), ("c", "it's", "lit ? :x %")]
    # A statement without parameters is passed as it is, '%' and '?' in literals included.
    assert db.query_one("SELECT '100%' AS p, '?' AS q")[0:2] == ("100%", "?")


def test_the_same_named_parameter_may_appear_twice(db):
    db.execute("INSERT INTO items (name, label) VALUES (:v, :v)", {"v": "twice"})
    assert tuple(db.query_one("SELECT name, label FROM items")) == ("twice", "twice")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_only_sql_may_use_casts_and_raw_driver_syntax(db):
    db.execute("INSERT INTO items (name, doc) VALUES (?, ?)", ("j", json.dumps({"k": 1})))
    assert db.query_one("SELECT ?::text || '!' AS t", ("cast",))["t"] == "cast!"
    # The jsonb '?' operator is not a placeholder in RawSQL (psycopg's own %s style).
    row = db.query_one(RawSQL("SELECT name FROM items WHERE doc ? %s"), ("k",))
    assert row["name"] == "j"


# -- rows, bytes, JSON -----------------------------------------------------------------------

def test_rows_read_by_index_by_name_case_insensitively_and_as_tuples(db):
    db.execute("INSERT INTO items (name, score) VALUES ('r', 0.5)")
    row = db.query_one("SELECT id, name, score AS Score FROM items")
    assert (row[0], row[1], row[2]) == (1, "r", 0.5)
    assert (row["id"], row["NAME"], row["score"], row["Score"]) == (1, "r", 0.5, 0.5)
    assert tuple(row) == (1, "r", 0.5) and len(row) == 3
    assert [k.lower() for k in row.keys()] == ["id", "name", "score"]
    with pytest.raises(IndexError):
        row["missing"]


@pytest.mark.parametrize("value", [b"\x00\x01\xff" * 100, bytearray(b"\x00ab"), memoryview(b"\x00cd")])
def test_bytes_go_in_as_bytes_bytearray_or_memoryview_and_come_back_as_bytes(db, value):
    db.execute("INSERT INTO items (name, body) VALUES ('b', ?)", (value,))
    body = db.query_one("SELECT body FROM items")["body"]
    assert type(body) is bytes and body == bytes(value)


def test_json_columns_come_back_as_the_text_code_parses(db):
    doc = {"goals": ["algebra"], "n": 2}
    db.execute("INSERT INTO items (name, doc) VALUES ('j', ?)", (json.dumps(doc),))
    stored = db.query_one("SELECT doc FROM items")["doc"]
    assert isinstance(stored, str) and json.loads(stored) == doc


def test_floats_keep_eight_bytes(db):
    db.execute("INSERT INTO items (name, score) VALUES ('f', ?)", (0.1 + 0.2,))
    assert db.query_one("SELECT score FROM items")[0] == 0.1 + 0.2


def test_insert_returning_gives_the_new_id_on_both_backends(db):
    first = db.execute("INSERT INTO items (name) VALUES ('one') RETURNING id").fetchone()["id"]
    second = db.execute("INSERT INTO items (name) VALUES ('two') RETURNING id").fetchone()["id"]
    assert second == first + 1


# -- constraint errors -----------------------------------------------------------------------

@pytest.mark.parametrize("sql, params, kind", [
    ("INSERT INTO items (name) VALUES (?)", ("dup",), "UNIQUE"),
    ("INSERT INTO items (name, parent) VALUES ('child', ?)", (999,), "FOREIGN KEY"),
    ("INSERT INTO items (name, score) VALUES ('neg', ?)", (-1.0,), "CHECK"),
    ("INSERT INTO items (name, label) VALUES ('nolabel', ?)", (None,), "NOT NULL"),
])
def test_every_constraint_violation_is_an_integrity_error_naming_its_kind(db, sql, params, kind):
    db.execute("INSERT INTO items (name) VALUES ('dup')")
    with pytest.raises(IntegrityError) as excinfo:
        db.execute(sql, params)
    assert f"{kind} constraint failed" in str(excinfo.value)


def test_a_constraint_error_never_quotes_the_rows_values(db):
    secret = "SECRET-VALUE-hash-7f3a"
    db.execute("INSERT INTO items (name) VALUES (?)", (secret,))
    with pytest.raises(IntegrityError) as excinfo:
        db.execute("INSERT INTO items (name) VALUES (?)", (secret,))
    assert secret not in str(excinfo.value)
    assert excinfo.value.__cause__ is None


def test_a_statement_expected_to_fail_goes_in_a_nested_transaction(db):
    # PostgreSQL aborts a whole transaction on a failed statement; a savepoint contains it.
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (name) VALUES ('kept')")
        with pytest.raises(IntegrityError):
            with db.transaction():
                conn.execute("INSERT INTO items (name) VALUES ('kept')")
        conn.execute("INSERT INTO items (name) VALUES ('also kept')")
    assert [r["name"] for r in db.query("SELECT name FROM items ORDER BY id")] == ["kept", "also kept"]


def test_a_failing_first_statement_rolls_back_and_leaves_the_database_usable(db):
    db.execute("INSERT INTO items (name) VALUES ('dup')")
    for _ in range(3):  # each time on a pooled connection that must come back clean
        with pytest.raises(IntegrityError):
            with db.transaction() as conn:
                conn.execute("INSERT INTO items (name) VALUES ('dup')")
        assert not db.connection().in_transaction
    db.write(lambda conn: conn.execute("INSERT INTO items (name) VALUES ('next')"))
    assert [r["name"] for r in db.query("SELECT name FROM items ORDER BY id")] == ["dup", "next"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_lastrowid_on_postgresql_says_to_use_returning(db):
    result = db.execute("INSERT INTO items (name) VALUES ('x')")
    with pytest.raises(StorageError, match="add RETURNING"):
        result.lastrowid


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_full_server_disk_is_the_storage_full_error_the_api_answers_507_with(db):
    # The server itself raises disk_full (SQLSTATE 53100), as it does when it cannot extend a
    # relation or the WAL; the write is rolled back and the database stays usable.
    with pytest.raises(StorageFullError, match="disk .*full.*rolled back"):
        with db.transaction() as conn:
            conn.execute("INSERT INTO items (name) VALUES ('lost')")
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'could not extend file' "
                         "USING ERRCODE = 'disk_full'; END $$")
    assert db.query("SELECT name FROM items") == []
    assert db.query_one("SELECT 1")[0] == 1


# -- named locks -----------------------------------------------------------------------------

def test_a_named_lock_serialises_writers_on_separate_connections(db, databases):
    others = [databases.again(db) for _ in range(2)]
    spans: list[tuple[float, float]] = []
    start = threading.Barrier(2)

    def increment(conn) -> None:
        value = conn.execute("SELECT value FROM counter WHERE id = 1").fetchone()[0]
        entered = time.monotonic()  # held by now: the lock travels with the first statement
        time.sleep(0.2)  # the other writer would read the same value now, without the lock
        conn.execute("UPDATE counter SET value = ? WHERE id = 1", (value + 1,))
        spans.append((entered, time.monotonic()))

    def run(other) -> None:
        start.wait()
        other.write(increment, lock="counter-chain")

    concurrently(*(lambda o=o: run(o) for o in others))
    assert db.query_one("SELECT value FROM counter WHERE id = 1")[0] == 2
    (a_start, a_end), (b_start, b_end) = sorted(spans)
    assert a_end <= b_start  # one holder after the other, never overlapping


def test_lock_outside_a_transaction_is_refused(db):
    with pytest.raises(StorageError, match="needs an open transaction"):
        db.lock("x")


@contextmanager
def _holding(db, name: str):
    with db.transaction(lock=name) as conn:
        conn.execute("SELECT 1")  # a transaction's lock travels with its first statement
        yield


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_lock_without_waiting_says_whether_it_got_the_lock(db, databases):
    other = databases.again(db)
    with held_elsewhere(lambda: _holding(other, "busy-name")):
        with db.transaction():
            assert db.lock("busy-name", wait=False) is False
            assert db.lock("another-name", wait=False) is True
    with db.transaction():
        assert db.lock("busy-name", wait=False) is True


# -- conflicts are retried -------------------------------------------------------------------

def _race(db, databases, body) -> list[int]:
    """Two writers run ``body(conn, first_attempt)`` at once; returns attempts per writer."""
    others = [databases.again(db) for _ in range(2)]
    barrier = threading.Barrier(2)
    attempts = [0, 0]

    def run(n: int) -> None:
        def fn(conn):
            attempts[n] += 1
            return body(conn, n, barrier if attempts[n] == 1 else None)
        others[n].write(fn)

    concurrently(lambda: run(0), lambda: run(1))
    return attempts


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_serialization_failure_reruns_the_writer_and_loses_no_update(db, databases, caplog):
    def read_then_write(conn, n, barrier):
        value = conn.execute("SELECT value FROM counter WHERE id = 1").fetchone()[0]
        if barrier is not None:
            barrier.wait(10)  # both have read the same value
        conn.execute("UPDATE counter SET value = ? WHERE id = 1", (value + 1,))

    with caplog.at_level(logging.DEBUG, logger="twin.storage.postgresql.database"):
        attempts = _race(db, databases, read_then_write)
    assert db.query_one("SELECT value FROM counter WHERE id = 1")[0] == 2
    # One writer commits at once; the other is re-run (twice when its re-run starts before
    # the winner's commit and meets it again: how often is the scheduler's choice).
    assert min(attempts) == 1 and max(attempts) >= 2
    assert "could not serialize access" in caplog.text


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_deadlock_reruns_the_victim_and_both_writers_commit(db, databases, caplog):
    def opposite_order(conn, n, barrier):
        first, second = (1, 2) if n == 0 else (2, 1)
        conn.execute("UPDATE counter SET value = value + 1 WHERE id = ?", (first,))
        if barrier is not None:
            barrier.wait(10)  # each holds one row and now asks for the other's
        conn.execute("UPDATE counter SET value = value + 1 WHERE id = ?", (second,))

    with caplog.at_level(logging.DEBUG, logger="twin.storage.postgresql.database"):
        attempts = _race(db, databases, opposite_order)
    assert [r[0] for r in db.query("SELECT value FROM counter ORDER BY id")] == [2, 2]
    # One writer commits at once; the other is re-run (twice when its re-run starts before
    # the winner's commit and meets it again: how often is the scheduler's choice).
    assert min(attempts) == 1 and max(attempts) >= 2
    assert "deadlock detected" in caplog.text or "could not serialize" in caplog.text


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_writer_that_keeps_conflicting_gives_up_with_a_named_error(databases):
    db = databases.new("impatient", max_retries=0)
    db.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("INSERT INTO counter VALUES (1, 0)")
    other = databases.again(db)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def run(database) -> None:
        def fn(conn):
            value = conn.execute("SELECT value FROM counter").fetchone()[0]
            barrier.wait(10)
            conn.execute("UPDATE counter SET value = ?", (value + 1,))
        try:
            database.write(fn)
            outcomes.append("ok")
        except DatabaseBusyError as exc:
            outcomes.append(str(exc))

    concurrently(lambda: run(db), lambda: run(other))
    assert outcomes.count("ok") == 1
    (failure,) = [o for o in outcomes if o != "ok"]
    assert failure == ("impatient: transaction kept conflicting after 1 attempts "
                       "(could not serialize access due to concurrent update)")


# -- statement counts ------------------------------------------------------------------------

def test_statements_and_transactions_are_counted_at_the_driver(db):
    db.enable_statement_counting()
    before = db.statement_counts()
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (name) VALUES ('c1')")
        conn.execute("INSERT INTO items (name) VALUES ('c2')")
    # BEGIN, two INSERTs, COMMIT; on PostgreSQL BEGIN travels with the first INSERT.
    round_trips = 3 if db.dialect.name == "postgresql" else 4
    assert db.statement_counts() - before == Counts(statements=4, transactions=1, round_trips=round_trips)
    before = db.statement_counts()
    db.query("SELECT name FROM items")
    assert db.statement_counts() - before == Counts(statements=1, transactions=0, round_trips=1)


def test_a_transactions_named_lock_travels_with_its_first_statement(db):
    db.enable_statement_counting()
    before = db.statement_counts()
    db.write(lambda conn: conn.execute("INSERT INTO items (name) VALUES ('locked')"), lock="items-chain")
    # PostgreSQL: BEGIN, the advisory lock and the INSERT in one round trip, then COMMIT;
    # SQLite: the write lock is BEGIN IMMEDIATE's.
    expected = Counts(4, 1, 2) if db.dialect.name == "postgresql" else Counts(3, 1, 3)
    assert db.statement_counts() - before == expected


def test_a_transaction_that_runs_no_statement_costs_nothing_on_a_server(db):
    db.enable_statement_counting()
    before = db.statement_counts()
    with db.transaction():
        pass
    spent = db.statement_counts() - before
    assert spent == (Counts() if db.dialect.name == "postgresql" else Counts(2, 1, 2))


def test_counts_sum_every_thread(db):
    db.enable_statement_counting()
    before = db.statement_counts()
    concurrently(*[lambda: db.query("SELECT 1")] * 3)
    assert (db.statement_counts() - before).statements == 3


# -- streaming long reads -------------------------------------------------------------------

def test_a_snapshot_streams_a_long_result_in_batches_and_sees_no_later_commit(db):
    from twin.storage.streaming import stream_rows

    db.executemany("INSERT INTO items (name) VALUES (?)", [(f"n{i:04d}",) for i in range(1000)])
    batches = []
    with db.snapshot() as conn:
        for rows in stream_rows(conn, "SELECT name FROM items WHERE name >= ? ORDER BY name", ("n",), 300):
            batches.append([r["name"] for r in rows])
            if len(batches) == 1:  # committed while the stream is half-way: not in it
                db.execute("INSERT INTO items (name) VALUES ('n9999')")
    assert [len(b) for b in batches] == [300, 300, 300, 100]
    assert [n for b in batches for n in b] == [f"n{i:04d}" for i in range(1000)]
    assert db.query_one("SELECT count(*) FROM items")[0] == 1001


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_on_a_server_the_stream_reads_through_a_server_side_cursor_closed_after_its_last_row(db):
    from twin.storage.streaming import stream_rows

    db.executemany("INSERT INTO items (name) VALUES (?)", [(f"n{i}",) for i in range(50)])
    open_cursors = []
    with db.snapshot() as conn:
        stream = stream_rows(conn, "SELECT name FROM items ORDER BY id", (), 20)
        for _ in stream:
            open_cursors.append(conn.execute("SELECT count(*) FROM pg_cursors WHERE name LIKE 'twin_stream_%'")
                                .fetchone()[0])
        after = conn.execute("SELECT count(*) FROM pg_cursors WHERE name LIKE 'twin_stream_%'").fetchone()[0]
    assert open_cursors == [1, 1, 1] and after == 0
