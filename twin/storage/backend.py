"""The one interface every storage backend implements, and the capabilities some add.

Domain code holds a ``Backend`` and never asks which one it is:

    with db.transaction() as conn:          # nested: a SAVEPOINT
        conn.execute("INSERT INTO t (a) VALUES (?)", (1,))
    db.write(fn)                             # fn(conn) in a write transaction, re-run on conflict
    db.write_shared(fn)                      # the same, sharing one commit with concurrent callers
    db.execute_shared(sql, params)           # one statement, committed at return (one round trip)
    db.write(fn, lock="audit-chain")         # serialised with every other holder of that lock
    rows = db.query("SELECT a FROM t WHERE a = :a", {"a": 1}); rows[0]["a"] == rows[0][0]

Backends: ``twin.storage.engine.Database`` (SQLCipher files) and
``twin.storage.postgresql.PostgresDatabase``. Capabilities that only some backends have are
mixins, tested with ``isinstance``: ``FileBacked`` (one local file: online backups, PRAGMAs,
WAL checkpoints, VACUUM) and ``ServerBacked`` (a database server: identity, roles).
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .counting import Counts, StatementCounter
from .dialect import Dialect

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]


class Backend(abc.ABC):
    """One database: connections, transactions, retries, and the dialect of its SQL."""

    name: str
    dialect: Dialect
    counter: StatementCounter
    _group: Any = None  # GroupCommitter, created on first write_shared()

    # -- connections --------------------------------------------------------------------

    @abc.abstractmethod
    def connection(self) -> Any:
        """This thread's connection: ``execute``, ``executemany``, ``in_transaction``."""

    @abc.abstractmethod
    def close_all(self) -> None:
        """Close every connection; the object reopens lazily when used again."""

    # -- transactions and retries ------------------------------------------------------

    @abc.abstractmethod
    def retrying(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` again with backoff while it fails in a way worth retrying."""

    @abc.abstractmethod
    def transaction(self, *, immediate: bool = True,
                    lock: str | None = None) -> AbstractContextManager[Any]:
        """Commit on success, roll back on any exception; nested use is a SAVEPOINT.

        ``immediate`` is a writer (SQLite: BEGIN IMMEDIATE; PostgreSQL: SERIALIZABLE);
        ``immediate=False`` a reader wanting one consistent snapshot. ``lock`` takes
        ``lock(name)`` first thing in the transaction (on a server, together with its first
        statement, which runs only once the lock is held).
        """

    @abc.abstractmethod
    def snapshot(self) -> AbstractContextManager[Any]:
        """A connection of its own (not this thread's) reading one consistent snapshot until
        the block ends: for a long read, such as a streamed export, that must neither hold
        this thread's transaction nor see later commits half-way."""

    @abc.abstractmethod
    def lock(self, name: str, *, wait: bool = True) -> bool:
        """Hold the exclusive lock ``name`` until this thread's transaction ends.

        Serialises every transaction that takes the same name, across processes and hosts.
        ``wait=False`` returns False at once instead of waiting when another holds it.
        """

    def write(self, fn: Callable[[Any], T], *, lock: str | None = None) -> T:
        """Run ``fn(conn)`` in a write transaction, re-running it whole on busy or conflict."""
        def attempt() -> T:
            with self.transaction(lock=lock) as conn:
                return fn(conn)
        return self.retrying(attempt)

    def write_shared(self, fn: Callable[[Any], T], *, lock: str | None = None,
                     shared_on_server: bool = True) -> T:
        """Like ``write(fn)``, but concurrent callers share one commit (group commit).

        For small, frequent writes (audit events, key rows, a request's rows): each ``fn`` runs
        in its own savepoint, so one that raises rolls back alone. Inside an open transaction
        of this thread, ``fn`` simply joins it. ``lock``: ``fn`` holds that named lock; a
        file's write lock already holds it, a server runs ``write(fn, lock=lock)`` on its own
        (a locked transaction's snapshots start after its lock, which a group cannot share).
        ``shared_on_server=False``: a server runs ``write(fn)`` on its own too. What a group
        saves on a file is each page its writes share, encrypted and authenticated once per
        commit (SQLCipher), and the commit; on a server it would cost a round trip for each
        savepoint, and the server shares its WAL flushes itself.
        """
        if self.connection().in_transaction:
            return self.write(fn, lock=lock)
        if self._group is None:
            from .group_commit import GroupCommitter
            with self._lock:
                if self._group is None:
                    self._group = GroupCommitter(self)
        return self._group.submit(fn)

    def execute_shared(self, sql: str, params: Params = ()) -> Any:
        """One statement, committed when this returns (or joining this thread's open
        transaction). Here through ``write_shared``: concurrent callers share a commit, as an
        embedded file pays one WAL sync per commit. A server overrides it with a statement in
        autocommit: one round trip, the server sharing its WAL flushes itself."""
        return self.write_shared(lambda conn: conn.execute(sql, params))

    # -- convenience --------------------------------------------------------------------

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Any:
        """Run one statement on this thread's connection (autocommit unless in a transaction)."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        """Run one statement once per parameter row."""

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        """All rows of a query."""
        return self.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Params = ()) -> Any | None:
        """The first row of a query, or None."""
        return self.execute(sql, params).fetchone()

    @abc.abstractmethod
    def table_names(self) -> list[str]:
        """User tables, sorted (no internals of the engine or of the storage core)."""

    # -- statement counting ------------------------------------------------------------

    def enable_statement_counting(self) -> None:
        self.counter.enable()

    def statement_counts(self) -> Counts:
        """Statements and transactions sent to the driver so far, by every thread."""
        return self.counter.snapshot()


class FileBacked(abc.ABC):
    """A backend whose database is one local file (SQLite-only features live behind this)."""

    path: Any

    @abc.abstractmethod
    def connect_new(self) -> Any:
        """A fresh connection that the backend does not track (caller closes it)."""

    @abc.abstractmethod
    def open_file(self, path: Any, *, read_only: bool = False) -> Any:
        """A connection to another file under this database's key (backup copies)."""

    @contextmanager
    def snapshot(self) -> Iterator[Any]:
        """``Backend.snapshot``: a fresh connection in a deferred transaction (its first read
        fixes the snapshot; WAL mode lets writers go on meanwhile)."""
        conn = self.connect_new()
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()


class ServerBacked(abc.ABC):
    """A backend on a database server, which several processes and hosts share."""

    @property
    @abc.abstractmethod
    def display_url(self) -> str:
        """The database's URL without credentials, for logs and errors."""

    @abc.abstractmethod
    def session_lock(self, name: str) -> Any | None:
        """The lock ``name`` held across transactions until ``release()`` (``check()`` says
        whether it is still held), or None at once when another process holds it; the server
        frees it when the holder's process dies (``postgresql.session_lock``)."""
