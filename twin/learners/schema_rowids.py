"""digital_twin migration 8: the request routes' learner tables number their rows with SQLite's
rowid alone, without ``AUTOINCREMENT``.

Why: an ``AUTOINCREMENT`` table records its highest id in ``sqlite_sequence``, one more b-tree
page every insert dirties, and SQLCipher encrypts and authenticates every dirty page whole at
commit. A profile create, a session start, a knowledge PUT (its evidence row), an evidence
batch and a consent each inserted into one of these tables, so each commit wrote that page.

Why it is safe. Without ``AUTOINCREMENT`` SQLite gives a new row the largest id in the table
plus one, so ids stay increasing over the rows that exist; an id comes back only after the
rows holding the largest ids were deleted. Nothing depends on more:

- sealed columns bind the row by its public key (``profile_id``, ``session_id``, the skill,
  the evidence's entry key: ``tables.*.row_id``), never by this number; foreign keys, audit
  resources, the DSR export and erasure name rows by those keys too;
- evidence is ordered by time and entry key (``traces``), not by id; fitting's batches
  (``model_fitting``) and the purge's (``compliance.providers``) read ids within one run;
- a page cursor (sessions, evidence: ``cursors``) is the id of a listed row, issued only when
  a row with a larger id of the same profile exists. A new row can take an id at or below it
  only once that row and every later row of the whole table are gone: the profile erased (its
  cursors then answer 404), or all of them purged. Retention purges a row by its own time (a
  session's start, an observation's ``observed_at``), not by when it was added, so rows added
  late with old times (a backfilled batch, holding the newest ids) can all be gone well before
  a whole window passed with no row added. The only effect: a page read with a cursor issued
  before then skips the rows of its profile that took ids at or below it.

PostgreSQL's identity columns never reuse a value and dirty no shared page: unchanged there.
The rebuild copies every row with its id (an operator migration: it rewrites these tables).
Down rebuilds them with ``AUTOINCREMENT`` again; the sequence restarts from the largest id
then present (the ids of deleted newest rows are not remembered).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from twin.storage import MigrationError
from twin.storage.dialect import Dialect, quote_identifier

# Children after their parents would not matter (foreign keys are off during the rebuild and
# checked before its commit); listed in the schema's order.
TABLES = ("learning_profiles", "learning_sessions", "knowledge_states", "consents", "evidence")
_AUTOINCREMENT = re.compile(r"(\bid\s+INTEGER\s+PRIMARY\s+KEY)\s+AUTOINCREMENT\b", re.I)
_ROWID_ALIAS = re.compile(r"(\bid\s+INTEGER\s+PRIMARY\s+KEY)(?!\s+AUTOINCREMENT)\b", re.I)


def _rebuild(conn: Any, table: str, edit: Callable[[str], str]) -> None:
    """Rebuild ``table`` under its CREATE statement as ``edit`` changes it: create the new
    table, copy every row (ids included), drop the old one, rename, re-create its indexes
    (SQLite's documented procedure; the migration runs with foreign keys off)."""
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ?", (table,)).fetchall()
    create = [r[2] for r in rows if r[0] == "table"]
    if len(create) != 1 or any(r[0] not in ("table", "index") for r in rows):
        raise MigrationError(f"{table}: expected one table and its indexes to rebuild")
    edited = edit(create[0])
    if edited == create[0]:
        raise MigrationError(f"{table}: its definition is already what the rebuild would make it")
    rebuilt = f"{table}_rebuilt"
    conn.execute(re.sub(rf'^CREATE TABLE\s+"?{re.escape(table)}"?', f"CREATE TABLE {rebuilt}", edited, count=1))
    columns = ", ".join(quote_identifier(r[1]) for r in conn.execute(f"PRAGMA table_info({quote_identifier(table)})"))
    conn.execute(f"INSERT INTO {rebuilt} ({columns}) SELECT {columns} FROM {quote_identifier(table)}")
    conn.execute(f"DROP TABLE {quote_identifier(table)}")
    conn.execute(f"ALTER TABLE {rebuilt} RENAME TO {quote_identifier(table)}")
    for row in rows:
        if row[0] == "index" and row[2] is not None:  # autoindexes (UNIQUE) come with the table
            conn.execute(row[2])


def up(conn: Any, dialect: Dialect) -> None:
    if dialect.name != "sqlite":
        return
    for table in TABLES:
        _rebuild(conn, table, lambda sql: _AUTOINCREMENT.sub(r"\1", sql, count=1))


def down(conn: Any, dialect: Dialect) -> None:
    if dialect.name != "sqlite":
        return
    for table in TABLES:
        _rebuild(conn, table, lambda sql: _ROWID_ALIAS.sub(r"\1 AUTOINCREMENT", sql, count=1))
