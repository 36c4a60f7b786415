"""The personal-data registry: every table declared, every declaration valid SQL on the real schema."""

from __future__ import annotations

import pytest

from compliance.registry import (PersonalDataRegistry, PersonalDataTable, RegistryError, RetentionRule,
                                 build_registry)
from twin.catalog import DATABASES, open_database

@pytest.mark.parametrize("name", list(DATABASES))
def test_every_table_is_registered_or_declared_free_of_personal_data(name, config, keyring):
    registry = build_registry()
    db = open_database(name, config, keyring.database_keys)
    try:
        tables = db.table_names()
    finally:
        db.close_all()

    assert tables, "the database has no tables"
    assert registry.undeclared(name, tables) == []


def test_the_learner_databases_declare_exactly_their_tables(runtime):
    registry = build_registry(["digital_twin", "privacy_vault"])

    for db in (runtime.twin_db, runtime.vault_db):
        declared = {t.table for t in registry.for_database(db.name)} | \
            {table for (name, table) in registry.free if name == db.name}
        assert declared == set(db.table_names()), db.name  # nothing declared that does not exist


def _columns(db, table: str) -> set[str]:
    return {r["name"] for r in db.query(f'PRAGMA table_info("{table}")')}


def test_every_declaration_is_valid_sql_against_the_real_schema(runtime):
    dbs = {runtime.twin_db.name: runtime.twin_db, runtime.vault_db.name: runtime.vault_db}
    params = {"subject": "0" * 64, "now": "2030-01-01T00:00:00.000000Z",
              "cutoff": "2029-01-01T00:00:00.000000Z", "before": "2030-01-01T00:00:00.000000Z"}

    for entry in runtime.registry.tables:
        db = dbs[entry.database]
        columns = _columns(db, entry.table)
        assert set(entry.export_columns) <= columns, entry.table
        for sql in (f"SELECT {entry.row_id_sql}, {entry.subject_hash_sql} FROM {entry.table} "
                    f"WHERE {entry.subject_where} ORDER BY {entry.order_by}",
                    f"SELECT 1 FROM {entry.table} WHERE {entry.retention.expired_where}"
                    if entry.retention else "SELECT 1",
                    f"SELECT {entry.created_sql} FROM {entry.table}" if entry.created_sql else "SELECT 1"):
            db.query(sql, {k: v for k, v in params.items() if f":{k}" in sql})
        if entry.retention and entry.retention.window:
            assert isinstance(getattr(runtime.config, entry.retention.window), int)


def test_encrypted_columns_are_blobs_and_personal_tables_are_exported(runtime):
    for entry in runtime.registry.for_database("digital_twin"):
        assert entry.export_as, f"{entry.table} holds personal data but is not exported"
        types = {r["name"]: r["type"] for r in runtime.twin_db.query(f'PRAGMA table_info("{entry.table}")')}
        for column in entry.encrypted_columns:
            assert types[column] == "BLOB", f"{entry.table}.{column}"


def test_children_are_declared_before_their_parents(runtime):
    # Erasure deletes in declaration order; a parent first would leave orphans to cascade blindly.
    order = [t.table for t in runtime.registry.for_database("digital_twin")]
    assert order.index("learning_profiles") == len(order) - 1


def test_a_table_kept_on_erasure_must_say_why():
    with pytest.raises(RegistryError, match="kept_reason"):
        PersonalDataTable(database="d", table="t", subject_where="1", subject_hash_sql="x",
                          row_id_sql="id", erase=False)


def test_encrypted_columns_must_be_exported_columns():
    with pytest.raises(RegistryError, match="exported columns"):
        PersonalDataTable(database="d", table="t", subject_where="1", subject_hash_sql="x",
                          row_id_sql="id", export_as="t", export_columns=("a",), encrypted_columns=("b",))


def test_a_table_cannot_be_declared_twice():
    registry = PersonalDataRegistry()
    entry = PersonalDataTable(database="d", table="t", subject_where="1", subject_hash_sql="x",
                              row_id_sql="id")
    registry.register(entry)

    with pytest.raises(RegistryError, match="declared twice"):
        registry.register(entry)
    registry.declare_free("d", "u", "lookup table")
    with pytest.raises(RegistryError, match="declared twice"):
        registry.register(PersonalDataTable(database="d", table="u", subject_where="1",
                                            subject_hash_sql="x", row_id_sql="id"))


def test_a_table_declared_free_must_say_why():
    with pytest.raises(RegistryError):
        PersonalDataRegistry().declare_free("d", "t", "")


def test_undeclared_lists_only_unknown_tables():
    registry = PersonalDataRegistry()
    registry.register(PersonalDataTable(database="d", table="a", subject_where="1", subject_hash_sql="x",
                                        row_id_sql="id", retention=RetentionRule("1")))
    registry.declare_free("d", "b", "bookkeeping")

    assert registry.undeclared("d", ["a", "b", "c"]) == ["c"]
    assert registry.undeclared("other", ["a"]) == ["a"]
    with pytest.raises(RegistryError, match="not registered"):
        registry.get("d", "b")
    assert registry.get("d", "a").table == "a"


def test_export_row_opens_sealed_columns_and_merges_sealed_objects(runtime, make_subject):
    subject = make_subject("row-export", sessions=0, knowledge=0)
    entry = runtime.registry.get("digital_twin", "learning_profiles")
    row = runtime.twin_db.query_one(f"SELECT *, {entry.row_id_sql} AS _row_id FROM learning_profiles")

    exported = entry.export_row(row, runtime.keys.writer(subject.subject_hash))

    assert exported["personal"]["name"] == f"Name-{subject.marker}"
    assert "encrypted_data" not in exported
    assert exported["knowledge_domains"] == [f"domain-{subject.marker}"]


def test_personal_data_lives_only_where_erasure_reaches():
    # DataSubjectRequests exports and erases digital_twin and privacy_vault; a personal-data
    # table declared in any other database would silently survive an erasure.
    assert {t.database for t in build_registry().tables} <= {"digital_twin", "privacy_vault"}
