"""Interned audit values: each actor (id and role), subject hash and resource is stored once, and
compact events (``audit_log``) refer to it by a small integer.

``resolve`` adds the values of a batch of events not interned yet and reads every reference
inside the append's write transaction: an INSERT and a SELECT per kind for the whole batch, all
in one round trip on a server, with the caller's statements (the chain's head). Nothing is cached across
transactions: a reference read from a transaction that later rolled back could name a row that
never existed, and an event would then decode (and fail to verify) as someone else's.
Rows are append-only (a trigger refuses UPDATE); a value no event refers to any more is deleted
when its last event leaves the live log (archival, retention): subjects through their index
(``prune_subjects``), actors and resources by one pass over the live log (``prune_unused_terms``:
they have no index, which would cost every event bytes, and a run's one pass is bounded by the
live log, which archival keeps short). Archived events spell their values out, so nothing in an
archive segment refers to these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from twin.storage.pipeline import execute_all

_CHUNK = 400  # bind parameters per statement, well under every backend's limit


@dataclass(frozen=True)
class TermTable:
    table: str
    ref: str
    columns: tuple[str, ...]  # the value: one column, or (actor_id, actor_role)

    def key_of(self, fields: Mapping[str, Any]) -> tuple | None:
        values = tuple(fields[c] for c in self.columns)
        return None if values[0] is None else values


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


def resolve(conn: Any, events: Sequence[Mapping[str, Any]], *, before: Sequence[Statement] = ()
            ) -> tuple[list[Any], list[tuple[int, int | None, int | None]]]:
    """(actor_ref, subject_ref, resource_ref) of each event, adding the values not yet
    interned; call inside the append's write transaction. ``before``: the caller's statements,
    run first in the same round trip; their results are returned with the references."""
    statements = list(before)
    lookups_of: dict[TermTable, tuple[list[tuple], slice]] = {}
    for term in TERM_TABLES:
        keys = list(dict.fromkeys(k for k in (term.key_of(e) for e in events) if k is not None))
        inserts, lookups = _interning(term, keys) if keys else ([], [])
        statements += inserts
        lookups_of[term] = (keys, slice(len(statements), len(statements) + len(lookups)))
        statements += lookups
    results = execute_all(conn, statements)
    refs = {term: _references(term, keys, results[where]) for term, (keys, where) in lookups_of.items()}
    out = []
    for event in events:
        subject, resource = SUBJECTS.key_of(event), RESOURCES.key_of(event)
        out.append((refs[ACTORS][ACTORS.key_of(event)],
                    None if subject is None else refs[SUBJECTS][subject],
                    None if resource is None else refs[RESOURCES][resource]))
    return results[:len(before)], out


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
