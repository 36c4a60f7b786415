"""The catalog of databases the storage core keeps, and the one place that opens them.

Each entry names its default file, its environment variable and the module holding its
``MIGRATIONS`` (and its personal-data declaration). Scripts (setup, migrate, backup, verify)
iterate this catalog, so a database added here is covered by all of them.

Opening a database from the configuration happens here and only here, and so does loading the
keyring: ``load_keyring(config)`` reads it, ``open_database(name, config, keyring.database_keys)``
opens one file with its key. Component stores are handed an open database; their
configuration-driven constructors (``DatabaseLedger.open()``, ``ModelManager.open()``) come
through ``open_ledger`` and ``open_model_manager`` below.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from compliance import keyring as keyring_file
from compliance.keyring import ENV_MASTER_SECRET, DatabaseKey, Keyring
from compliance.registry import PersonalDataRegistry, RegistryError

from .config import Config
from .storage import (Database, EngineSettings, Migration, Migrator, WrongKeyError,
                      resolve_database_path)

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

    def migrations(self) -> Sequence[Migration]:
        return importlib.import_module(self.migrations_module).MIGRATIONS


DATABASES: dict[str, DatabaseSpec] = {spec.name: spec for spec in (
    DatabaseSpec("digital_twin", "digital_twin.db", "DIGITAL_TWIN_DB_PATH",
                 "twin.learners.schema", "learner profiles, sessions, knowledge states, consents"),
    DatabaseSpec("privacy_vault", "privacy_vault.db", "PRIVACY_VAULT_DB_PATH",
                 "compliance.vault_schema",
                 "per-subject data keys, erasure tombstones, audit trail (kept apart from data "
                 "so restoring a data backup cannot resurrect an erased subject's key)"),
    DatabaseSpec("evolution_metrics", "evolution_metrics.db", "AIVILLAGE_DB_PATH",
                 "twin.evolution.schema", "evolution rounds, fitness, resources, selection"),
    DatabaseSpec("rag_index", "rag_index.db", "RAG_DB_PATH",
                 "twin.rag.schema", "RAG documents, chunks, embeddings, FTS5 index"),
    DatabaseSpec("ledger", "ledger.db", "LEDGER_DB_PATH",
                 "twin.ledger.schema", "hash-chained anomaly ledger"),
    DatabaseSpec("model_registry", "model_registry.db", "MODEL_REGISTRY_DB_PATH",
                 "twin.model_registry.schema", "model versions, performance, training history"),
    DatabaseSpec("settings", "settings.db", "SETTINGS_DB_PATH",
                 "twin.settings_store.schema", "configuration, app settings, performance metrics"),
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

def open_database(name: str, config: Config, key: DatabaseKey, *, migrate: bool = True) -> Database:
    """Open (creating if needed) one catalog database, migrated to the latest schema.

    ``key`` is ``keyring.database_keys``: during an interrupted rekey a file may still be under
    the previous key, and is opened with that.
    """
    spec = spec_for(name)
    current = None if config.bench_plaintext else key.current
    db = Database(database_path(spec, config), current, name=spec.name,
                  settings=EngineSettings(durability=config.durability))
    if current is not None and key.previous and db.path.exists():
        db = _with_rekey_fallback(db, key.previous)
    if migrate:
        Migrator(db, spec.migrations()).migrate()
    return db


def _with_rekey_fallback(db: Database, previous: bytes) -> Database:
    try:
        db.query_one("SELECT 1")
        return db
    except WrongKeyError:
        db.close_all()
        return Database(db.path, previous, name=db.name, settings=db.settings)


def migrator_for(db: Database) -> Migrator:
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

def open_ledger_database(path: str | Path | None = None, config: Config | None = None,
                         keyring: Keyring | None = None) -> Database:
    """The ledger's database, migrated: the file at ``path`` (keyed with the ledger's key),
    else the catalog's ``ledger``. ``config`` defaults to the environment, ``keyring`` to the
    deployment's."""
    from .ledger.schema import MIGRATIONS

    config = config or Config.from_env()
    keyring = keyring or load_keyring(config)
    if path is None:
        return open_database("ledger", config, keyring.database_keys)
    db = Database(path, keyring.database_key, name="ledger")
    Migrator(db, MIGRATIONS).migrate()
    return db


def open_ledger(path: str | Path | None = None, config: Config | None = None,
                keyring: Keyring | None = None) -> "DatabaseLedger":
    """A ledger owning its database (``open_ledger_database``)."""
    from .ledger.ledger import DatabaseLedger

    return DatabaseLedger(open_ledger_database(path, config, keyring), owns_db=True)


def open_model_registry(config: Config | None = None, keyring: Keyring | None = None,
                        model_dir: str | Path | None = None) -> tuple[Database, Path]:
    """The catalog's ``model_registry`` database, migrated, and the configured model directory
    (``TWIN_MODEL_DIR``, else ``models/`` beside the database)."""
    config = config or Config.from_env()
    keyring = keyring or load_keyring(config)
    db = open_database("model_registry", config, keyring.database_keys)
    return db, Path(model_dir or config.model_dir or db.path.parent / "models")


def open_model_manager(config: Config | None = None, keyring: Keyring | None = None,
                       model_dir: str | Path | None = None) -> "ModelManager":
    """A ``ModelManager`` over ``open_model_registry``."""
    from .model_registry.manager import ModelManager

    return ModelManager(*open_model_registry(config, keyring, model_dir))
