"""A full disk under a running service, on a real file system: a small tmpfs the test mounts.

Writes answer 507 (never 500) and leave nothing behind, /readyz answers 503, a DSR export
that cannot be recorded answers 503 and gives nothing out, and once space is freed the
service takes writes again with nothing lost and the audit chain intact.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from live_service import live_service

pytestmark = pytest.mark.slow

MARKER = "Quokka-On-A-Full-Disk-4471"
PROBLEMS = "https://learner-twin.dev/problems/"


@pytest.fixture
def small_filesystem(tmp_path):
    """A 16 MiB tmpfs mounted for this test (needs root, as CI has)."""
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}; needs root)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ": CI runs as root and must run this test")
        pytest.skip(reason)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _fill(directory: Path) -> Path:
    """Write until the file system refuses even one more byte."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    if f.write(b"\0" * size) == 0:
                        break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def _create(conn, user_id: str) -> tuple[int, dict]:
    status, body, _ = conn("POST", "/v1/profiles", {"user_id": user_id, "personal": {"bio": MARKER * 400}})
    return status, body


def test_a_full_disk_gives_507_and_503_loses_nothing_and_the_service_recovers(small_filesystem, tmp_path):
    data_dir = small_filesystem / "data"
    with live_service(tmp_path, "--workers", "1", "--threads", "4", "--no-retention", metrics=False,
                      env_extra={"TWIN_DATA_DIR": str(data_dir)}) as service:
        conn, admin = service.connect("service"), service.connect("admin")
        acknowledged = {}
        for i in range(5):
            status, body = _create(conn, f"before-{i}")
            assert status == 201
            acknowledged[f"before-{i}"] = body["profile_id"]

        filler = _fill(small_filesystem)
        refused, details = [], []

        def create_during(i: int) -> None:
            status, body = _create(conn, f"during-{i}")
            assert status in (201, 507), body
            if status == 201:
                acknowledged[f"during-{i}"] = body["profile_id"]
            else:
                refused.append(f"during-{i}")
                details.append(body["detail"])
                assert body["type"] == PROBLEMS + "insufficient-storage" and body["status"] == 507

        for i in range(3):  # the database itself cannot grow: SQLite's "disk is full" is a 507
            create_during(i)
        assert any("database is full" in detail for detail in details), details
        # Reads stage audit events until the journal's disk-space reserve is used up; from then
        # on every request is refused before it changes or discloses anything.
        statuses = [conn("GET", f"/v1/profiles/{acknowledged['before-0']}")[0] for _ in range(300)]
        assert set(statuses) <= {200, 503} and statuses[-1] == 503, statuses
        for i in range(3, 6):
            create_during(i)
        assert refused[-3:] == ["during-3", "during-4", "during-5"]

        status, ready, _ = conn("GET", "/readyz")
        assert status == 503 and ready["writable"] is False

        status, body, headers = admin("POST", "/v1/dsr/export", {"user_id": "before-1"},
                                      headers={"X-Request-ID": "export-on-full-disk"})
        assert status == 503 and headers["Content-Type"] == "application/problem+json"
        assert MARKER not in str(body)

        filler.unlink()  # space again
        deadline = time.monotonic() + 60
        while conn("GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert conn("GET", "/readyz")[0] == 200
        for user_id in refused:  # nothing of them was kept: no 409, a fresh create
            assert conn("POST", "/v1/profiles/lookup", {"user_id": user_id})[0] == 404
            status, body = _create(conn, user_id)
            assert status == 201
            acknowledged[user_id] = body["profile_id"]
        status, body, _ = admin("POST", "/v1/dsr/export", {"user_id": "before-1"},
                                headers={"X-Request-ID": "export-after-recovery"})
        assert status == 200 and MARKER in body["profiles"][0]["personal"]["bio"]
        conn.close()
        admin.close()
        assert service.stop() == 0
        assert " 500 " not in service.log() and "Traceback" not in service.log()

    runtime = service.runtime()
    try:
        assert runtime.audit.verify().ok
        for db in runtime.databases():
            assert db.query_one("PRAGMA integrity_check")[0] == "ok"
        for user_id, pid in acknowledged.items():
            assert runtime.profiles.subject_of(pid) == runtime.hasher.hash(user_id)
            (event,) = runtime.audit.query(subject_hash=runtime.hasher.hash(user_id), action="create")
            assert event.resource == f"profile:{pid}"
        exports = {e.request_id for e in runtime.audit.query(action="export")}
        assert exports == {"export-after-recovery"}  # the refused export disclosed nothing
    finally:
        runtime.close()
