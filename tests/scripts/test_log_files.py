"""TWIN_LOG_DIR (seed 004): database.log, migration.log and performance.log are written there
in addition to stderr, each with its own loggers' lines, readable by the owner only."""

from __future__ import annotations

import stat
from pathlib import Path


def test_the_log_files_get_their_loggers_info_lines_and_stderr_keeps_its_level(env, run_script, tmp_path):
    log_dir = tmp_path / "logs"
    env["TWIN_LOG_DIR"] = str(log_dir)

    setup = run_script("setup_databases.py")
    performance = run_script("database_performance.py", "--database", "ledger")

    assert setup.returncode == 0 and performance.returncode == 0, setup.stderr + performance.stderr
    migration = (log_dir / "migration.log").read_text()
    database = (log_dir / "database.log").read_text()
    perf = (log_dir / "performance.log").read_text()
    assert "ledger: applied migration 1" in migration
    # stderr keeps the command's level (warnings), the files their loggers' INFO lines
    assert "applied migration" not in setup.stderr and "WARNING compliance.keyring" in setup.stderr
    assert "twin.storage.paths" in database and "twin.storage.migrations" in database
    assert "twin.storage.paths" not in migration and "twin.performance" not in database
    assert "ledger new entries:" in perf and "ledger entries of a node:" in perf
    for name in ("database.log", "migration.log", "performance.log"):
        assert stat.S_IMODE((log_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700


def test_without_twin_log_dir_no_log_file_is_written(env, run_script, tmp_path):
    assert run_script("setup_databases.py").returncode == 0
    assert not any(Path(tmp_path).rglob("*.log"))
