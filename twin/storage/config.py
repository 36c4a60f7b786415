"""Storage settings from prefixed environment variables, and the checks run before serving.

Each database reads ``<PREFIX>STORAGE_BACKEND``, ``<PREFIX>DATABASE_URL`` and the pool settings
below, falling back (except for the URL) to the ``TWIN_`` ones: the learner data database reads
``TWIN_*``, the vault ``TWIN_VAULT_*`` (so ``TWIN_VAULT_DATABASE_URL``), a component store its
own prefix (``RAG_``, ``LEDGER_``...). A component store's URL falls back to
``TWIN_DATABASE_URL`` (``store_postgres_settings``): its tables then live in a schema of its
own in that database, so no two stores (nor the learner data) share a table name or a
``schema_version``.

| variable (``TWIN_`` form)  | default     | meaning                                               |
|----------------------------|-------------|-------------------------------------------------------|
| ``TWIN_STORAGE_BACKEND``   | sqlcipher   | ``sqlcipher`` (alias ``sqlite``) or ``postgresql``    |
| ``TWIN_DATABASE_URL``      |             | ``postgresql://user@host:5432/dbname[?sslmode=...]``  |
| ``TWIN_DB_POOL_SIZE``      | 4           | connections each pool opens at start (and keeps)      |
| ``TWIN_DB_POOL_MAX_SIZE``  | = pool size | the pool may grow to this under load                  |
| ``TWIN_DB_POOL_TIMEOUT``   | 10          | seconds a request waits for a free pooled connection  |
| ``TWIN_DB_CONNECT_TIMEOUT``| 5           | seconds to reach the server (and to open the pool)    |

Pool arithmetic: every process opens one pool per database, and a replica (``twin serve
--workers W``) runs W workers plus one operations process, so a deployment needs
``replicas x (W + 1) x (pools per process) x TWIN_DB_POOL_MAX_SIZE`` server connections, plus
one outside the pools per running job (its session lock's own connection: at most four jobs at
once, each name held by one process of the deployment), plus room for operator commands
(``twin db ...``, backups) and monitoring, all within the server's ``max_connections`` minus
``superuser_reserved_connections`` (here 100 - 3). The default pool size 4 with the two
learner-twin pools (data, vault) gives 3 replicas x (2 + 1) x 2 x 4 = 72, and 76 with the jobs.
The pool opens its ``TWIN_DB_POOL_SIZE`` connections at start-up, so a server without that many
free slots is a start-up error (``ConnectionLimitError``), not a hang under the first load.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

from .errors import StorageConfigError

BACKEND_ALIASES = {"sqlcipher": "sqlcipher", "sqlite": "sqlcipher", "postgresql": "postgresql",
                   "postgres": "postgresql"}
DEFAULT_BACKEND = "sqlcipher"
DEFAULT_PREFIX = "TWIN_"
_URL_SCHEMES = ("postgresql", "postgres")
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TLS_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def storage_backend(environ: Mapping[str, str] | None = None, prefix: str = DEFAULT_PREFIX) -> str:
    """``sqlcipher`` or ``postgresql``, from ``<prefix>STORAGE_BACKEND`` or ``TWIN_STORAGE_BACKEND``."""
    environ = os.environ if environ is None else environ
    variable, raw = _lookup(environ, prefix, "STORAGE_BACKEND")
    if raw is None or not raw.strip():
        return DEFAULT_BACKEND
    backend = BACKEND_ALIASES.get(raw.strip().lower())
    if backend is None:
        raise StorageConfigError(f"{variable}={raw!r} is not a storage backend "
                                 f"(choose sqlcipher, sqlite or postgresql)")
    return backend


@dataclass(frozen=True)
class PostgresSettings:
    """How to reach one PostgreSQL database. ``url`` may hold a password: never print it,
    print ``display_url`` instead."""

    url: str = field(repr=False)
    variable: str = "TWIN_DATABASE_URL"   # where the URL came from, for messages
    pool_size: int = 4
    pool_max_size: int | None = None       # None: the pool size
    pool_timeout: float = 10.0
    connect_timeout: float = 5.0
    max_retries: int = 8
    retry_base_delay: float = 0.005
    retry_max_delay: float = 0.5
    schema: str | None = None              # every connection's search_path (None: the server's)

    def __post_init__(self) -> None:
        parts = parse_database_url(self.url, self.variable)
        object.__setattr__(self, "_parts", parts)
        if self.schema is not None and not _SCHEMA_NAME.fullmatch(self.schema):
            raise StorageConfigError(f"{self.variable}: {self.schema!r} is not a schema name "
                                     "(lower-case letters, digits, underscores)")
        if self.pool_size < 1 or (self.pool_max_size is not None and self.pool_max_size < self.pool_size):
            raise StorageConfigError(f"{self.variable}: pool size must be >= 1 and max size >= size")

    @property
    def max_size(self) -> int:
        return self.pool_max_size or self.pool_size

    @property
    def display_url(self) -> str:
        return display_url(self._parts)  # type: ignore[attr-defined]

    @property
    def database(self) -> str:
        return self._parts["dbname"]  # type: ignore[attr-defined]

    @property
    def sslmode(self) -> str | None:
        return self._parts.get("sslmode")  # type: ignore[attr-defined]


def postgres_settings(environ: Mapping[str, str] | None = None,
                      prefix: str = DEFAULT_PREFIX) -> PostgresSettings:
    """The settings of one database from ``<prefix>DATABASE_URL`` and the pool variables.

    The URL never falls back to another prefix's (the vault must not silently share the data
    database's URL); pool settings do fall back to the ``TWIN_`` ones.
    """
    environ = os.environ if environ is None else environ
    url_variable = f"{prefix}DATABASE_URL"
    url = environ.get(url_variable, "").strip()
    if not url:
        raise StorageConfigError(f"{url_variable} is not set (needed with the postgresql backend)")
    return PostgresSettings(
        url=url, variable=url_variable,
        pool_size=_number(environ, prefix, "DB_POOL_SIZE", int, 4),
        pool_max_size=_number(environ, prefix, "DB_POOL_MAX_SIZE", int, None),
        pool_timeout=_number(environ, prefix, "DB_POOL_TIMEOUT", float, 10.0),
        connect_timeout=_number(environ, prefix, "DB_CONNECT_TIMEOUT", float, 5.0),
    )


def store_postgres_settings(environ: Mapping[str, str] | None, prefix: str,
                            schema: str) -> PostgresSettings:
    """A component store's settings: ``<prefix>DATABASE_URL``, else ``TWIN_DATABASE_URL``; on
    either, the store's tables live in its own ``schema`` (created by its first migration)."""
    environ = os.environ if environ is None else environ
    own = f"{prefix}DATABASE_URL"
    if environ.get(own, "").strip():
        settings = postgres_settings(environ, prefix)
    elif environ.get(f"{DEFAULT_PREFIX}DATABASE_URL", "").strip():
        settings = postgres_settings({**environ, own: environ[f"{DEFAULT_PREFIX}DATABASE_URL"]}, prefix)
        settings = dataclasses.replace(settings, variable=f"{DEFAULT_PREFIX}DATABASE_URL")
    else:
        raise StorageConfigError(f"neither {own} nor {DEFAULT_PREFIX}DATABASE_URL is set "
                                 "(needed with the postgresql backend)")
    return dataclasses.replace(settings, schema=schema)


def parse_database_url(url: str, variable: str = "database URL") -> dict[str, str]:
    """The URL's connection parameters, or a one-line ``StorageConfigError`` that never
    repeats the URL (it may hold a password)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _URL_SCHEMES:
        raise StorageConfigError(f"{variable} is not a postgresql:// URL")
    from psycopg.conninfo import conninfo_to_dict  # imported here: SQLCipher never pays for it
    import psycopg

    try:
        parts = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except psycopg.ProgrammingError:
        raise StorageConfigError(f"{variable} is malformed (expected "
                                 "postgresql://user@host:port/dbname)") from None
    if not parts.get("dbname"):
        raise StorageConfigError(f"{variable} names no database (postgresql://host/DBNAME)")
    port = parts.get("port")
    if port is not None and not all(p.isdigit() and 0 < int(p) < 65536 for p in port.split(",")):
        raise StorageConfigError(f"{variable} has an invalid port")
    if parts.get("sslmode", "prefer") not in _TLS_MODES:
        raise StorageConfigError(f"{variable}: sslmode must be one of {', '.join(_TLS_MODES)}")
    return parts


def display_url(parts: Mapping[str, str]) -> str:
    """``postgresql://host:port/dbname``: no user, password or options."""
    host = parts.get("host") or "localhost"
    if host.startswith("/"):
        host = urllib.parse.quote(host, safe="")
    elif ":" in host and "," not in host:
        host = f"[{host}]"
    port = parts.get("port")
    return f"postgresql://{host}{':' + port if port else ''}/{parts.get('dbname', '')}"


def _lookup(environ: Mapping[str, str], prefix: str, name: str) -> tuple[str, str | None]:
    for candidate in dict.fromkeys((prefix, DEFAULT_PREFIX)):
        variable = f"{candidate}{name}"
        if environ.get(variable, "").strip():
            return variable, environ[variable]
    return f"{prefix}{name}", None


def _number(environ: Mapping[str, str], prefix: str, name: str, kind: type, default: object) -> object:
    variable, raw = _lookup(environ, prefix, name)
    if raw is None:
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise StorageConfigError(f"{variable}={raw!r} is not a number") from None
    if value <= 0:
        raise StorageConfigError(f"{variable} must be positive")
    return value
