"""The catalog of databases the storage core keeps, and the one place that opens them.

Each entry names its default file, its environment variable and the module holding its
``MIGRATIONS`` (and its personal-data declaration). Scripts (setup, migrate, backup, verify)
iterate this catalog, so a database added here is covered by all of them.

Opening a database from the configuration happens here and only here, and so does loading the
keyring: ``load_keyring(config)`` reads it, ``open_database(name, config, keyring.database_keys)``
opens one database: an SQLCipher file under its key, or a PostgreSQL database, as the
database's storage settings say (``twin.storage.config``: ``<PREFIX>STORAGE_BACKEND`` and
``<PREFIX>DATABASE_URL``; the prefix is the spec's, ``TWIN_`` for learner data, ``TWIN_VAULT_``
for the vault). ``open_learner_databases`` opens the pair the learner twin keeps apart and, on
PostgreSQL, refuses two settings that reach one database. Component stores are handed an open database; their
configuration-driven constructors (``DatabaseLedger.open()``, ``ModelManager.open()``) come
through ``open_ledger`` and ``open_model_manager`` below.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from compliance import keyring as keyring_file
from compliance.keyring import ENV_MASTER_SECRET, DatabaseKey, Keyring
from compliance.registry import PersonalDataRegistry, RegistryError

from .config import Config
from .storage import (Backend, Database, EngineSettings, Migration, Migrator, PostgresSettings,
                      ServerBacked,
                      StorageConfigError, WrongKeyError, open_postgresql, postgres_settings,
                      resolve_database_path, storage_backend, store_postgres_settings)

if TYPE_CHECKING:
    from .ledger.ledger import DatabaseLedger
    from .model_registry.manager import ModelManager


@dataclass(frozen=True)
class DatabaseSpec:
    name: str
    filename: str
    env_var: str
    migrations_module: str
    description: str
    prefix: str  # of its storage settings: <prefix>STORAGE_BACKEND, <prefix>DATABASE_URL, pools

    def migrations(self) -> Sequence[Migration]:
        return importlib.import_module(self.migrations_module).MIGRATIONS


DATABASES: dict[str, DatabaseSpec] = {spec.name: spec for spec in (
    DatabaseSpec("digital_twin", "digital_twin.db", "DIGITAL_TWIN_DB_PATH",
                 "twin.learners.schema", "learner profiles, sessions, knowledge states, consents",
                 "TWIN_"),
    DatabaseSpec("privacy_vault", "privacy_vault.db", "PRIVACY_VAULT_DB_PATH",
                 "compliance.vault_schema",
                 "per-subject data keys, erasure tombstones, audit trail (kept apart from data "
                 "so restoring a data backup cannot resurrect an erased subject's key)", "TWIN_VAULT_"),
    DatabaseSpec("evolution_metrics", "evolution_metrics.db", "AIVILLAGE_DB_PATH",
                 "twin.evolution.schema", "evolution rounds, fitness, resources, selection", "AIVILLAGE_"),
    DatabaseSpec("rag_index", "rag_index.db", "RAG_DB_PATH",
                 "twin.rag.schema", "RAG documents, chunks, embeddings, FTS5 index", "RAG_"),
    DatabaseSpec("ledger", "ledger.db", "LEDGER_DB_PATH",
                 "twin.ledger.schema", "hash-chained anomaly ledger", "LEDGER_"),
    DatabaseSpec("model_registry", "model_registry.db", "MODEL_REGISTRY_DB_PATH",
                 "twin.model_registry.schema", "model versions, performance, training history",
                 "MODEL_REGISTRY_"),
    DatabaseSpec("settings", "settings.db", "SETTINGS_DB_PATH",
                 "twin.settings_store.schema", "configuration, app settings, performance metrics",
                 "SETTINGS_"),
)}


class UnknownDatabaseError(KeyError):
    """A database name not in the catalog."""

    def __str__(self) -> str:
        return f"unknown database {self.args[0]!r}; known: {', '.join(DATABASES)}"


def spec_for(name: str) -> DatabaseSpec:
    """The spec of a database by name (``digital_twin``) or file name (``digital_twin.db``)."""
    key = name[:-3] if name.endswith(".db") else name
    for spec in DATABASES.values():
        if key in (spec.name, Path(spec.filename).stem):
            return spec
    raise UnknownDatabaseError(name)


def database_path(spec: DatabaseSpec, config: Config) -> Path:
    return resolve_database_path(spec.filename, spec.env_var, config.database_paths.get(spec.name),
                                 environ=config.path_environ(), production=config.production)


# -- the keyring -------------------------------------------------------------------------------

def keyring_exists(config: Config) -> bool:
    """Whether there is a keyring to load (a master secret in the environment, or the file)."""
    return ENV_MASTER_SECRET in _environ(config) or config.keyring_path.exists()


def load_keyring(config: Config, *, create: bool = False) -> Keyring:
    """The deployment's keyring, from where the configuration says.

    Without one, only a command that sets a deployment up (``create``: ``twin serve``, ``twin db
    setup``) generates a development keyring; anything else, and production always, raises
    ``KeyringMissingError`` (see ``compliance.keyring.load_keyring``).
    """
    return keyring_file.load_keyring(config.keyring_path, production=config.production,
                                     environ=_environ(config), create=create)


def reload_keyring(config: Config) -> Keyring | None:
    """The keyring as it is now, for a running process to follow a rotation; None when there
    is nothing to read (a process never generates a keyring after starting)."""
    return load_keyring(config) if keyring_exists(config) else None


def _environ(config: Config):  # noqa: ANN202 - a Mapping[str, str]
    return config.environ or os.environ


# -- databases -----------------------------------------------------------------------------------

def backend_of(name: str, config: Config) -> str:
    """``sqlcipher`` or ``postgresql``: where this catalog database lives (raises a one-line
    ``StorageConfigError`` for an unknown backend name)."""
    return storage_backend(_environ(config), spec_for(name).prefix)


def postgres_settings_of(name: str, config: Config) -> PostgresSettings:
    """The PostgreSQL settings of a catalog database on that backend (one-line error if bad):
    the learner data and the vault read their own URL; a component store its own, else
    ``TWIN_DATABASE_URL``, in a schema named after the store."""
    spec = spec_for(name)
    if spec.name in LEARNER_DATABASES:
        return postgres_settings(_environ(config), spec.prefix)
    return store_postgres_settings(_environ(config), spec.prefix, spec.name)


def check_storage_settings(config: Config, names: Iterable[str] | None = None) -> None:
    """Raise the one-line ``StorageConfigError`` of the first bad storage setting (an unknown
    backend, a missing or malformed URL) of these catalog databases (default: all), before
    anything is created or generated."""
    for name in names if names is not None else DATABASES:
        if backend_of(name, config) == "postgresql":
            postgres_settings_of(name, config)


def open_database(name: str, config: Config, key: DatabaseKey, *, migrate: bool = True) -> Backend:
    """Open one catalog database on its configured backend, migrated to the latest schema
    unless ``migrate`` is False (creating an SQLCipher file if needed).

    ``key`` is ``keyring.database_keys``: during an interrupted rekey a file may still be under
    the previous key, and is opened with that. PostgreSQL needs no database key (the server
    only ever sees field-encrypted ciphertext); it raises a one-line ``StorageError`` when the
    URL is missing, malformed or unreachable, TLS is asked for and not offered, or the pool
    cannot open its connections.
    """
    spec = spec_for(name)
    if backend_of(name, config) == "postgresql":
        db: Backend = open_postgresql(postgres_settings_of(name, config), name=spec.name)
        if spec.name not in LEARNER_DATABASES:
            _refuse_the_vault(db, config)
    else:
        current = None if config.bench_plaintext else key.current
        db = Database(database_path(spec, config), current, name=spec.name,
                      settings=EngineSettings(durability=config.durability))
        if current is not None and key.previous and db.path.exists():
            db = _with_rekey_fallback(db, key.previous)
    if migrate:
        try:
            Migrator(db, spec.migrations()).migrate()
        except BaseException:
            db.close_all()
            raise
    return db


# Each learner-twin database's role, recorded in it by `twin db setup` (PostgreSQL): two
# settings reaching one database are found by what the server reports, not by their URLs.
LEARNER_DATABASES = {"digital_twin": "data", "privacy_vault": "vault"}


def open_learner_databases(config: Config, key: DatabaseKey, *,
                           migrate: bool | None = None) -> tuple[Backend, Backend]:
    """The learner data database and the vault, refused when they are one database.

    ``migrate`` None is each backend's rule: an SQLCipher file is migrated at open (as
    ``twin serve`` always did); a PostgreSQL database never is (schema changes are an operator
    step, ``twin db migrate``), and must be exactly at this code's version and set up
    (identity marker) by ``twin db setup``. ``migrate=True`` migrates either (set-up, tests);
    ``migrate=False`` opens them as they are (operator commands).
    """
    backends = {backend_of(name, config) for name in LEARNER_DATABASES}
    if len(backends) > 1:
        raise StorageConfigError("TWIN_STORAGE_BACKEND and TWIN_VAULT_STORAGE_BACKEND name different "
                                 "backends: the learner data and the vault live on one kind")
    on_server = backends == {"postgresql"}
    opened: list[Backend] = []
    try:
        for name in LEARNER_DATABASES:
            opened.append(open_database(name, config, key, migrate=False))
        data, vault = opened
        if on_server:
            from .storage.postgresql import verify_distinct_databases

            # Before any migration: two settings reaching one database must not mix schemas.
            verify_distinct_databases(data, vault, require_markers=migrate is None)
        for db in opened:
            if migrate or (migrate is None and not on_server):
                migrator_for(db).migrate()
            elif migrate is None:
                migrator_for(db).check_current()
    except BaseException:
        for db in opened:
            db.close_all()
        raise
    return data, vault


def mark_learner_databases(data: Backend, vault: Backend) -> None:
    """Record each PostgreSQL database's role in it (``twin db setup``); refuses one database
    already set up in the other role. Nothing to record for SQLCipher files."""
    from .storage.postgresql import verify_distinct_databases, write_identity_marker

    if isinstance(data, ServerBacked) and isinstance(vault, ServerBacked):
        verify_distinct_databases(data, vault)
        write_identity_marker(data, LEARNER_DATABASES["digital_twin"])
        write_identity_marker(vault, LEARNER_DATABASES["privacy_vault"])


def _refuse_the_vault(db: Backend, config: Config) -> None:
    """A component store on PostgreSQL must not be in the vault's database: refused by the
    vault's marker, and by the server identity of ``TWIN_VAULT_DATABASE_URL`` when set."""
    from .storage.postgresql import PostgresDatabase, refuse_database_of_role

    vault = None
    try:
        if _environ(config).get("TWIN_VAULT_DATABASE_URL", "").strip():
            settings = postgres_settings(_environ(config), spec_for("privacy_vault").prefix)
            vault = PostgresDatabase(dataclasses.replace(settings, pool_size=1, pool_max_size=1),
                                     name="privacy_vault")
        refuse_database_of_role(db, LEARNER_DATABASES["privacy_vault"], vault)
    except BaseException:
        db.close_all()
        raise
    finally:
        if vault is not None:
            vault.close_all()


def _with_rekey_fallback(db: Database, previous: bytes) -> Database:
    try:
        db.query_one("SELECT 1")
        return db
    except WrongKeyError:
        db.close_all()
        return Database(db.path, previous, name=db.name, settings=db.settings)


def migrator_for(db: Backend) -> Migrator:
    return Migrator(db, spec_for(db.name).migrations())


def personal_data_registry(names: Iterable[str] | None = None) -> PersonalDataRegistry:
    """The personal-data declarations (``PERSONAL_DATA``, ``NO_PERSONAL_DATA``) of the catalog's
    databases (all of them by default), collected from their schema modules."""
    registry = PersonalDataRegistry()
    for spec in DATABASES.values():
        if names is not None and spec.name not in names:
            continue
        module = importlib.import_module(spec.migrations_module)
        for table in getattr(module, "PERSONAL_DATA", ()):
            if table.database != spec.name:
                raise RegistryError(f"{table.name} is declared for {table.database} in {spec.name}'s schema")
            registry.register(table)
        for table, reason in getattr(module, "NO_PERSONAL_DATA", {}).items():
            registry.declare_free(spec.name, table, reason)
    return registry



# -- component stores from the configuration -----------------------------------------------------

def open_store_database(name: str, path: str | Path | None = None, config: Config | None = None,
                        keyring: Keyring | None = None) -> Database:
    """A component store's database, migrated: the file at ``path`` (keyed with the database
    key), else the catalog's ``name``. ``config`` defaults to the environment, ``keyring`` to
    the deployment's."""
    config = config or Config.from_env()
    keyring = keyring or load_keyring(config)
    if path is None:
        return open_database(name, config, keyring.database_keys)
    spec = spec_for(name)
    db = Database(path, keyring.database_key, name=spec.name)
    Migrator(db, spec.migrations()).migrate()
    return db


def open_ledger_database(path: str | Path | None = None, config: Config | None = None,
                         keyring: Keyring | None = None) -> Database:
    """The ledger's database (``open_store_database``)."""
    return open_store_database("ledger", path, config, keyring)


def open_ledger(path: str | Path | None = None, config: Config | None = None,
                keyring: Keyring | None = None) -> "DatabaseLedger":
    """A ledger owning its database (``open_ledger_database``)."""
    from .ledger.ledger import DatabaseLedger

    return DatabaseLedger(open_ledger_database(path, config, keyring), owns_db=True)


def open_model_registry(config: Config | None = None, keyring: Keyring | None = None,
                        model_dir: str | Path | None = None) -> tuple[Backend, Path | None]:
    """The catalog's ``model_registry`` database, migrated, and the configured model directory
    (``TWIN_MODEL_DIR``, else ``models/`` beside the database; None on PostgreSQL, where the
    model bytes live in the database)."""
    config = config or Config.from_env()
    keyring = keyring or load_keyring(config)
    db = open_database("model_registry", config, keyring.database_keys)
    if isinstance(db, ServerBacked):
        return db, None
    return db, Path(model_dir or config.model_dir or db.path.parent / "models")


def open_model_manager(config: Config | None = None, keyring: Keyring | None = None,
                       model_dir: str | Path | None = None) -> "ModelManager":
    """A ``ModelManager`` over ``open_model_registry``."""
    from .model_registry.manager import ModelManager

    return ModelManager(*open_model_registry(config, keyring, model_dir))


def audit_archive(vault: Backend, config: Config, keys, seals, clock=None):  # noqa: ANN001, ANN201
    """The audit archive of ``vault`` (``compliance.audit_archive``): segment files beside a
    SQLCipher vault (``<vault>.audit-archive/``), rows of the vault on PostgreSQL (replicas
    share no disk). ``keys``: field keys or a cipher; ``seals``: the chain's ``SealBook``."""
    from compliance.audit_archive import AuditArchive
    from compliance.audit_archive_segments import FileSegments, TableSegments, archive_dir
    from .storage import FileBacked
    from .storage.timestamps import utc_now

    # Always fsynced: the vault deletes the events once the segment is written.
    store = FileSegments(archive_dir(vault.path)) if isinstance(vault, FileBacked) else TableSegments()
    return AuditArchive(vault, keys, store, seals, segment_events=config.audit_archive_segment_events,
                        clock=clock or utc_now)
