"""One registry of personal data, driving export, erasure, retention and the coverage test.

Every table that holds data about a subject declares itself once, next to its schema, in a
``PERSONAL_DATA`` list of ``PersonalDataTable``; every other table is named in
``NO_PERSONAL_DATA`` with the reason. ``build_registry()`` collects the declarations of every
database in the catalog, so a table added later is either declared, or the coverage test fails,
and export, erasure and purges all read the same declaration.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import ComplianceError


class RegistryError(ComplianceError):
    """A personal-data declaration is inconsistent."""


@dataclass(frozen=True)
class RetentionRule:
    """When a row has expired. ``expired_where`` is SQL using ``:now`` (ISO text) and
    ``:cutoff`` (``now - window_days``); ``window`` names the ``Config`` attribute holding
    the window in days (None when the row carries its own expiry, e.g. ``ttl_expires_at``)."""

    expired_where: str
    window: str | None = None


@dataclass(frozen=True)
class PersonalDataTable:
    """How one table's rows belong to a data subject and what compliance does with them."""

    database: str
    table: str
    subject_where: str                    # SQL selecting the subject's rows, parameter :subject
    subject_hash_sql: str                 # SQL expression: the subject hash of a row
    row_id_sql: str                       # SQL expression: the row id bound into ciphertext AAD
    export_as: str | None = None          # key in the export document (None: not exported)
    export_columns: tuple[str, ...] = ()  # columns exported, in order
    encrypted_columns: tuple[str, ...] = ()
    json_columns: tuple[str, ...] = ()
    erase: bool = True                    # False: kept on erasure, see kept_reason
    kept_reason: str | None = None
    retention: RetentionRule | None = None
    purge_hook: str | None = None         # "destroy_subject_keys": purging rows ends the subject
    order_by: str = "id"
    export_merge: tuple[str, ...] = ()    # sealed JSON objects whose keys join the exported row
    created_sql: str | None = None        # SQL expression: when the row was stored. A tombstone
                                          # of a subject who came back erases only older rows;
                                          # tables without it go by cascade from their parent

    def __post_init__(self) -> None:
        if not self.erase and not self.kept_reason:
            raise RegistryError(f"{self.table}: a table kept on erasure must say why (kept_reason)")
        unknown = (set(self.encrypted_columns) | set(self.json_columns)) - set(self.export_columns)
        if self.export_as and unknown:
            raise RegistryError(f"{self.table}: encrypted/json columns must be exported columns")

    def export_row(self, row: Mapping[str, Any], sealer: Any) -> dict[str, Any]:
        """One row in its export form: encrypted columns opened, JSON columns parsed."""
        out: dict[str, Any] = {}
        for column in self.export_columns:
            value = row[column]
            if value is not None and column in self.encrypted_columns:
                value = sealer.open(self.table, column, row["_row_id"], value)
            elif value is not None and column in self.json_columns:
                value = json.loads(value)
            if column in self.export_merge:
                out.update(value or {})
            else:
                out[column] = value
        return out


@dataclass
class PersonalDataRegistry:
    """All declarations, in declaration order (children before parents within a database)."""

    tables: list[PersonalDataTable] = field(default_factory=list)
    free: dict[tuple[str, str], str] = field(default_factory=dict)

    def register(self, entry: PersonalDataTable) -> None:
        key = (entry.database, entry.table)
        if key in self.free or any((t.database, t.table) == key for t in self.tables):
            raise RegistryError(f"{entry.database}.{entry.table} is declared twice")
        self.tables.append(entry)

    def declare_free(self, database: str, table: str, reason: str) -> None:
        if not reason:
            raise RegistryError(f"{database}.{table}: say why it holds no personal data")
        self.free[(database, table)] = reason

    def for_database(self, database: str) -> list[PersonalDataTable]:
        return [t for t in self.tables if t.database == database]

    def get(self, database: str, table: str) -> PersonalDataTable:
        for t in self.tables:
            if (t.database, t.table) == (database, table):
                return t
        raise RegistryError(f"{database}.{table} is not registered")

    def undeclared(self, database: str, table_names: Iterable[str]) -> list[str]:
        """Tables of ``database`` that are neither registered nor declared free."""
        declared = {t.table for t in self.for_database(database)}
        declared |= {table for (db, table) in self.free if db == database}
        return sorted(set(table_names) - declared)


def build_registry(databases: Iterable[str] | None = None) -> PersonalDataRegistry:
    """Collect ``PERSONAL_DATA`` and ``NO_PERSONAL_DATA`` from the catalog databases' schemas
    (all of them by default)."""
    from twin.catalog import DATABASES  # late: the catalog imports domain schema modules

    registry = PersonalDataRegistry()
    for spec in DATABASES.values():
        if databases is not None and spec.name not in databases:
            continue
        module = importlib.import_module(spec.migrations_module)
        for entry in getattr(module, "PERSONAL_DATA", ()):
            if entry.database != spec.name:
                raise RegistryError(f"{entry.table} is declared for {entry.database} in {spec.name}'s schema")
            registry.register(entry)
        for table, reason in getattr(module, "NO_PERSONAL_DATA", {}).items():
            registry.declare_free(spec.name, table, reason)
    return registry
