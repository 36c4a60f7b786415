"""Batched inserts in each backend's fastest form, for the write-heavy component stores.

    >>> insert_rows(conn, "fitness_metrics", ("round_id", "agent_id", "fitness_score"), rows)

- PostgreSQL: one ``COPY ... FROM STDIN`` per batch of at least ``COPY_FROM_ROWS`` rows (the
  connection's ``copy_rows``), which streams every row and skips the per-row work of
  ``INSERT``; a smaller batch is one multi-row ``INSERT`` (COPY cannot share the pipeline that
  carries BEGIN, so for a few rows it costs a round trip more than it saves).
- SQLite/SQLCipher: multi-row ``INSERT ... VALUES (...), (...)`` statements of
  ``SQLITE_ROWS_PER_STATEMENT`` rows: about twice the rows/s of ``executemany`` measured here
  (one VM run per chunk instead of one per row), well inside SQLite's 32766 bound parameters.

Either way the rows go in the caller's transaction: a failing row (a constraint) fails the
whole batch with the storage core's error class. ``at_commit=True``: the INSERT statements go
with the transaction's COMMIT (``twin.storage.pipeline.execute_at_commit``), no round trip of
their own on PostgreSQL; a failing row then fails the COMMIT (the transaction is rolled back
and ``write(fn)`` raises it). A COPY still runs at once.
"""

from __future__ import annotations

from typing import Any, Sequence

from .pipeline import execute_at_commit

SQLITE_ROWS_PER_STATEMENT = 500
COPY_FROM_ROWS = 50
_POSTGRESQL_MAX_PARAMETERS = 65535
_SQLITE_MAX_PARAMETERS = 32766


def insert_rows(conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                at_commit: bool = False) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table``; returns how many.

    ``table`` and ``columns`` are trusted identifiers of our own schemas, never user input.
    """
    if not rows:
        return 0
    copy_rows = getattr(conn, "copy_rows", None)
    if copy_rows is not None and len(rows) >= COPY_FROM_ROWS:
        return copy_rows(table, columns, rows)
    width = len(columns)
    limit = _SQLITE_MAX_PARAMETERS if copy_rows is None else _POSTGRESQL_MAX_PARAMETERS
    per_statement = max(1, min(SQLITE_ROWS_PER_STATEMENT, limit // width))
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    one = "(" + ", ".join("?" * width) + ")"
    full = head + ", ".join([one] * per_statement)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        sql = full if len(chunk) == per_statement else head + ", ".join([one] * len(chunk))
        params = [value for row in chunk for value in row]
        if at_commit:
            execute_at_commit(conn, sql, params)
        else:
            conn.execute(sql, params)
    return len(rows)
