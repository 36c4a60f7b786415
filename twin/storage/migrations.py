"""Numbered, reversible schema migrations with a ``schema_version`` table per database.

A migration's ``up`` and ``down`` are SQL scripts or callables taking the connection. Each one
runs in its own transaction together with its ``schema_version`` row, so a failure leaves the
database at the previous version, never half-migrated.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence

from .engine import Database, execute_script
from .errors import MigrationError, SchemaTooNewError

log = logging.getLogger(__name__)

Step = str | Callable[[Any], None]


@dataclass(frozen=True)
class Migration:
    """One schema step. ``version`` numbers start at 1 and have no gaps."""

    version: int
    name: str
    up: Step
    down: Step
    description: str = ""
    # Table rebuilds (create new, copy, drop old, rename) must run with foreign keys off, or
    # dropping the old parent cascades into its children. Integrity is checked before commit.
    foreign_keys_off: bool = False


@dataclass(frozen=True)
class MigrationStatus:
    database: str
    current: int
    latest: int
    pending: list[int]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.latest


_SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


def _run(conn: Any, step: Step) -> None:
    if callable(step):
        step(conn)
    else:
        execute_script(conn, step)


def _check_foreign_keys(conn: Any, migration: Migration) -> None:
    if migration.foreign_keys_off:
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise MigrationError(f"leaves {len(broken)} rows violating foreign keys (first in {broken[0][0]})")


class Migrator:
    """Applies and rolls back one database's migrations."""

    def __init__(self, db: Database, migrations: Sequence[Migration]) -> None:
        versions = [m.version for m in migrations]
        if versions != list(range(1, len(migrations) + 1)):
            raise MigrationError(f"{db.name}: migrations must be numbered 1..N without gaps")
        self.db = db
        self.migrations = list(migrations)

    @contextmanager
    def _foreign_keys(self, migration: Migration) -> Iterator[None]:
        """Switch foreign keys off around a migration that asks for it (only possible
        outside a transaction), and back on afterwards whatever happens."""
        if not migration.foreign_keys_off:
            yield
            return
        conn = self.db.connection()
        conn.execute("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            conn.execute("PRAGMA foreign_keys = ON")

    @property
    def latest(self) -> int:
        return len(self.migrations)

    def current_version(self) -> int:
        """The highest applied version (0 for a new database)."""
        self.db.execute(_SCHEMA_VERSION_DDL)
        row = self.db.query_one("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
        return int(row["v"])

    def status(self) -> MigrationStatus:
        current = self.current_version()
        return MigrationStatus(self.db.name, current, self.latest,
                               [m.version for m in self.migrations if m.version > current])

    def _check_not_newer(self, current: int) -> None:
        if current > self.latest:
            raise SchemaTooNewError(
                f"{self.db.name}: database schema version {current} is newer than this code "
                f"knows ({self.latest}); upgrade the software instead of migrating")

    def migrate(self, to: int | None = None) -> list[int]:
        """Apply pending migrations up to ``to`` (default: latest). Returns versions applied."""
        target = self.latest if to is None else to
        current = self.current_version()
        self._check_not_newer(current)
        if not 0 <= target <= self.latest:
            raise MigrationError(f"{self.db.name}: no migration {target} (latest is {self.latest})")
        if target < current:
            raise MigrationError(f"{self.db.name}: at version {current}; use rollback to go down to {target}")
        applied = []
        for migration in self.migrations[current:target]:
            with self._foreign_keys(migration), self.db.transaction() as conn:
                # Re-check inside the write lock: another process may have migrated meanwhile.
                now = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
                if now >= migration.version:
                    continue
                try:
                    _run(conn, migration.up)
                    _check_foreign_keys(conn, migration)
                except Exception as exc:
                    raise MigrationError(
                        f"{self.db.name}: migration {migration.version} ({migration.name}) failed: {exc}"
                    ) from exc
                conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                             (migration.version, migration.name,
                              datetime.now(timezone.utc).isoformat(timespec="seconds")))
            log.info("%s: applied migration %d (%s)", self.db.name, migration.version, migration.name)
            applied.append(migration.version)
        return applied

    def rollback(self, to: int) -> list[int]:
        """Undo migrations down to version ``to`` (0 = empty schema). Returns versions undone."""
        current = self.current_version()
        self._check_not_newer(current)
        if not 0 <= to <= current:
            raise MigrationError(f"{self.db.name}: cannot roll back to {to} from version {current}")
        undone = []
        for migration in reversed(self.migrations[to:current]):
            with self._foreign_keys(migration), self.db.transaction() as conn:
                try:
                    _run(conn, migration.down)
                    _check_foreign_keys(conn, migration)
                except Exception as exc:
                    raise MigrationError(
                        f"{self.db.name}: rollback of {migration.version} ({migration.name}) failed: {exc}"
                    ) from exc
                conn.execute("DELETE FROM schema_version WHERE version = ?", (migration.version,))
            log.info("%s: rolled back migration %d (%s)", self.db.name, migration.version, migration.name)
            undone.append(migration.version)
        return undone
