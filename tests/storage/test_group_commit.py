"""Group commit: concurrent submitters share transactions, each gets its own result."""

from __future__ import annotations

import threading

import pytest

from twin.storage import Database
from twin.storage.group_commit import GroupCommitter


@pytest.fixture
def db(tmp_path, db_key):
    database = Database(tmp_path / "gc.db", db_key)
    database.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL, batch INTEGER)")
    yield database
    database.close_all()


class Recorder:
    """write_batch that inserts a batch and remembers each batch's size."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, conn, items):
        self.batches.append(len(items))
        ids = []
        for value in items:
            if value == "boom":
                raise ValueError("bad item")
            ids.append(conn.execute("INSERT INTO items (value, batch) VALUES (?, ?)",
                                    (value, len(self.batches))).lastrowid)
        return ids


def test_a_lone_submit_is_written_and_returns_its_own_result(db):
    committer = GroupCommitter(db, Recorder())
    row_id = committer.submit("only")
    assert db.query_one("SELECT value FROM items WHERE id = ?", (row_id,))["value"] == "only"


def test_concurrent_submitters_all_commit_share_transactions_and_get_their_own_ids(db):
    recorder = Recorder()
    committer = GroupCommitter(db, recorder)
    results: dict[str, int] = {}
    start = threading.Barrier(16)

    def worker(t: int) -> None:
        start.wait()
        for i in range(50):
            value = f"t{t}-{i}"
            results[value] = committer.submit(value)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 800
    stored = {r["value"]: r["id"] for r in db.query("SELECT id, value FROM items")}
    assert stored == results  # nothing lost, nothing duplicated, each caller got its own row id
    assert sum(recorder.batches) == 800
    assert len(recorder.batches) < 800  # some transactions carried several submitters


def test_a_failing_batch_raises_for_its_submitters_and_writes_none_of_it(db):
    committer = GroupCommitter(db, Recorder())
    with pytest.raises(ValueError, match="bad item"):
        committer.submit("boom")
    assert db.query_one("SELECT count(*) FROM items")[0] == 0
    assert committer.submit("after") > 0  # leadership was released: later submits still work
