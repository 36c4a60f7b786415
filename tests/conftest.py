"""Shared fixtures: real SQLCipher files under tmp_path, real PostgreSQL databases created per
test, real keys, real crypto."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

import storage_backends
from compliance.keyring import Keyring
from twin.config import Config

BACKENDS = ("sqlcipher", "postgresql")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): a SQLite/SQLCipher feature; "
                                       "skipped on the postgresql backend")


def pytest_sessionstart(session) -> None:
    # CI must test both backends: a missing server fails the run instead of skipping tests.
    if storage_backends.in_ci():
        problems = [p for p in (storage_backends.postgresql_problem(), storage_backends.redis_problem()) if p]
        if problems:
            raise pytest.UsageError("CI=true but " + "; ".join(problems))


@pytest.fixture(scope="session")
def postgres_server():
    """The PostgreSQL test server (skips without one, fails under CI=true); everything the
    session created there is dropped at its end, and nothing else."""
    problem = storage_backends.postgresql_problem()
    if problem:
        if storage_backends.in_ci():
            pytest.fail(f"CI=true but {problem}")
        pytest.skip(problem)
    server = storage_backends.PostgresServer()
    yield server
    server.drop_all()


@pytest.fixture
def pg_server(postgres_server):
    """The server, with what this test created on it dropped after the test."""
    yield postgres_server
    postgres_server.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each test using it runs once per storage backend."""
    marker = request.node.get_closest_marker("sqlite_only")
    if request.param == "postgresql" and marker is not None:
        pytest.skip(f"SQLite only: {marker.args[0] if marker.args else 'not a PostgreSQL feature'}")
    if request.param == "postgresql":
        request.getfixturevalue("pg_server")
    return request.param


@pytest.fixture
def databases(backend, request, tmp_path, db_key):
    """databases.new("name") -> a fresh database on this test's backend (SQLCipher file under
    tmp_path, or a new PostgreSQL database); databases.again(db) -> a second object on it."""
    server = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    maker = storage_backends.DatabaseMaker(backend, tmp_path, db_key, server)
    yield maker
    maker.close_all()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def db_key(keyring: Keyring) -> bytes:
    return keyring.database_key


@pytest.fixture
def config(tmp_path) -> Config:
    """A test configuration whose every database lives under tmp_path/data."""
    return Config(env="test", data_dir=tmp_path / "data", keyring_path=tmp_path / "keys" / "keyring.json",
                  model_dir=tmp_path / "models", environ={})


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    # No test may pick up a developer's real data directory, keyring or master secret.
    for name in list(os.environ):
        if name.startswith("TWIN_") or name.endswith("_DB_PATH") or name == "DIGITAL_TWIN_ENCRYPTION_KEY":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def open_catalog_db(config, keyring):
    """open_catalog_db("settings") -> that catalog database, migrated; closed after the test."""
    from twin.catalog import open_database

    opened = []

    def _open(name: str):
        db = open_database(name, config, keyring.database_keys)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        db.close_all()


class MovableClock:
    """A clock tests can move forward (retention, expiry, holds)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def runtime(config, keyring, clock):
    """A real Runtime on SQLCipher files under tmp_path, with a movable clock."""
    from twin.runtime import Runtime

    rt = Runtime(config, keyring, clock=clock)
    yield rt
    rt.close()


@pytest.fixture
def app(runtime):
    from twin.api.app import create_app

    return create_app(runtime.config, runtime=runtime)


@pytest.fixture
def client(app):
    return app.test_client()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(runtime) -> dict[str, str]:
    """Headers of an admin token."""
    return _bearer(runtime.tokens.issue("admin").token)


@pytest.fixture
def service(runtime) -> dict[str, str]:
    """Headers of a service token."""
    return _bearer(runtime.tokens.issue("service").token)


@pytest.fixture
def learner_for(runtime):
    """learner_for("user-1") -> headers of a learner token bound to that user id."""
    return lambda user_id: _bearer(runtime.tokens.issue("learner", subject_hash=runtime.hasher.hash(user_id)).token)
