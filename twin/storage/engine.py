"""The SQLCipher engine: keyed connections, pragmas, per-thread reuse, transactions, retries.

The default backend (see ``backend.Backend``). One ``Database`` object owns one file. Each thread gets its own connection (SQLite connections
must not be shared between threads mid-transaction); ``close_all()`` closes them all.
``transaction()`` takes the write lock up front (``BEGIN IMMEDIATE``) so two writers never
deadlock on a lock upgrade, and busy/locked errors are retried with exponential backoff
before a ``DatabaseBusyError`` reaches the caller.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import sqlcipher3

from .backend import Backend, FileBacked
from .counting import StatementCounter
from .dialect import SQLITE
from .errors import (BackendError, BadDatabaseFileError, ConstraintError, DamagedDatabaseError,
                     DatabaseBusyError, NotEncryptedError, StatementError, StorageError,
                     StorageFullError, TransactionConflict, TruncatedDatabaseError, WrongKeyError)
from .fingerprint import key_fingerprint

log = logging.getLogger(__name__)

T = TypeVar("T")

# Both driver modules expose the DB-API exception hierarchy; we catch either. The PostgreSQL
# backend raises the storage core's own classes (its driver's are not imported on this path).
DatabaseError = (sqlcipher3.DatabaseError, sqlite3.DatabaseError, BackendError)
IntegrityError = (sqlcipher3.IntegrityError, sqlite3.IntegrityError, ConstraintError)
OperationalError = (sqlcipher3.OperationalError, sqlite3.OperationalError, StatementError)

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26
_SQLITE_HEADER = b"SQLite format 3\x00"
# SQLCipher's page size (we never change it): an encrypted file is whole pages of this size.
_CIPHER_PAGE_SIZE = 4096
DURABILITY_LEVELS = ("normal", "full")


@dataclass(frozen=True)
class EngineSettings:
    """Tunables of every connection; defaults suit a service with a few threads."""

    cache_size_kib: int = 32 * 1024
    mmap_size: int = 256 * 1024 * 1024
    busy_timeout_ms: int = 5000
    max_retries: int = 8
    retry_base_delay: float = 0.005
    retry_max_delay: float = 0.5
    # ``normal``: a commit survives a crash of the process (WAL, synchronous=NORMAL);
    # ``full``: it also survives a power loss (every commit fsyncs the WAL, synchronous=FULL).
    durability: str = "normal"

    def __post_init__(self) -> None:
        if self.durability not in DURABILITY_LEVELS:
            raise StorageError(f"durability must be one of {', '.join(DURABILITY_LEVELS)}")


def is_busy_error(exc: BaseException) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED and PostgreSQL's serialization failures and
    deadlocks (worth retrying), false for anything else."""
    if not isinstance(exc, OperationalError):
        return False
    if isinstance(exc, StatementError):
        return isinstance(exc, TransactionConflict)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def is_full_error(exc: BaseException) -> bool:
    """True for SQLITE_FULL: the disk (or quota) under the database or its WAL is full."""
    if not isinstance(exc, OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == _SQLITE_FULL
    return "database or disk is full" in str(exc).lower()


def _full_error(name: str) -> StorageFullError:
    return StorageFullError(f"{name}: the disk holding the database is full; the write was "
                            "rolled back")


def bad_file_error(path: Path, key: bytes | None, exc: BaseException) -> BadDatabaseFileError | None:
    """What a driver error says about the file, as one of our errors; None when it says
    nothing about the file (a busy database, a bad statement...).

    SQLITE_NOTADB means page 1 did not decrypt (wrong key or damaged first page); SQLITE_CORRUPT
    means a later page is damaged.
    """
    if not isinstance(exc, DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    code = code & 0xFF if code is not None else None
    message = str(exc).lower()
    if code == _SQLITE_CORRUPT or "malformed" in message:
        return DamagedDatabaseError(path)
    if code == _SQLITE_NOTADB or "not a database" in message or "encrypted" in message:
        return WrongKeyError(path, key_fingerprint(key)) if key is not None else DamagedDatabaseError(path)
    return None


def check_file_shape(path: Path, key: bytes | None) -> None:
    """Refuse an existing file that cannot be a database under ``key`` before opening it:
    empty or cut mid-page, or plain SQLite where an encrypted file is expected. (A file this
    code creates is never left empty: see ``_create_database_file``.)"""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    page = _CIPHER_PAGE_SIZE if key is not None else 512
    if size < page or size % 512:
        raise TruncatedDatabaseError(path)
    if key is not None and head == _SQLITE_HEADER:
        raise NotEncryptedError(path)


def _create_database_file(path: Path, key: bytes | None) -> None:
    """Create a new database file, mode 0600, that appears complete or not at all.

    The first page (header, incremental auto-vacuum, WAL mode) is written under a temporary
    name that is then linked into place. SQLite itself would create an empty file and fill it
    on the first write, so a crash in between would leave an empty file, which every command
    refuses as "empty or truncated" rather than silently starting a new, empty database.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{random.getrandbits(64):016x}.creating")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        conn = sqlcipher3.connect(str(tmp), isolation_level=None)
        try:
            if key is not None:
                conn.execute("PRAGMA cipher_log_level = NONE")
                conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
            # Must precede the first table; lets maintenance return freed pages to the OS.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")  # writes page 1
        finally:
            conn.close()
        try:
            os.link(tmp, path)  # fails if another process created the file meanwhile: use theirs
        except FileExistsError:
            pass
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def open_keyed(path: str | os.PathLike[str], key: bytes | None, *, read_only: bool = False) -> Any:
    """A keyed connection with no service pragmas (for backup copies and verification).

    ``read_only`` opens through a ``mode=ro`` URI so verifying never writes to the file; a
    missing file is created (complete, see ``_create_database_file``) unless ``read_only``.
    Raises a ``BadDatabaseFileError`` when the file cannot be used with ``key``.
    """
    path = Path(path)
    if key is not None and len(key) != 32:
        raise StorageError("SQLCipher key must be 32 bytes")
    # One SQLite build for every file: key=None is the same engine with encryption off, so a
    # keyed/unkeyed comparison measures encryption alone, not two different SQLite builds.
    module = sqlcipher3
    if not read_only and not path.exists():
        _create_database_file(path, key)
    check_file_shape(path, key)
    if read_only:
        # Quoted: a '#', '?' or '%' in the path would otherwise end or alter the URI.
        conn = module.connect(f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro", uri=True,
                              isolation_level=None, check_same_thread=False)
    else:
        conn = module.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        if key is not None:
            conn.execute("PRAGMA cipher_log_level = NONE")
            conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except DatabaseError as exc:
            bad = bad_file_error(path, key, exc)
            if bad is not None:
                raise bad from None
            raise
        conn.row_factory = module.Row
    except BaseException:
        conn.close()
        raise
    return conn


def connect(path: str | os.PathLike[str], key: bytes | None,
            settings: EngineSettings = EngineSettings()) -> Any:
    """Open one configured connection.

    ``key`` is the raw 32-byte SQLCipher key (``PRAGMA key = "x'..'"``: no PBKDF2 per open).
    ``key=None`` opens a plain, unencrypted SQLite file (benchmarks and tests only).
    Raises a ``BadDatabaseFileError`` when the file cannot be used with ``key``.
    """
    conn = open_keyed(path, key)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_ms)}")
        _set_journal_mode_wal(conn, settings)
        for pragma in (f"synchronous = {settings.durability.upper()}", "foreign_keys = ON",
                       "secure_delete = ON",
                       "temp_store = MEMORY", f"cache_size = {-int(settings.cache_size_kib)}",
                       f"mmap_size = {int(settings.mmap_size)}"):
            conn.execute(f"PRAGMA {pragma}")
    except BaseException:
        conn.close()
        raise
    return conn


def _set_journal_mode_wal(conn: Any, settings: EngineSettings) -> None:
    # Switching to WAL needs a brief exclusive lock: retry it like any other busy error.
    for attempt in range(settings.max_retries + 1):
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"could not enable WAL (journal_mode is {mode})")
            return
        except OperationalError as exc:
            if not is_busy_error(exc) or attempt == settings.max_retries:
                raise
            time.sleep(_backoff(settings, attempt))


def _backoff(settings: EngineSettings, attempt: int) -> float:
    delay = min(settings.retry_max_delay, settings.retry_base_delay * (2 ** attempt))
    return delay * (0.5 + random.random() / 2)  # jitter so two retrying writers drift apart


def execute_script(conn: Any, script: str) -> None:
    """Run a multi-statement SQL script statement by statement inside the caller's transaction.

    ``executescript()`` would COMMIT first and break migration atomicity, so we split with
    SQLite's own tokenizer (``complete_statement``), which handles triggers' inner semicolons.
    """
    run_whole = getattr(conn, "execute_script", None)  # PostgreSQL takes a script as it is
    if run_whole is not None:
        run_whole(script)
        return
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if not sqlite3.complete_statement(buffer):
            continue
        # One line may end several statements: cut at every ';' that completes one.
        start = 0
        for end, char in enumerate(buffer):
            if char == ";" and sqlite3.complete_statement(buffer[start:end + 1]):
                statement = buffer[start:end + 1].strip()
                if statement != ";":
                    conn.execute(statement)
                start = end + 1
        buffer = buffer[start:]
    # What is left after the last statement may only be blank lines and '--' comments.
    if any(line.strip() and not line.strip().startswith("--") for line in buffer.splitlines()):
        raise StorageError("SQL script ends with an incomplete statement")


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
        self._group: Any = None  # GroupCommitter, created on first write_shared()
        self._connections: list[Any] = []
        self._generation = 0
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

    def open_file(self, path: str | os.PathLike[str], *, read_only: bool = False) -> Any:
        """A connection to another file under this database's key (backup copies)."""
        return open_keyed(path, self._key, read_only=read_only)

    def sibling(self, path: str | os.PathLike[str]) -> "Database":
        """A ``Database`` over another file (a copy) under this one's key and name."""
        return Database(path, self._key, name=self.name, settings=self.settings)

    def connection(self) -> Any:
        """This thread's connection, opened on first use."""
        cached = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        conn = self.connect_new()
        with self._lock:
            self._connections.append(conn)
            self._local.conn = (self._generation, conn)
        return conn

    def close_all(self) -> None:
        """Close every connection any thread opened; threads reopen lazily afterwards."""
        with self._lock:
            self._generation += 1
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
                    raise _full_error(self.name) from None
                if not is_busy_error(exc):
                    self._raise_if_bad_file(exc)
                    raise
                if attempt == self.settings.max_retries:
                    raise DatabaseBusyError(
                        f"{self.name}: database stayed busy after {attempt + 1} attempts") from None
                time.sleep(_backoff(self.settings, attempt))
        raise AssertionError("unreachable")

    def _raise_if_bad_file(self, exc: BaseException) -> None:
        """Corruption (or a file no longer under our key) found mid-query becomes the one-line
        error of the bad-file family, naming this file."""
        bad = bad_file_error(self.path, self._key, exc)
        if bad is not None:
            # SQLCipher fails every later call on a connection that met a page it could not
            # decrypt: this thread gets a fresh connection next time.
            cached = getattr(self._local, "conn", None)
            if cached is not None:
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
        if immediate:
            self._write_lock.acquire()
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
                    raise _full_error(self.name) from None
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
            if immediate:
                self._write_lock.release()

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
