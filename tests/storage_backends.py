"""The servers tests run against, and fresh databases on either backend.

PostgreSQL (``TWIN_TEST_POSTGRESQL_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``,
an account allowed to create databases and roles) and Redis (``TWIN_TEST_REDIS_URL``, default
127.0.0.1:6379) are checked once per session. Without them the tests that need them skip with
the reason; with ``CI=true`` a missing one fails the run instead (see ``conftest.py``).

Each test database is created with a unique random name and dropped after the test with
``DROP DATABASE ... WITH (FORCE)``; nothing else on the server is ever dropped.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

ADMIN_URL = os.environ.get("TWIN_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TWIN_TEST_REDIS_URL", "redis://127.0.0.1:6379")
TEST_PREFIX = "twin_test_"

_status: dict[str, str | None] = {}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgresql_problem() -> str | None:
    """None when the test server answers, else why not (checked once)."""
    if "postgresql" not in _status:
        try:
            import psycopg

            with psycopg.connect(ADMIN_URL, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
            _status["postgresql"] = None
        except Exception as exc:  # any failure means: no usable server
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _status["postgresql"] = f"PostgreSQL not reachable at {_display(ADMIN_URL)}: {reason}"
    return _status["postgresql"]


def redis_problem() -> str | None:
    """None when Redis answers PING, else why not (checked once)."""
    if "redis" not in _status:
        parts = urllib.parse.urlsplit(REDIS_URL)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3) as s:
                s.sendall(b"PING\r\n")
                answer = s.recv(64)
            _status["redis"] = None if answer.startswith(b"+PONG") else f"Redis answered {answer[:20]!r}"
        except OSError as exc:
            _status["redis"] = f"Redis not reachable at {parts.hostname}:{parts.port or 6379}: {exc}"
    return _status["redis"]


def _display(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}"


def database_url(name: str, *, user: str | None = None, host: str | None = None, **query: str) -> str:
    """The admin URL pointed at database ``name`` (optionally as another user or host name)."""
    parts = urllib.parse.urlsplit(ADMIN_URL)
    netloc = parts.netloc
    if user is not None or host is not None:
        netloc = f"{user or parts.username}@{host or parts.hostname}:{parts.port or 5432}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, f"/{name}", urllib.parse.urlencode(query), ""))


@dataclass
class PostgresServer:
    """Creates databases and roles with unique names, and drops exactly those."""

    databases: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)

    def create_database(self, *, icu_locale: str | None = None) -> str:
        """A new database in the server's own collation (byte order here: C.UTF-8), or in an
        ICU locale's linguistic one (``icu_locale``, e.g. ``en-US``: 'sk_...' < 'XXXX')."""
        name = f"{TEST_PREFIX}{secrets.token_hex(6)}"
        locale = "" if icu_locale is None else \
            f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"{locale}')
        self.databases.append(name)
        return name

    def create_role(self, *, connection_limit: int | None = None) -> str:
        name = f"{TEST_PREFIX}role_{secrets.token_hex(4)}"
        limit = f" CONNECTION LIMIT {int(connection_limit)}" if connection_limit is not None else ""
        with self.admin() as conn:
            conn.execute(f'CREATE ROLE "{name}" LOGIN{limit}')
        self.roles.append(name)
        return name

    def drop_all(self) -> None:
        with self.admin() as conn:
            for name in reversed(self.databases):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for name in reversed(self.roles):
                conn.execute(f'DROP ROLE IF EXISTS "{name}"')
        self.databases.clear()
        self.roles.clear()


def serving_role_environment(env: dict[str, str], server: "PostgresServer") -> dict[str, str]:
    """``env`` with both URLs for a new login role granted only SELECT/INSERT/UPDATE/DELETE on
    the owner's tables (`twin db setup` has run as the owner); checked to have no DDL right."""
    from twin.storage import PostgresSettings, open_postgresql
    from twin.storage.postgresql import check_serving_role, grant_serving_role

    role = server.create_role()
    serving = dict(env)
    for variable in ("TWIN_DATABASE_URL", "TWIN_VAULT_DATABASE_URL"):
        owner = open_postgresql(PostgresSettings(env[variable], pool_size=1))
        try:
            with owner.transaction() as conn:  # PUBLIC may create in "public" on PostgreSQL < 15
                conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            grant_serving_role(owner, role)
        finally:
            owner.close_all()
        serving[variable] = env[variable].replace("postgres@", f"{role}@")
        served = open_postgresql(PostgresSettings(serving[variable], pool_size=1))
        try:
            check_serving_role(served)  # raises if the role could change the schema
        finally:
            served.close_all()
    return serving


class DatabaseMaker:
    """``new(name)``: a fresh database on this test's backend; ``again(db)``: a second,
    independent object on the same database (another process would see it like this)."""

    def __init__(self, backend: str, tmp_path: Path, key: bytes, server: PostgresServer | None) -> None:
        self.backend = backend
        self._tmp_path = tmp_path
        self._key = key
        self._server = server
        self._opened: list[Any] = []

    def new(self, name: str = "testdb", **settings: Any) -> Any:
        if self.backend == "sqlcipher":
            from twin.storage import Database, EngineSettings

            db = Database(self._tmp_path / f"{name}-{secrets.token_hex(3)}.db", self._key, name=name,
                          **({"settings": EngineSettings(**settings)} if settings else {}))
        else:
            from twin.storage import PostgresSettings, open_postgresql

            assert self._server is not None
            url = database_url(self._server.create_database())
            db = open_postgresql(PostgresSettings(url, pool_size=2, pool_max_size=8, **settings), name=name)
        self._opened.append(db)
        return db

    def again(self, db: Any) -> Any:
        if self.backend == "sqlcipher":
            from twin.storage import Database

            other = Database(db.path, self._key, name=db.name, settings=db.settings)
        else:
            from twin.storage import open_postgresql

            other = open_postgresql(db.settings, name=db.name)
        self._opened.append(other)
        return other

    def close_all(self) -> None:
        for db in reversed(self._opened):
            db.close_all()


# The component stores a learner-twin test does not put on PostgreSQL (their PostgreSQL forms
# are issue 13's): SQLCipher files under the test's data directory.
COMPONENT_PREFIXES = ("AIVILLAGE_", "RAG_", "LEDGER_", "MODEL_REGISTRY_", "SETTINGS_")


class LearnerPair:
    """A learner data database and a vault on the test server, set up as `twin db setup` sets
    them up (migrated, identity markers), shared by the tests of one module: ``reset()``
    empties every table between tests, which costs far less
    than creating and migrating two databases per test."""

    def __init__(self, *, icu_locale: str | None = None) -> None:
        self.server = PostgresServer()  # its own list: a test's pg_server.drop_all() spares it
        self.data = self.server.create_database(icu_locale=icu_locale)
        self.vault = self.server.create_database(icu_locale=icu_locale)
        self._set_up = False

    def environ(self, **extra: str) -> dict[str, str]:
        environ = {"TWIN_STORAGE_BACKEND": "postgresql",
                   "TWIN_DATABASE_URL": database_url(self.data),
                   "TWIN_VAULT_DATABASE_URL": database_url(self.vault),
                   "TWIN_DB_POOL_SIZE": "2", "TWIN_DB_POOL_MAX_SIZE": "8"}
        environ.update({f"{prefix}STORAGE_BACKEND": "sqlcipher" for prefix in COMPONENT_PREFIXES})
        environ.update(extra)
        return environ

    def set_up(self, config: Any, keyring: Any) -> None:
        """Migrate and mark both databases (once), as the owner."""
        if self._set_up:
            return
        from twin.catalog import mark_learner_databases, open_learner_databases

        data, vault = open_learner_databases(config, keyring.database_keys, migrate=True)
        try:
            mark_learner_databases(data, vault)
        finally:
            data.close_all()
            vault.close_all()
        self._set_up = True

    def record_keyring(self, config: Any, keyring: Any) -> None:
        """As `twin db setup` does: this test's keyring is the deployment's."""
        from compliance import keyring_record
        from twin.catalog import open_database

        vault = open_database("privacy_vault", config, keyring.database_keys, migrate=False)
        try:
            keyring_record.record(vault, keyring)
        finally:
            vault.close_all()

    def reset(self) -> None:
        """Every row deleted, schema and markers kept: one round trip per database (DELETE of a
        few rows is much cheaper than TRUNCATE's new files; foreign keys are not checked while
        emptying everything)."""
        import psycopg

        for name in (self.data, self.vault):
            with psycopg.connect(database_url(name), autocommit=True, connect_timeout=5) as conn:
                tables = [r[0] for r in conn.execute(
                    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename NOT IN ('schema_version', 'storage_identity')")]
                deletes = "".join(f"DELETE FROM {table};" for table in tables)
                # Identities restart too, so a test sees the numbering of a fresh database.
                conn.execute(f"BEGIN; SET LOCAL session_replication_role = replica; {deletes} "
                             "SELECT setval(c.oid, 1, false) FROM pg_class c "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE c.relkind = 'S' AND n.nspname = current_schema(); COMMIT;")

    def drop(self) -> None:
        self.server.drop_all()


def learner_config(root: Path, keyring: Any, pair: "LearnerPair | None" = None) -> Any:
    """A test configuration under ``root``: SQLCipher files in root/data, or (``pair``) the
    PostgreSQL pair set up, emptied and holding this keyring's record, the component stores
    staying SQLCipher files."""
    from twin.config import Config

    config = Config(env="test", data_dir=root / "data", keyring_path=root / "keys" / "keyring.json",
                    model_dir=root / "models", environ=pair.environ() if pair is not None else {})
    if pair is not None:
        pair.set_up(config, keyring)
        pair.reset()
        pair.record_keyring(config, keyring)
    return config


class RawPostgresConnection:
    """What an attacker with the database's credentials uses: a connection of its own, in
    autocommit, our placeholders, rows as mappings, and no triggers (``session_replication_role
    = replica`` skips them for this session only, so the shared database keeps its own)."""

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        self._conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=5)
        self._conn.execute("SET session_replication_role = replica")

    def execute(self, sql: str, params: Any = ()) -> Any:
        from twin.storage.dialect import to_pyformat

        return self._conn.execute(to_pyformat(sql) if params else sql, params or None)

    def commit(self) -> None:
        pass  # autocommit

    def close(self) -> None:
        self._conn.close()


_HOLDING_LOCK = ("FROM pg_locks WHERE locktype = 'advisory' "
                 "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                 "AND classid::bigint = ? AND objid::bigint = ? AND objsubid = 1 AND granted")


def _lock_parts(lock_name: str) -> tuple[int, int]:
    """The session lock ``lock_name``'s key as pg_locks splits it (classid, objid)."""
    from twin.storage.dialect import lock_key

    key = lock_key(f"session:{lock_name}") & 0xFFFF_FFFF_FFFF_FFFF
    return key >> 32, key & 0xFFFF_FFFF


def end_lock_session(url: str, lock_name: str) -> int:
    """End the database session holding the session lock ``lock_name`` (``session_lock``), as
    a server restart or a network cut would, and no other: the transaction locks that audit
    appends and guards take on pool connections meanwhile are advisory locks too, and ending
    their sessions would leave dead connections in the pool. Waits until the session is gone;
    returns how many ended."""
    admin = RawPostgresConnection(url)
    try:
        rows = admin.execute(f"SELECT pg_terminate_backend(pid, 10000) AS ended {_HOLDING_LOCK}",
                             _lock_parts(lock_name)).fetchall()
    finally:
        admin.close()
    return sum(1 for row in rows if row["ended"])


def lock_holders(url: str, lock_name: str) -> int:
    """How many sessions hold the session lock ``lock_name`` (0 or 1)."""
    admin = RawPostgresConnection(url)
    try:
        return admin.execute(f"SELECT count(*) AS held {_HOLDING_LOCK}", _lock_parts(lock_name)).fetchone()["held"]
    finally:
        admin.close()


def wait_until_lock_free(url: str, lock_name: str, timeout: float = 60) -> None:
    """Wait until no session holds the session lock ``lock_name``: a killed client's backend
    ends (and frees its locks) only once the server notices, a moment after the kill."""
    deadline = time.monotonic() + timeout
    while lock_holders(url, lock_name):
        assert time.monotonic() < deadline, f"the lock {lock_name} was never freed"
        time.sleep(0.05)


def wait_until_no_other_session(url: str, timeout: float = 60) -> None:
    """Wait until nothing but this check is connected to ``url``'s database: a killed client's
    sessions end (freeing their locks, finishing or undoing their last statement) only once
    the server notices, a moment after the kill."""
    admin = RawPostgresConnection(url)
    try:
        deadline = time.monotonic() + timeout
        while admin.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchone()["n"]:
            assert time.monotonic() < deadline, "another session stayed connected"
            time.sleep(0.05)
    finally:
        admin.close()


def raw_connection(db: Any, key: bytes, *, without_triggers: tuple[str, ...] = ()) -> Any:
    """A connection to ``db`` outside the storage core (the test plays someone who edits the
    database behind the service's back); on SQLite ``without_triggers`` are dropped first."""
    from twin.storage import FileBacked, open_keyed

    if isinstance(db, FileBacked):
        conn = open_keyed(db.path, key)
        for trigger in without_triggers:
            conn.execute(f"DROP TRIGGER {trigger}")
        return conn
    return RawPostgresConnection(location(db))


def same_database(db: Any, key: bytes) -> Any:
    """A second, independent handle on ``db`` (what another process or replica holds)."""
    from twin.storage import Database, FileBacked, open_postgresql

    if isinstance(db, FileBacked):
        return Database(db.path, key, name=db.name, settings=db.settings)
    return open_postgresql(db.settings, name=db.name)


def location(db: Any) -> str:
    """Where another process finds ``db``: its file's path or its URL (see ``open_location``)."""
    from twin.storage import FileBacked

    if isinstance(db, FileBacked):
        return str(db.path)
    if db.settings.schema is None:
        return db.settings.url
    # A component store's schema travels in the URL as libpq's options parameter.
    separator = "&" if "?" in db.settings.url else "?"
    return db.settings.url + separator + urllib.parse.urlencode({"options": f"-c search_path={db.settings.schema}"},
                                                           quote_via=urllib.parse.quote)


def open_location(where: str, key: bytes, name: str) -> Any:
    """The other side of ``location``: a database from a path or a postgresql:// URL."""
    from twin.storage import Database, PostgresSettings, open_postgresql

    if where.startswith(("postgresql://", "postgres://")):
        return open_postgresql(PostgresSettings(where, pool_size=1), name=name)
    return Database(where, key, name=name)


def column_types(db: Any, table: str) -> dict[str, str]:
    """Column name -> declared type (upper case), as the live schema of either backend says."""
    from twin.storage import FileBacked

    if isinstance(db, FileBacked):
        return {r["name"]: r["type"].upper() for r in db.query(f'PRAGMA table_info("{table}")')}
    return {r["name"]: r["type"].upper() for r in db.query(
        "SELECT column_name AS name, data_type AS type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position", (table,))}


def concurrently(*calls: Callable[[], Any], timeout: float = 60) -> list[Any]:
    """Run each call on its own thread at once; their results in order, or the first error."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            results[n] = calls[n]()
        except BaseException as exc:  # re-raised on the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    return results


@contextmanager
def held_elsewhere(make_context: Callable[[], Any]) -> Iterator[None]:
    """Enter ``make_context()`` on another thread and hold it while the with-block runs
    (a transaction holding a lock or a pooled connection, as another replica would)."""
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with make_context():
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10), "the other thread never entered"
        yield
    finally:
        release.set()
        holder.join()
