"""A named lock held across transactions: a session-level advisory lock on a connection of
its own, for work that runs in many transactions (a retention run, start-up work) and must
run once at a time across every replica and host.

The connection is opened for the lock and closed with it, outside the pool, so the work's
own statements keep every pooled connection (and a pool of one cannot deadlock on itself).
The server releases a session's advisory locks when the session ends, so a holder killed
with SIGKILL, or a host that vanished, frees the lock as soon as its connection is gone: no
lease to outwait. ``check()`` asks the session whether it still holds the lock (a server
restart or a dropped connection loses it), for long work to call between batches.
"""

from __future__ import annotations

import psycopg

from ..config import PostgresSettings
from ..dialect import lock_key
from ..errors import DatabaseUnavailableError
from .pool import connect


def _key(name: str) -> int:
    """The advisory lock key of the session lock ``name``."""
    return lock_key(f"session:{name}")


class LockLostError(DatabaseUnavailableError):
    """The session holding a lock ended (connection lost, server restarted)."""


class SessionLock:
    """A held lock (see the module docstring): ``check()``, ``release()``."""

    def __init__(self, conn: psycopg.Connection, name: str) -> None:
        self._conn: psycopg.Connection | None = conn
        self.name = name

    def check(self) -> None:
        """Raise ``LockLostError`` unless this session still holds the lock."""
        conn = self._conn
        if conn is None:
            raise LockLostError(f"lock {self.name!r} was released")
        try:
            row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                               "AND pid = pg_backend_pid() AND granted").fetchone()
        except psycopg.Error:
            row = None
        if not row or not row[0]:
            raise LockLostError(f"lock {self.name!r} was lost with its database session")

    def release(self) -> None:
        """Unlock, then end the session. Closing alone only asks the server to end it, and the
        server drops the session's locks a moment later: the next taker (a run started right
        after this one) could still find the lock held. A session already lost holds nothing."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_key(self.name),))
        except psycopg.Error:
            pass  # the session is gone, and its locks with it
        finally:
            conn.close()


def try_session_lock(settings: PostgresSettings, name: str) -> SessionLock | None:
    """The lock ``name`` if no other session holds it, else None (never waits)."""
    conn = connect(settings)
    try:
        taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (_key(name),)).fetchone()[0]
    except psycopg.Error as exc:
        conn.close()
        raise DatabaseUnavailableError(f"lock {name!r}: {exc.__class__.__name__}") from None
    except BaseException:
        conn.close()
        raise
    if not taken:
        conn.close()
        return None
    return SessionLock(conn, name)
