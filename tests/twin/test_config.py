"""Configuration read from the environment: the token cache period, the learner model's settings."""

from __future__ import annotations

import dataclasses

import pytest

from compliance.tokens import TokenStore
from twin.config import Config, ConfigError


def test_a_verified_token_is_remembered_two_seconds_unless_configured():
    assert Config.from_env({}).token_cache_seconds == 2
    assert Config.from_env({"TWIN_TOKEN_CACHE_SECONDS": "0"}).token_cache_seconds == 0
    assert Config.from_env({"TWIN_TOKEN_CACHE_SECONDS": "30"}).token_cache_seconds == 30


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_token_cache_period_is_a_startup_error(value):
    with pytest.raises(ConfigError, match="TWIN_TOKEN_CACHE_SECONDS"):
        Config.from_env({"TWIN_TOKEN_CACHE_SECONDS": value})


def test_with_a_period_of_zero_the_service_sees_a_revocation_elsewhere_at_once(config, keyring, clock):
    from twin.runtime import Runtime

    runtime = Runtime(dataclasses.replace(config, token_cache_seconds=0), keyring, clock=clock)
    try:
        issued = runtime.tokens.issue("service")
        assert runtime.tokens.verify(issued.token) is not None
        TokenStore(runtime.vault_db).revoke(issued.identity.token_id)  # issue_token.py --revoke

        assert runtime.tokens.verify(issued.token) is None
    finally:
        runtime.close()


def test_durability_and_log_format_default_to_normal_and_text_and_refuse_other_values():
    assert Config.from_env({}).durability == "normal" and Config.from_env({}).log_format == "text"
    assert Config.from_env({"TWIN_DURABILITY": "FULL"}).durability == "full"
    assert Config.from_env({"TWIN_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="TWIN_DURABILITY"):
        Config.from_env({"TWIN_DURABILITY": "sometimes"})
    with pytest.raises(ConfigError, match="TWIN_LOG_FORMAT"):
        Config.from_env({"TWIN_LOG_FORMAT": "xml"})


def test_full_durability_reaches_every_database_the_catalog_opens(config, keyring):
    from twin.catalog import open_database
    db = open_database("digital_twin", dataclasses.replace(config, durability="full"), keyring.database_keys)
    try:
        assert db.query_one("PRAGMA synchronous")[0] == 2
    finally:
        db.close_all()


def test_evidence_has_its_own_retention_window_and_the_nightly_refit_can_be_switched_off():
    default = Config.from_env({})
    assert default.evidence_retention_days == 730 and default.retention_windows()["evidence"] == 730
    assert Config.from_env({"TWIN_EVIDENCE_RETENTION_DAYS": "90"}).retention_windows()["evidence"] == 90
    assert default.model_fit_nightly is True
    assert Config.from_env({"TWIN_MODEL_FIT_NIGHTLY": "off"}).model_fit_nightly is False
    assert Config.from_env({"TWIN_MODEL_FIT_NIGHTLY": "1"}).model_fit_nightly is True
    with pytest.raises(ConfigError, match="TWIN_MODEL_FIT_NIGHTLY"):
        Config.from_env({"TWIN_MODEL_FIT_NIGHTLY": "sometimes"})
    with pytest.raises(ConfigError, match="TWIN_EVIDENCE_RETENTION_DAYS"):
        Config.from_env({"TWIN_EVIDENCE_RETENTION_DAYS": "0"})


@pytest.mark.parametrize("value", ["", "true", "1", "on"])
def test_digital_twin_sqlite_wal_on_or_unset_opens_every_sqlcipher_file_in_wal_mode(tmp_path, keyring, value):
    from twin.catalog import open_database

    config = Config.from_env({"TWIN_DATA_DIR": str(tmp_path), "DIGITAL_TWIN_SQLITE_WAL": value})
    db = open_database("digital_twin", config, keyring.database_keys)
    try:
        assert config.sqlite_wal is True
        assert db.query_one("PRAGMA journal_mode")[0] == "wal"
        assert (tmp_path / "digital_twin.db-wal").exists()
    finally:
        db.close_all()


@pytest.mark.parametrize("value", ["false", "0", "off"])
def test_digital_twin_sqlite_wal_off_is_refused_in_one_line_saying_why(value):
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"DIGITAL_TWIN_SQLITE_WAL": value})
    message = str(refused.value)
    assert message.startswith("DIGITAL_TWIN_SQLITE_WAL=off is not supported") and "\n" not in message
