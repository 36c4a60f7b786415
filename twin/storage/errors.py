"""Named exceptions of the storage core."""


class StorageError(Exception):
    """Base class for every storage-core error."""


class WrongKeyError(StorageError):
    """The file could not be decrypted: wrong key, or not an encrypted database."""


class DatabaseBusyError(StorageError):
    """The database stayed busy/locked after every retry."""


class DataDirectoryError(StorageError):
    """No usable directory for a database file (e.g. unwritable in production)."""


class MigrationError(StorageError):
    """A migration failed or was asked for an impossible target."""


class SchemaTooNewError(MigrationError):
    """The database has a schema version newer than this code knows."""


class BackupError(StorageError):
    """A backup, verification or restore failed."""


class BackupVerificationError(BackupError):
    """A backup does not match its manifest or fails its integrity check."""
