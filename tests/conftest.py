"""Shared fixtures: real SQLCipher files under tmp_path, real keys, real crypto."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from compliance.keyring import Keyring
from twin.config import Config


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
        db = open_database(name, config, keyring)
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
