"""Where database files live: priority of the sources, private directories, fallback rules."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest

from twin.storage import DataDirectoryError, resolve_database_path

LOGGER = "twin.storage.paths"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def system_tmp(tmp_path, monkeypatch) -> Path:
    """Point the system temp dir into tmp_path so the fallback never touches the real /tmp."""
    directory = tmp_path / "system-tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def blocked_dir(tmp_path) -> Path:
    """A directory path that cannot be created: a regular file sits where its parent should be.

    (Permission bits would not stop root, which the suite may run as.)"""
    blocker = tmp_path / "blocker"
    blocker.write_text("I am a file, not a directory")
    return blocker / "data"


def _records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


# -- priority -----------------------------------------------------------------------------

def test_explicit_path_beats_every_environment_variable(tmp_path):
    environ = {"DIGITAL_TWIN_DB_PATH": str(tmp_path / "env" / "twin.db"),
               "TWIN_DATA_DIR": str(tmp_path / "common")}
    path = resolve_database_path("digital_twin.db", "DIGITAL_TWIN_DB_PATH",
                                 tmp_path / "explicit" / "mine.db", environ=environ)
    assert path == tmp_path / "explicit" / "mine.db"


def test_per_database_variable_beats_the_common_data_dir(tmp_path):
    environ = {"DIGITAL_TWIN_DB_PATH": str(tmp_path / "env" / "twin.db"),
               "TWIN_DATA_DIR": str(tmp_path / "common")}
    path = resolve_database_path("digital_twin.db", "DIGITAL_TWIN_DB_PATH", environ=environ)
    assert path == tmp_path / "env" / "twin.db"


def test_another_databases_variable_is_ignored(tmp_path):
    environ = {"RAG_DB_PATH": str(tmp_path / "rag.db"), "TWIN_DATA_DIR": str(tmp_path / "common")}
    path = resolve_database_path("digital_twin.db", "DIGITAL_TWIN_DB_PATH", environ=environ)
    assert path == tmp_path / "common" / "digital_twin.db"


def test_common_data_dir_holds_the_default_file_name(tmp_path):
    path = resolve_database_path("ledger.db", "LEDGER_DB_PATH",
                                 environ={"TWIN_DATA_DIR": str(tmp_path / "common")})
    assert path == tmp_path / "common" / "ledger.db"


def test_default_is_data_under_the_working_directory(tmp_path):
    # The autouse fixture chdirs into tmp_path.
    path = resolve_database_path("ledger.db", "LEDGER_DB_PATH", environ={})
    assert path == tmp_path / "data" / "ledger.db"
    assert path.is_absolute()


def test_empty_variables_count_as_unset(tmp_path):
    environ = {"LEDGER_DB_PATH": "", "TWIN_DATA_DIR": ""}
    assert resolve_database_path("ledger.db", "LEDGER_DB_PATH", "", environ=environ) == \
        tmp_path / "data" / "ledger.db"


def test_process_environment_is_read_when_none_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_database_path("ledger.db") == tmp_path / "from-env" / "ledger.db"


# -- directories ------------------------------------------------------------------------------

def test_directory_is_created_private(tmp_path):
    path = resolve_database_path("ledger.db", environ={"TWIN_DATA_DIR": str(tmp_path / "a" / "b")})
    assert path.parent.is_dir()
    assert _mode(path.parent) == 0o700


def test_database_file_itself_is_not_created(tmp_path):
    path = resolve_database_path("ledger.db", environ={"TWIN_DATA_DIR": str(tmp_path / "d")})
    assert not path.exists()


# -- fallback -------------------------------------------------------------------------------

def test_unusable_directory_falls_back_to_a_private_temp_dir_with_a_warning(
        blocked_dir, system_tmp, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        path = resolve_database_path("ledger.db", "LEDGER_DB_PATH",
                                     environ={"TWIN_DATA_DIR": str(blocked_dir)})
    assert path.parent.parent == system_tmp
    assert path.name == "ledger.db"
    assert path.parent.name == f"learner-twin-{os.getuid()}"
    assert _mode(path.parent) == 0o700
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert str(blocked_dir) in message and str(path.parent) in message
    assert "falling back" in message


def test_fallback_is_never_used_in_production(blocked_dir, system_tmp):
    with pytest.raises(DataDirectoryError, match="production"):
        resolve_database_path("ledger.db", "LEDGER_DB_PATH",
                              environ={"TWIN_DATA_DIR": str(blocked_dir)}, production=True)
    assert list(system_tmp.iterdir()) == []


def test_production_uses_a_usable_directory_normally(tmp_path):
    path = resolve_database_path("ledger.db", environ={"TWIN_DATA_DIR": str(tmp_path / "prod")},
                                 production=True)
    assert path == tmp_path / "prod" / "ledger.db"


def test_fallback_dir_that_is_not_private_is_refused(blocked_dir, system_tmp):
    shared = system_tmp / f"learner-twin-{os.getuid()}"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(DataDirectoryError, match="not private"):
        resolve_database_path("ledger.db", environ={"TWIN_DATA_DIR": str(blocked_dir)})


# -- logging ----------------------------------------------------------------------------------

def test_each_decision_is_logged_once(tmp_path, caplog):
    environ = {"TWIN_DATA_DIR": str(tmp_path / "once")}
    with caplog.at_level(logging.INFO, logger=LOGGER):
        first = resolve_database_path("ledger.db", "LEDGER_DB_PATH", environ=environ)
        second = resolve_database_path("ledger.db", "LEDGER_DB_PATH", environ=environ)
    assert first == second
    infos = _records(caplog, logging.INFO)
    assert len(infos) == 1
    assert str(first) in infos[0].getMessage() and "TWIN_DATA_DIR" in infos[0].getMessage()


def test_a_different_decision_is_logged_again(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        resolve_database_path("ledger.db", environ={"TWIN_DATA_DIR": str(tmp_path / "one")})
        resolve_database_path("ledger.db", environ={"TWIN_DATA_DIR": str(tmp_path / "two")})
    assert len(_records(caplog, logging.INFO)) == 2


def test_fallback_warning_is_logged_once(blocked_dir, system_tmp, caplog):
    environ = {"TWIN_DATA_DIR": str(blocked_dir)}
    with caplog.at_level(logging.INFO, logger=LOGGER):
        resolve_database_path("ledger.db", environ=environ)
        resolve_database_path("ledger.db", environ=environ)
    assert len(_records(caplog, logging.WARNING)) == 1


def test_reason_names_the_source_of_the_decision(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        resolve_database_path("a.db", "A_DB_PATH", tmp_path / "x" / "a.db", environ={})
        resolve_database_path("b.db", "B_DB_PATH",
                              environ={"B_DB_PATH": str(tmp_path / "y" / "b.db")})
    messages = [r.getMessage() for r in _records(caplog, logging.INFO)]
    assert any("explicit argument" in m for m in messages)
    assert any("B_DB_PATH" in m for m in messages)
