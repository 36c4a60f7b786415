"""Batched inserts in each backend's fastest form, for the write-heavy component stores.

    >>> insert_rows(conn, "fitness_metrics", ("round_id", "agent_id", "fitness_score"), rows)

- PostgreSQL: one ``COPY ... FROM STDIN`` per batch of at least ``COPY_FROM_ROWS`` rows (the
  connection's ``copy_rows``), which streams every row and skips the per-row work of
  ``INSERT``; a smaller batch is one multi-row ``INSERT`` (COPY cannot share the pipeline that
  carries BEGIN, so for a few rows it costs a round trip more than it saves).
- SQLite/SQLCipher: multi-row ``INSERT ... VALUES (...), (...)`` statements of
  ``SQLITE_ROWS_PER_STATEMENT`` rows: about twice the rows/s of ``executemany`` measured here
  (one VM run per chunk instead of one per row), well inside SQLite's 32766 bound parameters.
  A column holding the very same object in every row of the batch (a batch's round id, its
  default timestamp, a column of None) is bound once per statement as a numbered parameter
  (``?1``), or written ``NULL``: binding is a large share of a row's cost, and a fitness row
  binds two values instead of six. Sameness is identity, never equality (1, 1.0 and True
  are equal but stored as different types), so what is stored is exactly what each row held.

Either way the rows go in the caller's transaction: a failing row (a constraint) fails the
whole batch with the storage core's error class. ``at_commit=True``: the INSERT statements go
with the transaction's COMMIT (``twin.storage.pipeline.execute_at_commit``), no round trip of
their own on PostgreSQL; a failing row then fails the COMMIT (the transaction is rolled back
and ``write(fn)`` raises it). A COPY still runs at once.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain, repeat
from operator import is_, itemgetter
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
    if copy_rows is None:
        return _sqlite_insert(conn, table, columns, rows, at_commit)
    if len(rows) >= COPY_FROM_ROWS:
        return copy_rows(table, columns, rows)
    width = len(columns)
    per_statement = max(1, min(SQLITE_ROWS_PER_STATEMENT, _POSTGRESQL_MAX_PARAMETERS // width))
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


def _sqlite_insert(conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                   at_commit: bool) -> int:
    first = rows[0]
    # A column is shared when every row holds the first row's object (C-level loop, stops at
    # the first row that differs, so a varying column costs about one comparison).
    shared = [i for i, value in enumerate(first) if all(map(is_, repeat(value), map(itemgetter(i), rows)))]
    varying = [i for i in range(len(columns)) if i not in shared]
    # Every parameter numbered (a bare ? would take the number after the largest so far,
    # which depends on where the shared ones stand in the row): shared first, then row by row.
    bound = [first[i] for i in shared if first[i] is not None]
    pick = itemgetter(*varying) if len(varying) > 1 else None
    per_statement = max(1, min(SQLITE_ROWS_PER_STATEMENT,
                               (_SQLITE_MAX_PARAMETERS - len(bound)) // max(1, len(varying))))
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    layout = (tuple((i, first[i] is None) for i in shared), tuple(varying))
    full = _values_sql(head, layout, per_statement)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        sql = full if len(chunk) == per_statement else \
            _values_sql(head, layout, len(chunk))
        if pick is not None:
            values = chain.from_iterable(map(pick, chunk))
        else:
            values = map(itemgetter(varying[0]), chunk) if varying else ()
        (execute_at_commit if at_commit else _execute)(conn, sql, [*bound, *values])
    return len(rows)


def _execute(conn: Any, sql: str, params: list[Any]) -> None:
    conn.execute(sql, params)


@lru_cache(maxsize=256)
def _values_sql(head: str, layout: tuple[tuple[tuple[int, bool], ...], tuple[int, ...]],
                count: int) -> str:
    """``head`` and ``count`` rows of numbered parameters: a shared column's ``?n`` (``NULL``
    when it holds None) in every row, then each row's own values. Cached: a store sends the
    same few shapes again and again."""
    shared, varying = layout
    slots, number = {}, 0
    for i, is_null in shared:
        if is_null:
            slots[i] = "NULL"
        else:
            number += 1
            slots[i] = f"?{number}"
    width = len(shared) + len(varying)
    rows = []
    for row in range(count):
        base = number + row * len(varying)
        for offset, i in enumerate(varying, start=1):
            slots[i] = f"?{base + offset}"
        rows.append("(" + ", ".join(slots[i] for i in range(width)) + ")")
    return head + ", ".join(rows)
