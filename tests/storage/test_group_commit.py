"""Group commit (Database.write_shared): concurrent writers share transactions, each gets
its own result, and a failing write is rolled back alone."""

from __future__ import annotations

import threading

import pytest



@pytest.fixture
def db(databases):
    database = databases.new("gc")
    id_column = "INTEGER PRIMARY KEY" if database.dialect.name == "sqlite" else database.dialect.identity
    database.execute(f"CREATE TABLE items (id {id_column}, value TEXT NOT NULL UNIQUE)")
    return database


def insert(value):
    return lambda conn: conn.execute("INSERT INTO items (value) VALUES (?) RETURNING id",
                                     (value,)).fetchone()[0]


def test_a_lone_write_commits_and_returns_its_own_result(db):
    row_id = db.write_shared(insert("only"))
    assert db.query_one("SELECT value FROM items WHERE id = ?", (row_id,))["value"] == "only"


def test_concurrent_writers_all_commit_share_transactions_and_get_their_own_ids(db):
    results: dict[str, int] = {}
    start = threading.Barrier(16)

    def worker(t: int) -> None:
        start.wait()
        for i in range(50):
            value = f"t{t}-{i}"
            results[value] = db.write_shared(insert(value))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = {r["value"]: r["id"] for r in db.query("SELECT id, value FROM items")}
    assert len(stored) == 800 and stored == results  # nothing lost or duplicated, own ids


def test_a_failing_write_is_rolled_back_alone_and_raises_for_its_caller_only(db):
    db.write_shared(insert("taken"))
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def duplicate() -> None:
        barrier.wait()
        try:
            db.write_shared(insert("taken"))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    def fresh() -> None:
        barrier.wait()
        outcome["id"] = db.write_shared(insert("fresh"))

    threads = [threading.Thread(target=duplicate), threading.Thread(target=fresh)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "UNIQUE" in str(outcome["error"])
    assert {r["value"] for r in db.query("SELECT value FROM items")} == {"taken", "fresh"}
    assert db.write_shared(insert("after")) > 0  # leadership was released


def test_inside_an_open_transaction_the_write_joins_it(db):
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.write_shared(insert("rolled back with the outer transaction"))
            raise RuntimeError("abort")
    assert db.query_one("SELECT count(*) FROM items")[0] == 0


def test_a_lone_failing_write_raises_and_leaves_nothing_behind(db):
    db.write_shared(insert("taken"))

    with pytest.raises(Exception, match="UNIQUE"):
        db.write_shared(insert("taken"))

    assert [r["value"] for r in db.query("SELECT value FROM items")] == ["taken"]
    assert db.write_shared(insert("after")) > 0  # leadership was released



def test_a_write_whose_statement_at_commit_fails_is_rolled_back_alone(db):
    from twin.storage.group_commit import GroupCommitter
    from twin.storage.pipeline import execute_at_commit

    db.write_shared(insert("taken"))
    committer, outcome = GroupCommitter(db), {}
    held, release = threading.Event(), threading.Event()

    def holding(conn):
        held.set()
        assert release.wait(30)
        return insert("first")(conn)

    def deferred_duplicate(conn):
        execute_at_commit(conn, "INSERT INTO items (value) VALUES (?)", ("taken",))
        return "sent at commit"

    def run(name, fn):
        try:
            outcome[name] = committer.submit(fn)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome[name] = exc

    first = threading.Thread(target=run, args=("first", holding))
    first.start()
    assert held.wait(30)
    queued = [threading.Thread(target=run, args=("duplicate", deferred_duplicate)),
              threading.Thread(target=run, args=("fresh", insert("fresh")))]
    for thread in queued:
        thread.start()
    for _ in range(3000):  # bounded: both are queued behind the held leader within moments
        if len(committer._pending) == 2:
            break
        threading.Event().wait(0.01)
    release.set()
    for thread in (first, *queued):
        thread.join()

    assert "UNIQUE" in str(outcome["duplicate"])
    assert isinstance(outcome["first"], int) and isinstance(outcome["fresh"], int)
    assert {r["value"] for r in db.query("SELECT value FROM items")} == {"taken", "first", "fresh"}

# -- combined batches (GroupCommitter(db, combine=...)): one function writes every item at once --

def _queue_behind_a_held_leader(combining, values, outcome):
    """Submit values[0] (its combine holds the leader until released), then the others while
    it is held; returns (release, threads)."""
    committer = combining.committer
    held, release = threading.Event(), threading.Event()
    first = threading.Thread(target=lambda: outcome.setdefault(values[0], _submit(committer, values[0])))
    combining.hold = (held, release)
    first.start()
    assert held.wait(30)
    others = [threading.Thread(target=lambda v=v: outcome.setdefault(v, _submit(committer, v)))
              for v in values[1:]]
    for thread in others:
        thread.start()
    for _ in range(3000):  # bounded: each waiter is queued within moments of starting
        if len(committer._pending) == len(others):
            break
        threading.Event().wait(0.01)
    return release, [first, *others]


def _submit(committer, value):
    try:
        return committer.submit(value)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc


class Combining:
    """A combine function recording its batches; the first waits while ``hold`` is set."""

    def __init__(self, db):
        from twin.storage.group_commit import GroupCommitter

        self.batches = []
        self.hold = None
        self.committer = GroupCommitter(db, combine=self.combine, lock="items")

    def combine(self, conn, values):
        self.batches.append(list(values))
        hold, self.hold = self.hold, None
        if hold is not None:
            hold[0].set()
            assert hold[1].wait(30)
        rows = conn.execute("INSERT INTO items (value) VALUES " + ", ".join(["(?)"] * len(values))
                            + " RETURNING id, value", list(values)).fetchall()
        ids = {row["value"]: row["id"] for row in rows}
        return [ids[value] for value in values]


def test_items_queued_meanwhile_are_written_together_by_one_combine_call(db):
    combining, outcome = Combining(db), {}
    release, threads = _queue_behind_a_held_leader(combining, ["a", "b", "c", "d"], outcome)
    release.set()
    for thread in threads:
        thread.join()

    assert combining.batches[0] == ["a"] and sorted(combining.batches[1]) == ["b", "c", "d"]
    stored = {r["value"]: r["id"] for r in db.query("SELECT id, value FROM items")}
    assert stored == outcome  # each caller got its own row's id


def test_a_combined_batch_that_fails_raises_for_each_of_its_callers_and_writes_nothing(db):
    db.execute("INSERT INTO items (value) VALUES ('taken')")
    combining, outcome = Combining(db), {}
    release, threads = _queue_behind_a_held_leader(combining, ["first", "x", "taken", "y"],
                                                   outcome)
    release.set()
    for thread in threads:
        thread.join()

    assert isinstance(outcome["first"], int)
    assert all("UNIQUE" in str(outcome[v]) for v in ("x", "taken", "y"))
    assert {r["value"] for r in db.query("SELECT value FROM items")} == {"taken", "first"}
    assert combining.committer.submit("after") > 0  # leadership was released
