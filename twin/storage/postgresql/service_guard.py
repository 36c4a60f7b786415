"""The live-service guard on PostgreSQL: replicas on any host register in the database with a
heartbeat, so that restore, rekey and migrate down refuse while any of them runs.

The file guard (``twin.storage.service_guard.FileServiceGuard``) relies on ``flock``, which a
replica on another host cannot see. Here every holder is a row of ``storage_service_holders``
(role, command, pid, host, start time) whose ``heartbeat_at`` its process refreshes every
``interval`` seconds from a thread, with the server's clock (hosts' clocks may disagree). A
holder is live while its heartbeat is younger than ``3 x interval``; a process that died
without releasing (SIGKILL, a lost host) is forgotten after that, and its row removed by the
next holder (at once when it ran on the same host as that holder and its pid is gone). Deciding and registering happen in one transaction under an advisory lock, so a
command and a starting replica can never both succeed.

Every step opens its own short connection (no pool): the service forks its workers after
registering, and a long-lived connection would be shared with them; and a guard this rarely
used should hold none of the server's connection slots.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from psycopg.rows import dict_row

from ..config import PostgresSettings
from ..dialect import lock_key
from ..errors import StorageError
from ..service_guard import FilesInUseError, Holder, Registration, ServiceGuard
from .pool import connect

T = TypeVar("T")

log = logging.getLogger(__name__)

GUARD_TABLE = "storage_service_holders"
GUARD_DDL = f"""CREATE TABLE IF NOT EXISTS {GUARD_TABLE} (
    holder_id     TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    command       TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
)"""
_GUARD_LOCK = "storage-service-guard"
DEFAULT_INTERVAL_S = 5.0
MISSED_BEATS = 3  # a holder is live while its last heartbeat is younger than this many intervals


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def install_guard_table(conn: Any) -> None:
    """Create the holders' table (as the owner, at set-up; the serving role writes rows)."""
    conn.execute(GUARD_DDL)


class _Heartbeat(Registration):
    """A holder's row, refreshed on a thread until ``release()``."""

    def __init__(self, guard: "PostgresServiceGuard", holder_id: str) -> None:
        self._guard, self._holder_id = guard, holder_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="service-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._guard.interval):
            try:
                beat = self._guard.run(lambda conn: conn.execute(
                    f"UPDATE {GUARD_TABLE} SET heartbeat_at = clock_timestamp() WHERE holder_id = %s",
                    (self._holder_id,)).rowcount)
                if beat == 0:
                    log.error("this process's registration in %s was removed (heartbeats missed "
                              "for %gs?): commands no longer see it running",
                              self._guard.name, self._guard.interval * MISSED_BEATS)
            except Exception as exc:  # the next beat tries again; missing three forgets us
                log.warning("heartbeat to %s failed (%s)", self._guard.name, type(exc).__name__)

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(self._guard.interval + 10)
        self._guard.run(lambda conn: conn.execute(f"DELETE FROM {GUARD_TABLE} WHERE holder_id = %s",
                                                  (self._holder_id,)))


class PostgresServiceGuard(ServiceGuard):
    """The guard for a deployment on PostgreSQL; holders register in the database ``settings``
    reach (the vault)."""

    def __init__(self, settings: PostgresSettings, *, name: str = "privacy_vault",
                 interval: float = DEFAULT_INTERVAL_S) -> None:
        self.settings = settings
        self.name = name
        self.interval = interval

    def run(self, fn: Callable[[Any], T], *, locked: bool = False) -> T:
        """``fn(conn)`` in one transaction on a connection of its own (after the guard's
        advisory lock if ``locked``); rows by name."""
        with connect(self.settings, row_factory=dict_row) as conn:
            with conn.transaction():
                if locked:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(_GUARD_LOCK),))
                return fn(conn)

    def _live_rows(self, conn: Any) -> list[Any]:
        """Live holders (services first); rows of dead ones are deleted."""
        present = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (GUARD_TABLE,))
        if not present.fetchone()["present"]:
            raise StorageError(f"{self.name} ({self.settings.display_url}) has no service registry: "
                               "run `twin db setup` as the owner")
        stale = f"clock_timestamp() - make_interval(secs => {self.interval * MISSED_BEATS:g})"
        conn.execute(f"DELETE FROM {GUARD_TABLE} WHERE heartbeat_at < {stale}")
        rows = conn.execute(f"SELECT holder_id, role, command, pid, host, started_at FROM {GUARD_TABLE} "
                            "ORDER BY role <> 'service', started_at").fetchall()
        # A holder on this host whose process is gone is dead now, not three beats from now.
        dead = [r["holder_id"] for r in rows if r["host"] == socket.gethostname() and not _alive(r["pid"])]
        if dead:
            conn.execute(f"DELETE FROM {GUARD_TABLE} WHERE holder_id = ANY(%s)", (dead,))
        return [r for r in rows if r["holder_id"] not in dead]

    @staticmethod
    def _holder(row: Any) -> Holder:
        return Holder(row["role"], row["command"], int(row["pid"]), row["host"], row["started_at"])

    def _enter(self, holder: Holder, *, refused_by: tuple[str, ...], refused: str) -> _Heartbeat:
        holder_id = f"{holder.host}:{holder.pid}:{secrets.token_hex(4)}"

        def take(conn: Any) -> None:
            others = [self._holder(r) for r in self._live_rows(conn) if r["role"] in refused_by]
            if others:
                raise FilesInUseError(f"{self.name} ({self.settings.display_url})", others,
                                      refused=refused)
            conn.execute(f"INSERT INTO {GUARD_TABLE} (holder_id, role, command, pid, host, started_at) "
                         "VALUES (%s, %s, %s, %s, %s, %s)", (holder_id, holder.role, holder.command,
                                                             holder.pid, holder.host, holder.started_at))
        self.run(take, locked=True)
        return _Heartbeat(self, holder_id)

    def register(self, holder: Holder) -> Registration:
        return self._enter(holder, refused_by=("command",),
                           refused="start the service once that command has finished")

    @contextmanager
    def exclusive(self, holder: Holder) -> Iterator[None]:
        heartbeat = self._enter(holder, refused_by=("service", "command"), refused="stop it first")
        try:
            yield
        finally:
            heartbeat.release()

    def holders(self) -> list[Holder]:
        return [self._holder(r) for r in self.run(self._live_rows, locked=True)]
