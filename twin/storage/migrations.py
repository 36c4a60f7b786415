"""Numbered, reversible schema migrations with a ``schema_version`` table per database.

A migration's ``up`` and ``down`` are each a step: an SQL script, a callable taking the
connection (or the connection and the ``Dialect``), or a mapping from dialect name
(``"sqlite"``, ``"postgresql"``) to either, for SQL that differs between backends. Each
migration runs in its own transaction together with its ``schema_version`` row, so a failure
leaves the database at the previous version, never half-migrated (PostgreSQL's DDL is
transactional too). On PostgreSQL concurrent migrators queue on one advisory lock, and
reading the version never creates anything (the serving role has no DDL rights);
``check_current()`` is what a service runs before serving.
"""

from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

from .backend import Backend
from .dialect import Dialect, quote_identifier
from .engine import execute_script
from .errors import MigrationError, SchemaTooNewError, SchemaTooOldError, StorageError
from .progress import ProgressFactory, silent

log = logging.getLogger(__name__)

SingleStep = Union[str, Callable[[Any], None], Callable[[Any, Dialect], None]]
Step = Union[SingleStep, Mapping[str, SingleStep]]

MIGRATE_COMMAND = "twin db migrate"
_LOCK = "storage-core:migrations"


@dataclass(frozen=True)
class Migration:
    """One schema step. ``version`` numbers start at 1 and have no gaps."""

    version: int
    name: str
    up: Step
    down: Step
    description: str = ""
    # SQLite table rebuilds (create new, copy, drop old, rename) must run with foreign keys
    # off, or dropping the old parent cascades into its children. Integrity is checked before
    # commit. PostgreSQL alters tables in place and needs no rebuild: ignored there.
    foreign_keys_off: bool = False

    def __post_init__(self) -> None:
        for direction in ("up", "down"):
            step = getattr(self, direction)
            if isinstance(step, Mapping):
                unknown = set(step) - {"sqlite", "postgresql"}
                if unknown:
                    raise MigrationError(f"migration {self.version}: {direction} names unknown "
                                         f"dialects {sorted(unknown)}")


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


def _run(conn: Any, step: Step, dialect: Dialect) -> None:
    if isinstance(step, Mapping):
        if dialect.name not in step:
            raise MigrationError(f"no {dialect.name} version of this step")
        step = step[dialect.name]
    if callable(step):
        if len(inspect.signature(step).parameters) >= 2:
            step(conn, dialect)
        else:
            step(conn)
    else:
        execute_script(conn, step)


def _check_foreign_keys(conn: Any, migration: Migration, dialect: Dialect) -> None:
    if migration.foreign_keys_off and dialect.name == "sqlite":
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise MigrationError(f"leaves {len(broken)} rows violating foreign keys (first in {broken[0][0]})")


class Migrator:
    """Applies and rolls back one database's migrations."""

    def __init__(self, db: Backend, migrations: Sequence[Migration]) -> None:
        versions = [m.version for m in migrations]
        if versions != list(range(1, len(migrations) + 1)):
            raise MigrationError(f"{db.name}: migrations must be numbered 1..N without gaps")
        self.db = db
        self.migrations = list(migrations)

    @contextmanager
    def _foreign_keys(self, migration: Migration) -> Iterator[None]:
        """Switch foreign keys off around a migration that asks for it (only possible
        outside a transaction), and back on afterwards whatever happens."""
        if not migration.foreign_keys_off or self.db.dialect.name != "sqlite":
            yield
            return
        with self.db.writes_held() as conn:  # the connection the migration's transaction runs on
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
        if self.db.dialect.name == "sqlite":
            self.db.execute(_SCHEMA_VERSION_DDL)
        elif not self.db.query_one("SELECT to_regclass('schema_version') IS NOT NULL")[0]:
            return 0
        row = self.db.query_one("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
        return int(row["v"])

    def check_current(self) -> None:
        """Raise a one-line ``SchemaTooOldError`` / ``SchemaTooNewError`` unless the database
        is exactly at this code's version (what ``twin serve`` checks on PostgreSQL, where it
        never migrates)."""
        current = self.current_version()
        self._check_not_newer(current)
        if current < self.latest:
            raise SchemaTooOldError(
                f"{self.db.name}: database schema version {current} is older than this code "
                f"({self.latest}); run `{MIGRATE_COMMAND}` (as the database owner) first")

    def status(self) -> MigrationStatus:
        current = self.current_version()
        return MigrationStatus(self.db.name, current, self.latest,
                               [m.version for m in self.migrations if m.version > current])

    def _check_not_newer(self, current: int) -> None:
        if current > self.latest:
            raise SchemaTooNewError(
                f"{self.db.name}: database schema version {current} is newer than this code "
                f"knows ({self.latest}); upgrade the software instead of migrating "
                f"(`{MIGRATE_COMMAND}` cannot go back to an older release)")

    def migrate(self, to: int | None = None, *, progress: ProgressFactory = silent) -> list[int]:
        """Apply pending migrations up to ``to`` (default: latest). Returns versions applied."""
        target = self.latest if to is None else to
        current = self.current_version()
        self._check_not_newer(current)
        if not 0 <= target <= self.latest:
            raise MigrationError(f"{self.db.name}: no migration {target} (latest is {self.latest})")
        if target < current:
            raise MigrationError(f"{self.db.name}: at version {current}; use rollback to go down to {target}")
        applied: list[int] = []
        if self.db.dialect.name != "sqlite" and current < target:
            self._create_schema_version_table()
        steps = self.migrations[current:target]
        with progress(f"migrate {self.db.name}", len(steps), "migrations") as bar:
            for migration in steps:
                self._apply(migration, applied)
                bar.update(1)
        return applied

    def _apply(self, migration: Migration, applied: list[int]) -> None:
        """Apply one migration unless another process did meanwhile."""
        with self._foreign_keys(migration), self.db.transaction(lock=_LOCK) as conn:
            # Re-check inside the write lock: another process may have migrated meanwhile.
            now = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if now >= migration.version:
                return
            try:
                _run(conn, migration.up, self.db.dialect)
                _check_foreign_keys(conn, migration, self.db.dialect)
            except Exception as exc:
                raise MigrationError(
                    f"{self.db.name}: migration {migration.version} ({migration.name}) failed: {exc}"
                ) from exc
            conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                         (migration.version, migration.name,
                          datetime.now(timezone.utc).isoformat(timespec="seconds")))
        log.info("%s: applied migration %d (%s)", self.db.name, migration.version, migration.name)
        applied.append(migration.version)

    def _create_schema_version_table(self) -> None:
        schema = getattr(getattr(self.db, "settings", None), "schema", None)
        try:
            with self.db.transaction(lock=_LOCK) as conn:
                if schema is not None:  # a component store's own schema (config.store_postgres_settings)
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
                if not conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]:
                    conn.execute(_SCHEMA_VERSION_DDL)
        except StorageError as exc:
            raise MigrationError(f"{self.db.name}: cannot create schema_version: {exc}") from exc

    def rollback(self, to: int, *, progress: ProgressFactory = silent) -> list[int]:
        """Undo migrations down to version ``to`` (0 = empty schema). Returns versions undone."""
        current = self.current_version()
        self._check_not_newer(current)
        if not 0 <= to <= current:
            raise MigrationError(f"{self.db.name}: cannot roll back to {to} from version {current}")
        undone = []
        dialect = self.db.dialect
        steps = list(reversed(self.migrations[to:current]))
        with progress(f"roll back {self.db.name}", len(steps), "migrations") as bar:
            for migration in steps:
                with self._foreign_keys(migration), self.db.transaction(lock=_LOCK) as conn:
                    try:
                        _run(conn, migration.down, dialect)
                        _check_foreign_keys(conn, migration, dialect)
                    except Exception as exc:
                        raise MigrationError(f"{self.db.name}: rollback of {migration.version} "
                                             f"({migration.name}) failed: {exc}") from exc
                    conn.execute("DELETE FROM schema_version WHERE version = ?", (migration.version,))
                log.info("%s: rolled back migration %d (%s)", self.db.name, migration.version,
                         migration.name)
                undone.append(migration.version)
                bar.update(1)
        return undone
