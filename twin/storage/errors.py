"""Named exceptions of the storage core: one family, ``StorageError``, for every backend.

Messages are one line, safe to print (never a key, a password or a row value): the CLI prints
``str(exc)`` and exits 2 for a ``StorageError``.

A database file that cannot be used is reported by ``BadDatabaseFileError``, whose subclasses
say what is wrong with the file in one line an operator can act on. They are raised where
files are opened and where the driver finds corruption (``twin.storage.engine``), so every
command and the service report a bad file the same way.
"""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base class for every storage-core error."""


class BadDatabaseFileError(StorageError):
    """A database file exists but cannot be used; the message starts with its path."""

    problem = "cannot be used"

    def __init__(self, path: str | Path, detail: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {detail or self.problem}")


class WrongKeyError(BadDatabaseFileError):
    """The file does not decrypt under the key. SQLCipher cannot tell a wrong key from a
    damaged first page, so the message names both and the key's fingerprint."""

    def __init__(self, path: str | Path, fingerprint: str = "unknown") -> None:
        self.fingerprint = fingerprint
        super().__init__(path, "cannot be opened with this key (wrong key, or damaged; "
                               f"key fingerprint {fingerprint})")


class NotEncryptedError(BadDatabaseFileError):
    """A plain SQLite file where an encrypted one is expected."""

    problem = "a plain SQLite file, not encrypted"


class TruncatedDatabaseError(BadDatabaseFileError):
    """The file is empty or shorter than whole pages."""

    problem = "empty or truncated"


class DamagedDatabaseError(BadDatabaseFileError):
    """The file opened, but a page past the header is corrupt."""

    problem = "damaged (run verify)"


class DatabaseBusyError(StorageError):
    """The database stayed busy/locked (or kept conflicting) after every retry."""


class StorageFullError(StorageError):
    """A write failed because the disk (or quota) holding the database is full; nothing of the
    transaction was kept (SQLite or the server rolled it back). PostgreSQL: SQLSTATE 53100."""


class DataDirectoryError(StorageError):
    """No usable directory for a database file (e.g. unwritable in production)."""


class MigrationError(StorageError):
    """A migration failed or was asked for an impossible target."""


class SchemaMismatchError(MigrationError):
    """The database's schema version is not the one this code was written for."""


class SchemaTooNewError(SchemaMismatchError):
    """The database has a schema version newer than this code knows."""


class SchemaTooOldError(SchemaMismatchError):
    """The database has pending migrations (``twin db migrate`` applies them)."""


class BackupError(StorageError):
    """A backup, verification or restore failed."""


class BackupVerificationError(BackupError):
    """A backup does not match its manifest or fails its integrity check."""


# -- errors a database server reported while running SQL --------------------------------------
# On SQLCipher the driver's own exceptions reach callers unchanged (no wrapping on the hot path);
# ``twin.storage.IntegrityError`` / ``OperationalError`` are tuples holding both kinds.

class BackendError(StorageError):
    """The server rejected a statement. ``sqlstate`` is the SQLSTATE code when there is one.

    The message is the server's primary message only: its DETAIL (which can quote row values)
    is left out on purpose.
    """

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ConstraintError(BackendError):
    """A unique, foreign-key, check or not-null constraint failed (SQLSTATE class 23)."""


class StatementError(BackendError):
    """Any other rejected statement: syntax, unknown table or column, type mismatch..."""


class TransactionConflict(StatementError):
    """A serialization failure or deadlock: the whole transaction is worth running again."""


# -- configuration and connecting (start-up errors: one line, exit 2 at the CLI) ---------------

class StorageConfigError(StorageError):
    """The storage configuration is missing, malformed or inconsistent."""


class DatabaseUnavailableError(StorageError):
    """The database server cannot be reached or refused the connection."""


class TLSUnavailableError(DatabaseUnavailableError):
    """TLS was required (``sslmode=require`` or stricter) and the server does not offer it."""


class ConnectionLimitError(DatabaseUnavailableError):
    """The server (or the database or role) has no connection slot left for the pool."""


class PoolTimeoutError(DatabaseBusyError):
    """Every pooled connection stayed in use for the whole pool timeout."""


class SameDatabaseError(StorageConfigError):
    """Two settings that must name different databases reach the same one."""


class ServingRoleError(StorageConfigError):
    """The role the service connects as may change the schema (it must not on PostgreSQL)."""
