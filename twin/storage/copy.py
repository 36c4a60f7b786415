"""Copying an SQLCipher database into a PostgreSQL one at the same schema version: resumable,
verified by counts.

Tables go parents first (the source's foreign keys), each in batches of ``batch`` rows in rowid
order. Every batch commits in one target transaction together with the table's progress (the
last source rowid copied) in ``storage_copy_progress``, so an interrupted copy, run again,
goes on after the last committed batch: nothing twice, nothing skipped. Values are converted
to the target column's type (SQLite keeps booleans as integers, and any value in any column).
Identity sequences are moved past the copied ids, so the next insert gets a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .dialect import HIGH_WATER_TABLE, quote_identifier
from .errors import StorageError
from .progress import ProgressFactory, silent

PROGRESS_TABLE = "storage_copy_progress"
_PROGRESS_DDL = f"""CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
    table_name  TEXT PRIMARY KEY,
    last_rowid  BIGINT NOT NULL,
    done        BOOLEAN NOT NULL DEFAULT FALSE
)"""
# Bookkeeping of each side: its schema version, SQLite's own sequences, and PostgreSQL's
# identity high-water marks (kept by the target's triggers as the copied rows arrive).
NOT_COPIED = frozenset({"schema_version", "sqlite_sequence", HIGH_WATER_TABLE})


class CopyError(StorageError):
    """The copy cannot start or did not verify."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    source_rows: int
    target_rows: int

    @property
    def verified(self) -> bool:
        return self.source_rows == self.target_rows


def _converter(data_type: str) -> Callable[[Any], Any]:
    kind = data_type.lower()
    if kind == "boolean":
        return lambda v: None if v is None else bool(v)
    if kind == "bytea":
        return lambda v: None if v is None else bytes(v) if not isinstance(v, str) else v.encode()
    if kind in ("smallint", "integer", "bigint"):
        return lambda v: None if v is None else int(v)
    if kind in ("double precision", "real", "numeric"):
        return lambda v: None if v is None else float(v)
    if kind in ("text", "character varying"):
        return lambda v: None if v is None else v if isinstance(v, str) else str(v)
    return lambda v: v  # json/jsonb take our JSON text as it is


def copy_order(source: Any, tables: Sequence[str]) -> list[str]:
    """``tables`` with every table after the tables its foreign keys reference."""
    parents = {t: {r[2] for r in source.query(f"PRAGMA foreign_key_list({quote_identifier(t)})")} & set(tables)
               for t in tables}
    ordered: list[str] = []
    while len(ordered) < len(tables):
        ready = sorted(t for t in tables if t not in ordered and parents[t] - {t} <= set(ordered))
        if not ready:
            raise CopyError(f"{source.name}: foreign keys form a cycle among "
                            f"{sorted(set(tables) - set(ordered))}")
        ordered.extend(ready)
    return ordered


def _target_columns(target: Any, table: str) -> dict[str, str]:
    return {r["column_name"]: r["data_type"] for r in target.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ?", (table,))}


def copy_database(source: Any, target: Any, *, batch: int = 1000,
                  progress: ProgressFactory = silent) -> list[TableCopy]:
    """Copy every table of ``source`` (SQLCipher) into ``target`` (PostgreSQL, same schema
    version, empty or holding an interrupted copy of this source) and verify the counts."""
    target.execute(_PROGRESS_DDL)
    tables = [t for t in source.table_names() if t not in NOT_COPIED]
    missing = sorted(set(tables) - set(target.table_names()))
    if missing:
        raise CopyError(f"{target.name}: has no table {', '.join(missing)} (not at the source's schema)")
    done = {r["table_name"]: (int(r["last_rowid"]), bool(r["done"])) for r in target.query(
        f"SELECT table_name, last_rowid, done FROM {PROGRESS_TABLE}")}
    if not done:
        full = [t for t in tables if target.query_one(f"SELECT 1 FROM {quote_identifier(t)} LIMIT 1")]
        if full:
            raise CopyError(f"{target.name}: not empty ({', '.join(full[:3])} hold rows) and no copy "
                            "of ours was interrupted there: copy only into a freshly set-up database")
    results = []
    for table in copy_order(source, tables):
        last, finished = done.get(table, (0, False))
        if not finished:
            _copy_table(source, target, table, last, batch, progress)
        results.append(TableCopy(table, int(source.query_one(f"SELECT count(*) FROM {quote_identifier(table)}")[0]),
                                 int(target.query_one(f"SELECT count(*) FROM {quote_identifier(table)}")[0])))
    _advance_identities(target, tables, _high_water(source))
    return results


def _copy_table(source: Any, target: Any, table: str, last: int, batch: int,
                progress: ProgressFactory) -> None:
    columns = _target_columns(target, table)
    names = [r[1] for r in source.query(f"PRAGMA table_info({quote_identifier(table)})") if r[1] in columns]
    convert = [_converter(columns[name]) for name in names]
    quoted = ", ".join(quote_identifier(n) for n in names)
    insert = (f"INSERT INTO {quote_identifier(table)} ({quoted}) VALUES "
              f"({', '.join('?' for _ in names)})")
    select = (f"SELECT rowid AS copy_rowid_, {quoted} FROM {quote_identifier(table)} "
              "WHERE rowid > ? ORDER BY rowid LIMIT ?")
    remaining = int(source.query_one(f"SELECT count(*) FROM {quote_identifier(table)} WHERE rowid > ?",
                                     (last,))[0])
    with progress(f"copy {table}", remaining, "rows") as bar:
        while True:
            rows = source.query(select, (last, batch))
            finished = len(rows) < batch
            last = int(rows[-1][0]) if rows else last

            def write(conn: Any, rows: list = rows, last: int = last, finished: bool = finished) -> None:
                if rows:
                    conn.executemany(insert, [[c(v) for c, v in zip(convert, row[1:])] for row in rows])
                conn.execute(f"INSERT INTO {PROGRESS_TABLE} (table_name, last_rowid, done) VALUES (?, ?, ?) "
                             "ON CONFLICT (table_name) DO UPDATE SET last_rowid = excluded.last_rowid, "
                             "done = excluded.done", (table, last, finished))
            target.write(write)
            bar.update(len(rows))
            if finished:
                return


def _high_water(source: Any) -> dict[str, int]:
    """The highest id each AUTOINCREMENT table ever gave (deleted rows' ids included)."""
    if source.query_one("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'")[0] == 0:
        return {}
    return {r[0]: int(r[1]) for r in source.query("SELECT name, seq FROM sqlite_sequence")}


def _advance_identities(target: Any, tables: Sequence[str], high_water: dict[str, int]) -> None:
    """Move each identity sequence to the source's high-water mark, so the next insert gets
    an id the source never gave (the audit trail reads gaps at its end from it)."""
    for row in target.query("SELECT table_name, column_name FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND is_identity = 'YES'"):
        if row["table_name"] not in tables:
            continue
        table, column = quote_identifier(row["table_name"]), quote_identifier(row["column_name"])
        target.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), GREATEST(max({column}), ?)) "
                       f"FROM {table} HAVING GREATEST(max({column}), ?) IS NOT NULL",
                       (table, row["column_name"], high_water.get(row["table_name"]),
                        high_water.get(row["table_name"])))
