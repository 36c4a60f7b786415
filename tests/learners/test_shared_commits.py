"""Requests' writes on a file share commits (``LearnerContext.write``): concurrent creates of
one process go into one transaction, each in its savepoint, so a refused one (a duplicate user)
is rolled back alone and every other is committed and served."""

from __future__ import annotations

import threading
import time

import pytest

from compliance.audit import Actor
from twin.learners.errors import DuplicateProfileError

SERVICE = Actor("tok_learners_service", "service")
_WAITERS = 5


def _create(runtime, user_id):
    return runtime.profiles.create(SERVICE, f"req-{user_id}", {"user_id": user_id, "personal": {"name": user_id}})


def _queued(db) -> int:
    group = db._group  # the write_shared queue: who waits for the next shared commit
    return 0 if group is None else len(group._pending)


def _leading(db) -> bool:
    group = db._group  # a leader took its batch and waits for the write lock
    return group is not None and group._leader_active


def test_concurrent_creates_share_one_commit_and_a_duplicate_is_refused_alone(runtime):
    _create(runtime, "taken")  # also fills the key lease: no create below waits for the vault
    db = runtime.twin_db
    db.enable_statement_counting()
    before = db.statement_counts()
    outcomes: dict[str, object] = {}

    def create(user_id):
        try:
            outcomes[user_id] = _create(runtime, user_id)[0]
        except DuplicateProfileError as exc:
            outcomes[user_id] = exc

    users = ["first", "taken", *(f"learner-{i}" for i in range(_WAITERS - 1))]
    clients = [threading.Thread(target=create, args=(users[0],))]
    with db.writes_held():  # every writer queues: "first" leads alone, the others gather behind
        clients[0].start()
        deadline = time.monotonic() + 60
        while not _leading(db) and time.monotonic() < deadline:
            time.sleep(0.005)
        clients += [threading.Thread(target=create, args=(user,)) for user in users[1:]]
        for thread in clients[1:]:
            thread.start()
        while _queued(db) < _WAITERS and time.monotonic() < deadline:
            time.sleep(0.005)
        assert _queued(db) == _WAITERS
    for thread in clients:
        thread.join()

    assert isinstance(outcomes["taken"], DuplicateProfileError)
    created = {user: view for user, view in outcomes.items() if user != "taken"}
    assert len(created) == _WAITERS
    for user, view in created.items():
        assert runtime.profiles.get(SERVICE, None, view["profile_id"])[0]["personal"] == {"name": user}
    assert db.query_one("SELECT count(*) FROM learning_profiles")[0] == _WAITERS + 1
    # "first" alone, then the five that queued behind it: two commits for six creates.
    assert (db.statement_counts() - before).transactions == 2


@pytest.mark.postgresql_only("a server's transactions")
def test_on_a_server_each_request_writes_in_a_transaction_of_its_own(databases):
    """What ``LearnerContext.write`` asks of PostgreSQL: no group (a savepoint there is a
    round trip), each write a transaction of its own."""
    pg = databases.new("digital_twin")
    pg.enable_statement_counting()
    before = pg.statement_counts()
    pg.write_shared(lambda conn: conn.execute("SELECT 1"), shared_on_server=False)
    pg.write_shared(lambda conn: conn.execute("SELECT 1"), shared_on_server=False)
    counts = pg.statement_counts() - before
    assert (counts.transactions, pg._group) == (2, None)  # no SAVEPOINT, no group queue
