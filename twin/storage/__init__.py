"""The shared storage core: backends, connections, dialect, migrations, backup, maintenance.

It knows nothing about learners or any other domain: domains bring their migrations and use
a ``Backend`` for their queries: ``Database`` (SQLCipher files, the default) or
``PostgresDatabase`` (``open_postgresql``; its module imports the driver only when used).

    >>> db = Database(path, key)
    >>> Migrator(db, MIGRATIONS).migrate()
    >>> with db.transaction() as conn:
    ...     conn.execute("INSERT ...")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

from .backend import Backend, FileBacked, ServerBacked
from .backup import (BackupEntry, Manifest, backup_database, load_manifest, read_manifest,
                     restore_database, verify_backup_entry, write_manifest)
from .config import PostgresSettings, postgres_settings, storage_backend, store_postgres_settings
from .counting import Counts
from .dialect import POSTGRESQL, SQLITE, Dialect, RawSQL
from .engine import (Database, EngineSettings, IntegrityError, OperationalError, connect,
                     execute_script, is_busy_error, open_keyed)
from .errors import (BackendError, BackupError, BackupVerificationError, BadDatabaseFileError,
                     ConnectionLimitError, ConstraintError, DamagedDatabaseError,
                     DatabaseBusyError, DatabaseUnavailableError, DataDirectoryError,
                     MigrationError, NotEncryptedError, PoolTimeoutError, SameDatabaseError,
                     SchemaMismatchError, SchemaTooNewError, SchemaTooOldError, ServingRoleError,
                     StatementError, StorageConfigError, StorageError, StorageFullError,
                     TLSUnavailableError, TransactionConflict, TruncatedDatabaseError, WrongKeyError)
from .fingerprint import key_fingerprint
from .migrations import Migration, MigrationStatus, Migrator
from .paths import resolve_database_path

if TYPE_CHECKING:
    from .postgresql import PostgresDatabase


def open_postgresql(settings: PostgresSettings | None = None, *, name: str | None = None,
                    environ: Mapping[str, str] | None = None, prefix: str = "TWIN_") -> "PostgresDatabase":
    """A PostgreSQL backend from ``settings`` (default: ``<prefix>DATABASE_URL`` and the pool
    variables). Raises a one-line ``StorageError`` when the URL is missing, malformed or
    unreachable, TLS is required but not offered, or the pool cannot open its connections."""
    from .postgresql import PostgresDatabase

    if settings is None:
        settings = postgres_settings(os.environ if environ is None else environ, prefix)
    return PostgresDatabase(settings, name=name)


__all__ = [
    "Backend", "BackendError", "BackupEntry", "BackupError", "BackupVerificationError",
    "BadDatabaseFileError", "ConnectionLimitError", "ConstraintError", "Counts",
    "DamagedDatabaseError", "Database", "DatabaseBusyError", "DatabaseUnavailableError",
    "DataDirectoryError", "Dialect", "EngineSettings", "FileBacked", "IntegrityError", "Manifest",
    "Migration", "MigrationError", "MigrationStatus", "Migrator", "NotEncryptedError",
    "OperationalError", "POSTGRESQL", "PoolTimeoutError", "PostgresSettings", "RawSQL", "SQLITE",
    "SameDatabaseError", "SchemaMismatchError", "SchemaTooNewError", "SchemaTooOldError",
    "ServerBacked", "ServingRoleError", "StatementError", "StorageConfigError", "StorageError",
    "StorageFullError", "TLSUnavailableError", "TransactionConflict", "TruncatedDatabaseError",
    "WrongKeyError", "backup_database", "connect", "execute_script", "is_busy_error",
    "key_fingerprint", "load_manifest", "open_keyed", "open_postgresql", "postgres_settings",
    "read_manifest", "resolve_database_path", "restore_database", "storage_backend",
    "store_postgres_settings",
    "verify_backup_entry", "write_manifest",
]
