"""Shared fixtures: real SQLCipher files under tmp_path, real keys, real crypto."""

from __future__ import annotations

import os

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
