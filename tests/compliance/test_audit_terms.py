"""An interned actor, resource or subject that no event names any more is deleted
(``compliance.audit_terms``), but never from under an append: a ``record()`` or
``record_many()`` that starts while a prune holds the interned tables names values that exist
once it commits, whether it looks the value up by SQL or had its reference cached from an
earlier append (the vault's count of deletes tells it the cache went stale). Raced for real on
PostgreSQL (SQLite serialises writers): the append starts while the prune's transaction is
open and is seen waiting for it before the prune commits. So through retention: the prune
``purge_older_than`` runs after its purge, with an append starting while it is open or open
when it starts. And a reference enters the cache only from a committed transaction."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from compliance import audit_terms
from compliance.audit import Actor, AuditTrail
from compliance.audit_terms import (ACTORS, RESOURCES, SUBJECTS, Learned, TermCache, hold_subjects,
                                     prune_subjects, prune_unused_terms, resolve)
from compliance.audit_vault_staging import CHAIN_LOCK
from racing_vault import wait_until_someone_waits_for_a_lock
from ticking_clock import T0, TickingClock

OTHER = Actor("tok_other1", "service")
GHOST = Actor("tok_ghost1", "service")  # interned earlier; its events are gone (archived, purged)
GHOST_RESOURCE, GHOST_SUBJECT = "ghost-resource", "9" * 64

DANGLING = """SELECT l.seq FROM audit_log l
    LEFT JOIN audit_actors a ON a.actor_ref = l.actor_ref
    LEFT JOIN audit_resources r ON r.resource_ref = l.resource_ref
    LEFT JOIN audit_subjects s ON s.subject_ref = l.subject_ref
    WHERE a.actor_ref IS NULL OR (l.resource_ref IS NOT NULL AND r.resource_ref IS NULL)
        OR (l.subject_ref IS NOT NULL AND s.subject_ref IS NULL)"""


def _cache_the_ghosts(trail: AuditTrail) -> None:
    """What a process holds after chaining an event that named the ghost values: their
    references, looked up in a committed chain write."""
    ghost = {"actor_id": GHOST.actor_id, "actor_role": GHOST.role, "resource": GHOST_RESOURCE,
             "subject_hash": GHOST_SUBJECT}
    trail._chained(lambda conn, learned: resolve(conn, [ghost], cache=trail._terms, learned=learned))  # noqa: SLF001


@pytest.mark.postgresql_only("an append racing a prune of the interned values on a database server")
@pytest.mark.parametrize("cached", [False, True], ids=["looked up", "cached"])
@pytest.mark.parametrize("append", ["record", "record_many"])
@pytest.mark.parametrize("term", ["actor", "resource", "subject"])
def test_an_append_starting_while_a_prune_is_open_names_values_that_exist_after_it(
        open_catalog_db, append, term, cached):
    vault = open_catalog_db("privacy_vault")
    trail = AuditTrail(vault, clock=TickingClock())
    trail.record(OTHER, "read", resource="x", subject_hash="8" * 64)
    vault.execute("INSERT INTO audit_actors (actor_id, actor_role) VALUES (?, ?)", (GHOST.actor_id, GHOST.role))
    vault.execute("INSERT INTO audit_resources (resource) VALUES (?)", (GHOST_RESOURCE,))
    vault.execute("INSERT INTO audit_subjects (subject_hash) VALUES (?)", (GHOST_SUBJECT,))
    if cached:
        _cache_the_ghosts(trail)
    actor = GHOST if term == "actor" else OTHER
    fields = {"resource": GHOST_RESOURCE if term == "resource" else "x",
              "subject_hash": GHOST_SUBJECT if term == "subject" else None}
    appended: list[object] = []

    def record():
        if append == "record":
            appended.append(trail.record(actor, "read", **fields))
        else:
            appended.append(trail.record_many([(actor, "read", fields)]))

    appender = threading.Thread(target=record)
    (ghost_ref,) = vault.query_one("SELECT subject_ref FROM audit_subjects WHERE subject_hash = ?", (GHOST_SUBJECT,))

    def prune_while_an_append_starts(conn):
        if term == "subject":
            hold_subjects(conn, vault.dialect)  # retention's first statement
        else:
            deleted = prune_unused_terms(conn, vault.dialect)  # the ghost actor and resource go
        appender.start()
        wait_until_someone_waits_for_a_lock(vault)  # the append, for this prune
        return prune_subjects(conn, [ghost_ref]) if term == "subject" else deleted

    if term == "subject":
        assert vault.write(prune_while_an_append_starts) == 1  # as retention: no chain lock
    else:
        assert vault.write(prune_while_an_append_starts, lock=CHAIN_LOCK) == 2
    appender.join(30)

    assert not appender.is_alive() and len(appended) == 1
    assert vault.query(DANGLING) == []
    assert trail.verify(full=True).ok
    newest = trail.query(limit=10)[-1]
    assert (newest.actor_id, newest.resource, newest.subject_hash) == (actor.actor_id, *fields.values())


def _ghost_ref(vault) -> int | None:
    row = vault.query_one("SELECT actor_ref FROM audit_actors WHERE actor_id = ?", (GHOST.actor_id,))
    return None if row is None else row[0]


def _retention_over_a_ghost(vault) -> tuple[AuditTrail, TickingClock]:
    """Event 1 (at T0 + 1 s) is the only one naming the ghost actor and resource; a purge before
    T0 + 2 s takes it, and the prune that follows then has them to delete."""
    clock = TickingClock()
    trail = AuditTrail(vault, clock=clock)
    trail.record(GHOST, "read", resource=GHOST_RESOURCE)
    trail.record(OTHER, "read", resource="x")
    return trail, clock


def _names_the_ghost_and_verifies(trail: AuditTrail) -> None:
    assert trail.vault.query(DANGLING) == []
    assert trail.verify(full=True).ok
    newest = trail.query(limit=10)[-1]
    assert (newest.seq, newest.actor_id, newest.resource) == (3, GHOST.actor_id, GHOST_RESOURCE)


@pytest.mark.postgresql_only("an append racing retention's prune of the interned values on a database server")
@pytest.mark.parametrize("process", ["this", "another"], ids=["cached", "looked up"])
def test_an_append_starting_while_a_purges_prune_is_open_names_values_that_exist_after_it(
        open_catalog_db, monkeypatch, process):
    """The prune holds the chain lock: an append starting meanwhile (in this process, the ghost's
    reference cached; or in another, looking it up) waits for it, then interns the ghost again.
    Without that lock a SERIALIZABLE append's snapshot, taken by its first statement (the head)
    before it waits for the locked tables, would still see the deleted ghost and name it."""
    vault = open_catalog_db("privacy_vault")
    trail, clock = _retention_over_a_ghost(vault)
    appender_trail = trail if process == "this" else AuditTrail(vault, clock=clock)
    ghost_ref, real_prune, appended = _ghost_ref(vault), audit_terms.prune_unused_terms, []
    appender = threading.Thread(target=lambda: appended.append(
        appender_trail.record(GHOST, "read", resource=GHOST_RESOURCE)))

    def prune_while_an_append_starts(conn, dialect):
        deleted = real_prune(conn, dialect)  # the ghost actor and resource go
        appender.start()
        wait_until_someone_waits_for_a_lock(vault)  # the append, for this prune
        return deleted

    monkeypatch.setattr(audit_terms, "prune_unused_terms", prune_while_an_append_starts)
    assert trail.purge_older_than(T0 + timedelta(seconds=2)) == 1
    appender.join(30)

    assert not appender.is_alive() and len(appended) == 1
    assert _ghost_ref(vault) not in (None, ghost_ref)  # deleted by the prune, interned again after it
    _names_the_ghost_and_verifies(trail)


@pytest.mark.postgresql_only("retention's prune racing an open append on a database server")
def test_a_purges_prune_starting_while_an_append_is_open_keeps_the_values_it_names(
        open_catalog_db, monkeypatch):
    """An append whose transaction has read the ghost's reference (and inserted its event, not
    committed yet) when the prune starts: the prune waits for it to commit, and its delete's
    snapshot, taken after its first statement locked the tables, sees that event. (It would
    delete the ghost from under the event if its snapshot predated that commit.)"""
    vault = open_catalog_db("privacy_vault")
    trail, _ = _retention_over_a_ghost(vault)
    ghost_ref, real_prune = _ghost_ref(vault), audit_terms.prune_unused_terms
    recorded, release, appended, purged = threading.Event(), threading.Event(), [], []

    def append_and_stay_open():
        with vault.transaction(lock=CHAIN_LOCK):  # a caller's transaction, which the append joins
            appended.append(trail.record(GHOST, "read", resource=GHOST_RESOURCE))
            recorded.set()
            assert release.wait(30)

    appender = threading.Thread(target=append_and_stay_open)

    def prune_once_an_append_is_open(conn, dialect):
        appender.start()
        assert recorded.wait(30)
        return real_prune(conn, dialect)

    monkeypatch.setattr(audit_terms, "prune_unused_terms", prune_once_an_append_is_open)
    retention = threading.Thread(target=lambda: purged.append(trail.purge_older_than(T0 + timedelta(seconds=2))))
    retention.start()
    assert recorded.wait(30)
    wait_until_someone_waits_for_a_lock(vault)  # the prune, for the open append
    release.set()
    retention.join(30)
    appender.join(30)

    assert not retention.is_alive() and not appender.is_alive()
    assert purged == [1] and len(appended) == 1
    assert _ghost_ref(vault) == ghost_ref  # kept: the appended event names it
    _names_the_ghost_and_verifies(trail)


@pytest.fixture
def trail(open_catalog_db) -> AuditTrail:
    return AuditTrail(open_catalog_db("privacy_vault"), clock=TickingClock())


@pytest.mark.parametrize("how", ["prune", "by hand"])
def test_a_cached_reference_is_not_used_once_its_value_was_deleted(trail, how):
    vault = trail.vault
    trail.record(GHOST, "read", resource=GHOST_RESOURCE, subject_hash=GHOST_SUBJECT)  # cached now
    vault.execute("DELETE FROM audit_log")  # its event gone (as archival would take it)
    if how == "prune":
        assert vault.write(lambda conn: prune_unused_terms(conn, vault.dialect), lock=CHAIN_LOCK) == 2
        (ref,) = vault.query_one("SELECT subject_ref FROM audit_subjects")
        assert vault.write(lambda conn: prune_subjects(conn, [ref])) == 1
    else:
        for table in ("audit_actors", "audit_resources", "audit_subjects"):
            vault.execute(f"DELETE FROM {table}")
    trail.record(OTHER, "read", resource="x", subject_hash="8" * 64)  # takes the freed numbers (SQLite)

    trail.record(GHOST, "read", resource=GHOST_RESOURCE, subject_hash=GHOST_SUBJECT)

    assert vault.query(DANGLING) == []
    newest = trail.query(limit=10)[-1]
    assert (newest.actor_id, newest.resource, newest.subject_hash) == (GHOST.actor_id, GHOST_RESOURCE, GHOST_SUBJECT)


class _RolledBack(Exception):
    pass


@pytest.mark.parametrize("append", ["record", "record_many"])
def test_a_reference_read_in_a_transaction_that_rolled_back_is_never_cached(trail, append):
    vault = trail.vault
    with pytest.raises(_RolledBack):
        with vault.transaction():  # the caller's, joined by the append
            if append == "record":
                trail.record(GHOST, "read", resource=GHOST_RESOURCE, subject_hash=GHOST_SUBJECT)
            else:
                trail.record_many([(GHOST, "read", {"resource": GHOST_RESOURCE, "subject_hash": GHOST_SUBJECT})])
            raise _RolledBack
    assert vault.query("SELECT * FROM audit_actors") == []
    trail.record(OTHER, "read", resource="x", subject_hash="8" * 64)  # takes the numbers the ghosts had

    trail.record(GHOST, "read", resource=GHOST_RESOURCE, subject_hash=GHOST_SUBJECT)

    newest = trail.query(limit=10)[-1]
    assert (newest.actor_id, newest.resource, newest.subject_hash) == (GHOST.actor_id, GHOST_RESOURCE, GHOST_SUBJECT)
    assert trail.verify(full=True).ok


def test_an_append_of_cached_values_sends_no_lookup(trail):
    vault = trail.vault
    vault.enable_statement_counting()

    def statements_of(actor: Actor, subject: str) -> int:
        before = vault.counter.snapshot().statements
        trail.record(actor, "read", resource=actor.actor_id, subject_hash=subject)
        return vault.counter.snapshot().statements - before

    new_values = statements_of(OTHER, "8" * 64)
    assert statements_of(OTHER, "8" * 64) == new_values - 6  # an INSERT and a SELECT per kind fewer
    assert statements_of(GHOST, "7" * 64) == new_values
    assert [(e.actor_id, e.subject_hash) for e in trail.query()] == [
        (OTHER.actor_id, "8" * 64), (OTHER.actor_id, "8" * 64), (GHOST.actor_id, "7" * 64)]


# -- the process's cache of references, on its own -------------------------------------------

def test_a_value_is_its_columns_and_none_without_its_first():
    assert ACTORS.key_of({"actor_id": "tok_a", "actor_role": "service"}) == ("tok_a", "service")
    assert SUBJECTS.key_of({"subject_hash": "8" * 64}) == ("8" * 64,)
    assert RESOURCES.key_of({"resource": None}) is None and ACTORS.key_of({"actor_id": None}) is None


def test_the_cache_keeps_what_committed_appends_looked_up_under_one_delete_count():
    cache = TermCache(limit=3)
    assert cache.current() == (None, {ACTORS: {}, SUBJECTS: {}, RESOURCES: {}})
    cache.learn(Learned())  # an append that looked nothing up by SQL
    assert cache.current() == (None, {ACTORS: {}, SUBJECTS: {}, RESOURCES: {}})

    cache.learn(Learned(5, {ACTORS: {("tok_a", "service"): 1}}))
    cache.learn(Learned(5, {ACTORS: {("tok_b", "service"): 2}, SUBJECTS: {("8" * 64,): 3}}))
    assert cache.current() == (5, {ACTORS: {("tok_a", "service"): 1, ("tok_b", "service"): 2},
                                   SUBJECTS: {("8" * 64,): 3}, RESOURCES: {}})
    _, before = cache.current()
    cache.learn(Learned(6, {RESOURCES: {("x",): 4}}))  # another count: what was read under 5 goes
    assert cache.current() == (6, {ACTORS: {}, SUBJECTS: {}, RESOURCES: {("x",): 4}})
    assert before[ACTORS] == {("tok_a", "service"): 1, ("tok_b", "service"): 2}  # replaced, not changed


def test_a_kind_past_the_cache_limit_starts_again_and_the_others_stay():
    cache = TermCache(limit=3)
    cache.learn(Learned(1, {ACTORS: {("a", "r"): 1, ("b", "r"): 2}, SUBJECTS: {("s",): 9}}))
    cache.learn(Learned(1, {ACTORS: {("c", "r"): 3}}))  # at the limit: kept
    assert len(cache.current()[1][ACTORS]) == 3

    cache.learn(Learned(1, {ACTORS: {("d", "r"): 4}}))

    assert cache.current()[1][ACTORS] == {("d", "r"): 4} and cache.current()[1][SUBJECTS] == {("s",): 9}


def test_a_retried_transaction_forgets_what_it_looked_up():
    learned = Learned(3, {ACTORS: {("a", "r"): 1}})
    learned.forget()
    assert (learned.generation, learned.refs) == (None, {})


def test_pruning_subjects_goes_chunk_by_chunk_counts_them_all_and_keeps_those_still_named(trail):
    vault = trail.vault
    named = f"{0:064x}"
    vault.write(lambda conn: conn.executemany("INSERT INTO audit_subjects (subject_hash) VALUES (?)",
                                              [(f"{i:064x}",) for i in range(402)]))  # more than a chunk
    refs = [r[0] for r in vault.query("SELECT subject_ref FROM audit_subjects")]
    trail.record(OTHER, "read", subject_hash=named)

    assert vault.write(lambda conn: prune_subjects(conn, refs)) == 401
    assert [r[0] for r in vault.query("SELECT subject_hash FROM audit_subjects")] == [named]


def test_values_new_to_the_vault_cost_one_insert_and_one_lookup_per_kind_however_many(trail):
    vault = trail.vault
    vault.enable_statement_counting()

    def statements_of(values: int, tag: str) -> int:  # three events naming that many new values
        before = vault.counter.snapshot().statements
        trail.record_many([(Actor(f"tok_{tag}{i % values}", "service"), "read",
                            {"resource": f"{tag}-{i % values}", "subject_hash": f"{tag}{i % values}".ljust(64, "0")})
                           for i in range(3)])
        return vault.counter.snapshot().statements - before

    assert statements_of(3, "b") == statements_of(1, "a")
