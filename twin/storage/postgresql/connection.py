"""A thread's PostgreSQL connection, shaped like a sqlite3 connection for our code.

``PgConnection`` is what ``PostgresDatabase.connection()`` and ``transaction()`` hand out:
``execute(sql, params)`` with our placeholders, results already fetched (so a pooled
connection goes back to the pool at once), rows readable by column name and by index, and
the storage core's error classes instead of the driver's. Outside a transaction each
statement borrows a pooled connection in autocommit mode; inside one, the transaction's
connection is held until COMMIT or ROLLBACK. BEGIN is sent with the transaction's first
statement, in one pipeline (one round trip for both), and not at all for a transaction that
runs no statement. ``execute_pipelined`` sends several statements in one pipeline, and
``execute_at_commit`` keeps a statement back to send with the next one, or with COMMIT
(``twin.storage.pipeline``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg.pq import TransactionStatus

from ..dialect import POSTGRESQL, lock_key, to_pyformat
from ..pipeline import Fetched
from ..errors import (ConnectionLimitError, ConstraintError, DatabaseUnavailableError,
                      StatementError, StorageError, StorageFullError, TransactionConflict)

_CONSTRAINT_KINDS = {"23505": "UNIQUE", "23503": "FOREIGN KEY", "23514": "CHECK", "23502": "NOT NULL",
                     "23P01": "EXCLUSION"}
_CONFLICTS = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_FULL = {"53100"}                # disk_full (no space for a relation, WAL or temp file)


def map_error(exc: psycopg.Error) -> StorageError:
    """The storage core's class for a driver error, with the server's primary message only
    (its DETAIL quotes row values, which must not reach logs or responses)."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag is not None else None) or str(exc).splitlines()[0]
    if sqlstate and sqlstate.startswith("23"):
        kind = _CONSTRAINT_KINDS.get(sqlstate, "INTEGRITY")
        # Shaped like SQLite's "UNIQUE constraint failed: ..." so both read alike.
        return ConstraintError(f"{kind} constraint failed: {diag.constraint_name or ''} ({primary})",
                               sqlstate)
    if sqlstate in _CONFLICTS:
        return TransactionConflict(primary, sqlstate)
    if sqlstate == "53300":
        return ConnectionLimitError(primary)
    if sqlstate in _FULL:
        # The server rolled the transaction back; the API answers 507 as for a full SQLite disk.
        return StorageFullError(f"the database server's disk (or quota) is full ({primary}); "
                                "the write was rolled back")
    if (sqlstate or "").startswith(("08", "57P")) or isinstance(exc, psycopg.OperationalError) \
            and sqlstate is None:
        return DatabaseUnavailableError(f"database connection lost: {primary}")
    return StatementError(primary, sqlstate)


class Row:
    """One result row: ``row[0]``, ``row["name"]`` (case-insensitive, as sqlite3.Row), ``keys()``."""

    __slots__ = ("_values", "_index", "_names")

    def __init__(self, values: Sequence[Any], index: dict[str, int], names: list[str]) -> None:
        self._values = tuple(values)
        self._index = index
        self._names = names

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            position = self._index.get(key)
            if position is None:
                position = self._index.get(key.lower())
                if position is None:
                    raise IndexError(f"no column named {key!r}")
            return self._values[position]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._values == other._values and self.keys() == other.keys()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self.keys(), self._values))!r})"


def row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    names = [column.name for column in description]
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)       # the first of two equal names wins, as in SQLite
    for position, name in enumerate(names):
        index.setdefault(name.lower(), position)
    return lambda values: Row(values, index, names)


class Result(Fetched):
    """A statement's outcome, fetched: ``fetchone()``, ``fetchall()``, iteration, ``rowcount``."""

    __slots__ = ("description",)

    def __init__(self, rows: list[Any], rowcount: int, description: Any) -> None:
        super().__init__(rows, rowcount)
        self.description = description

    def fetchmany(self, size: int = 1) -> list[Any]:
        rows = self._rows[self._position:self._position + size]
        self._position += len(rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        while (row := self.fetchone()) is not None:
            yield row

    @property
    def lastrowid(self) -> Any:
        raise StorageError("lastrowid is SQLite's: add RETURNING <column> to the INSERT "
                           "(it works on both backends) and read the row")


class PgConnection:
    """One thread's handle on a ``PostgresDatabase`` (see the module docstring)."""

    dialect = POSTGRESQL

    def __init__(self, db: Any) -> None:
        self._db = db
        self._conn: psycopg.Connection | None = None   # held while a transaction is open
        self._begin: str | None = None                  # BEGIN not sent yet
        self.depth = 0                                  # savepoint nesting
        self._cursors = 0                               # server-side cursors named so far
        self._deferred: list[tuple[str, Any]] = []      # execute_at_commit's, not sent yet

    @property
    def in_transaction(self) -> bool:
        return self._conn is not None

    # -- statements ---------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        # Without parameters psycopg leaves the text alone (no '%' processing), as SQLite does.
        query = to_pyformat(sql) if params else sql
        if self._conn is not None:
            if self._deferred:
                return self._pipeline(self._conn, [(query, params or None)])[0]
            return self._run(self._conn, query, params or None)
        with self._db.borrow() as conn:
            return self._run(conn, query, params or None)

    def execute_pipelined(self, statements: Sequence[tuple[str, Any]]) -> list[Result]:
        """``pipeline.execute_all``: in a transaction, the statements (and a pending BEGIN and
        deferred statements) in one pipeline, one round trip; outside one, one by one."""
        if self._conn is None:
            return [self.execute(sql, params) for sql, params in statements]
        return self._pipeline(self._conn, [(to_pyformat(sql) if params else sql, params or None)
                                           for sql, params in statements])

    def execute_at_commit(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        """``pipeline.execute_at_commit``: kept back until the next statement or COMMIT, which
        carry it in their round trip; outside a transaction, run now."""
        if self._conn is None:
            self.execute(sql, params)
            return
        self._deferred.append((to_pyformat(sql) if params else sql, params or None))

    def drop_kept_back(self) -> None:
        """Forget the ``execute_at_commit`` statements not sent yet: a savepoint being rolled
        back would undo them (every statement before its SAVEPOINT went with it)."""
        self._deferred = []

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Result:
        query = to_pyformat(sql)
        if self._conn is not None:
            return self._run_many(self._conn, query, rows)
        with self._db.borrow() as conn:
            return self._run_many(conn, query, rows)

    def execute_script(self, script: str) -> None:
        """Several statements in one round trip (the simple query protocol takes them; a
        pipeline would not, so a pending BEGIN goes first on its own)."""
        self._send_pending_begin()
        self.execute(script)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """``COPY table (columns) FROM STDIN`` with ``rows``: one stream for the whole batch
        (``twin.storage.bulk.insert_rows``). Values are adapted as for ``execute``."""
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        self._send_pending_begin()  # COPY cannot run in the pipeline that carries BEGIN

        def run(conn: psycopg.Connection) -> int:
            self._db.counter.statement()
            count = 0
            try:
                with conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
                        count += 1
            except psycopg.Error as exc:
                raise map_error(exc) from None
            return count

        if self._conn is not None:
            return run(self._conn)
        with self._db.borrow() as conn:
            return run(conn)

    def stream(self, sql: str, params: Sequence[Any] | dict[str, Any], batch: int) -> Iterator[list[Any]]:
        """The rows of a query in lists of up to ``batch``, fetched from a server-side (named)
        cursor as they are read, so neither the client nor the driver ever holds the whole
        result (``twin.storage.streaming.stream_rows``). Needs an open transaction (a
        ``snapshot()``): the cursor lives until its last row, or the transaction's end."""
        if self._conn is None:
            raise StorageError("stream() needs an open transaction (use the database's snapshot())")
        self._send_pending_begin()  # DECLARE does not go in the pipeline that carries BEGIN
        counter = self._db.counter
        self._cursors += 1
        conn = self._conn
        cursor = conn.cursor(name=f"twin_stream_{self._cursors}")
        try:
            counter.statement()  # DECLARE
            cursor.execute(to_pyformat(sql) if params else sql, params or None)
            while True:
                counter.statement()  # FETCH FORWARD batch
                rows = cursor.fetchmany(batch)
                if rows:
                    yield rows
                if len(rows) < batch:
                    return
        except psycopg.Error as exc:
            raise map_error(exc) from None
        finally:
            if conn is self._conn and not conn.closed and not cursor.closed:
                counter.statement()  # CLOSE
                try:
                    cursor.close()
                except psycopg.Error:
                    pass  # the transaction is failing anyway; its end closes the cursor

    def _send_pending_begin(self) -> None:
        if self._conn is not None and self._deferred:  # they go first, BEGIN with them
            self._pipeline(self._conn, [])
        if self._conn is not None and self._begin is not None:
            begin, self._begin = self._begin, None
            self._db.counter.statement(transaction=True)
            try:
                self._conn.execute(begin)
            except psycopg.Error as exc:
                raise map_error(exc) from None

    def _run(self, conn: psycopg.Connection, query: str, params: Any) -> Result:
        try:
            if self._begin is not None and conn is self._conn:
                with self._pipelined_begin(conn):
                    cursor = conn.execute(query, params)
            else:
                self._db.counter.statement()
                cursor = conn.execute(query, params)
            rows = cursor.fetchall() if cursor.description is not None else []
            return Result(rows, cursor.rowcount, cursor.description)
        except psycopg.Error as exc:
            raise map_error(exc) from None

    def _pipeline(self, conn: psycopg.Connection, queued: list[tuple[str, Any]], *,
                  commit: bool = False) -> list[Result]:
        """A pending BEGIN, the deferred statements, ``queued`` and maybe COMMIT, in one
        pipeline; the results of ``queued``. The server runs them in order; the first error
        aborts the rest, raised once the pipeline is read."""
        deferred, self._deferred = self._deferred, []
        begin, self._begin = self._begin, None
        counter = self._db.counter
        first = True
        cursors = []
        try:
            with conn.pipeline():
                if begin is not None:
                    counter.statement(transaction=True)
                    conn.execute(begin)
                    first = False
                for query, params in deferred + queued:
                    counter.statement(round_trip=first)
                    first = False
                    cursors.append(conn.execute(query, params))
                if commit:
                    counter.statement(round_trip=first)
                    conn.execute("COMMIT")
            return [Result(c.fetchall() if c.description is not None else [], c.rowcount, c.description)
                    for c in cursors[len(deferred):]]
        except psycopg.Error as exc:
            raise map_error(exc) from None

    def _run_many(self, conn: psycopg.Connection, query: str, rows: Iterable[Sequence[Any]]) -> Result:
        if self._deferred and conn is self._conn:
            self._pipeline(conn, [])
        try:
            with conn.cursor() as cursor:
                if self._begin is not None and conn is self._conn:
                    with self._pipelined_begin(conn):
                        cursor.executemany(query, rows)
                else:
                    self._db.counter.statement()
                    cursor.executemany(query, rows)
                return Result([], cursor.rowcount, None)
        except psycopg.Error as exc:
            raise map_error(exc) from None

    @contextmanager
    def _pipelined_begin(self, conn: psycopg.Connection) -> Iterator[None]:
        """BEGIN and the statement run inside in one round trip (results are read after)."""
        begin, self._begin = self._begin, None
        counter = self._db.counter
        counter.statement(transaction=True)
        counter.statement(round_trip=False)
        with conn.pipeline():
            conn.execute(begin)
            yield

    # -- transaction control (PostgresDatabase.transaction drives these) -----------------

    def begin(self, conn: psycopg.Connection, isolation: str) -> None:
        """Open a transaction on ``conn``; BEGIN goes out with the first statement."""
        self._conn = conn
        self._begin = f"BEGIN ISOLATION LEVEL {isolation}"
        self._deferred = []

    def finish(self, command: str) -> psycopg.Connection:
        """COMMIT or ROLLBACK; the connection is released whatever happens."""
        conn, self._conn = self._conn, None
        assert conn is not None
        if command == "COMMIT" and conn.info.transaction_status == TransactionStatus.INERROR:
            # A failure the caller caught aborted the transaction: the server would answer
            # COMMIT with ROLLBACK and the driver raise nothing. Never report it committed.
            self._deferred = []
            self._rollback_quietly(conn)
            raise StatementError("the transaction was aborted by a statement that failed in it "
                                 "(caught, not in a nested transaction()): rolled back, "
                                 "nothing of it was committed", "25P02")
        if self._deferred and command == "COMMIT":  # they, COMMIT (and BEGIN): one round trip
            try:
                self._pipeline(conn, [], commit=True)
            except StorageError:
                self._rollback_quietly(conn)
                raise
            return conn
        self._deferred = []  # a ROLLBACK drops them unsent
        if self._begin is not None:  # no statement ran: nothing was begun on the server
            self._begin = None
            return conn
        if conn.closed:
            return conn
        self._db.counter.statement()
        try:
            conn.execute(command)
        except psycopg.Error as exc:
            if command == "COMMIT":
                self._rollback_quietly(conn)
                raise map_error(exc) from None
            # A failed ROLLBACK means a broken connection: the pool discards it.
        return conn

    @staticmethod
    def _rollback_quietly(conn: psycopg.Connection) -> None:
        try:
            conn.rollback()
        except psycopg.Error:
            pass

    def lock(self, name: str, *, wait: bool, with_next: bool = False) -> bool:
        """A transaction-level advisory lock. ``with_next`` (a ``transaction(lock=...)``'s):
        waiting for it needs no answer, so it goes with the transaction's next statement (or
        its COMMIT), which the server runs only once the lock is held, and whose READ
        COMMITTED snapshot starts after it: no round trip of its own."""
        if wait and with_next:
            self.execute_at_commit("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))
            return True
        function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        row = self.execute(f"SELECT {function}(?) AS locked", (lock_key(name),)).fetchone()
        return True if wait else bool(row[0])

