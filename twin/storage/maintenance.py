"""Routine upkeep of one database: checkpoint, ANALYZE, optimize, vacuum, and ``info()``.

WAL checkpoints and vacuuming are SQLite's (``FileBacked``): on a database server the server
does that upkeep (checkpoints, autovacuum), and the functions compliance calls after an
erasure or a purge (``truncate_wal``, ``incremental_vacuum``) have nothing to do there.
"""

from __future__ import annotations

import time
from typing import Any

from .backend import Backend, FileBacked
from .engine import Database, DatabaseError, OperationalError, is_busy_error
from .errors import DamagedDatabaseError

CHECKPOINT_MODES = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")


def checkpoint(db: Database, mode: str = "TRUNCATE") -> dict[str, int]:
    """Copy the WAL into the main file. TRUNCATE also empties the WAL file, so bytes deleted
    with ``secure_delete`` do not linger in it."""
    mode = mode.upper()
    if mode not in CHECKPOINT_MODES:
        raise ValueError(f"checkpoint mode must be one of {CHECKPOINT_MODES}")
    busy, log_frames, checkpointed = db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return {"busy": busy, "log_frames": log_frames, "checkpointed_frames": checkpointed}


def truncate_wal(db: Backend, budget_s: float = 1.0) -> bool:
    """Checkpoint and empty the WAL within ``budget_s``; True when done.

    A reader holding an older snapshot (a streaming export, an online backup) blocks a
    TRUNCATE checkpoint for as long as it reads. The service connections' busy timeout would
    make each attempt wait seconds, so this uses its own connection with a 20 ms timeout and
    retries with backoff until the budget is spent. Callers report a False result (the next
    checkpoint empties the WAL). A server-backed database has no WAL file of ours: True.
    """
    if not isinstance(db, FileBacked):
        return True
    conn = db.connect_new()
    try:
        conn.execute("PRAGMA busy_timeout = 20")
        deadline = time.monotonic() + budget_s
        delay = 0.01
        while True:
            try:
                if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                    return True
            except OperationalError as exc:
                if not is_busy_error(exc):
                    raise
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    finally:
        conn.close()


def integrity_check(db: Database) -> list[str]:
    """``PRAGMA integrity_check``: ``["ok"]``, or what is wrong. A page SQLCipher cannot
    authenticate stops the check with a bare "SQL logic error": that is a damaged file too."""
    try:
        return [r[0] for r in db.query("PRAGMA integrity_check")]
    except DatabaseError:
        if db.path.exists():
            raise DamagedDatabaseError(db.path) from None
        raise


def analyze(db: Database) -> None:
    """Refresh the query planner's statistics."""
    db.execute("ANALYZE")


def optimize(db: Database) -> None:
    """``PRAGMA optimize``: cheap, lets SQLite re-analyze only what needs it."""
    db.execute("PRAGMA optimize")


def vacuum(db: Database) -> None:
    """Rebuild the file, dropping every free page (needs free disk equal to the file size)."""
    db.retrying(lambda: db.connection().execute("VACUUM"))


def incremental_vacuum(db: Backend, pages: int | None = None) -> int:
    """Return up to ``pages`` free pages (all when None) to the OS; the number released
    (0 on a database server: autovacuum's job)."""
    if not isinstance(db, FileBacked):
        return 0
    before = freelist_count(db)
    conn = db.connection()
    sql = "PRAGMA incremental_vacuum" + (f"({int(pages)})" if pages else "")
    db.retrying(lambda: conn.execute(sql).fetchall())
    return before - freelist_count(db)


def freelist_count(db: Database) -> int:
    return int(db.query_one("PRAGMA freelist_count")[0])


def info(db: Backend) -> dict[str, Any]:
    """A snapshot for operators: sizes, page counts, row counts per table, schema version."""
    if not isinstance(db, Database):
        return _server_info(db)
    def pragma(name: str) -> Any:
        return db.query_one(f"PRAGMA {name}")[0]

    wal = db.path.with_name(db.path.name + "-wal")
    tables = db.table_names()
    try:
        schema_version = db.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0]
    except Exception:
        schema_version = 0
    return {
        "name": db.name,
        "path": str(db.path),
        "encrypted": db.encrypted,
        "file_size_bytes": db.path.stat().st_size if db.path.exists() else 0,
        "wal_size_bytes": wal.stat().st_size if wal.exists() else 0,
        # int(): SQLCipher answers PRAGMA page_size with text ('4096').
        "page_size": int(pragma("page_size")),
        "page_count": int(pragma("page_count")),
        "freelist_count": int(pragma("freelist_count")),
        "journal_mode": pragma("journal_mode"),
        "auto_vacuum": {0: "none", 1: "full", 2: "incremental"}.get(pragma("auto_vacuum")),
        "schema_version": int(schema_version),
        "tables": {t: db.query_one(f'SELECT count(*) FROM "{t}"')[0] for t in tables},
    }


def _server_info(db: Backend) -> dict[str, Any]:
    """``info()`` of a database on a server: its URL (no credentials), size, tables."""
    tables = db.table_names()
    if db.query_one("SELECT to_regclass('schema_version') IS NOT NULL")[0]:
        schema_version = db.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0]
    else:
        schema_version = 0
    return {
        "name": db.name,
        "url": getattr(db, "display_url", ""),
        "backend": db.dialect.name,
        "size_bytes": int(db.query_one("SELECT pg_database_size(current_database())")[0]),
        "schema_version": int(schema_version),
        "tables": {t: int(db.query_one(f'SELECT count(*) FROM "{t}"')[0]) for t in tables},
    }
