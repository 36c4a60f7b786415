"""Interned audit values: each actor (id and role), subject hash and resource is stored once, and
compact events (``audit_log``) refer to it by a small integer.

``resolve`` finds (or adds) the references of a batch of events inside the append's write
transaction, with one SELECT per kind for the whole batch. Nothing is cached across
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


def _lookup(conn: Any, term: TermTable, keys: Sequence[tuple]) -> dict[tuple, int]:
    found: dict[tuple, int] = {}
    wanted = set(keys)
    first = term.columns[0]
    for chunk in _chunks(sorted({k[0] for k in keys})):
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(f"SELECT {term.ref}, {', '.join(term.columns)} FROM {term.table} "
                                f"WHERE {first} IN ({marks})", list(chunk)).fetchall():
            key = tuple(row[c] for c in term.columns)
            if key in wanted:
                found[key] = row[term.ref]
    return found


def _insert(conn: Any, term: TermTable, keys: Sequence[tuple]) -> dict[tuple, int]:
    added: dict[tuple, int] = {}
    per_row = "(" + ", ".join("?" for _ in term.columns) + ")"
    for chunk in _chunks(list(keys)):
        rows = conn.execute(
            f"INSERT INTO {term.table} ({', '.join(term.columns)}) VALUES "
            + ", ".join([per_row] * len(chunk))
            + f" RETURNING {term.ref}, {', '.join(term.columns)}",
            [v for key in chunk for v in key]).fetchall()
        for row in rows:
            added[tuple(row[c] for c in term.columns)] = row[term.ref]
    return added


def resolve(conn: Any, events: Sequence[Mapping[str, Any]]) -> list[tuple[int, int | None, int | None]]:
    """(actor_ref, subject_ref, resource_ref) of each event, adding the values not yet
    interned; call inside the append's write transaction."""
    refs: dict[TermTable, dict[tuple, int]] = {}
    for term in TERM_TABLES:
        keys = list(dict.fromkeys(k for k in (term.key_of(e) for e in events) if k is not None))
        known = _lookup(conn, term, keys) if keys else {}
        missing = [k for k in keys if k not in known]
        if missing:
            known.update(_insert(conn, term, missing))
        refs[term] = known
    out = []
    for event in events:
        subject, resource = SUBJECTS.key_of(event), RESOURCES.key_of(event)
        out.append((refs[ACTORS][ACTORS.key_of(event)],
                    None if subject is None else refs[SUBJECTS][subject],
                    None if resource is None else refs[RESOURCES][resource]))
    return out


def subject_ref(conn: Any, subject_hash: str) -> int | None:
    """The reference of a subject hash, or None if no compact event names it."""
    row = conn.execute("SELECT subject_ref FROM audit_subjects WHERE subject_hash = ?",
                       (subject_hash,)).fetchone()
    return None if row is None else row[0]


def subjects_through(conn: Any, seq: int) -> list[int]:
    """The subject references of the compact events up to ``seq`` (before deleting them)."""
    return [r[0] for r in conn.execute("SELECT DISTINCT subject_ref FROM audit_log WHERE seq <= ? "
                                       "AND subject_ref IS NOT NULL", (seq,)).fetchall()]


def prune_subjects(conn: Any, refs: Sequence[int]) -> int:
    """Delete those of ``refs`` no event refers to any more (after retention deleted events),
    through the subject index: a subject hash must not outlive the trail's retention window.
    Archived events keep theirs (``audit_archive_subjects``) until their segment goes."""
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
    keys = [(h,) for h in subject_hashes]
    known = _lookup(conn, SUBJECTS, keys) if keys else {}
    missing = [k for k in keys if k not in known]
    if missing:
        known.update(_insert(conn, SUBJECTS, missing))
    return {k[0]: ref for k, ref in known.items()}


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
