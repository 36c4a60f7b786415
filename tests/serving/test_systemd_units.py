"""The systemd units under scripts/systemd: systemd accepts them, and the command each starts
exists, parses and runs (started for real, the way systemd would, and stopped with SIGTERM)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from live_service import REPO, free_port, issue_tokens, wait_until_healthy

pytestmark = pytest.mark.slow

UNITS = REPO / "scripts" / "systemd"
INSTALL_PREFIX = "/opt/learner-twin"


def _unit(name: str) -> dict[str, list[str]]:
    """Key -> values of a unit's [Service] section (systemd allows repeated keys)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def _command(name: str, overrides: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart for this checkout, with its Environment= lines (and ``overrides``)
    expanded as systemd expands ${VAR}."""
    service = _unit(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWIN_", "PROMETHEUS_"))}
    for assignment in service.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value
    env.update(overrides)
    (exec_start,) = service["ExecStart"]
    command = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], exec_start)
    return command.replace(INSTALL_PREFIX, str(REPO)).split(), env


def test_there_is_a_unit_for_the_service_and_one_for_the_separate_retention_schedule():
    assert sorted(p.name for p in UNITS.glob("*.service")) == ["learner-twin-retention.service",
                                                              "learner-twin.service"]
    assert _unit("learner-twin.service")["ExecStart"][0].split()[:2] == [f"{INSTALL_PREFIX}/.venv/bin/twin",
                                                                           "serve"]
    assert _unit("learner-twin-retention.service")["ExecStart"] == [
        f"{INSTALL_PREFIX}/.venv/bin/twin retention schedule"]
    for name in ("learner-twin.service", "learner-twin-retention.service"):
        assert _unit(name)["KillSignal"] == ["SIGTERM"] and "TWIN_ENV=production" in _unit(name)["Environment"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", ["learner-twin.service", "learner-twin-retention.service"])
def test_systemd_accepts_the_unit_and_finds_its_command(name, tmp_path):
    installed = tmp_path / name  # as installed from this checkout: the command must exist
    installed.write_text((UNITS / name).read_text().replace(INSTALL_PREFIX, str(REPO)))

    done = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def _production_files(tmp_path: Path) -> dict[str, str]:
    files = {"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_KEYRING_PATH": str(tmp_path / "keys" / "keyring.json")}
    issue_tokens({**files, "TWIN_ENV": "development"}, "service")  # a keyring and a vault to start from
    return files


def test_the_service_unit_command_serves_the_api_and_metrics_and_stops_on_sigterm(tmp_path):
    port, metrics_port = free_port(), free_port()
    command, env = _command("learner-twin.service", {
        **_production_files(tmp_path), "TWIN_HOST": "127.0.0.1", "TWIN_PORT": str(port),
        "TWIN_METRICS_PORT": str(metrics_port)})
    with open(tmp_path / "service.log", "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_until_healthy(port, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            assert b"twin_database_file_bytes" in response.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert '"level": "INFO"' in (tmp_path / "service.log").read_text()  # TWIN_LOG_FORMAT=json


def test_the_retention_unit_command_schedules_the_nightly_run_and_stops_on_sigterm(tmp_path):
    command, env = _command("learner-twin-retention.service", _production_files(tmp_path))
    log_path = tmp_path / "retention.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "retention scheduled" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.2)
        assert "retention scheduled with cron '30 2 * * *'" in log_path.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
