"""Seed 003's raw-connection API: ``DatabaseConfig``, ``ConnectionPool``, ``get_connection_pool``,
``get_db_connection``, ``close_all_connections``, over the storage core's keyed connections.

    >>> with get_db_connection() as conn:
    ...     count = conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]

Differences from the seed, on purpose:

- Every connection is a SQLCipher connection keyed with the ledger's database key (from the
  deployment's keyring), with the storage core's pragmas (WAL, busy timeout, foreign keys,
  secure delete); the file is created and migrated on first use, so ``ledger`` exists.
- ``journal_mode`` must be ``WAL`` and ``synchronous_mode`` ``NORMAL`` or ``FULL`` (the
  storage core's two durability levels); ``OFF`` would lose acknowledged writes on a crash,
  so it is refused with a ``ValueError`` instead of being applied.
- A raw connection speaks one SQL dialect, so this API is SQLCipher-only: with
  ``LEDGER_STORAGE_BACKEND`` (or ``TWIN_STORAGE_BACKEND``) set to ``postgresql`` it raises a
  one-line ``StorageConfigError``. ``DatabaseLedger`` itself works on both backends.
- ``get_db_connection()`` runs its block as one write transaction (``BEGIN IMMEDIATE``):
  committed when the block ends, rolled back when it raises.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator

from twin.storage import Database, EngineSettings, Migrator, StorageConfigError, storage_backend

if TYPE_CHECKING:
    from twin.config import Config

_JOURNAL_MODES = ("WAL",)
_SYNCHRONOUS_MODES = {"NORMAL": "normal", "FULL": "full"}


class PoolExhaustedError(RuntimeError):
    """More threads hold a ledger connection at once than ``max_connections`` allows."""


@dataclass
class DatabaseConfig:
    """The seed's connection settings (``timeout`` in seconds, ``cache_size`` in KiB)."""

    path: str = "ledger.db"
    timeout: int = 30
    check_same_thread: bool = False  # connections are per thread already; kept for the seed
    journal_mode: str = "WAL"
    synchronous_mode: str = "NORMAL"
    cache_size: int = 10000
    max_connections: int = 10

    def __post_init__(self) -> None:
        if self.journal_mode.upper() not in _JOURNAL_MODES:
            raise ValueError(f"journal_mode must be WAL, got {self.journal_mode!r}")
        if self.synchronous_mode.upper() not in _SYNCHRONOUS_MODES:
            raise ValueError("synchronous_mode must be NORMAL or FULL (OFF loses acknowledged "
                             f"writes on a crash), got {self.synchronous_mode!r}")
        for name in ("timeout", "cache_size", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(cache_size_kib=self.cache_size, busy_timeout_ms=self.timeout * 1000,
                              durability=_SYNCHRONOUS_MODES[self.synchronous_mode.upper()])


@dataclass
class ConnectionPool:
    """One keyed connection per thread, at most ``config.max_connections`` threads at once;
    a thread's connection is closed when the next thread asks after that thread ended."""

    config: DatabaseConfig
    _connections: Dict[int, Any] = None  # type: ignore[assignment]
    _lock: threading.Lock = None  # type: ignore[assignment]
    key: bytes | None = field(default=None, repr=False)
    _db: Database | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._connections = {} if self._connections is None else self._connections
        self._lock = self._lock or threading.Lock()

    def _database(self) -> Database:
        if self._db is None:
            from twin.catalog import load_keyring
            from twin.config import Config

            from .schema import MIGRATIONS

            key = self.key if self.key is not None else load_keyring(Config.from_env()).database_key
            db = Database(self.config.path, key, name="ledger", settings=self.config.engine_settings())
            Migrator(db, MIGRATIONS).migrate()
            db.close_all()
            self._db = db
        return self._db

    def get_connection(self) -> Any:
        """This thread's connection (opened on first use)."""
        ident = threading.get_ident()
        with self._lock:
            conn = self._connections.get(ident)
            if conn is not None:
                return conn
            self._close_finished_threads()
            if len(self._connections) >= self.config.max_connections:
                raise PoolExhaustedError(f"ledger connection pool: all {self.config.max_connections} "
                                         "connections are held by running threads")
            conn = self._database().connect_new()
            self._connections[ident] = conn
            return conn

    def _close_finished_threads(self) -> None:
        alive = {thread.ident for thread in threading.enumerate()}
        for ident in [i for i in self._connections if i not in alive]:
            self._connections.pop(ident).close()

    def close_all(self) -> None:
        """Close every connection; threads open new ones when they ask again."""
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            conn.close()


_pool: ConnectionPool | None = None
_pool_lock = threading.Lock()


def ledger_database_config(config: "Config | None" = None) -> DatabaseConfig:
    """A ``DatabaseConfig`` for the configured ledger database (``LEDGER_DB_PATH``, else
    ``ledger.db`` in ``TWIN_DATA_DIR``); refuses the postgresql backend (see the module)."""
    from twin.catalog import database_path, spec_for
    from twin.config import Config

    config = config or Config.from_env()
    environ = config.environ or os.environ
    if storage_backend(environ, "LEDGER_") == "postgresql":
        raise StorageConfigError("the ledger's raw connections (get_db_connection, ConnectionPool) "
                                 "are SQLCipher-only; on postgresql use DatabaseLedger")
    return DatabaseConfig(path=str(database_path(spec_for("ledger"), config)))


def get_connection_pool() -> ConnectionPool:
    """The process's pool over the configured ledger database, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ConnectionPool(ledger_database_config())
        return _pool


@contextmanager
def get_db_connection() -> Iterator[Any]:
    """This thread's ledger connection inside one write transaction: committed when the block
    ends, rolled back (and the exception re-raised) when it raises."""
    pool = get_connection_pool()
    conn = pool.get_connection()
    pool._database().retrying(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        if conn.in_transaction:
            conn.execute("COMMIT")


def close_all_connections() -> None:
    """Close every connection of the process's pool (clean shutdown); a later call reopens."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close_all()
