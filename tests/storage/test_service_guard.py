"""The live-service guard on real files: a service's shared lock, a command's exclusive one,
records that name the holder, and release on exit, crash included."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from twin.storage.service_guard import (GATE_SUFFIX, RECORD_DIR, FileServiceGuard, FilesInUseError,
                                        Holder)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path):
    """Two database files in different directories (as *_DB_PATH can put them)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return [tmp_path / "a" / "digital_twin.db", tmp_path / "b" / "ledger.db"]


def test_a_command_is_refused_while_a_service_holds_any_of_its_files(files):
    service = Holder("service", "twin serve")
    registration = FileServiceGuard(files).register(service)
    with pytest.raises(FilesInUseError) as refused:
        with FileServiceGuard([files[1]]).exclusive(Holder("command", "twin db restore")):
            pytest.fail("the command ran next to a live service")
    message = str(refused.value)
    assert message == (f"{files[1]}: in use by a running service: twin serve (pid {os.getpid()} on "
                       f"host {socket.gethostname()}, started {service.started_at}); stop it first")
    assert refused.value.holders == [service]
    registration.release()
    with FileServiceGuard(files).exclusive(Holder("command", "twin db restore")):
        pass  # allowed once the service is gone


def test_a_service_cannot_start_while_a_command_holds_the_files(files):
    command = Holder("command", "twin keys rotate")
    with FileServiceGuard(files).exclusive(command):
        with pytest.raises(FilesInUseError, match="in use by a command: twin keys rotate .*start the "
                                                  "service once that command has finished"):
            FileServiceGuard(files).register(Holder("service", "twin serve"))
    FileServiceGuard(files).register(Holder("service", "twin serve")).release()


def test_several_services_may_share_the_files_and_all_are_named(files):
    first = FileServiceGuard(files).register(Holder("service", "twin serve"))
    second = FileServiceGuard(files).register(Holder("service", "twin serve --port 9000"))
    assert {h.command for h in FileServiceGuard(files).holders()} == {"twin serve", "twin serve --port 9000"}
    with pytest.raises(FilesInUseError, match="and 1 more"):
        with FileServiceGuard(files).exclusive(Holder("command", "twin db rollback")):
            pass
    first.release()
    second.release()
    assert FileServiceGuard(files).holders() == []


_HOLDER = """
import sys, time
from twin.storage.service_guard import FileServiceGuard, Holder
FileServiceGuard(sys.argv[1:]).register(Holder("service", "twin serve"))
print("held", flush=True)
time.sleep(600)
"""


def test_a_crashed_service_releases_its_files_and_its_record_is_cleaned_up(files):
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, *map(str, files)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout.readline().strip() == "held"
        [holder] = FileServiceGuard(files).holders()
        assert holder.pid == process.pid and holder.role == "service"
        with pytest.raises(FilesInUseError, match=f"pid {process.pid}"):
            with FileServiceGuard(files).exclusive(Holder("command", "twin db restore")):
                pass
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    with FileServiceGuard(files).exclusive(Holder("command", "twin db restore")):
        pass
    # The dead process's records were swept by the next holder.
    for directory in {f.parent for f in files}:
        assert list((directory / RECORD_DIR).glob("*.json")) == []


def test_the_guard_files_are_private_and_beside_the_database(files):
    FileServiceGuard(files).register(Holder("service", "twin serve")).release()
    for path in files:
        gate = path.with_name(path.name + GATE_SUFFIX)
        assert gate.exists() and gate.stat().st_mode & 0o077 == 0
        assert not path.exists()  # the guard never creates the database itself
