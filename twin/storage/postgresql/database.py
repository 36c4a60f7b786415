"""The PostgreSQL backend: one database on a server, shared by every process and host.

Same API as the SQLCipher ``Database`` (see ``backend.Backend``), over a ``psycopg_pool`` pool:
- a statement outside a transaction borrows a pooled connection in autocommit mode;
- ``transaction()`` holds one connection until COMMIT. Writers run SERIALIZABLE, so every
  read-modify-write our SQLite code relies on (BEGIN IMMEDIATE serialises writers there) stays
  correct: where PostgreSQL cannot order two transactions it aborts one with a serialization
  failure, and ``write(fn)`` re-runs ``fn`` whole, as it does on a busy SQLite file; deadlocks
  likewise. A ``transaction()`` block is not re-run: code that may conflict uses ``write(fn)``.
  Readers (``immediate=False``) get one REPEATABLE READ snapshot.
- ``lock(name)`` is a transaction-level advisory lock. ``transaction(lock=name)`` and
  ``write(fn, lock=name)`` take it first and run READ COMMITTED, so every statement after the
  lock sees what the previous holder committed: the lock, not the isolation level, serialises
  them (the audit chain's appenders, one per replica). Their lock travels with the
  transaction's first statement (the server takes it before running that statement), so it
  costs no round trip; a transaction that runs no statement takes it at its COMMIT. A statement that fails inside a
  transaction aborts it (SQLite would only undo that statement): wrap statements that are
  expected to fail in a nested ``transaction()`` (a savepoint), whose ``execute_at_commit``
  statements go with its RELEASE, so theirs is the savepoint's failure too. Committing a
  transaction a caught failure aborted raises ``StatementError`` (never a silent ROLLBACK).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ..backend import Backend, ServerBacked
from ..config import PostgresSettings
from ..counting import StatementCounter
from ..dialect import POSTGRESQL
from ..sqlite_connect import backoff
from ..errors import DatabaseBusyError, PoolTimeoutError, StorageError, TransactionConflict
from .connection import PgConnection, Result
from .pool import open_pool
from .service_guard import GUARD_TABLE
from .session_lock import SessionLock, try_session_lock

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITER_ISOLATION = "SERIALIZABLE"
READER_ISOLATION = "REPEATABLE READ"
LOCKED_ISOLATION = "READ COMMITTED"

# Internal tables of the storage core, not listed by table_names().
INTERNAL_TABLES = ("storage_identity", GUARD_TABLE)


class PostgresDatabase(ServerBacked, Backend):
    """One PostgreSQL database; opens its pool (and fails clearly) when created."""

    dialect = POSTGRESQL

    def __init__(self, settings: PostgresSettings, *, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or settings.database
        self.counter = StatementCounter(enabled=True)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._group: Any = None
        self._generation = 0
        self._pool: ConnectionPool | None = open_pool(settings, self.name)

    def __repr__(self) -> str:
        return f"PostgresDatabase(name={self.name!r}, url={self.display_url!r})"

    @property
    def display_url(self) -> str:
        return self.settings.display_url

    # -- connections --------------------------------------------------------------------

    def _current_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = open_pool(self.settings, self.name)
                pool = self._pool
        return pool

    def checkout(self) -> psycopg.Connection:
        """A pooled connection for this thread's transaction (``release`` gives it back)."""
        pool = self._current_pool()
        try:
            return pool.getconn(timeout=self.settings.pool_timeout)
        except PoolTimeout:
            raise PoolTimeoutError(
                f"{self.name}: no pooled connection came free within {self.settings.pool_timeout:g}s "
                f"(pool max {self.settings.max_size}; raise TWIN_DB_POOL_MAX_SIZE)") from None
        except PoolClosed:  # close_all() ran meanwhile: the next call opens a new pool
            raise DatabaseBusyError(f"{self.name}: the connection pool was closed") from None

    def release(self, conn: psycopg.Connection) -> None:
        pool = self._pool
        try:
            if pool is not None:
                pool.putconn(conn)
                return
        except (ValueError, PoolClosed):  # from an older pool: close_all() replaced it
            pass
        conn.close()

    @contextmanager
    def borrow(self) -> Iterator[psycopg.Connection]:
        conn = self.checkout()
        try:
            yield conn
        finally:
            self.release(conn)

    def connection(self) -> PgConnection:
        """This thread's handle (it holds a pooled connection only during a transaction)."""
        cached = getattr(self._local, "handle", None)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        handle = PgConnection(self)
        self._local.handle = (self._generation, handle)
        return handle

    def close_all(self) -> None:
        """Close the pool and its connections; the next use opens a new pool."""
        with self._lock:
            self._generation += 1
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5)

    # -- transactions and retries ------------------------------------------------------

    def retrying(self, fn: Callable[[], T]) -> T:
        """Re-run ``fn`` with backoff on a serialization failure or deadlock. Inside an open
        transaction nothing is re-run: the conflict aborted that transaction, and only its
        outermost ``write()`` can start it again."""
        settings = self.settings
        for attempt in range(settings.max_retries + 1):
            try:
                return fn()
            except TransactionConflict as exc:
                if self.connection().in_transaction:
                    raise
                if attempt == settings.max_retries:
                    raise DatabaseBusyError(
                        f"{self.name}: transaction kept conflicting after {attempt + 1} attempts "
                        f"({exc})") from None
                log.debug("%s: %s; retrying", self.name, exc)
                time.sleep(backoff(settings, attempt))  # type: ignore[arg-type]
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(self, *, immediate: bool = True, lock: str | None = None) -> Iterator[PgConnection]:
        handle = self.connection()
        if handle.in_transaction:
            with self._savepoint(handle):
                if lock is not None:
                    handle.lock(lock, wait=True, with_next=True)
                yield handle
            return
        if lock is not None:
            isolation = LOCKED_ISOLATION
        else:
            isolation = WRITER_ISOLATION if immediate else READER_ISOLATION
        conn = self.checkout()
        try:
            handle.begin(conn, isolation)
            try:
                if lock is not None:
                    handle.lock(lock, wait=True, with_next=True)
                yield handle
            except BaseException:
                handle.finish("ROLLBACK")
                raise
            else:
                handle.finish("COMMIT")
        finally:
            if handle.in_transaction:  # begin() or finish() failed half-way
                handle.finish("ROLLBACK")
            self.release(conn)

    @contextmanager
    def snapshot(self) -> Iterator[PgConnection]:
        """``Backend.snapshot``: a pooled connection of its own in a read-only REPEATABLE READ
        transaction."""
        handle = PgConnection(self)
        conn = self.checkout()
        try:
            handle.begin(conn, f"{READER_ISOLATION} READ ONLY")
            try:
                yield handle
            except BaseException:
                handle.finish("ROLLBACK")
                raise
            else:
                handle.finish("COMMIT")
        finally:
            if handle.in_transaction:
                handle.finish("ROLLBACK")
            self.release(conn)

    @contextmanager
    def _savepoint(self, handle: PgConnection) -> Iterator[None]:
        handle.depth += 1
        name = f"sp_{handle.depth}"
        handle.execute(f"SAVEPOINT {name}")  # carries what was kept back before it
        try:
            yield
            # It carries the statements kept back inside: one that fails leaves the savepoint
            # in place, and the failure rolls back to it like any statement's of the block.
            handle.execute(f"RELEASE {name}")
        except BaseException:
            if handle.in_transaction:
                handle.drop_kept_back()  # rolled back unsent: they cannot hide the error
                handle.execute(f"ROLLBACK TO {name}")
                handle.execute(f"RELEASE {name}")
            raise
        finally:
            handle.depth -= 1

    def lock(self, name: str, *, wait: bool = True) -> bool:
        """A transaction-level advisory lock (``pg_advisory_xact_lock``), released at COMMIT or
        ROLLBACK, so a replica killed mid-transaction never leaves it held."""
        handle = self.connection()
        if not handle.in_transaction:
            raise StorageError(f"{self.name}: lock({name!r}) needs an open transaction")
        return handle.lock(name, wait=wait)

    def session_lock(self, name: str) -> SessionLock | None:
        """``ServerBacked.session_lock``: a session-level advisory lock on a connection of its
        own (outside the pool), freed when the holder's process or connection dies. Advisory
        locks belong to one database: every process on this database shares the name."""
        return try_session_lock(self.settings, name)

    # -- convenience --------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        handle = self.connection()
        return self.retrying(lambda: handle.execute(sql, params))

    def write_shared(self, fn: Callable[[Any], T], *, lock: str | None = None,
                     shared_on_server: bool = True) -> T:
        """``Backend.write_shared``; with a ``lock`` or not ``shared_on_server``,
        ``write(fn, lock=lock)`` alone."""
        if lock is not None or not shared_on_server:
            return self.write(fn, lock=lock)
        return super().write_shared(fn)

    def execute_shared(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        """``Backend.execute_shared``: the statement in autocommit, one round trip, durable
        when it returns (synchronous commit); a group commit would cost BEGIN, SAVEPOINTs and
        COMMIT in round trips of their own. Inside this thread's transaction, it joins it."""
        return self.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Result:
        handle = self.connection()
        rows = list(rows)
        return self.retrying(lambda: handle.executemany(sql, rows))

    def table_names(self) -> list[str]:
        """Tables of the current schema, without the storage core's own."""
        rows = self.query(
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
            'ORDER BY table_name COLLATE "C"')
        return [r["name"] for r in rows if r["name"] not in INTERNAL_TABLES]
