"""The component stores on PostgreSQL, as the catalog opens them: each store's backend and URL
from its own prefix (falling back to the TWIN_ ones), a schema of its own per store, and never
the vault's database."""

from __future__ import annotations

import pytest

from storage_backends import database_url
from twin.catalog import LEARNER_DATABASES, open_database, open_learner_databases, postgres_settings_of
from twin.config import Config
from twin.storage import SameDatabaseError, StorageConfigError
from twin.storage.postgresql import write_identity_marker

STORES = ("evolution_metrics", "rag_index", "ledger", "model_registry", "settings")


def config_with(tmp_path, **environ: str) -> Config:
    return Config(env="test", data_dir=tmp_path / "data", keyring_path=tmp_path / "keys" / "keyring.json",
                  model_dir=tmp_path / "models", environ={"TWIN_DB_POOL_SIZE": "1", **environ})


def tables_by_schema(url: str) -> dict[str, set[str]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").fetchall()
    found: dict[str, set[str]] = {}
    for schema, table in rows:
        found.setdefault(schema, set()).add(table)
    return found


def test_every_store_defaults_to_the_twin_database_in_a_schema_of_its_own(tmp_path, pg_server, keyring):
    url = database_url(pg_server.create_database())
    config = config_with(tmp_path, TWIN_STORAGE_BACKEND="postgresql", TWIN_DATABASE_URL=url)
    for name in STORES:
        open_database(name, config, keyring.database_keys).close_all()

    found = tables_by_schema(url)
    assert set(STORES) <= set(found)
    for name in STORES:
        assert "schema_version" in found[name]
    assert "fitness_metrics" in found["evolution_metrics"]
    assert {"configurations", "thread_contexts", "user_preferences"} <= found["settings"]
    assert "public" not in found  # nothing of any store outside its schema
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").glob("*.db"))


def test_a_store_reads_its_own_prefix_first(tmp_path, pg_server, keyring):
    shared, own = (database_url(pg_server.create_database()) for _ in range(2))
    config = config_with(tmp_path, AIVILLAGE_STORAGE_BACKEND="postgresql", AIVILLAGE_DATABASE_URL=own,
                         TWIN_DATABASE_URL=shared, RAG_STORAGE_BACKEND="sqlite")
    assert postgres_settings_of("evolution_metrics", config).variable == "AIVILLAGE_DATABASE_URL"
    db = open_database("evolution_metrics", config, keyring.database_keys)
    db.close_all()
    assert "evolution_metrics" in tables_by_schema(own) and tables_by_schema(shared) == {}
    rag = open_database("rag_index", config, keyring.database_keys)  # sqlite: an alias of sqlcipher
    try:
        assert rag.path == tmp_path / "data" / "rag_index.db"
    finally:
        rag.close_all()


def test_a_store_on_postgresql_without_any_url_is_a_one_line_error(tmp_path, keyring):
    config = config_with(tmp_path, LEDGER_STORAGE_BACKEND="postgresql")
    with pytest.raises(StorageConfigError, match="neither LEDGER_DATABASE_URL nor TWIN_DATABASE_URL is set"):
        open_database("ledger", config, keyring.database_keys)


def test_a_store_is_refused_the_vaults_database_by_its_marker(tmp_path, pg_server, keyring):
    data, vault = (database_url(pg_server.create_database()) for _ in range(2))
    twin = config_with(tmp_path, TWIN_STORAGE_BACKEND="postgresql", TWIN_DATABASE_URL=data,
                       TWIN_VAULT_DATABASE_URL=vault)
    pair = open_learner_databases(twin, keyring.database_keys, migrate=True)
    write_identity_marker(pair[1], LEARNER_DATABASES["privacy_vault"])
    for db in pair:
        db.close_all()

    # The vault's URL spelled differently (localhost, not 127.0.0.1), and no TWIN_VAULT_ URL set:
    # the marker the server holds still names it.
    spelled = vault.replace("127.0.0.1", "localhost")
    config = config_with(tmp_path, LEDGER_STORAGE_BACKEND="postgresql", LEDGER_DATABASE_URL=spelled)
    with pytest.raises(SameDatabaseError, match="is the vault database"):
        open_database("ledger", config, keyring.database_keys)
    assert "ledger" not in tables_by_schema(vault)


def test_a_store_is_refused_the_configured_vault_database_before_it_is_set_up(tmp_path, pg_server, keyring):
    vault = database_url(pg_server.create_database())
    config = config_with(tmp_path, RAG_STORAGE_BACKEND="postgresql", RAG_DATABASE_URL=vault,
                         TWIN_VAULT_DATABASE_URL=vault.replace("127.0.0.1", "localhost"))
    with pytest.raises(SameDatabaseError, match="rag_index .* is the vault database"):
        open_database("rag_index", config, keyring.database_keys)
    assert tables_by_schema(vault) == {}


def test_the_settings_store_reads_settings_before_twin_and_is_refused_the_vaults_database(
        tmp_path, pg_server, keyring):
    shared, own, vault = (database_url(pg_server.create_database()) for _ in range(3))
    config = config_with(tmp_path, SETTINGS_STORAGE_BACKEND="postgresql", SETTINGS_DATABASE_URL=own,
                         TWIN_DATABASE_URL=shared)
    assert postgres_settings_of("settings", config).variable == "SETTINGS_DATABASE_URL"
    open_database("settings", config, keyring.database_keys).close_all()
    assert "configurations" in tables_by_schema(own)["settings"] and tables_by_schema(shared) == {}

    refused = config_with(tmp_path, SETTINGS_STORAGE_BACKEND="postgresql", SETTINGS_DATABASE_URL=vault,
                          TWIN_VAULT_DATABASE_URL=vault.replace("127.0.0.1", "localhost"))
    with pytest.raises(SameDatabaseError, match="settings .* is the vault database"):
        open_database("settings", refused, keyring.database_keys)
    assert tables_by_schema(vault) == {}
