"""Interned audit values: each actor (id and role), subject hash and resource is stored once, and
compact events (``audit_log``) refer to it by a small integer.

``resolve`` gives a batch of events their references inside the append's write transaction:
those this process has seen committed come from its ``TermCache``; the others are added if they
are not interned yet and read, an INSERT and a SELECT per kind, all in one round trip on a
server with the caller's statements (the chain's head). A reference enters the cache only once
the transaction that read it has committed (``Learned``, handed over by the caller): one read in
a transaction that rolled back could name a row that never existed. A cached reference is good
until an interned value is deleted: the vault counts deletes (``audit_term_generation``, by a
trigger on each table) and ``resolve`` reads the count in the same round trip; if it is not the
count the cache was filled under, the cache is emptied and every value looked up again. A
vault put back from a backup under a running process can hold the count the cache was filled
under, with the values interned since renumbered: nothing here can tell, so every process
restarts after a vault restore by any means (README, Backups and keys).
Rows are append-only (a trigger refuses UPDATE); a value no event refers to any more is deleted
when its last event leaves the live log (archival, retention): subjects through their index
(``prune_subjects``), actors and resources by one pass over the live log (``prune_unused_terms``:
they have no index, which would cost every event bytes, and a run's one pass is bounded by the
live log, which archival keeps short). Archived events spell their values out, so nothing in an
archive segment refers to these rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from twin.storage.pipeline import execute_all

_CHUNK = 400  # bind parameters per statement, well under every backend's limit


@dataclass(frozen=True, eq=False)  # each kind is one object: hashed by identity (dict keys per event)
class TermTable:
    table: str
    ref: str
    columns: tuple[str, ...]  # the value: one column, or (actor_id, actor_role)

    def key_of(self, fields: Mapping[str, Any]) -> tuple | None:
        first = fields[self.columns[0]]
        if first is None:
            return None
        return (first,) if len(self.columns) == 1 else (first, *(fields[c] for c in self.columns[1:]))


ACTORS = TermTable("audit_actors", "actor_ref", ("actor_id", "actor_role"))
SUBJECTS = TermTable("audit_subjects", "subject_ref", ("subject_hash",))
RESOURCES = TermTable("audit_resources", "resource_ref", ("resource",))
TERM_TABLES = (ACTORS, SUBJECTS, RESOURCES)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


Statement = tuple[str, list[Any]]


def _interning(term: TermTable, keys: Sequence[tuple]) -> tuple[list[Statement], list[Statement]]:
    """Statements that add the values of ``keys`` not interned yet, and statements that then
    read every one's reference: none needs another's result, so all travel in one round trip
    (``execute_all``; the server runs them in order). ``NOT EXISTS`` keeps a value already
    there from drawing an identity number each time; ``ON CONFLICT DO NOTHING`` is a guard
    only (appenders hold the chain lock). VALUES columns are column1, column2... on both
    backends."""
    width = len(term.columns)
    columns = ", ".join(term.columns)
    values = ", ".join(f"column{i + 1}" for i in range(width))
    same = " AND ".join(f"t.{c} = n.column{i + 1}" for i, c in enumerate(term.columns))
    per_row = "(" + ", ".join("?" * width) + ")"
    inserts = [(f"INSERT INTO {term.table} ({columns}) SELECT {values} "
                f"FROM (VALUES {', '.join([per_row] * len(chunk))}) AS n "
                f"WHERE NOT EXISTS (SELECT 1 FROM {term.table} t WHERE {same}) ON CONFLICT DO NOTHING",
                [v for key in chunk for v in key])
               for chunk in _chunks(list(keys))]
    lookups = [(f"SELECT {term.ref}, {columns} FROM {term.table} "
                f"WHERE {term.columns[0]} IN ({', '.join('?' for _ in chunk)})", list(chunk))
               for chunk in _chunks(sorted({k[0] for k in keys}))]
    return inserts, lookups


def _references(term: TermTable, keys: Sequence[tuple], results: Sequence[Any]) -> dict[tuple, int]:
    """Each key's reference, from the results of ``_interning``'s lookups."""
    wanted = set(keys)
    found: dict[tuple, int] = {}
    for result in results:
        for row in result.fetchall():
            key = tuple(row[c] for c in term.columns)
            if key in wanted:
                found[key] = row[term.ref]
    return found


# The count of deletes, read with every append's head. It names each term table so that on
# PostgreSQL the append holds them (ACCESS SHARE) from this statement on, as an uncached lookup
# would: a prune's LOCK TABLE then waits for the append to commit, and an append coming after
# the LOCK waits for the prune to commit and reads the count it left (the statement's snapshot
# is taken after its locks). Each probe is a primary-key lookup of a ref that never exists.
GENERATION_SQL = ("SELECT coalesce((SELECT generation FROM audit_term_generation), 0) AS generation, "
                  + ", ".join(f"(SELECT {t.ref} FROM {t.table} WHERE {t.ref} = 0) AS {t.ref}" for t in TERM_TABLES))
_CACHE_LIMIT = 50_000  # values per kind; past it that kind starts again (memory stays bounded)


@dataclass
class Learned:
    """References an append looked up by SQL, under the delete count it read: they join the
    ``TermCache`` once its transaction commits (``TermCache.learn``)."""

    generation: int | None = None
    refs: dict[TermTable, dict[tuple, int]] = field(default_factory=dict)

    def forget(self) -> None:
        """A retried transaction starts again: nothing it looked up before counts."""
        self.generation, self.refs = None, {}


class TermCache:
    """Committed references of this process by value, good while the vault's delete count is
    the one they were read under (see the module docstring). Safe to share between threads."""

    def __init__(self, limit: int = _CACHE_LIMIT) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._generation: int | None = None
        self._refs: dict[TermTable, dict[tuple, int]] = {t: {} for t in TERM_TABLES}

    def current(self) -> tuple[int | None, dict[TermTable, dict[tuple, int]]]:
        """The count and the references read under it. A ``learn`` under another count
        replaces the maps rather than changing them, so the pair stays consistent."""
        with self._lock:
            return self._generation, self._refs

    def learn(self, learned: Learned) -> None:
        """Keep what a committed append looked up."""
        if learned.generation is None:
            return
        with self._lock:
            if learned.generation != self._generation:
                self._generation, self._refs = learned.generation, {t: {} for t in TERM_TABLES}
            for term, found in learned.refs.items():
                refs = self._refs[term]
                if len(refs) + len(found) > self._limit:
                    refs = self._refs[term] = {}
                refs.update(found)


def _lookups(term_keys: Mapping[TermTable, Sequence[tuple]]
             ) -> tuple[list[Statement], dict[TermTable, tuple[list[tuple], slice]]]:
    """``_interning``'s statements for every kind's keys, and where each kind's lookups are."""
    statements: list[Statement] = []
    where: dict[TermTable, tuple[list[tuple], slice]] = {}
    for term, keys in term_keys.items():
        if keys:
            inserts, lookups = _interning(term, keys)
            statements += inserts
            where[term] = (list(keys), slice(len(statements), len(statements) + len(lookups)))
            statements += lookups
    return statements, where


def resolve(conn: Any, events: Sequence[Mapping[str, Any]], *, before: Sequence[Statement] = (),
            cache: TermCache, learned: Learned | None = None
            ) -> tuple[list[Any], list[tuple[int, int | None, int | None]]]:
    """(actor_ref, subject_ref, resource_ref) of each event, adding the values not yet
    interned; call inside the append's write transaction, holding the chain lock. ``before``:
    the caller's statements, run first in the same round trip; their results are returned with
    the references. ``cache``: references to use if still good (required: every append has
    one, ``AuditTrail``'s; a fresh ``TermCache`` knows none); ``learned``: where the ones
    looked up by SQL go, for the caller to hand to ``cache.learn`` once committed."""
    generation, known = cache.current()
    # Each event's three keys once, then each kind's distinct ones (a transpose, in C).
    keyed = [(ACTORS.key_of(e), SUBJECTS.key_of(e), RESOURCES.key_of(e)) for e in events]
    keys = {}
    for term, column in zip(TERM_TABLES, zip(*keyed)):
        distinct = dict.fromkeys(column)
        distinct.pop(None, None)
        keys[term] = list(distinct)
    keys.update({term: [] for term in TERM_TABLES if term not in keys})  # no events
    cached = {term: {k: known[term][k] for k in keys[term] if k in known[term]} for term in TERM_TABLES}
    missing = {term: [k for k in keys[term] if k not in cached[term]] for term in TERM_TABLES}
    lookups, where = _lookups(missing)
    statements = [*before, (GENERATION_SQL, []), *lookups]
    results = execute_all(conn, statements)
    counted = results[len(before)].fetchone()["generation"]
    found = {term: _references(term, ks, results[len(before) + 1:][at]) for term, (ks, at) in where.items()}
    if counted != generation and any(cached.values()):  # a value was deleted since: look again
        again, where = _lookups({term: list(known_refs) for term, known_refs in cached.items()})
        results_again = execute_all(conn, again)
        for term, (ks, at) in where.items():
            found.setdefault(term, {}).update(_references(term, ks, results_again[at]))
        cached = {term: {} for term in TERM_TABLES}
    if learned is not None:
        learned.generation, learned.refs = counted, found
    actors, subjects, resources = ({**cached[term], **found.get(term, {})} for term in TERM_TABLES)
    return results[:len(before)], [(actors[a], None if s is None else subjects[s], None if r is None else resources[r])
                                   for a, s, r in keyed]


def subject_ref(conn: Any, subject_hash: str) -> int | None:
    """The reference of a subject hash, or None if no compact event names it."""
    row = conn.execute("SELECT subject_ref FROM audit_subjects WHERE subject_hash = ?",
                       (subject_hash,)).fetchone()
    return None if row is None else row[0]


def subjects_through(conn: Any, seq: int) -> list[int]:
    """The subject references of the compact events up to ``seq`` (before deleting them)."""
    return [r[0] for r in conn.execute("SELECT DISTINCT subject_ref FROM audit_log WHERE seq <= ? "
                                       "AND subject_ref IS NOT NULL", (seq,)).fetchall()]


def hold_subjects(conn: Any, dialect: Any) -> None:
    """Hold appenders off the interned subjects until the caller's transaction ends: call as
    the transaction's first statement before ``prune_subjects``. An appender that read a
    subject's reference must not have it deleted before its event commits. On PostgreSQL the
    table is locked (as ``prune_unused_terms`` locks actors and resources), which waits for
    every transaction that read it to end; being first, before the transaction's snapshot is
    taken, the caller then sees their events, and appenders coming later wait until it commits
    (then intern the subject again). SQLite serialises writers."""
    if dialect.name == "postgresql":
        conn.execute("LOCK TABLE audit_subjects IN ACCESS EXCLUSIVE MODE")


def prune_subjects(conn: Any, refs: Sequence[int]) -> int:
    """Delete those of ``refs`` no event refers to any more (after retention deleted events),
    through the subject index: a subject hash must not outlive the trail's retention window.
    Archived events keep theirs (``audit_archive_subjects``) until their segment goes. The
    transaction began with ``hold_subjects``."""
    deleted = 0
    for chunk in _chunks(list(refs)):
        marks = ", ".join("?" for _ in chunk)
        deleted += conn.execute(
            f"DELETE FROM audit_subjects WHERE subject_ref IN ({marks}) AND NOT EXISTS "
            "(SELECT 1 FROM audit_log l WHERE l.subject_ref = audit_subjects.subject_ref) AND NOT EXISTS "
            "(SELECT 1 FROM audit_archive_subjects x WHERE x.subject_ref = audit_subjects.subject_ref)",
            list(chunk)).rowcount
    return deleted


def intern_subjects(conn: Any, subject_hashes: Sequence[str]) -> dict[str, int]:
    """The references of ``subject_hashes``, adding those not interned yet (archived legacy
    events, which named their subject in full, get one for the archive's subject index)."""
    keys = [(h,) for h in dict.fromkeys(subject_hashes)]
    if not keys:
        return {}
    inserts, lookups = _interning(SUBJECTS, keys)
    results = execute_all(conn, inserts + lookups)
    return {k[0]: ref for k, ref in _references(SUBJECTS, keys, results[len(inserts):]).items()}


def prune_unused_terms(conn: Any, dialect: Any) -> int:
    """Delete the actors and resources no live event refers to any more (after archival or
    retention took events out); one pass over the live log each. Returns how many went.

    An appender reads a value's reference and then inserts its event: that must not straddle
    the delete. SQLite serialises writers. On PostgreSQL call this under the chain lock (READ
    COMMITTED, a fresh snapshot per statement): the tables are locked first, which waits for
    every transaction that read them to end and holds new appenders back until this commits
    (they then intern the value again), so the delete sees every event that could name one."""
    if dialect.name == "postgresql":
        conn.execute("LOCK TABLE audit_actors, audit_resources IN ACCESS EXCLUSIVE MODE")
    deleted = conn.execute("DELETE FROM audit_actors WHERE actor_ref NOT IN "
                           "(SELECT actor_ref FROM audit_log)").rowcount
    return deleted + conn.execute("DELETE FROM audit_resources WHERE resource_ref NOT IN "
                                  "(SELECT resource_ref FROM audit_log WHERE resource_ref IS NOT NULL)").rowcount
