"""The catalog of databases the storage core keeps, and how to open one.

Each entry names its default file, its environment variable and the module holding its
``MIGRATIONS``. Scripts (setup, migrate, backup, verify) iterate this catalog, so a database
added here is covered by all of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from compliance.keyring import Keyring

from .config import Config
from .storage import Database, Migration, Migrator, WrongKeyError, resolve_database_path


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


def open_database(name: str, config: Config, keyring: Keyring, *, migrate: bool = True) -> Database:
    """Open (creating if needed) one catalog database, migrated to the latest schema."""
    spec = spec_for(name)
    key = None if config.bench_plaintext else keyring.database_key
    db = Database(database_path(spec, config), key, name=spec.name)
    if key is not None and keyring.previous_database_key and db.path.exists():
        db = _with_rekey_fallback(db, keyring)
    if migrate:
        Migrator(db, spec.migrations()).migrate()
    return db


def _with_rekey_fallback(db: Database, keyring: Keyring) -> Database:
    """During an interrupted database rekey, a file may still be under the previous key."""
    try:
        db.query_one("SELECT 1")
        return db
    except WrongKeyError:
        db.close_all()
        return Database(db.path, keyring.previous_database_key, name=db.name)


def migrator_for(db: Database) -> Migrator:
    return Migrator(db, spec_for(db.name).migrations())

