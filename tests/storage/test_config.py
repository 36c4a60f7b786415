"""Storage configuration and the start-up checks: backend choice, URLs, TLS, connection
slots, two settings reaching one database, and the serving role. Every failure is one line
that names the setting and never repeats a password."""

from __future__ import annotations

import dataclasses
import time

import pytest

from storage_backends import database_url, held_elsewhere
from twin.storage import (ConnectionLimitError, DatabaseUnavailableError, PoolTimeoutError,
                          PostgresSettings, SameDatabaseError, ServingRoleError,
                          StorageConfigError, TLSUnavailableError, open_postgresql,
                          postgres_settings, storage_backend)

PASSWORD = "pw-Secret-42"


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and PASSWORD not in text
    return text


# -- choosing the backend --------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, "sqlcipher"), ("", "sqlcipher"), ("sqlcipher", "sqlcipher"), ("sqlite", "sqlcipher"),
    ("SQLite", "sqlcipher"), ("postgresql", "postgresql"), (" postgresql ", "postgresql"),
])
def test_the_backend_defaults_to_sqlcipher_and_accepts_sqlite_as_an_alias(value, expected):
    environ = {} if value is None else {"TWIN_STORAGE_BACKEND": value}
    assert storage_backend(environ) == expected


def test_an_unknown_backend_is_a_one_line_error_naming_the_choices():
    with pytest.raises(StorageConfigError) as excinfo:
        storage_backend({"TWIN_STORAGE_BACKEND": "mysql"})
    assert _one_line(excinfo.value) == ("TWIN_STORAGE_BACKEND='mysql' is not a storage backend "
                                        "(choose sqlcipher, sqlite or postgresql)")


def test_a_component_prefix_overrides_the_twin_backend_and_falls_back_to_it():
    assert storage_backend({"TWIN_STORAGE_BACKEND": "postgresql"}, prefix="RAG_") == "postgresql"
    assert storage_backend({"TWIN_STORAGE_BACKEND": "postgresql", "RAG_STORAGE_BACKEND": "sqlite"},
                           prefix="RAG_") == "sqlcipher"


# -- URLs and pool settings ------------------------------------------------------------------

def test_a_missing_url_names_its_variable():
    with pytest.raises(StorageConfigError) as excinfo:
        postgres_settings({})
    assert _one_line(excinfo.value) == "TWIN_DATABASE_URL is not set (needed with the postgresql backend)"


def test_the_vault_url_never_falls_back_to_the_data_url():
    environ = {"TWIN_DATABASE_URL": "postgresql://127.0.0.1/data"}
    with pytest.raises(StorageConfigError, match="^TWIN_VAULT_DATABASE_URL is not set"):
        postgres_settings(environ, prefix="TWIN_VAULT_")


@pytest.mark.parametrize("url, message", [
    ("mysql://127.0.0.1/db", "is not a postgresql:// URL"),
    ("127.0.0.1:5432/db", "is not a postgresql:// URL"),
    (f"postgresql://u:{PASSWORD}@[::1/db", "is malformed"),
    (f"postgresql://u:{PASSWORD}@127.0.0.1:5432", "names no database"),
    (f"postgresql://u:{PASSWORD}@127.0.0.1:port/db", "has an invalid port"),
    (f"postgresql://u:{PASSWORD}@127.0.0.1:99999/db", "has an invalid port"),
    (f"postgresql://u:{PASSWORD}@127.0.0.1/db?sslmode=sometimes", "sslmode must be one of"),
])
def test_a_malformed_url_is_one_line_without_the_url(url, message):
    with pytest.raises(StorageConfigError) as excinfo:
        postgres_settings({"TWIN_DATABASE_URL": url})
    text = _one_line(excinfo.value)
    assert text.startswith("TWIN_DATABASE_URL") and message in text


def test_pool_settings_come_from_the_prefix_then_from_twin_then_defaults():
    environ = {"TWIN_VAULT_DATABASE_URL": "postgresql://127.0.0.1/vault", "TWIN_DB_POOL_SIZE": "3",
               "TWIN_VAULT_DB_POOL_MAX_SIZE": "6", "TWIN_DB_POOL_TIMEOUT": "2.5"}
    settings = postgres_settings(environ, prefix="TWIN_VAULT_")
    assert (settings.pool_size, settings.max_size, settings.pool_timeout, settings.connect_timeout) == (3, 6, 2.5, 5.0)
    defaults = postgres_settings({"TWIN_DATABASE_URL": "postgresql://127.0.0.1/data"})
    assert (defaults.pool_size, defaults.max_size, defaults.pool_timeout) == (4, 4, 10.0)


@pytest.mark.parametrize("name, value", [("TWIN_DB_POOL_SIZE", "many"), ("TWIN_DB_POOL_SIZE", "0"),
                                         ("TWIN_DB_CONNECT_TIMEOUT", "-1")])
def test_a_bad_pool_setting_is_one_line_naming_it(name, value):
    with pytest.raises(StorageConfigError, match=f"^{name}"):
        postgres_settings({"TWIN_DATABASE_URL": "postgresql://127.0.0.1/db", name: value})


def test_settings_never_show_the_password():
    settings = PostgresSettings(f"postgresql://u:{PASSWORD}@db.example:5433/twin")
    assert settings.display_url == "postgresql://db.example:5433/twin"
    assert PASSWORD not in repr(settings)


# -- connecting ------------------------------------------------------------------------------

def test_an_unreachable_server_is_a_one_line_error_not_a_hang():
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as excinfo:
        open_postgresql(PostgresSettings(f"postgresql://u:{PASSWORD}@127.0.0.1:1/twin"))
    assert time.monotonic() - started < 10
    assert _one_line(excinfo.value).startswith(
        "TWIN_DATABASE_URL (postgresql://127.0.0.1:1/twin): cannot connect: ")
    assert "Connection refused" in str(excinfo.value)


def test_sslmode_require_against_a_server_without_tls_is_named_as_such(pg_server):
    url = database_url("postgres", sslmode="require")
    with pytest.raises(TLSUnavailableError) as excinfo:
        open_postgresql(PostgresSettings(url, variable="TWIN_VAULT_DATABASE_URL"))
    assert _one_line(excinfo.value) == (
        "TWIN_VAULT_DATABASE_URL (postgresql://127.0.0.1:5432/postgres): sslmode=require asks for "
        "TLS but the server does not offer it (enable ssl on the server, or lower sslmode)")


def test_a_database_that_does_not_exist_is_one_line(pg_server):
    with pytest.raises(StorageConfigError) as excinfo:
        open_postgresql(PostgresSettings(database_url("twin_test_no_such_database")))
    assert 'database "twin_test_no_such_database" does not exist' in _one_line(excinfo.value)


def test_too_few_connection_slots_for_the_pool_is_a_start_up_error_not_a_hang(pg_server):
    name = pg_server.create_database()
    role = pg_server.create_role(connection_limit=2)  # the role may hold 2; the pool wants 4
    settings = PostgresSettings(database_url(name, user=role), pool_size=4, connect_timeout=3)
    started = time.monotonic()
    with pytest.raises(ConnectionLimitError) as excinfo:
        open_postgresql(settings, name="digital_twin")
    assert time.monotonic() - started < 15
    text = _one_line(excinfo.value)
    assert text.startswith("digital_twin: could open only ")
    assert "of the pool's 4 connections" in text and "too many connections for role" in text
    assert "lower TWIN_DB_POOL_SIZE or raise max_connections" in text


def test_no_connection_slot_at_all_is_named_at_the_first_connection(pg_server):
    import psycopg

    name = pg_server.create_database()
    role = pg_server.create_role(connection_limit=1)
    url = database_url(name, user=role)
    with psycopg.connect(url):  # takes the role's only slot
        with pytest.raises(ConnectionLimitError, match="no connection slot left .*too many connections"):
            open_postgresql(PostgresSettings(url, pool_size=1))


def test_a_request_waits_for_a_pooled_connection_only_for_the_pool_timeout(databases, backend):
    if backend != "postgresql":
        pytest.skip("SQLite has no pool: one connection per thread")
    db = databases.new("small", pool_timeout=0.3)
    db = open_postgresql(dataclasses.replace(db.settings, pool_size=1, pool_max_size=None), name="small")
    try:
        with held_elsewhere(db.transaction):  # the pool's only connection
            with pytest.raises(PoolTimeoutError, match=r"small: no pooled connection came free within 0.3s"):
                db.query("SELECT 1")
    finally:
        db.close_all()


# -- two settings, one database ---------------------------------------------------------------

def _pair(pg_server, second_url_for):
    name = pg_server.create_database()
    first = open_postgresql(PostgresSettings(database_url(name), pool_size=1), name="digital_twin")
    second = open_postgresql(PostgresSettings(second_url_for(name), pool_size=1,
                                              variable="TWIN_VAULT_DATABASE_URL"), name="privacy_vault")
    return first, second


@pytest.mark.parametrize("second_url", [
    lambda name: database_url(name, host="localhost"),
    lambda name: database_url(name, application_name="other-spelling"),
    lambda name: f"postgresql:///{name}?host=/var/run/postgresql&user=postgres",
], ids=["localhost", "extra-parameter", "unix-socket"])
def test_two_urls_that_reach_one_database_are_refused(pg_server, second_url):
    from twin.storage.postgresql import verify_distinct_databases

    first, second = _pair(pg_server, second_url)
    try:
        with pytest.raises(SameDatabaseError) as excinfo:
            verify_distinct_databases(first, second)
        assert "reach the same database" in _one_line(excinfo.value)
    finally:
        first.close_all()
        second.close_all()


def test_two_databases_pass_and_their_markers_are_kept(pg_server):
    from twin.storage.postgresql import server_identity, verify_distinct_databases, write_identity_marker

    data = open_postgresql(PostgresSettings(database_url(pg_server.create_database()), pool_size=1), name="data")
    vault = open_postgresql(PostgresSettings(database_url(pg_server.create_database()), pool_size=1), name="vault")
    try:
        with pytest.raises(StorageConfigError, match="never set up .*run `twin db setup`"):
            verify_distinct_databases(data, vault, require_markers=True)
        marker = write_identity_marker(data, "data")
        write_identity_marker(vault, "vault")
        assert write_identity_marker(data, "data") == marker  # once
        verify_distinct_databases(data, vault, require_markers=True)
        assert server_identity(data).markers == {"data": marker}
        assert "storage_identity" not in data.table_names()
    finally:
        data.close_all()
        vault.close_all()


def test_setting_up_one_database_in_two_roles_is_refused(pg_server):
    from twin.storage.postgresql import write_identity_marker

    first, second = _pair(pg_server, lambda name: database_url(name, host="localhost"))
    try:
        write_identity_marker(first, "data")
        with pytest.raises(SameDatabaseError, match="is already set up as the data database"):
            write_identity_marker(second, "vault")
    finally:
        first.close_all()
        second.close_all()


# -- the serving role ------------------------------------------------------------------------

def test_a_superuser_owner_is_not_a_serving_role(pg_server):
    from twin.storage.postgresql import check_serving_role

    db = open_postgresql(PostgresSettings(database_url(pg_server.create_database()), pool_size=1), name="digital_twin")
    try:
        db.execute("CREATE TABLE t (x INTEGER)")
        with pytest.raises(ServingRoleError) as excinfo:
            check_serving_role(db)
        text = _one_line(excinfo.value)
        assert text.startswith("digital_twin: the service connects as role 'postgres', which can change")
        assert "it is a superuser" in text and "run `twin db migrate` as the owner" in text
    finally:
        db.close_all()


# -- what the CLI calls ----------------------------------------------------------------------

def test_the_database_pair_opens_when_the_urls_reach_two_databases(pg_server):
    from twin.storage.postgresql import open_database_pair

    environ = {"TWIN_DATABASE_URL": database_url(pg_server.create_database()),
               "TWIN_VAULT_DATABASE_URL": database_url(pg_server.create_database()),
               "TWIN_DB_POOL_SIZE": "1"}
    data, vault = open_database_pair(environ)
    try:
        assert (data.name, vault.name) == ("digital_twin", "privacy_vault")
        assert data.settings.database != vault.settings.database
    finally:
        data.close_all()
        vault.close_all()


def test_the_database_pair_is_refused_when_both_urls_reach_one_database(pg_server):
    from twin.storage.postgresql import open_database_pair

    name = pg_server.create_database()
    environ = {"TWIN_DATABASE_URL": database_url(name),
               "TWIN_VAULT_DATABASE_URL": database_url(name, host="localhost"), "TWIN_DB_POOL_SIZE": "1"}
    with pytest.raises(SameDatabaseError) as excinfo:
        open_database_pair(environ)
    assert _one_line(excinfo.value).startswith("digital_twin (postgresql://127.0.0.1:5432/")


def test_the_database_pair_needs_both_urls(pg_server):
    from twin.storage.postgresql import open_database_pair

    with pytest.raises(StorageConfigError, match="^TWIN_VAULT_DATABASE_URL is not set"):
        open_database_pair({"TWIN_DATABASE_URL": database_url(pg_server.create_database())})


def test_ready_to_serve_refuses_the_owner_role_before_looking_at_the_schema(pg_server):
    from twin.storage import Migration
    from twin.storage.postgresql import check_ready_to_serve

    db = open_postgresql(PostgresSettings(database_url(pg_server.create_database()), pool_size=1), name="vault")
    try:
        with pytest.raises(ServingRoleError):
            check_ready_to_serve(db, [Migration(1, "t", "CREATE TABLE t (x INTEGER);", "DROP TABLE t;")])
    finally:
        db.close_all()
