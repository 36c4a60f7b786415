"""One Redis connection pool with automatic fallback: the cache may vanish at any moment.

Every call goes through ``ResilientRedis.call(fn, fallback)``: when Redis is reachable it runs
``fn(client)``; when Redis is unreachable or fails mid-operation it returns ``fallback`` (the
caller then answers from the database), logs one warning per outage (not one per call), and
stops trying until a backoff delay has passed (doubling from ``backoff_base`` to
``backoff_max`` while it stays down), so an outage costs no connection timeout per request.
The first success after an outage logs that the cache is back.

What goes in is the caller's business, with one rule for every caller: never personal data,
tokens or key material (cache keys are hashes and generation numbers; values are results
that are already free of personal data). URLs are logged without their credentials.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
from typing import Any, Callable, Mapping, TypeVar

import redis

log = logging.getLogger(__name__)

T = TypeVar("T")


def redis_display_url(url: str) -> str:
    """``redis://host:port/db``: no user or password."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"


class ResilientRedis:
    """A redis-py client over one connection pool, with fallback and backoff (module doc)."""

    def __init__(self, url: str, *, name: str, socket_timeout: float = 0.25,
                 backoff_base: float = 0.5, backoff_max: float = 30.0, max_connections: int = 16,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.display_url = redis_display_url(url)
        self._pool = redis.ConnectionPool.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            max_connections=max_connections, health_check_interval=0)
        self.client = redis.Redis(connection_pool=self._pool)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0            # consecutive failed attempts (0: up)
        self._retry_at = 0.0          # while down: no attempt before this
        self.outages = 0              # outages seen (one warning each)

    def __repr__(self) -> str:
        return f"ResilientRedis({self.name!r}, {self.display_url})"

    @classmethod
    def from_env(cls, variable: str, environ: Mapping[str, str] | None = None, *, name: str,
                 **options: Any) -> "ResilientRedis | None":
        """A client on the URL in ``variable`` (``os.environ`` by default); None when it is unset
        or blank, so the caller runs without its cache."""
        url = (os.environ if environ is None else environ).get(variable, "").strip()
        return cls(url, name=name, **options) if url else None

    @property
    def available(self) -> bool:
        """Whether the last attempt succeeded (or none failed yet)."""
        return self._failures == 0

    def call(self, fn: Callable[[redis.Redis], T], fallback: T) -> T:
        """``fn(client)``, or ``fallback`` when Redis is down or fails (see the module)."""
        with self._lock:
            if self._failures and self._clock() < self._retry_at:
                return fallback
        try:
            result = fn(self.client)
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return fallback
        self._succeeded()
        return result

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._failures += 1
            delay = min(self._backoff_max, self._backoff_base * 2 ** (self._failures - 1))
            self._retry_at = self._clock() + delay
            first = self._failures == 1
            if first:
                self.outages += 1
        if first:
            log.warning("%s cache at %s unavailable (%s); answering from the database, retrying "
                        "with backoff", self.name, self.display_url, type(exc).__name__)
        self._pool.disconnect()  # sockets of a dead server are useless; reconnect fresh

    def _succeeded(self) -> None:
        with self._lock:
            was_down, self._failures = self._failures > 0, 0
        if was_down:
            log.info("%s cache at %s reachable again", self.name, self.display_url)

    def close(self) -> None:
        self._pool.disconnect()


def flag(value: Any) -> bool:
    """An on/off environment value (``true``/``1``/``yes``/``on``)."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")
