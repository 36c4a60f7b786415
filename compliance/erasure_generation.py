"""When erasure tombstones must be re-applied: only after a restore or replacement of a database.

Re-applying every tombstone at every start costs time in proportion to the history (14.8 s for
100k tombstones). It is needed only when a data database may hold rows an erasure deleted (an
older copy was restored, or the file replaced) or the vault may have lost what it knew (its own
restore), and for erasures that did not finish. So each data database holds a **generation**
(a random token in ``erasure_generation``) that every completed erasure and every re-application
advances, after its rows are gone; the vault records, per data database, the generation at which
every tombstone was applied (``erasure_state``). At start:

- both sides agree: nothing to re-apply but the tombstones of unfinished erasures
  (``completed_at`` NULL, found through a partial index: no scan of the history);
- they differ, or either is missing: a restore or replacement happened (a restored data file
  carries an older generation; a restored vault records an older one; a fresh file has none):
  every tombstone is re-applied, then both sides get a new generation.

The vault's record only moves from the generation the data database held just before (compare
and set); two erasures finishing out of order clear it instead, which makes the next start
re-apply everything: slower, never wrong. ``twin db restore`` re-applies every tombstone
whatever the generations say (a matched pair from one backup set agrees with itself, yet the
tombstones it carried in are newer).
"""

from __future__ import annotations

import secrets
from typing import Any

from twin.storage import Database

# Both forms are the same SQL; named per dialect as migrations take them.
DATA_DDL = ("CREATE TABLE erasure_generation (\n"
            "    id          INTEGER PRIMARY KEY CHECK (id = 1),\n"
            "    generation  TEXT NOT NULL\n"
            ");")
DATA_DDL_DOWN = "DROP TABLE erasure_generation;"
DATA_NO_PERSONAL_DATA = {"erasure_generation": "a random token naming this file's erasure history"}


def current(db: Database) -> str | None:
    """The data database's generation (None: never recorded, e.g. a new or replaced file)."""
    row = db.query_one("SELECT generation FROM erasure_generation WHERE id = 1")
    return None if row is None else row["generation"]


def advance(db: Database) -> tuple[str | None, str]:
    """Give the data database a new generation, after rows were erased; returns (before, now)."""
    new = secrets.token_hex(16)

    def work(conn: Any) -> str | None:
        row = conn.execute("SELECT generation FROM erasure_generation WHERE id = 1").fetchone()
        conn.execute("INSERT INTO erasure_generation (id, generation) VALUES (1, ?) "
                     "ON CONFLICT (id) DO UPDATE SET generation = excluded.generation", (new,))
        return None if row is None else row["generation"]

    return db.write(work), new


def recorded(vault: Database, database: str) -> str | None:
    """The generation of ``database`` at which the vault last knew every tombstone applied."""
    row = vault.query_one("SELECT generation FROM erasure_state WHERE database_name = ?", (database,))
    return None if row is None else row["generation"]


def record(conn: Any, database: str, before: str | None, now: str, *, unconditionally: bool = False) -> None:
    """In a vault transaction: note that ``database`` moved from ``before`` to ``now`` with every
    tombstone applied. Unless ``unconditionally`` (a full re-application), the record moves only
    from ``before``; otherwise it is cleared (another erasure moved the data database meanwhile)."""
    conn.execute("INSERT INTO erasure_state (database_name, generation) VALUES (?, NULL) "
                 "ON CONFLICT (database_name) DO NOTHING", (database,))
    if unconditionally:
        conn.execute("UPDATE erasure_state SET generation = ? WHERE database_name = ?", (now, database))
    else:
        conn.execute("UPDATE erasure_state SET generation = CASE WHEN generation = ? THEN ? ELSE NULL END "
                     "WHERE database_name = ?", (before, now, database))


def agree(vault: Database, databases: list[Database]) -> bool:
    """Whether every data database holds the generation the vault recorded for it."""
    for db in databases:
        mine = current(db)
        if mine is None or recorded(vault, db.name) != mine:
            return False
    return True
