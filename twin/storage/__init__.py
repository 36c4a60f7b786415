"""The shared storage core: SQLCipher files, connections, migrations, backup, maintenance.

It knows nothing about learners or any other domain: domains bring their migrations and use
``Database`` for their queries.

    >>> db = Database(path, key)
    >>> Migrator(db, MIGRATIONS).migrate()
    >>> with db.transaction() as conn:
    ...     conn.execute("INSERT ...")
"""

from .backup import (BackupEntry, backup_database, read_manifest, restore_database,
                     verify_backup_entry, write_manifest)
from .engine import (Database, EngineSettings, IntegrityError, OperationalError, connect,
                     execute_script, is_busy_error, open_keyed)
from .errors import (BackupError, BackupVerificationError, DatabaseBusyError, DataDirectoryError,
                     MigrationError, SchemaTooNewError, StorageError, WrongKeyError)
from .migrations import Migration, MigrationStatus, Migrator
from .paths import resolve_database_path

__all__ = [
    "BackupEntry", "BackupError", "BackupVerificationError", "Database", "DatabaseBusyError",
    "DataDirectoryError", "EngineSettings", "IntegrityError", "Migration", "MigrationError",
    "MigrationStatus", "Migrator", "OperationalError", "SchemaTooNewError", "StorageError",
    "WrongKeyError", "backup_database", "connect", "execute_script", "is_busy_error",
    "open_keyed", "read_manifest", "resolve_database_path", "restore_database",
    "verify_backup_entry", "write_manifest",
]
