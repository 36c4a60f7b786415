"""The personal-data registry: every table declared, every column of every personal table
classified in its descriptor, every declaration valid SQL on the real migrated schema."""

from __future__ import annotations

import pytest
from storage_backends import column_types

from compliance.personal_data import Kind, PersonalTable, Retention, clear, key, sealed
from compliance.registry import PersonalDataRegistry, RegistryError
from twin.catalog import DATABASES, open_database, personal_data_registry


def _columns(db, table: str) -> list[str]:
    return list(column_types(db, table))


@pytest.mark.parametrize("name", list(DATABASES))
def test_every_table_is_registered_or_declared_free_of_personal_data(name, config, keyring):
    registry = personal_data_registry()
    db = open_database(name, config, keyring.database_keys)
    try:
        tables = db.table_names()
    finally:
        db.close_all()

    assert tables, "the database has no tables"
    assert registry.undeclared(name, tables) == []


@pytest.mark.parametrize("name", list(DATABASES))
def test_every_column_of_every_personal_table_is_classified_in_its_descriptor(name, config, keyring):
    registry = personal_data_registry()
    db = open_database(name, config, keyring.database_keys)  # the live, migrated schema
    try:
        live = {t.name: _columns(db, t.name) for t in registry.for_database(name)}
    finally:
        db.close_all()

    assert registry.unclassified(name, live) == {}
    for table in registry.for_database(name):
        for column in table.columns:
            assert isinstance(column.kind, Kind), f"{table.name}.{column.name}"


def test_a_column_added_without_a_descriptor_line_fails_the_coverage(runtime):
    # What a migration adding a personal column without its one descriptor line would leave.
    db = runtime.twin_db
    db.execute(f"ALTER TABLE learning_sessions ADD COLUMN mood {db.dialect.bytes}")
    try:
        live = {t.name: _columns(db, t.name) for t in runtime.registry.for_database("digital_twin")}
    finally:  # a PostgreSQL database is shared by the module's tests
        db.execute("ALTER TABLE learning_sessions DROP COLUMN mood")

    assert runtime.registry.unclassified("digital_twin", live) == {"learning_sessions": ["mood"]}


def test_the_learner_databases_declare_exactly_their_tables(runtime):
    registry = personal_data_registry(["digital_twin", "privacy_vault"])

    for db in (runtime.twin_db, runtime.vault_db):
        declared = {t.name for t in registry.for_database(db.name)} | \
            {table for (name, table) in registry.free if name == db.name}
        assert declared == set(db.table_names()), db.name  # nothing declared that does not exist


def test_every_declaration_is_valid_sql_against_the_real_schema(runtime):
    dbs = {db.name: db for db in runtime.databases()}
    params = {"subject_0": "0" * 64, "now": "2030-01-01T00:00:00.000000Z",
              "before": "2030-01-01T00:00:00.000000Z",
              **{f"{w}_cutoff": "2029-01-01T00:00:00.000000Z" for w in runtime.config.retention_windows()}}

    for table in runtime.registry.tables:
        db = dbs[table.database]
        for sql in (f"SELECT {table.select_list()}, {table.row_id_sql}, {table.subject_sql} FROM {table.name} "
                    f"WHERE {table.subjects_where(1)} ORDER BY {table.order_by or table.pk}",
                    f"SELECT 1 FROM {table.name} WHERE {table.expired_where()} AND {table.live_where()}"
                    if table.retention else "SELECT 1",
                    f"SELECT {table.created} FROM {table.name}" if table.created else "SELECT 1"):
            db.query(sql, {k: v for k, v in params.items() if f":{k}" in sql})
        if table.retention and table.retention.window:
            assert isinstance(runtime.config.retention_windows()[table.retention.window], int)


def test_sealed_columns_are_blobs_and_personal_tables_are_exported(runtime):
    for table in runtime.registry.for_database("digital_twin"):
        assert table.export_as, f"{table.name} holds personal data but is not exported"
        types = column_types(runtime.twin_db, table.name)
        for column in table.sealed_columns:
            assert types[column] == runtime.twin_db.dialect.bytes, f"{table.name}.{column}"


def test_children_are_declared_before_their_parents(runtime):
    # Erasure deletes in declaration order; a parent first would leave orphans to cascade blindly.
    order = [t.name for t in runtime.registry.for_database("digital_twin")]
    assert order.index("learning_profiles") == len(order) - 1


def _table(**overrides) -> PersonalTable:
    values = dict(database="d", name="t", columns=(key("id"), key("row"), clear("v")), row_id=("row",),
                  subject_hash_column="row")
    values.update(overrides)
    return PersonalTable(**values)


def test_a_table_kept_on_erasure_must_say_why():
    with pytest.raises(RegistryError, match="kept_reason"):
        _table(erase=False)


def test_a_column_left_out_of_the_export_or_of_no_kind_must_say_why():
    with pytest.raises(RegistryError, match="say why"):
        sealed("notes", exported=False)
    with pytest.raises(RegistryError, match="say why"):
        _table(columns=(key("id"), key("row"), clear("v", exported=False)))


def test_a_descriptor_naming_a_column_it_does_not_describe_is_refused():
    with pytest.raises(RegistryError, match="not among its columns"):
        _table(row_id=("nope",))
    with pytest.raises(RegistryError, match="not among its columns"):
        _table(retention=Retention("expires_at"))
    with pytest.raises(RegistryError, match="described twice"):
        _table(columns=(key("id"), key("row"), clear("row")))


def test_a_table_cannot_be_declared_twice():
    registry = PersonalDataRegistry()
    registry.register(_table())

    with pytest.raises(RegistryError, match="declared twice"):
        registry.register(_table())
    registry.declare_free("d", "u", "lookup table")
    with pytest.raises(RegistryError, match="declared twice"):
        registry.register(_table(name="u"))


def test_a_table_declared_free_must_say_why():
    with pytest.raises(RegistryError):
        PersonalDataRegistry().declare_free("d", "t", "")


def test_undeclared_lists_only_unknown_tables():
    registry = PersonalDataRegistry()
    registry.register(_table(name="a", retention=Retention("v")))
    registry.declare_free("d", "b", "bookkeeping")

    assert registry.undeclared("d", ["a", "b", "c"]) == ["c"]
    assert registry.undeclared("other", ["a"]) == ["a"]
    with pytest.raises(RegistryError, match="not registered"):
        registry.get("d", "b")
    assert registry.get("d", "a").name == "a"


def test_export_row_opens_sealed_columns_and_merges_sealed_objects(runtime, make_subject):
    subject = make_subject("row-export", sessions=0, knowledge=0)
    table = runtime.registry.get("digital_twin", "learning_profiles")
    row = runtime.twin_db.query_one(f"SELECT {table.select_list()} FROM learning_profiles")

    exported = table.export_row(row, runtime.keys.writer(subject.subject_hash))

    assert exported["personal"]["name"] == f"Name-{subject.marker}"
    assert "encrypted_data" not in exported
    assert exported["knowledge_domains"] == [f"domain-{subject.marker}"]


def test_the_row_id_in_python_and_in_sql_is_one_definition(runtime, make_subject):
    subject = make_subject("row-ids", sessions=1, knowledge=1)
    for table in runtime.registry.for_database("digital_twin"):
        for row in runtime.twin_db.query(f"SELECT {table.select_list()}, {table.row_id_sql} AS rid "
                                         f"FROM {table.name}"):
            assert table.row_id_of(row) == row["rid"], table.name
    assert subject.knowledge  # the knowledge row (a composite id) was among them


def test_personal_data_lives_only_where_erasure_reaches(runtime):
    # Export and erasure reach a database only through its provider: every database declaring
    # personal data has one, covering exactly the declared tables, or the runtime refuses to start.
    reached = {p.db.name: [t.name for t in p.tables] for p in runtime.providers}
    declared = {name: [t.name for t in runtime.registry.for_database(name)]
                for name in runtime.registry.databases()}
    assert reached == declared


def test_a_runtime_refuses_personal_data_no_provider_reaches(config, keyring, monkeypatch):
    import twin.runtime
    from twin.runtime import Runtime

    def with_rag_table(*args):
        registry = personal_data_registry(*args)
        registry.register(_table(database="rag_index", name="user_queries"))
        return registry

    monkeypatch.setattr(twin.runtime, "personal_data_registry", with_rag_table)
    with pytest.raises(RuntimeError, match="rag_index has no provider"):
        Runtime(config, keyring)
