"""The learner twin on PostgreSQL, as an operator configures it: TWIN_STORAGE_BACKEND,
TWIN_DATABASE_URL and TWIN_VAULT_DATABASE_URL. Every configuration mistake is one line on
stderr and exit 2; `twin db setup` migrates and marks the pair, `twin serve` never changes the
schema there and never generates a keyring."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from compliance.keyring import Keyring
from compliance.vault_schema import MIGRATIONS as VAULT_MIGRATIONS
from twin.learners.schema import MIGRATIONS as DATA_MIGRATIONS
from twin.storage import Migrator, PostgresSettings, key_fingerprint, open_postgresql

from cli_support import operator_env, running_server, twin
from storage_backends import COMPONENT_PREFIXES, database_url, serving_role_environment


@pytest.fixture
def pg_env(tmp_path, pg_server):
    """An operator's environment on two fresh PostgreSQL databases (component stores on
    SQLCipher files), not yet set up."""
    env = operator_env(tmp_path)
    env.update(TWIN_STORAGE_BACKEND="postgresql",
               TWIN_DATABASE_URL=database_url(pg_server.create_database()),
               TWIN_VAULT_DATABASE_URL=database_url(pg_server.create_database()),
               TWIN_DB_POOL_SIZE="2")
    env.update({f"{prefix}STORAGE_BACKEND": "sqlcipher" for prefix in COMPONENT_PREFIXES})
    assert twin(env, "keys", "generate").returncode == 0  # as an operator would, first
    return env


def assert_one_line_error(result, *words: str) -> str:
    """Exit 2 and one error line (``twin serve`` logs its start-up at INFO before it)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("twin: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr
    if result.args[3:4] != ["serve"]:
        assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def test_an_unknown_backend_is_refused_naming_the_choices(tmp_path):
    env = {**operator_env(tmp_path), "TWIN_STORAGE_BACKEND": "mysql"}
    assert_one_line_error(twin(env, "db", "setup"), "TWIN_STORAGE_BACKEND", "sqlcipher", "postgresql")


def test_sqlite_is_accepted_as_the_sqlcipher_alias(tmp_path):
    env = {**operator_env(tmp_path), "TWIN_STORAGE_BACKEND": "sqlite"}
    result = twin(env, "db", "setup")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "digital_twin.db").exists()


@pytest.mark.parametrize("missing", ["TWIN_DATABASE_URL", "TWIN_VAULT_DATABASE_URL"])
def test_a_missing_url_is_one_line_naming_the_variable(pg_env, missing):
    del pg_env[missing]
    assert_one_line_error(twin(pg_env, "db", "setup"), missing, "not set")


def test_a_malformed_url_is_one_line_without_repeating_the_url(pg_env):
    pg_env["TWIN_DATABASE_URL"] = "postgresql://sec%ret:pw@127.0.0.1:notaport/x y"
    line = assert_one_line_error(twin(pg_env, "db", "setup"), "TWIN_DATABASE_URL")
    assert "pw" not in line and "sec" not in line


def test_an_unreachable_server_is_one_line(pg_env):
    pg_env["TWIN_VAULT_DATABASE_URL"] = "postgresql://postgres:hunter2@127.0.0.1:1/vault"
    line = assert_one_line_error(twin(pg_env, "db", "setup"), "TWIN_VAULT_DATABASE_URL", "cannot connect")
    assert "hunter2" not in line


def test_tls_asked_of_a_server_without_it_is_one_line(pg_env):
    pg_env["TWIN_DATABASE_URL"] += "?sslmode=require"
    assert_one_line_error(twin(pg_env, "db", "setup"), "sslmode=require", "TLS")


def test_two_urls_reaching_one_database_are_refused_whatever_their_spelling(pg_env):
    # The same database through another host name: equal for the server, not as strings.
    pg_env["TWIN_VAULT_DATABASE_URL"] = pg_env["TWIN_DATABASE_URL"].replace("127.0.0.1", "localhost")
    assert_one_line_error(twin(pg_env, "db", "setup"), "same database")
    with psycopg.connect(pg_env["TWIN_DATABASE_URL"]) as conn:  # refused before any migration
        assert conn.execute("SELECT to_regclass('learning_profiles')").fetchone()[0] is None


def test_setup_migrates_and_marks_the_pair_and_status_reads_it(pg_env):
    result = twin(pg_env, "db", "setup")
    assert result.returncode == 0, result.stderr
    assert "digital_twin" in result.stdout and "postgresql://127.0.0.1:5432/" in result.stdout
    for variable, role in (("TWIN_DATABASE_URL", "data"), ("TWIN_VAULT_DATABASE_URL", "vault")):
        with psycopg.connect(pg_env[variable]) as conn:
            assert conn.execute("SELECT role FROM storage_identity").fetchall() == [(role,)]
    status = twin(pg_env, "db", "status")
    assert status.returncode == 0, status.stderr
    data, vault = DATA_MIGRATIONS[-1].version, VAULT_MIGRATIONS[-1].version
    assert f"digital_twin       v{data} of {data}  up to date" in status.stdout
    assert f"privacy_vault      v{vault} of {vault}  up to date" in status.stdout


def test_serve_on_a_schema_older_than_the_code_exits_2_naming_twin_db_migrate(pg_env):
    assert twin(pg_env, "db", "setup").returncode == 0
    vault = open_postgresql(PostgresSettings(pg_env["TWIN_VAULT_DATABASE_URL"], pool_size=1))
    try:
        Migrator(vault, VAULT_MIGRATIONS).rollback(2)
    finally:
        vault.close_all()
    result = twin(pg_env, "serve", "--port", "0", "--no-metrics", "--workers", "1")
    assert_one_line_error(result, "privacy_vault", "older", "twin db migrate")
    with psycopg.connect(pg_env["TWIN_VAULT_DATABASE_URL"]) as conn:  # serve changed nothing
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 2


def test_serve_on_a_schema_newer_than_the_code_exits_2(pg_env):
    assert twin(pg_env, "db", "setup").returncode == 0
    with psycopg.connect(pg_env["TWIN_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 'x')")
    assert_one_line_error(twin(pg_env, "serve", "--port", "0", "--no-metrics"), "newer", "upgrade")


def test_serve_on_databases_never_set_up_exits_2_and_creates_nothing(pg_env):
    assert_one_line_error(twin(pg_env, "serve", "--port", "0", "--no-metrics"), "twin db")
    with psycopg.connect(pg_env["TWIN_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT to_regclass('learning_profiles')").fetchone()[0] is None


def test_serve_on_postgresql_never_generates_a_keyring(pg_env, tmp_path):
    assert twin(pg_env, "db", "setup").returncode == 0
    (tmp_path / "keys" / "keyring.json").unlink()
    assert_one_line_error(twin(pg_env, "serve", "--port", "0", "--no-metrics"), "no keyring")
    assert not (tmp_path / "keys" / "keyring.json").exists()


def test_a_set_up_pair_serves_the_api(pg_env, tmp_path):
    assert twin(pg_env, "db", "setup").returncode == 0
    issued = twin(pg_env, "tokens", "issue", "--role", "service", "--label", "t")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[0]
    with running_server(pg_env, token, tmp_path / "serve.log") as (api, _process):
        status, body = api("POST", "/v1/profiles", {"user_id": "pg-user", "personal": {"name": "Ada"}})
        assert status == 201, body
        assert api("GET", f"/v1/profiles/{body['profile_id']}")[0] == 200
    with psycopg.connect(pg_env["TWIN_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM learning_profiles").fetchone()[0] == 1
    assert not (tmp_path / "data" / "digital_twin.db").exists()


def test_too_few_server_connections_is_a_start_up_error_not_a_hang(pg_env, pg_server):
    role = pg_server.create_role(connection_limit=2)
    for variable in ("TWIN_DATABASE_URL", "TWIN_VAULT_DATABASE_URL"):
        pg_env[variable] = pg_env[variable].replace("postgres@", f"{role}@")
    pg_env.update(TWIN_DB_POOL_SIZE="4", TWIN_DB_CONNECT_TIMEOUT="2")
    assert_one_line_error(twin(pg_env, "db", "status", timeout=60), "could open only", "max_connections")


def _serve_refusal(env) -> str:
    return assert_one_line_error(twin(env, "serve", "--port", "0", "--no-metrics"))


def test_setup_records_the_keyring_fingerprints_and_never_a_key(pg_env, tmp_path):
    assert twin(pg_env, "db", "setup").returncode == 0
    keyring = Keyring.load(tmp_path / "keys" / "keyring.json", production=False)
    with psycopg.connect(pg_env["TWIN_VAULT_DATABASE_URL"]) as conn:
        row = conn.execute("SELECT pepper_fingerprint, field_keys, active_field_key FROM keyring_record").fetchone()
    assert row == (key_fingerprint(keyring.id_pepper), '{"1": "%s"}' % keyring.field_key_fingerprints()[1], 1)
    dump = subprocess.run(["pg_dump", pg_env["TWIN_VAULT_DATABASE_URL"]], capture_output=True, check=True).stdout
    for secret in (keyring.id_pepper, keyring.field_keys[1], keyring.database_key):
        assert secret.hex().encode() not in dump and secret not in dump


def test_serve_with_another_keyring_exits_2_naming_the_fingerprints(pg_env, tmp_path):
    assert twin(pg_env, "db", "setup").returncode == 0
    (tmp_path / "keys" / "keyring.json").unlink()
    assert twin(pg_env, "keys", "generate").returncode == 0
    line = _serve_refusal(pg_env)
    assert "not the deployment's" in line and "ID pepper fingerprint" in line


def test_a_field_key_rotation_is_distributed_before_it_is_activated(pg_env, tmp_path):
    assert twin(pg_env, "db", "setup").returncode == 0
    path = tmp_path / "keys" / "keyring.json"
    old = path.read_bytes()
    distributed = twin(pg_env, "keys", "rotate", "--distribute-field-key")
    assert distributed.returncode == 0, distributed.stderr
    keyring = Keyring.load(path, production=False)
    assert (sorted(keyring.field_keys), keyring.active_field_key) == ([1, 2], 1)

    # A replica still on the old keyring refuses to start: it lacks the distributed version.
    replica = tmp_path / "replica-keyring.json"
    replica.write_bytes(old)
    replica.chmod(0o600)
    assert "lacks field key v2" in _serve_refusal({**pg_env, "TWIN_KEYRING_PATH": str(replica)})

    activated = twin(pg_env, "keys", "rotate", "--activate-field-key")
    assert activated.returncode == 0, activated.stderr
    assert Keyring.load(path, production=False).active_field_key == 2
    # Activating a version never distributed is refused: v3 exists only in this copy.
    undistributed = tmp_path / "undistributed.json"
    keyring3 = Keyring.load(path, production=False).with_new_field_key()
    keyring3.save(undistributed)
    assert "never distributed" in _serve_refusal({**pg_env, "TWIN_KEYRING_PATH": str(undistributed)})


def test_the_service_serves_as_a_role_without_ddl_rights(pg_env, pg_server, tmp_path):
    """Schema changes are the owner's (`twin db setup` here); the service's role may only read
    and write rows, and that is all serving needs."""
    assert twin(pg_env, "db", "setup").returncode == 0
    serving_env = serving_role_environment(pg_env, pg_server)  # checked to have no DDL right
    issued = twin(serving_env, "tokens", "issue", "--role", "service", "--label", "t")
    assert issued.returncode == 0, issued.stderr
    with running_server(serving_env, issued.stdout.strip().splitlines()[0], tmp_path / "serve.log") as (api, _):
        status, body = api("POST", "/v1/profiles", {"user_id": "role-user", "personal": {"name": "Ada"}})
        assert status == 201, body
    with psycopg.connect(serving_env["TWIN_DATABASE_URL"]) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE not_allowed (x INTEGER)")
