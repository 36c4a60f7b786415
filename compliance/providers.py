"""Personal-data providers: each data owner exports, counts and erases its own data.

As in Moodle's privacy API, the owner of a database's personal data provides it: the learner
domain for ``digital_twin``, compliance for its vault, and any later owner for its own tables
(settings, evidence...). Compliance never reads another owner's tables except through its
provider, and a provider decodes rows only through its tables' descriptors, the same decoding
its owner's views use. ``TableProvider`` does everything from the descriptors; an owner
subclasses it where its export needs more (the vault exports the audit trail).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol, Sequence

from twin.storage import Database
from twin.storage.streaming import stream_rows

from .personal_data import PersonalTable, subject_params

# Rows per statement when many subjects end at once (retention): one statement per table and
# chunk, and well below any engine's limit on bound parameters.
SUBJECTS_PER_STATEMENT = 200

# A section of the export: its name and its rows, in batches (each batch decoded at once).
Section = tuple[str, Iterator[list[dict[str, Any]]]]


class PersonalDataProvider(Protocol):
    """What compliance asks of a data owner."""

    db: Database
    tables: Sequence[PersonalTable]      # in the registry's order: children before parents
    holds_subject_keys: bool             # the vault: ending a subject here shreds their key

    def export(self, subject_hash: str, reader: Any, batch: int) -> Iterator[Section]:
        """``(section, batches of rows)`` of the subject's export, in document order, at most
        ``batch`` rows a batch; ``reader`` opens their sealed values (None: the subject has no
        key, so there is nothing to show)."""

    def export_counts(self, subject_hash: str) -> dict[str, int]:
        """Rows of the subject per export section (what ``export`` would send now)."""

    def count(self, subject_hash: str, created_before: str | None = None) -> dict[str, int]:
        """Rows of the subject per erasable table."""

    def erase(self, subject_hashes: Sequence[str], created_before: str | None = None,
              tick: Callable[[], Any] | None = None) -> dict[str, int]:
        """Delete the subjects' rows, in one transaction; rows deleted per erasable table.
        ``tick`` is called once per erasable table, when its rows are gone."""

    def purge_expired(self, table: PersonalTable, expired_ids_sql: str, params: dict[str, Any]) -> int:
        """Retention: delete one batch (``:batch`` rows at most) of ``table``'s expired rows,
        those whose ``pk`` ``expired_ids_sql`` selects (held subjects already left out), in one
        transaction; returns rows deleted (0: none left)."""


class TableProvider:
    """The provider of a set of described tables in one database."""

    holds_subject_keys = False

    def __init__(self, db: Database, tables: Sequence[PersonalTable]) -> None:
        self.db = db
        self.tables = list(tables)
        self._erasable = [t for t in self.tables if t.erase]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.db.name!r}, {[t.name for t in self.tables]})"

    @staticmethod
    def _scope(table: PersonalTable, count: int, created_before: str | None) -> str | None:
        """WHERE clause selecting ``count`` subjects' rows of ``table``; with ``created_before``,
        only rows stored at or before it (None: the table cannot tell, its rows go by cascade
        with their parent's)."""
        if created_before is None:
            return table.subjects_where(count)
        if table.created is None:
            return None
        return f"({table.subjects_where(count)}) AND {table.created} <= :before"

    # -- export ---------------------------------------------------------------------------

    def export(self, subject_hash: str, reader: Any, batch: int) -> Iterator[Section]:
        """Every exported table, parents first, from one read snapshot of the database."""
        with self.db.snapshot() as conn:
            for table in reversed(self.tables):
                if table.export_as:
                    yield table.export_as, self._rows(conn, table, subject_hash, reader, batch)

    def _rows(self, conn: Any, table: PersonalTable, subject_hash: str, reader: Any,
              batch: int) -> Iterator[list[dict[str, Any]]]:
        for rows in stream_rows(
                conn, f"SELECT {table.select_list()} FROM {table.name} WHERE {table.subjects_where(1)} "
                f"ORDER BY {table.order_by or table.pk}", subject_params([subject_hash]), batch):
            if reader is None:  # rows without a key: an erasure is mid-way, export none
                return
            yield self.export_rows(conn, table, rows, reader)

    def export_rows(self, conn: Any, table: PersonalTable, rows: Sequence[Any],
                    reader: Any) -> list[dict[str, Any]]:
        """A batch of rows in the export (an owner adds what its rows mean beyond their
        columns, read on ``conn``, the export's snapshot)."""
        return table.export_rows(rows, reader)

    # -- retention ------------------------------------------------------------------------

    def purge_expired(self, table: PersonalTable, expired_ids_sql: str, params: dict[str, Any]) -> int:
        # One statement per batch: the expired ids never travel through Python.
        sql = f"DELETE FROM {table.name} WHERE {table.pk} IN ({expired_ids_sql} LIMIT :batch)"
        return self.db.write(lambda conn: conn.execute(sql, params).rowcount)

    def export_counts(self, subject_hash: str) -> dict[str, int]:
        conn = self.db.connection()
        return {table.export_as: int(conn.execute(
                    f"SELECT count(*) FROM {table.name} WHERE {table.subjects_where(1)}",
                    subject_params([subject_hash])).fetchone()[0])
                for table in reversed(self.tables) if table.export_as}

    # -- counting and erasing -------------------------------------------------------------

    def count(self, subject_hash: str, created_before: str | None = None) -> dict[str, int]:
        conn = self.db.connection()
        params = _params([subject_hash], created_before)
        counts = {}
        for table in self._erasable:
            scope = self._scope(table, 1, created_before)
            counts[table.name] = 0 if scope is None else int(conn.execute(
                f"SELECT count(*) FROM {table.name} WHERE {scope}", params).fetchone()[0])
        return counts

    def erase(self, subject_hashes: Sequence[str], created_before: str | None = None,
              tick: Callable[[], Any] | None = None) -> dict[str, int]:
        deleted = {table.name: 0 for table in self._erasable}
        chunks = [subject_hashes[start:start + SUBJECTS_PER_STATEMENT]
                  for start in range(0, len(subject_hashes), SUBJECTS_PER_STATEMENT)]

        def work(conn: Any) -> None:
            for table in self._erasable:  # children first
                for chunk in chunks:
                    scope = self._scope(table, len(chunk), created_before)
                    if scope is not None:
                        deleted[table.name] += conn.execute(
                            f"DELETE FROM {table.name} WHERE {scope}", _params(chunk, created_before)).rowcount
                if tick is not None:
                    tick()

        if subject_hashes:
            self.db.write(work)
        elif tick is not None:
            for _ in self._erasable:
                tick()
        return deleted


def _params(subject_hashes: Sequence[str], created_before: str | None) -> dict[str, str]:
    params = subject_params(subject_hashes)
    if created_before is not None:
        params["before"] = created_before
    return params
