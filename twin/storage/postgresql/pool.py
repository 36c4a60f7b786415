"""Reaching a PostgreSQL server: one checked connection, then the pool, with clear errors.

libpq's failures all arrive as one ``OperationalError`` with a message; ``connect()`` turns
them into the storage core's one-line errors (unreachable, no TLS, no connection slot, no such
database or role), naming the setting and the URL without its credentials.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
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
    return {"autocommit": True, "row_factory": row_factory,
            "connect_timeout": max(2, round(settings.connect_timeout)),
            "application_name": APPLICATION_NAME}


def _reason(exc: BaseException) -> str:
    """libpq's message, first line, without the "connection failed: ..." preamble."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for noise in ("connection failed: ",):
        text = text.removeprefix(noise)
    return text.replace("FATAL:  ", "")


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
                                       "see the pool arithmetic in the README") from None
        if "does not exist" in lowered or "authentication failed" in lowered:
            raise StorageConfigError(f"{where}: {reason}") from None
        raise DatabaseUnavailableError(f"{where}: cannot connect: {reason}") from None


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
                          kwargs=_connect_kwargs(settings), open=False, name=f"twin-{name}",
                          timeout=settings.pool_timeout, reconnect_timeout=max(30.0, settings.connect_timeout))
    try:
        pool.open(wait=True, timeout=settings.connect_timeout)
    except PoolTimeout:
        opened = pool.get_stats().get("pool_size", 0)
        pool.close(timeout=1)
        reason = "the server, the database or the role has no connection slot left"
        try:
            connect(settings).close()
        except (ConnectionLimitError, DatabaseUnavailableError) as exc:
            reason = str(exc).split(": ", 1)[-1]
        raise ConnectionLimitError(
            f"{name}: could open only {opened} of the pool's {settings.pool_size} connections to "
            f"{settings.display_url} within {settings.connect_timeout:g}s ({reason}); the server "
            f"allows {limit} and {in_use} were in use: lower TWIN_DB_POOL_SIZE or raise "
            "max_connections (replicas x workers x pools x pool size must fit)") from None
    log.info("%s: pool of %d-%d connections to %s (server max_connections %d, %d in use at start)",
             name, settings.pool_size, settings.max_size, settings.display_url, limit, in_use)
    return pool
