"""What rolling migrations back would drop, found by doing it on a scratch copy.

A ``down`` step may drop tables, rebuild a table without some columns, or delete rows; reading
its SQL cannot tell which reliably, so ``plan_rollback`` copies the database (online backup
API, same key), rolls the copy back with the real ``Migrator``, compares the two, and deletes
the copy. The plan lists each dropped table with its rows, each dropped column with the rows
holding a value in it, and rows a kept table lost.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .engine import Database, DatabaseError
from .errors import DamagedDatabaseError
from .maintenance import integrity_check
from .migrations import Migration, Migrator

_BOOKKEEPING = {"schema_version"}


@dataclass(frozen=True)
class RollbackPlan:
    database: str
    current: int
    target: int
    tables: dict[str, int] = field(default_factory=dict)                 # dropped table -> rows
    columns: dict[tuple[str, str], int] = field(default_factory=dict)    # (table, column) -> values
    rows: dict[str, int] = field(default_factory=dict)                   # kept table -> rows lost

    @property
    def versions(self) -> list[int]:
        return list(range(self.current, self.target, -1))

    @property
    def rows_dropped(self) -> int:
        """Rows whose data would be gone: rows of dropped tables, rows losing a value in a
        dropped column (counted per column), rows deleted from kept tables."""
        return sum(self.tables.values()) + sum(self.columns.values()) + sum(self.rows.values())

    def lines(self) -> list[str]:
        """What will go, one line each (for the operator to read before confirming)."""
        out = [f"drop table {t} ({n:,} rows)" for t, n in sorted(self.tables.items())]
        out += [f"drop column {t}.{c} ({n:,} rows with a value)"
                for (t, c), n in sorted(self.columns.items())]
        out += [f"delete {n:,} rows from {t}" for t, n in sorted(self.rows.items())]
        return out


def _shape(db: Database) -> tuple[dict[str, list[str]], dict[str, int]]:
    tables = [t for t in db.table_names() if t not in _BOOKKEEPING]
    columns = {t: [r["name"] for r in db.query(f'PRAGMA table_info("{t}")')] for t in tables}
    counts = {t: int(db.query_one(f'SELECT count(*) FROM "{t}"')[0]) for t in tables}
    return columns, counts


def plan_rollback(db: Database, migrations: Sequence[Migration], to: int) -> RollbackPlan:
    """The plan of rolling ``db`` back to version ``to``; ``db`` itself is not changed."""
    scratch_path = db.path.with_name(f".{db.path.name}.rollback-plan-{secrets.token_hex(4)}")
    scratch = db.sibling(scratch_path)
    try:
        source = db.connect_new()
        try:
            target = db.open_file(scratch_path)
            try:
                source.backup(target)
            except DatabaseError:
                # The backup API says only "SQL logic error" when a page does not authenticate.
                if integrity_check(db) != ["ok"]:
                    raise DamagedDatabaseError(db.path) from None
                raise
            finally:
                target.close()
        finally:
            source.close()
        migrator = Migrator(scratch, migrations)
        current = migrator.current_version()
        before_columns, before_counts = _shape(scratch)
        migrator.rollback(to)
        after_columns, after_counts = _shape(scratch)
    finally:
        scratch.close_all()
        for leftover in (scratch_path, Path(f"{scratch_path}-wal"), Path(f"{scratch_path}-shm")):
            leftover.unlink(missing_ok=True)
    tables = {t: n for t, n in before_counts.items() if t not in after_columns}
    columns = {}
    for table, names in before_columns.items():
        for column in (c for c in names if table in after_columns and c not in after_columns[table]):
            columns[(table, column)] = int(db.query_one(
                f'SELECT count("{column}") FROM "{table}"')[0])
    rows = {t: before_counts[t] - after_counts[t] for t in after_counts
            if t in before_counts and after_counts[t] < before_counts[t]}
    return RollbackPlan(db.name, current, to, tables, columns, rows)

