"""Bulk inserts (twin.storage.bulk.insert_rows) on each backend: every row lands, in the caller's
transaction, and a failing row fails the whole batch."""

from __future__ import annotations

import pytest

from twin.storage import IntegrityError
from twin.storage.bulk import COPY_FROM_ROWS, SQLITE_ROWS_PER_STATEMENT, insert_rows


@pytest.fixture
def db(databases):
    db = databases.new("bulk")
    db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, label TEXT NOT NULL, data BYTEA)"
                if db.dialect.name == "postgresql" else
                "CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT NOT NULL, data BLOB)")
    return db


@pytest.mark.parametrize("count", [1, COPY_FROM_ROWS - 1, COPY_FROM_ROWS, SQLITE_ROWS_PER_STATEMENT + 7])
def test_every_row_lands_with_its_values(db, count):
    rows = [(i, f"row {i} 100% 'quoted' \\ tab\t", bytes([i % 256, 0, 255])) for i in range(count)]
    with db.transaction() as conn:
        assert insert_rows(conn, "t", ("id", "label", "data"), rows) == count
    assert [tuple(r) for r in db.query("SELECT id, label, data FROM t ORDER BY id")] == rows


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 1])
def test_a_failing_row_fails_the_batch_and_nothing_is_written(db, count):
    rows = [(i, "x", None) for i in range(count)] + [(0, "duplicate id", None)]
    with pytest.raises(IntegrityError), db.transaction() as conn:
        insert_rows(conn, "t", ("id", "label", "data"), rows)
    assert db.query_one("SELECT count(*) FROM t")[0] == 0


def test_no_rows_is_nothing_to_do(db):
    with db.transaction() as conn:
        assert insert_rows(conn, "t", ("id", "label"), []) == 0


@pytest.mark.parametrize("count", [1, COPY_FROM_ROWS - 1, COPY_FROM_ROWS])
def test_rows_sent_at_commit_land_when_the_transaction_commits(db, count):
    rows = [(i, f"row {i}", None) for i in range(count)]
    with db.transaction() as conn:
        assert insert_rows(conn, "t", ("id", "label", "data"), rows, at_commit=True) == count
    assert [tuple(r) for r in db.query("SELECT id, label, data FROM t ORDER BY id")] == rows


def test_a_failing_row_sent_at_commit_fails_the_write_and_nothing_is_written(db):
    db.execute("INSERT INTO t (id, label) VALUES (0, 'already there')")

    def write(conn):
        conn.execute("INSERT INTO t (id, label) VALUES (?, ?)", (100, "before"))
        insert_rows(conn, "t", ("id", "label"), [(1, "x"), (0, "duplicate id")], at_commit=True)

    with pytest.raises(IntegrityError):
        db.write(write)
    assert [tuple(r) for r in db.query("SELECT id, label FROM t ORDER BY id")] == [(0, "already there")]


@pytest.mark.postgresql_only("round trips to a database server")
def test_rows_sent_at_commit_cost_no_round_trip_of_their_own(db):
    db.execute("SELECT 1")  # warm: the pool's connection
    before = db.counter.this_thread()
    with db.transaction() as conn:
        conn.execute("SELECT count(*) FROM t")
        insert_rows(conn, "t", ("id", "label"), [(1, "a"), (2, "b")], at_commit=True)
    # BEGIN with the SELECT; the INSERT with the COMMIT.
    assert (db.counter.this_thread() - before).round_trips == 2
    assert db.query_one("SELECT count(*) FROM t")[0] == 2


@pytest.mark.parametrize("count", [2, SQLITE_ROWS_PER_STATEMENT * 2 + 3])
def test_values_every_row_shares_land_as_each_row_held_them(db, count):
    # A batch's shared objects (its label, a column of None) are bound once on SQLite; equal
    # values of different types are not the same object and keep their own type.
    label = "shared label"
    rows = [(i, label, None) for i in range(count)]
    with db.transaction() as conn:
        insert_rows(conn, "t", ("id", "label", "data"), rows)
        insert_rows(conn, "t", ("label", "id", "data"), [(label, -1, b"same"), (label, -2, b"same")])
    assert [tuple(r) for r in db.query("SELECT id, label, data FROM t WHERE id >= 0 ORDER BY id")] == rows
    assert [tuple(r) for r in db.query("SELECT id, data FROM t WHERE id < 0 ORDER BY id")] == [
        (-2, b"same"), (-1, b"same")]


def test_equal_values_of_different_types_keep_their_types():
    import sqlcipher3

    conn = sqlcipher3.connect(":memory:")
    conn.execute("CREATE TABLE u (a, b)")
    insert_rows(conn, "u", ("a", "b"), [(1, "x"), (1.0, "x"), (True, "x")])
    assert conn.execute("SELECT a, typeof(a) FROM u ORDER BY rowid").fetchall() == [
        (1, "integer"), (1.0, "real"), (1, "integer")]
