"""Progress of long work: a bar on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from click.testing import CliRunner

from compliance.keyring import Keyring
from twin.storage.progress import LoggedProgress, report, silent

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_logged_progress_writes_a_line_per_interval_and_one_at_the_end(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="twin.progress"):
        with LoggedProgress("purge learning_sessions", 1000, "rows", every_s=10, clock=clock) as bar:
            for _ in range(10):
                clock.now += 3
                bar.update(100)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["purge learning_sessions: 400/1,000 rows (40%)",    # at 12 s
                     "purge learning_sessions: 800/1,000 rows (80%)",    # at 24 s
                     "purge learning_sessions: 1,000/1,000 rows (100%), done in 30.0s"]


def test_off_a_terminal_report_logs_and_silent_says_nothing(caplog):
    assert isinstance(report("x", 3), LoggedProgress)  # pytest's stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="twin.progress"), silent("x", 3) as bar:
        bar.update(3)
    assert caplog.records == []


def test_on_a_terminal_a_command_draws_a_bar(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TWIN_")},
           "TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_KEYRING_PATH": str(tmp_path / "keyring.json"),
           "PYTHONPATH": str(ROOT)}
    Keyring.generate().save(tmp_path / "keyring.json")
    primary, replica = pty.openpty()
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    try:
        done = subprocess.run([sys.executable, "-m", "twin.cli", "db", "setup", "--database", "ledger"],
                              env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        process = subprocess.run([sys.executable, "-m", "twin.cli", "db", "backup", "--database", "ledger",
                                  "--out", str(tmp_path / "bk")], env=env, stdout=subprocess.PIPE,
                                 stderr=replica, timeout=60)
        os.close(replica)
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(primary)
    assert process.returncode == 0
    assert b"backup ledger: 100%|" in drawn and b"pages/s" in drawn


def test_a_long_command_off_a_terminal_logs_its_progress_at_the_default_level(tmp_path, monkeypatch):
    from twin.cli import cli

    env = {"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_KEYRING_PATH": str(tmp_path / "keyring.json")}
    Keyring.generate().save(tmp_path / "keyring.json")
    assert CliRunner().invoke(cli, ["db", "setup", "--database", "ledger"], env=env).exit_code == 0
    result = CliRunner().invoke(cli, ["db", "backup", "--database", "ledger", "--out", str(tmp_path / "bk")],
                                env=env)
    assert result.exit_code == 0
    assert "INFO twin.progress: backup ledger: " in result.stderr and "(100%), done in" in result.stderr
