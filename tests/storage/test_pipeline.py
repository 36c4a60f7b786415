"""Independent statements sent together (``execute_all``) and statements sent with the COMMIT
(``execute_at_commit``): the same outcome on both backends, fewer round trips on a server."""

from __future__ import annotations

import pytest

from twin.storage import Counts, IntegrityError, StorageError
from twin.storage.pipeline import execute_all, execute_at_commit


@pytest.fixture
def db(databases):
    db = databases.new("pipelined")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    db.enable_statement_counting()
    return db


def _names(db) -> list[str]:
    return [r["name"] for r in db.query("SELECT name FROM items ORDER BY id")]


def _server(db) -> bool:
    return db.dialect.name == "postgresql"


def test_statements_sent_together_run_in_order_and_each_answers(db):
    before = db.statement_counts()
    with db.transaction() as conn:
        inserted, renamed, counted, listed = execute_all(conn, [
            ("INSERT INTO items (id, name) VALUES (?, ?) RETURNING id", (1, "a")),
            ("UPDATE items SET name = ? WHERE id = ?", ("b", 1)),
            ("SELECT count(*) FROM items", ()),
            ("SELECT name FROM items WHERE id = ?", (1,))])

    assert inserted.fetchone()[0] == 1 and renamed.rowcount == 1
    assert counted.fetchone()[0] == 1          # the server ran them in order
    assert [r["name"] for r in listed.fetchall()] == ["b"]
    spent = db.statement_counts() - before
    # BEGIN and the four in one round trip, then COMMIT; SQLite: each its own call.
    assert spent == (Counts(6, 1, 2) if _server(db) else Counts(6, 1, 6))


def test_a_failing_statement_among_them_fails_the_transaction_and_keeps_nothing(db):
    db.execute("INSERT INTO items (id, name) VALUES (1, 'taken')")
    with pytest.raises(IntegrityError):
        with db.transaction() as conn:
            execute_all(conn, [("INSERT INTO items (id, name) VALUES (2, 'new')", ()),
                               ("INSERT INTO items (id, name) VALUES (3, 'taken')", ()),
                               ("INSERT INTO items (id, name) VALUES (4, 'after')", ())])
    assert _names(db) == ["taken"]
    assert not db.connection().in_transaction
    db.execute("INSERT INTO items (id, name) VALUES (5, 'usable')")
    assert _names(db) == ["taken", "usable"]


def test_a_statement_at_commit_is_committed_with_the_commit(db):
    before = db.statement_counts()
    db.write(lambda conn: execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (?, ?)", (1, "late")))
    spent = db.statement_counts() - before
    assert _names(db) == ["late"]
    # BEGIN, the INSERT and COMMIT in one round trip on a server.
    assert spent == (Counts(3, 1, 1) if _server(db) else Counts(3, 1, 3))


def test_a_statement_at_commit_is_seen_by_the_statements_after_it(db):
    def fn(conn):
        execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (1, 'first')")
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]

    assert db.write(fn) == 1
    assert _names(db) == ["first"]


def test_a_failing_statement_at_commit_is_the_commits_failure_and_keeps_nothing(db):
    db.execute("INSERT INTO items (id, name) VALUES (1, 'taken')")

    def fn(conn):
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'kept only with the rest')")
        execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (3, 'taken')")

    with pytest.raises(IntegrityError):
        db.write(fn)
    assert _names(db) == ["taken"]
    assert not db.connection().in_transaction
    db.write(lambda conn: execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (4, 'next')"))
    assert _names(db) == ["taken", "next"]


def test_a_rolled_back_transaction_sends_nothing_it_kept_for_the_commit(db):
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (1, 'never')")
            raise RuntimeError("changed my mind")
    assert _names(db) == []


def test_a_statement_at_commit_in_a_rolled_back_savepoint_is_undone_with_it(db):
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'outer')")
        with pytest.raises(RuntimeError):
            with db.transaction():
                execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (2, 'inner')")
                raise RuntimeError("undo the savepoint")
    assert _names(db) == ["outer"]


def test_a_failing_statement_at_commit_in_a_savepoint_rolls_back_alone_and_the_outer_commits(db):
    # The same program as with conn.execute: the nested failure is caught, the outer commits.
    db.execute("INSERT INTO items (id, name) VALUES (1, 'taken')")
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'outer')")
        with pytest.raises(IntegrityError):
            with db.transaction():
                execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (3, 'taken')")
        execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (4, 'after')")
    assert _names(db) == ["taken", "outer", "after"]


@pytest.mark.postgresql_only("statements kept for the commit (SQLite runs them at once)")
def test_a_savepoint_rolled_back_by_an_error_raises_that_error_not_its_unsent_statements(db):
    db.execute("INSERT INTO items (id, name) VALUES (1, 'taken')")
    with db.transaction() as conn:
        with pytest.raises(RuntimeError, match="the caller's own error"):
            with db.transaction():
                execute_at_commit(conn, "INSERT INTO items (id, name) VALUES (2, 'taken')")
                raise RuntimeError("the caller's own error")
        conn.execute("INSERT INTO items (id, name) VALUES (3, 'outer')")
    assert _names(db) == ["taken", "outer"]


@pytest.mark.postgresql_only("a failed statement aborts a server's transaction")
def test_a_transaction_aborted_by_a_caught_failure_refuses_to_commit_and_keeps_nothing(db):
    db.execute("INSERT INTO items (id, name) VALUES (1, 'taken')")
    with pytest.raises(StorageError, match="aborted"):
        with db.transaction() as conn:
            conn.execute("INSERT INTO items (id, name) VALUES (2, 'lost with the rest')")
            with pytest.raises(IntegrityError):
                conn.execute("INSERT INTO items (id, name) VALUES (3, 'taken')")
    assert _names(db) == ["taken"]  # never reported committed: the server rolled it back
    assert not db.connection().in_transaction
    db.execute("INSERT INTO items (id, name) VALUES (4, 'next')")
    assert _names(db) == ["taken", "next"]
