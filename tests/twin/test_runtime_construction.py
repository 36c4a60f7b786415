"""A Runtime whose construction fails closes what it had opened already: on PostgreSQL the
learner databases' pools (their worker and scheduler threads, their connections), on SQLCipher
the files' connections."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from compliance.keyring import Keyring
from compliance.keyring_record import KeyringMismatchError
from twin.catalog import database_path, spec_for
from twin.runtime import Runtime
from twin.storage import BadDatabaseFileError


@pytest.fixture
def config(backend_config):
    return backend_config


def _pool_threads() -> set[str]:
    """The threads of our PostgreSQL pools (psycopg_pool names them after the pool,
    ``twin-<database>-worker-N`` / ``-scheduler``)."""
    return {t.name for t in threading.enumerate() if t.name.startswith("twin-")}


def _files_open_under(directory: Path) -> set[str]:
    opened = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith(f"{directory}{os.sep}"):
            opened.add(target)
    return opened


def test_a_construction_failing_after_the_learner_databases_opened_leaves_nothing_open(
        config, keyring, backend):
    # The settings database opens after the learner data and the vault (both open and
    # migrated or checked by then): an unreadable file there fails construction late.
    settings = database_path(spec_for("settings"), config)
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_bytes(os.urandom(16384))
    threads_before = _pool_threads()

    with pytest.raises(BadDatabaseFileError) as failed:
        Runtime(config, keyring)

    # Checked while the caller still holds the exception, whose traceback reaches the
    # half-built Runtime: nothing but an explicit close frees what it opened.
    assert failed.value is not None
    assert _pool_threads() - threads_before == set()
    assert _files_open_under(config.data_dir) == set()
    if backend == "sqlcipher":  # the learner files were opened, so the check above saw something
        assert database_path(spec_for("digital_twin"), config).exists()
        assert database_path(spec_for("privacy_vault"), config).exists()


@pytest.mark.postgresql_only("replicas share the vault, and its record of the deployment's keyring")
def test_a_replica_refused_for_another_keyring_leaves_no_pool_running(config, backend):
    threads_before = _pool_threads()

    with pytest.raises(KeyringMismatchError) as failed:
        Runtime(config, Keyring.generate())

    assert failed.value is not None
    assert _pool_threads() - threads_before == set()
