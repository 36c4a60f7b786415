"""Reaching a PostgreSQL server: one checked connection, then the pool, with clear errors.

libpq's failures all arrive as one ``OperationalError`` with a message; ``connect()`` turns
them into the storage core's one-line errors (unreachable, no TLS, no connection slot, no such
database or role), naming the setting and the URL without its credentials.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from ..config import PostgresSettings
from ..errors import (ConnectionLimitError, DatabaseUnavailableError, StorageConfigError,
                      TLSUnavailableError)
from .connection import row_factory

log = logging.getLogger(__name__)

APPLICATION_NAME = "learner-twin"

_LIMIT_MESSAGES = ("too many clients", "too many connections", "remaining connection slots")


def _connect_kwargs(settings: PostgresSettings) -> dict[str, Any]:
    # libpq's connect_timeout is whole seconds, and values below 2 are raised to 2.
    kwargs = {"autocommit": True, "row_factory": row_factory,
              "connect_timeout": max(2, round(settings.connect_timeout)),
              "application_name": APPLICATION_NAME}
    if settings.schema is not None:  # a checked plain identifier: no quoting needed
        kwargs["options"] = f"-c search_path={settings.schema}"
    return kwargs


def _reason(exc: BaseException) -> str:
    """libpq's message, first line, without the "connection failed: ..." preamble."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for noise in ("connection failed: ",):
        text = text.removeprefix(noise)
    return text.replace("FATAL:  ", "")


def configure(conn: psycopg.Connection) -> None:
    """JSON columns come back as text, as from SQLite's TEXT columns, so code that parses
    them (``json.loads``) reads both backends alike."""
    for type_name in ("json", "jsonb"):
        conn.adapters.register_loader(type_name, TextLoader)


def connect(settings: PostgresSettings, **overrides: Any) -> psycopg.Connection:
    """One connection in autocommit mode, or a one-line error saying why not."""
    where = f"{settings.variable} ({settings.display_url})"
    try:
        return psycopg.connect(settings.url, **{**_connect_kwargs(settings), **overrides})
    except psycopg.Error as exc:
        reason = _reason(exc)
        lowered = reason.lower()
        if "does not support ssl" in lowered:
            raise TLSUnavailableError(
                f"{where}: sslmode={settings.sslmode} asks for TLS but the server does not "
                "offer it (enable ssl on the server, or lower sslmode)") from None
        if any(m in lowered for m in _LIMIT_MESSAGES):
            raise ConnectionLimitError(f"{where}: the server has no connection slot left ({reason}); "
                                       "see the pool arithmetic in the README (pools, and one per "
                                       "running job)") from None
        if "does not exist" in lowered or "authentication failed" in lowered:
            raise StorageConfigError(f"{where}: {reason}") from None
        raise DatabaseUnavailableError(f"{where}: cannot connect: {reason}") from None


class _LastPoolError(logging.Handler):
    """Keeps why the pool's last connection attempt failed (the pool only logs it)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.args and isinstance(record.args, tuple) and isinstance(record.args[-1], BaseException):
            self.reason = _reason(record.args[-1])


def open_pool(settings: PostgresSettings, name: str) -> ConnectionPool:
    """A pool holding ``settings.pool_size`` open connections, opened within the connect timeout.

    A first direct connection gives a precise error when the server cannot be used at all;
    then the pool must open all of its connections in time, or the start fails with a
    ``ConnectionLimitError`` saying how many the server allows and uses.
    """
    probe = connect(settings)
    try:
        limit, in_use = probe.execute(
            "SELECT current_setting('max_connections')::int, "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')").fetchone()
    finally:
        probe.close()
    pool = ConnectionPool(settings.url, min_size=settings.pool_size, max_size=settings.max_size,
                          kwargs=_connect_kwargs(settings), configure=configure, open=False,
                          name=f"twin-{name}",
                          timeout=settings.pool_timeout, reconnect_timeout=max(30.0, settings.connect_timeout))
    errors = _LastPoolError()
    pool_log = logging.getLogger("psycopg.pool")
    pool_log.addHandler(errors)
    # While opening, the pool's own warnings are what the one-line error below says.
    propagate, pool_log.propagate = pool_log.propagate, False
    try:
        pool.open(wait=True, timeout=settings.connect_timeout)  # closes the pool on timeout
    except PoolTimeout:
        stats = pool.get_stats()
        opened = min(settings.pool_size, stats.get("connections_num", 0) - stats.get("connections_errors", 0))
        reason = errors.reason or "the server, the database or the role has no connection slot left"
        raise ConnectionLimitError(
            f"{name}: could open only {opened} of the pool's {settings.pool_size} connections to "
            f"{settings.display_url} within {settings.connect_timeout:g}s ({reason}); the server "
            f"allows {limit} and {in_use} were in use: lower TWIN_DB_POOL_SIZE or raise "
            "max_connections (replicas x (workers + 1) x pools x pool size, and one per running "
            "job, must fit)") from None
    finally:
        pool_log.removeHandler(errors)
        pool_log.propagate = propagate
    log.info("%s: pool of %d-%d connections to %s (server max_connections %d, %d in use at start)",
             name, settings.pool_size, settings.max_size, settings.display_url, limit, in_use)
    return pool
