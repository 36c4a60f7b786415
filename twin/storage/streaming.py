"""Reading a long result batch by batch, with memory bounded by the batch on both backends.

    >>> with db.snapshot() as conn:
    ...     for rows in stream_rows(conn, "SELECT ... ORDER BY ...", params, batch=500):
    ...         send(rows)

- SQLite/SQLCipher: the cursor steps through the result as it is read (``fetchmany``).
- PostgreSQL: a result is otherwise fetched whole when the statement runs, so the snapshot's
  connection streams through a server-side (named) cursor (its ``stream``): DECLARE, one
  FETCH per batch, CLOSE.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence


def stream_rows(conn: Any, sql: str, params: Sequence[Any] | dict[str, Any], batch: int) -> Iterator[list[Any]]:
    """The rows of ``sql`` in lists of up to ``batch`` (a ``snapshot()`` connection)."""
    stream = getattr(conn, "stream", None)
    if stream is not None:
        yield from stream(sql, params, batch)
        return
    cursor = conn.execute(sql, params)
    while rows := cursor.fetchmany(batch):
        yield rows
