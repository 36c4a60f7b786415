"""Opening SQLCipher files: settings, creating a file whole, keyed connections and their
pragmas, backoff, and running a migration script inside the caller's transaction."""

from __future__ import annotations

import os
import random
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlcipher3

from .cipher import CURRENT, CipherSettings, candidates
from .errors import NotEncryptedError, StorageError, TruncatedDatabaseError, WrongKeyError
from .sqlite_errors import DatabaseError, OperationalError, bad_file_error, is_busy_error

# The driver binds int, float, str and bytearray directly but looks every other value up as
# an adapter first, and the failed search (a key tuple, then ``__adapt__`` and ``__conform__``
# attribute lookups) costs several times the binding: ~1 us per None or bytes parameter, the
# NULL columns and ciphertext BLOBs of every write. Registered adapters are found at the first
# lookup; these are C callables returning the value itself, so what is bound is unchanged
# (NULL, the same bytes). Neither type is a "base type" of the driver, so registering them
# keeps its fast path for the others. (Measured: None 990 -> 250 ns, bytes 1270 -> 470 ns.)
sqlcipher3.register_adapter(type(None), {}.get)  # {}.get(None) is None
sqlcipher3.register_adapter(bytes, bytes)       # bytes(b) is b for exact bytes

_SQLITE_HEADER = b"SQLite format 3\x00"
# The smallest page of any known cipher setting: an encrypted file is at least one page.
_MIN_CIPHER_PAGE = 4096
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
    page = _MIN_CIPHER_PAGE if key is not None else 512
    if size < page or size % 512:
        raise TruncatedDatabaseError(path)
    if key is not None and head == _SQLITE_HEADER:
        raise NotEncryptedError(path)


def _create_database_file(path: Path, key: bytes | None, cipher: CipherSettings) -> None:
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
                cipher.apply(conn)
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


def open_keyed(path: str | os.PathLike[str], key: bytes | None, *, read_only: bool = False,
               cipher: CipherSettings | None = None) -> Any:
    """A keyed connection with no service pragmas (for backup copies and verification).

    ``read_only`` opens through a ``mode=ro`` URI so verifying never writes to the file; a
    missing file is created (complete, see ``_create_database_file``) unless ``read_only``,
    under ``cipher`` (default: ``cipher.CURRENT``). An existing file is opened under ``cipher``
    when given, else under whichever known setting authenticates it (``cipher.candidates``).
    Raises a ``BadDatabaseFileError`` when the file cannot be used with ``key``.
    """
    path = Path(path)
    if key is not None and len(key) != 32:
        raise StorageError("SQLCipher key must be 32 bytes")
    if not read_only and not path.exists():
        _create_database_file(path, key, cipher or CURRENT)
    check_file_shape(path, key)
    tries = [None] if key is None else [cipher] if cipher is not None else candidates(path)
    for attempt, settings in enumerate(tries, start=1):
        try:
            return _open_as(path, key, settings, read_only)
        except DatabaseError as exc:
            bad = bad_file_error(path, key, exc)
            if bad is None:
                raise
            # Only a page 1 that does not authenticate says "not these settings" (or not
            # this key); a later damaged page says the file is damaged, under these.
            if attempt == len(tries) or not isinstance(bad, WrongKeyError):
                raise bad from None
    raise AssertionError("unreachable")


def _open_as(path: Path, key: bytes | None, cipher: CipherSettings | None, read_only: bool) -> Any:
    # One SQLite build for every file: key=None is the same engine with encryption off, so a
    # keyed/unkeyed comparison measures encryption alone, not two different SQLite builds.
    module = sqlcipher3
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
            if cipher is not None:
                cipher.apply(conn)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
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
            time.sleep(backoff(settings, attempt))


def backoff(settings: Any, attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0 first), for both backends' retries: "full
    jitter", a uniform draw below a cap that doubles per attempt (``retry_base_delay`` x 2^n,
    at most ``retry_max_delay``). Writers that collided spread over the whole window rather
    than a band of it, so they rarely collide again in step."""
    return random.uniform(0.0, min(settings.retry_max_delay, settings.retry_base_delay * (2 ** attempt)))


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
