"""The personal-data registry: every table of every database, declared once.

Each database's schema module declares the tables that hold data about a subject in a
``PERSONAL_DATA`` list of ``PersonalTable`` descriptors (``compliance.personal_data``) and
names every other table in ``NO_PERSONAL_DATA`` with the reason. The application collects
them (``twin.catalog.personal_data_registry``) and hands the registry to compliance; the
providers that export and erase each database's data are built from it, and a coverage test
checks it against the live schema, so a table or column added later is declared or fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .personal_data import PersonalTable, RegistryError

__all__ = ["PersonalDataRegistry", "RegistryError"]


@dataclass
class PersonalDataRegistry:
    """All declarations, in declaration order (children before parents within a database)."""

    tables: list[PersonalTable] = field(default_factory=list)
    free: dict[tuple[str, str], str] = field(default_factory=dict)

    def register(self, entry: PersonalTable) -> None:
        key = (entry.database, entry.name)
        if key in self.free or any((t.database, t.name) == key for t in self.tables):
            raise RegistryError(f"{entry.database}.{entry.name} is declared twice")
        self.tables.append(entry)

    def declare_free(self, database: str, table: str, reason: str) -> None:
        if not reason:
            raise RegistryError(f"{database}.{table}: say why it holds no personal data")
        self.free[(database, table)] = reason

    def databases(self) -> list[str]:
        """Databases holding personal data, in declaration order."""
        return list(dict.fromkeys(t.database for t in self.tables))

    def for_database(self, database: str) -> list[PersonalTable]:
        return [t for t in self.tables if t.database == database]

    def get(self, database: str, table: str) -> PersonalTable:
        for t in self.tables:
            if (t.database, t.name) == (database, table):
                return t
        raise RegistryError(f"{database}.{table} is not registered")

    def undeclared(self, database: str, table_names: Iterable[str]) -> list[str]:
        """Tables of ``database`` that are neither registered nor declared free."""
        declared = {t.name for t in self.for_database(database)}
        declared |= {table for (db, table) in self.free if db == database}
        return sorted(set(table_names) - declared)

    def unclassified(self, database: str, columns: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
        """Per registered table of ``database``, the columns of the live schema (``columns``:
        table -> column names) its descriptor does not classify, and those it describes that
        do not exist. Empty when every personal column is declared."""
        problems = {}
        for table in self.for_database(database):
            live = set(columns.get(table.name, ()))
            described = set(table.column_names)
            wrong = sorted(live - described) + sorted(f"{c} (described, not in the schema)"
                                                      for c in described - live)
            if wrong:
                problems[table.name] = wrong
        return problems
