"""What a SQLite/SQLCipher driver error means: retry (busy), a full disk, or a bad file.

Both driver modules (``sqlcipher3``, ``sqlite3``) expose the DB-API exception hierarchy; the
tuples below catch either, and the storage core's own classes that the PostgreSQL backend
raises, so code written against them runs on both backends.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlcipher3

from .errors import (BackendError, BadDatabaseFileError, ConstraintError, DamagedDatabaseError,
                     StatementError, StorageFullError, TransactionConflict, WrongKeyError)
from .fingerprint import key_fingerprint

# Both driver modules expose the DB-API exception hierarchy; we catch either. The PostgreSQL
# backend raises the storage core's own classes (its driver's are not imported on this path).
DatabaseError = (sqlcipher3.DatabaseError, sqlite3.DatabaseError, BackendError)
IntegrityError = (sqlcipher3.IntegrityError, sqlite3.IntegrityError, ConstraintError)
OperationalError = (sqlcipher3.OperationalError, sqlite3.OperationalError, StatementError)

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26


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


def full_error(name: str) -> StorageFullError:
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
