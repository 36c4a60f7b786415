"""Fewer round trips to a database server: independent statements sent together.

    >>> head, terms = execute_all(conn, [(HEAD_SQL, ()), (TERMS_SQL, params)])
    >>> execute_at_commit(conn, "INSERT INTO audit_log ...", row)

- ``execute_all(conn, statements)``: statements that do not need each other's results, in one
  round trip on PostgreSQL (one pipeline, carrying a pending BEGIN too); each one's result,
  fetched. The server still runs them in order, so a statement sees what the ones before it
  did, and the first that fails aborts the rest (and the transaction), raised as ``execute``
  raises it.
- ``execute_at_commit(conn, sql, params)``: a statement whose result nobody reads (an insert),
  sent with the transaction's COMMIT in one round trip on PostgreSQL. Its failure is the
  COMMIT's (the transaction is rolled back and ``write(fn)`` raises it, or re-runs ``fn`` on
  a conflict); a statement run meanwhile sends it first, so order is kept. Kept back in a
  nested ``transaction()`` (a savepoint), it goes with the savepoint's RELEASE and fails
  that block alone, as the block's own statements would.

On SQLite every statement is a call into the library, not a round trip: both run the
statements at once, one by one, in the caller's transaction.
"""

from __future__ import annotations

from typing import Any, Sequence

Params = Sequence[Any] | dict[str, Any]


class Fetched:
    """A statement's rows, read at once (``fetchone``, ``fetchall``, ``rowcount``)."""

    __slots__ = ("_rows", "_position", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self._position, self.rowcount = rows, 0, rowcount

    def fetchone(self) -> Any | None:
        if self._position >= len(self._rows):
            return None
        self._position += 1
        return self._rows[self._position - 1]

    def fetchall(self) -> list[Any]:
        rows, self._position = self._rows[self._position:], len(self._rows)
        return rows


def execute_all(conn: Any, statements: Sequence[tuple[str, Params]]) -> list[Any]:
    """Run ``statements`` (each ``(sql, params)``) in order; their results, fetched."""
    pipelined = getattr(conn, "execute_pipelined", None)
    if pipelined is not None:
        return pipelined(statements)
    results = []
    for sql, params in statements:
        cursor = conn.execute(sql, params)
        rows = cursor.fetchall() if cursor.description is not None else []
        results.append(Fetched(rows, cursor.rowcount))
    return results


def execute_at_commit(conn: Any, sql: str, params: Params = ()) -> None:
    """Run ``sql`` in the caller's transaction, by its COMMIT at the latest (see above)."""
    deferred = getattr(conn, "execute_at_commit", None)
    if deferred is not None:
        deferred(sql, params)
    else:
        conn.execute(sql, params)
