"""The catalog: the one place that loads the keyring and opens databases from the configuration."""

from __future__ import annotations

import pytest

from compliance.keyring import DatabaseKey, Keyring, KeyringMissingError
from twin.catalog import (keyring_exists, load_keyring, open_database, open_ledger,
                          open_model_manager, reload_keyring)
from twin.ledger.ledger import DatabaseLedger
from twin.model_registry.manager import ModelManager


def test_only_setting_up_may_create_a_keyring_and_a_running_process_never_does(config):
    assert not keyring_exists(config) and reload_keyring(config) is None
    with pytest.raises(KeyringMissingError, match="no keyring"):
        load_keyring(config)
    assert not config.keyring_path.exists()

    generated = load_keyring(config, create=True)  # twin serve / twin db setup, in development
    assert keyring_exists(config) and load_keyring(config) == generated
    assert reload_keyring(config) == generated


def test_a_database_is_opened_with_the_database_key_alone_and_falls_back_mid_rekey(config, keyring):
    db = open_database("ledger", config, keyring.database_keys)
    db.close_all()
    new = Keyring.generate().database_key

    reopened = open_database("ledger", config, DatabaseKey(new, previous=keyring.database_key))
    try:
        assert reopened.query_one("SELECT count(*) FROM ledger")[0] == 0  # still under the old key
    finally:
        reopened.close_all()
    assert "hidden" in repr(keyring.database_keys) and keyring.database_key.hex() not in repr(keyring.database_keys)


def test_the_component_stores_open_through_the_catalog(config, keyring):
    keyring.save(config.keyring_path)
    ledger = DatabaseLedger.open(config=config)
    manager = ModelManager.open(config)
    try:
        assert ledger.db.path.parent == manager.db.path.parent == config.data_dir
        assert manager.files.directory == config.model_dir
    finally:
        ledger.close()
        manager.db.close_all()
    opened = open_ledger(config=config, keyring=keyring), open_model_manager(config, keyring)
    assert isinstance(opened[0], DatabaseLedger) and isinstance(opened[1], ModelManager)
    for store in opened:
        store.db.close_all()
