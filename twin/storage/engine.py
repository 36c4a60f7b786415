"""The SQLCipher engine: one ``Database`` per file, per-thread reads, one writers' connection, retries.

The default backend (see ``backend.Backend``). One ``Database`` object owns one file. Each
thread reads on its own connection (SQLite connections must not be shared between threads
mid-transaction); write transactions, one at a time, all run on one writers' connection, whose
page cache then stays warm (see ``_writer_connection``); per-connection state a write must see
(a TEMP trigger, a PRAGMA) goes on it through ``writes_held()``. ``close_all()`` closes them all. Opening files and their pragmas:
``sqlite_connect``; what a driver error means: ``sqlite_errors``.
``transaction()`` takes the write lock up front (``BEGIN IMMEDIATE``) so two writers never
deadlock on a lock upgrade, and busy/locked errors are retried with exponential backoff
before a ``DatabaseBusyError`` reaches the caller.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .backend import Backend, FileBacked
from .cipher import CipherSettings, of_connection
from .counting import StatementCounter
from .dialect import SQLITE
from .errors import DatabaseBusyError, StorageError
from .fingerprint import key_fingerprint
# Re-exported: the engine's public names (twin.storage imports them from here).
from .sqlite_connect import (DURABILITY_LEVELS, EngineSettings, backoff, check_file_shape,  # noqa: F401
                             connect, execute_script, open_keyed)
from .sqlite_errors import (DatabaseError, IntegrityError, OperationalError,  # noqa: F401
                            bad_file_error, full_error, is_busy_error, is_full_error)

log = logging.getLogger(__name__)

T = TypeVar("T")


class Database(FileBacked, Backend):
    """One database file: per-thread connections, transactions, retries."""

    dialect = SQLITE

    def __init__(self, path: str | os.PathLike[str], key: bytes | None, *,
                 name: str | None = None, settings: EngineSettings = EngineSettings()) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self.settings = settings
        self._key = key
        self._local = threading.local()
        self._lock = threading.Lock()
        # Writers of this process queue here before BEGIN IMMEDIATE: a thread waiting on a
        # Python lock wakes the moment it is released, whereas SQLite's busy handler sleeps
        # 1, 2, 5, 10... ms between tries. SQLite's locking still arbitrates between processes.
        self._write_lock = threading.Lock()
        self._writer: tuple[int, Any] | None = None  # (generation, the connection every write uses)
        self._group: Any = None  # GroupCommitter, created on first write_shared()
        self._connections: list[Any] = []
        self._generation = 0
        self._cipher: CipherSettings | None = None  # the file's, read once per generation
        self.counter = StatementCounter()

    def __repr__(self) -> str:
        return f"Database(name={self.name!r}, path={str(self.path)!r}, encrypted={self.encrypted})"

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    @property
    def key_fingerprint(self) -> str | None:
        """The public name of this file's key (None: unencrypted), never the key."""
        return key_fingerprint(self._key) if self._key is not None else None

    # -- connections --------------------------------------------------------------------

    def connect_new(self) -> Any:
        """A fresh connection that this object does not track (caller closes it)."""
        conn = connect(self.path, self._key, self.settings)
        if self.counter.enabled:
            conn.set_trace_callback(self.counter.sqlite_trace)
        return conn

    def enable_statement_counting(self) -> None:
        """Count statements from now on, on every connection (a trace callback: off by default
        because it costs a Python call per statement)."""
        self.counter.enable()
        with self._lock:
            for conn in self._connections:
                conn.set_trace_callback(self.counter.sqlite_trace)

    @property
    def cipher(self) -> CipherSettings | None:
        """The SQLCipher page settings of this file (None: unencrypted)."""
        if self._key is None:
            return None
        if self._cipher is None:
            self._cipher = of_connection(self.connection())
        return self._cipher

    def open_file(self, path: str | os.PathLike[str], *, read_only: bool = False) -> Any:
        """A connection to another file under this database's key (backup copies). A file it
        creates gets this one's cipher settings: a page-by-page copy needs the same pages."""
        cipher = None if Path(path).exists() else self.cipher
        return open_keyed(path, self._key, read_only=read_only, cipher=cipher)

    def attach(self, conn: Any, path: str | os.PathLike[str], schema: str) -> None:
        """Attach another file under this database's key to ``conn`` as ``schema`` (the key
        stays in here; ``sqlcipher_export`` needs both files on one connection)."""
        if self._key is None:
            raise StorageError(f"{self.name}: attach() is for encrypted files")
        conn.execute(f"ATTACH DATABASE ? AS {schema} KEY \"x'{self._key.hex()}'\"", (str(path),))

    def sibling(self, path: str | os.PathLike[str]) -> "Database":
        """A ``Database`` over another file (a copy) under this one's key and name."""
        return Database(path, self._key, name=self.name, settings=self.settings)

    def connection(self) -> Any:
        """This thread's connection, opened on first use; inside a write transaction of this
        thread, the writers' connection it holds."""
        writing = getattr(self._local, "writing", None)
        if writing is not None:
            return writing
        cached = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        conn = self.connect_new()
        with self._lock:
            self._connections.append(conn)
            self._local.conn = (self._generation, conn)
        return conn

    def _writer_connection(self) -> Any:
        """Under ``_write_lock``: the one connection this process's write transactions use.

        Every write transaction runs on it, one at a time (the lock), whichever thread asks:
        SQLite drops a connection's whole page cache when another connection wrote the file
        since its last transaction, and on SQLCipher every page read back is authenticated
        and decrypted again. With one connection per thread, nearly every write of a threaded
        server started cold; on one writers' connection the pages the last write touched (the
        same index pages, the table's last page) stay cached while this process alone writes."""
        writer = self._writer
        if writer is not None and writer[0] == self._generation:
            return writer[1]
        conn = self.connect_new()
        with self._lock:
            self._connections.append(conn)
            self._writer = (self._generation, conn)
        return conn

    def close_all(self) -> None:
        """Close every connection any thread opened; threads reopen lazily afterwards."""
        with self._lock:
            self._generation += 1
            self._cipher = None  # the file may be replaced (a restore, a recipher) before reopening
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except Exception:  # closing a connection another thread is using: nothing to save
                log.debug("error closing a connection of %s", self.name, exc_info=True)

    # -- transactions and retries ------------------------------------------------------

    def retrying(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` again with exponential backoff while it fails with busy/locked."""
        for attempt in range(self.settings.max_retries + 1):
            try:
                return fn()
            except DatabaseError as exc:
                if is_full_error(exc):
                    raise full_error(self.name) from None
                if not is_busy_error(exc):
                    self._raise_if_bad_file(exc)
                    raise
                if attempt == self.settings.max_retries:
                    raise DatabaseBusyError(
                        f"{self.name}: database stayed busy after {attempt + 1} attempts") from None
                time.sleep(backoff(self.settings, attempt))
        raise AssertionError("unreachable")

    def _raise_if_bad_file(self, exc: BaseException) -> None:
        """Corruption (or a file no longer under our key) found mid-query becomes the one-line
        error of the bad-file family, naming this file."""
        bad = bad_file_error(self.path, self._key, exc)
        if bad is not None:
            # SQLCipher fails every later call on a connection that met a page it could not
            # decrypt: this thread gets a fresh connection next time.
            # (Inside a write: the writers' connection, which the next write opens anew.)
            writing = getattr(self._local, "writing", None)
            cached = (self._generation, writing) if writing is not None else getattr(self._local, "conn", None)
            if cached is not None:
                if writing is not None:
                    self._writer = None
                else:
                    self._local.conn = None
                with self._lock:
                    if cached[1] in self._connections:
                        self._connections.remove(cached[1])
                try:
                    cached[1].close()
                except Exception:
                    log.debug("error closing a connection of %s", self.name, exc_info=True)
            raise bad from None

    @contextmanager
    def transaction(self, *, immediate: bool = True, lock: str | None = None) -> Iterator[Any]:
        """Commit on success, roll back on any exception. Nested use becomes a SAVEPOINT.

        ``immediate=True`` takes the write lock at BEGIN (retried while busy), which is what
        every writer wants; readers that need a consistent snapshot pass ``immediate=False``.
        A named ``lock`` needs nothing more: the write lock already serialises every writer
        of the file, so it only makes the transaction immediate.
        """
        if lock is not None:
            immediate = True
        conn = self.connection()
        if conn.in_transaction:
            depth = getattr(self._local, "depth", 0) + 1
            self._local.depth = depth
            name = f"sp_{depth}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            else:
                conn.execute(f"RELEASE {name}")
            finally:
                self._local.depth = depth - 1
            return
        held = getattr(self._local, "writing", None) is not None  # by writes_held()
        take_lock = immediate and not held
        if take_lock:
            self._write_lock.acquire()
            try:
                conn = self._local.writing = self._writer_connection()
            except BaseException:
                self._write_lock.release()
                raise
        try:
            begin = "BEGIN IMMEDIATE" if immediate else "BEGIN DEFERRED"
            self.retrying(lambda: conn.execute(begin))
            try:
                yield conn
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except Exception:
                        if bad_file_error(self.path, self._key, exc) is None:
                            raise  # on a damaged file the connection is discarded anyway
                if is_full_error(exc):
                    raise full_error(self.name) from None
                self._raise_if_bad_file(exc)
                raise
            else:
                try:
                    self.retrying(lambda: conn.execute("COMMIT"))
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        finally:
            if take_lock:
                self._local.writing = None
                self._write_lock.release()

    @contextmanager
    def writes_held(self) -> Iterator[Any]:
        """This process's write lock held with no transaction open, yielding the writers'
        connection: for a connection setting that must be made outside a transaction, such as
        ``PRAGMA foreign_keys`` around a migration. Transactions of this thread in the block
        run on that connection."""
        if getattr(self._local, "writing", None) is not None:
            raise StorageError(f"{self.name}: writes_held() inside a write transaction")
        with self._write_lock:
            conn = self._local.writing = self._writer_connection()
            try:
                yield conn
            finally:
                self._local.writing = None

    def lock(self, name: str, *, wait: bool = True) -> bool:
        """Held already: a writer's BEGIN IMMEDIATE took the file's one write lock, which
        serialises every writer of every process. Only checks there is a transaction."""
        if not self.connection().in_transaction:
            raise StorageError(f"{self.name}: lock({name!r}) needs an open transaction")
        return True

    # -- convenience --------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """Run one statement on this thread's connection (autocommit unless in a transaction)."""
        conn = self.connection()
        return self.retrying(lambda: conn.execute(sql, params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        conn = self.connection()
        rows = list(rows)
        return self.retrying(lambda: conn.executemany(sql, rows))

    def table_names(self) -> list[str]:
        """User tables (excluding SQLite internals and FTS shadow tables)."""
        rows = self.query(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")
        virtual = {r["name"] for r in rows if (r["sql"] or "").upper().startswith("CREATE VIRTUAL")}
        shadow = {r["name"] for r in rows
                  for v in virtual if r["name"].startswith(v + "_") and r["name"] not in virtual}
        return [r["name"] for r in rows if r["name"] not in shadow]
