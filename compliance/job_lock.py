"""A lease-based lock in the privacy vault, so a job never runs twice at once, even across
processes or machines sharing the files. A crashed holder's lease expires by itself."""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta
from typing import Any, Callable

from twin.storage import Database
from twin.storage.timestamps import to_db

from .errors import ComplianceError


class JobAlreadyRunningError(ComplianceError):
    """Another process holds the job's lease."""


class JobLock:
    def __init__(self, vault: Database, name: str, clock: Callable[[], datetime],
                 lease: timedelta = timedelta(minutes=10)) -> None:
        self.vault, self.name, self.clock, self.lease = vault, name, clock, lease
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def acquire(self) -> None:
        def take(conn: Any) -> None:
            now = self.clock()
            row = conn.execute("SELECT holder, expires_at FROM job_locks WHERE name = ?", (self.name,)).fetchone()
            if row and row["holder"] != self.holder and row["expires_at"] > to_db(now):
                raise JobAlreadyRunningError(f"job {self.name!r} is already running (lease until {row['expires_at']})")
            conn.execute("INSERT INTO job_locks (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                         "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                         (self.name, self.holder, to_db(now), to_db(now + self.lease)))
        self.vault.write(take)

    def refresh(self) -> None:
        """Extend the lease (call between batches of long work)."""
        self.vault.write(lambda conn: conn.execute(
            "UPDATE job_locks SET expires_at = ? WHERE name = ? AND holder = ?",
            (to_db(self.clock() + self.lease), self.name, self.holder)))

    def release(self) -> None:
        self.vault.write(lambda conn: conn.execute(
            "DELETE FROM job_locks WHERE name = ? AND holder = ?", (self.name, self.holder)))

    def __enter__(self) -> "JobLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
