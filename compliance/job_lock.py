"""The lock a job takes in the privacy vault, so that it never runs twice at once, even across
processes, replicas or hosts sharing the vault. A crashed holder never keeps it for long.

One lock, two ways to hold it, chosen by what the vault's backend offers:
- on a database server (PostgreSQL), a session-level advisory lock (``session_lock``): held for
  as long as the holder's own database session lives, freed by the server the moment the
  holder's process dies or its host vanishes;
- on SQLCipher files, a lease in ``job_locks``: a crashed holder's lease expires by itself,
  and long work extends it between batches (``refresh``).

``acquire(wait=...)`` either refuses at once (a second retention run answers 409) or waits for
the holder to finish (start-up work: the second replica to start waits, then finds nothing
left to do).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from datetime import datetime, timedelta
from typing import Any, Callable

from twin.storage import Database, ServerBacked
from twin.storage.timestamps import to_db

from .errors import ComplianceError

POLL_SECONDS = 0.1


class JobAlreadyRunningError(ComplianceError):
    """Another process holds the job's lock."""


def holder_id() -> str:
    """This process's holder id for a lock or a lease: host and pid for the operator, and a
    random part, so a restarted process (same pid) never owns what its predecessor held."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class JobLock:
    def __init__(self, vault: Database, name: str, clock: Callable[[], datetime],
                 lease: timedelta = timedelta(minutes=10)) -> None:
        self.vault, self.name, self.clock, self.lease = vault, name, clock, lease
        self.holder = holder_id()
        self._session: Any = None  # the server's lock while held (ServerBacked vaults)
        self._extended: datetime | None = None  # when this holder last wrote its lease

    def acquire(self, *, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds for its holder to release it; raises
        ``JobAlreadyRunningError`` when it is still held then."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self._take()
                return
            except JobAlreadyRunningError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(POLL_SECONDS)

    def _take(self) -> None:
        if isinstance(self.vault, ServerBacked):
            self._session = self.vault.session_lock(f"job:{self.name}")
            if self._session is None:
                raise JobAlreadyRunningError(f"job {self.name!r} is already running "
                                             "(another process holds its lock)")
            return

        def take(conn: Any) -> None:
            now = self.clock()
            row = conn.execute("SELECT holder, expires_at FROM job_locks WHERE name = ?", (self.name,)).fetchone()
            if row and row["holder"] != self.holder and row["expires_at"] > to_db(now):
                raise JobAlreadyRunningError(f"job {self.name!r} is already running (lease until {row['expires_at']})")
            conn.execute("INSERT INTO job_locks (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                         "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                         (self.name, self.holder, to_db(now), to_db(now + self.lease)))
            self._extended = now
        self.vault.write(take)

    def refresh(self) -> None:
        """Call between batches of long work: extends a lease; on a server, makes sure the
        lock is still held (raises if its session was lost, so the work stops).

        A lease is written again only once a tenth of it has passed since the last write:
        each batch still starts with nine tenths of the lease left (so it cannot have been
        taken over), and a purge of a million rows does not commit to the vault between each
        of its batches (what the retention purge's throughput lost to it, issue 14)."""
        if self._session is not None:
            self._session.check()
            return
        now = self.clock()
        if self._extended is not None and timedelta(0) <= now - self._extended < self.lease / 10:
            return
        self.vault.write(lambda conn: conn.execute(
            "UPDATE job_locks SET expires_at = ? WHERE name = ? AND holder = ?",
            (to_db(now + self.lease), self.name, self.holder)))
        self._extended = now

    def release(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            session.release()
            return
        self.vault.write(lambda conn: conn.execute(
            "DELETE FROM job_locks WHERE name = ? AND holder = ?", (self.name, self.holder)))

    def __enter__(self) -> "JobLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
