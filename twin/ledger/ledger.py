"""``DatabaseLedger``: the seed's append-only anomaly ledger on the storage core, hash-chained.

    >>> ledger = DatabaseLedger()                    # the configured ledger, as the seed
    >>> ledger = DatabaseLedger(open_database("ledger", config, keyring.database_keys))
    >>> entry_id = ledger.append_entry({"timestamp": time.time(), "node_id": "Node_1",
    ...                                 "features": [{"packet_size": 500}], "confidence": 0.85})
    >>> ledger.get_new_entries(entry_id - 1)
    >>> assert ledger.verify_chain()

Appends serialise on the ledger's chain lock (``write(fn, lock=CHAIN_LOCK)``: SQLite's write
lock, ``BEGIN IMMEDIATE``; on PostgreSQL an advisory lock held until COMMIT, after which each
appender reads the head its predecessor committed), which is what makes ids gap-free and the
chain one chain when many threads, processes or replicas append at once. On PostgreSQL that
is two round trips per append: the lock travels with the head's read, the INSERT and the head's
UPDATE with the COMMIT (``twin.storage.pipeline``). Appends of concurrent threads of one process
share a transaction and its commit (``GroupCommitter(combine=...)``), whose WAL flush is most
of an append's time on PostgreSQL. Reads run in a
snapshot and go through ``LedgerCache``, which checks the ledger's version in the database
first, so the cache never serves data older than the last committed write of any process.
Entries are returned as dicts: ``id, timestamp, node_id, features, confidence, created_at``
(ISO-8601 UTC) and ``prev_hash, entry_hash`` (hex).
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from twin.storage import Backend, IntegrityError
from twin.storage.bulk import insert_rows
from twin.storage.group_commit import GroupCommitter
from twin.storage.pipeline import execute_at_commit
from twin.storage.timestamps import to_db, utc_now

from .cache import Entry, LedgerCache, LedgerVersion, copy_entry
from .chain import ChainVerification, StoredEntry, entry_hash, verify_entries
from .errors import DuplicateEntryError, InvalidArgumentError, InvalidEntryError
from .validation import ValidEntry, validate_entry

if TYPE_CHECKING:
    from compliance.keyring import Keyring
    from twin.config import Config

_COLUMN_NAMES = ("id", "timestamp", "node_id", "features", "confidence", "created_at", "prev_hash",
                 "entry_hash")
_COLUMNS = ", ".join(_COLUMN_NAMES)
_CLEANUP_BATCH = 5000
CHAIN_LOCK = "ledger:chain"  # every write of ledger_state holds it


def _entry_from_row(row: Any) -> Entry:
    return {"id": row["id"], "timestamp": row["timestamp"], "node_id": row["node_id"],
            "features": json.loads(row["features"]), "confidence": row["confidence"],
            "created_at": row["created_at"], "prev_hash": row["prev_hash"],
            "entry_hash": row["entry_hash"]}


def _require_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be at least {minimum}, got {value}")
    return value


def _require_limit(limit: Any) -> int | None:
    return None if limit is None else _require_int("limit", limit, 1)


class DatabaseLedger:
    """The seed's ``DatabaseLedger`` API over one migrated ``ledger`` database."""

    def __init__(self, db_file: "Backend | str | os.PathLike[str] | None" = None, *,
                 cache: LedgerCache | None = None, owns_db: bool = False) -> None:
        """The seed's constructor: ``DatabaseLedger()`` opens the configured ledger database
        (the catalog's ``ledger``), ``DatabaseLedger("custom_ledger.db")`` that file (created,
        keyed with the ledger's database key, migrated); both own what they opened.

        ``db_file`` may also be an open ``Backend`` migrated to ``twin.ledger.schema.MIGRATIONS``
        (``open_database`` does): then ``owns_db`` says whether ``close()`` closes it.
        """
        if db_file is None or isinstance(db_file, (str, os.PathLike)):
            from twin.catalog import open_ledger_database

            db_file, owns_db = open_ledger_database(db_file), True
        self.db = db_file
        self._cache = cache or LedgerCache()
        self._owns_db = owns_db
        # Appends of concurrent threads share one transaction and one commit (group commit):
        # on PostgreSQL the commit's WAL flush is most of an append's time.
        self._appends: GroupCommitter[list[ValidEntry], list[int]] = GroupCommitter(
            self.db, combine=self._write_appends, lock=CHAIN_LOCK)

    @classmethod
    def open(cls, path: str | Path | None = None, config: "Config | None" = None,
             keyring: "Keyring | None" = None) -> "DatabaseLedger":
        """Open (creating and migrating) a ledger: at ``path``, else the catalog's ``ledger``,
        through the catalog (``twin.catalog.open_ledger``). The ledger owns its database."""
        from twin.catalog import open_ledger_database

        return cls(open_ledger_database(path, config, keyring), owns_db=True)

    def close(self) -> None:
        """Close the database connections if this ledger opened them (``open``)."""
        if self._owns_db:
            self.db.close_all()

    def cache_stats(self) -> dict[str, int]:
        """Read-cache hits and misses since this ledger was created."""
        return self._cache.stats()

    # -- writing --------------------------------------------------------------------------

    def append_entry(self, entry: dict[str, Any]) -> int:
        """Validate and append one entry; return its id.

        Raises ``InvalidEntryError`` (a ``ValueError``) listing every invalid field, and
        ``DuplicateEntryError`` (a ``ValueError``) when that node already has an entry at
        that timestamp.
        """
        return self._append([validate_entry(entry)])[0]

    def append_entries(self, entries: Sequence[dict[str, Any]]) -> list[int]:
        """Append several entries atomically (all or none), faster than one call each.

        Validation errors name the entry's position: ``[3].confidence``.
        """
        valid: list[ValidEntry] = []
        for position, entry in enumerate(entries):
            try:
                valid.append(validate_entry(entry))
            except InvalidEntryError as exc:
                raise InvalidEntryError({f"[{position}].{field}": messages
                                         for field, messages in exc.errors.items()}) from None
        return self._append(valid) if valid else []

    def _append(self, entries: list[ValidEntry]) -> list[int]:
        if self.db.connection().in_transaction:  # the caller's transaction: join it
            ids = self._append_alone(entries)
        else:
            try:
                ids = self._appends.submit(entries)
            except IntegrityError:
                # A duplicate failed the group's commit, and nothing of it was written: this
                # caller's entries alone either go in or name their duplicate.
                ids = self._append_alone(entries)
        self._cache.clear()
        return ids

    def _append_alone(self, entries: list[ValidEntry]) -> list[int]:
        try:
            return self.db.write(lambda conn: self._write_appends(conn, [entries])[0], lock=CHAIN_LOCK)
        except IntegrityError as exc:
            raise self._duplicate(entries, exc) from None

    @staticmethod
    def _write_appends(conn: Any, appends: Sequence[list[ValidEntry]]) -> list[list[int]]:
        """Chain every append's entries onto the head, in order; each append's ids.

        On PostgreSQL two round trips for a few entries: BEGIN, the chain lock and the head's
        read in one (the server reads the head only once it holds the lock); the INSERT and
        the head's UPDATE with the COMMIT. A duplicate then fails the COMMIT, rolling back all
        of it, and is named afterwards from what is committed (entries are immutable).
        """
        head_id, head_hash = conn.execute(
            "SELECT head_id, head_hash FROM ledger_state WHERE singleton = 1").fetchone()
        created_at = to_db(utc_now())
        rows, ids = [], []
        for entries in appends:
            ids.append([])
            for entry in entries:
                head_id += 1
                digest = entry_hash(head_id, entry.timestamp, entry.node_id, entry.features,
                                    entry.confidence, head_hash)
                rows.append((head_id, entry.timestamp, entry.node_id, entry.features_json,
                             entry.confidence, created_at, head_hash, digest))
                ids[-1].append(head_id)
                head_hash = digest
        insert_rows(conn, "ledger", _COLUMN_NAMES, rows, at_commit=True)
        execute_at_commit(conn, "UPDATE ledger_state SET head_id = ?, head_hash = ? "
                          "WHERE singleton = 1", (head_id, head_hash))
        return ids

    def _duplicate(self, entries: list[ValidEntry], exc: Exception) -> Exception:
        """The first entry already in the ledger or repeated earlier in the batch."""
        if "UNIQUE" not in str(exc):
            return exc
        seen: set[tuple[float, str]] = set()
        for entry in entries:
            key = (entry.timestamp, entry.node_id)
            if key in seen or self.db.query_one(
                    "SELECT 1 FROM ledger WHERE timestamp = ? AND node_id = ?", key) is not None:
                return DuplicateEntryError(entry.timestamp, entry.node_id)
            seen.add(key)
        return exc

    def cleanup_old_entries(self, max_age_seconds: float, *, now: float | None = None,
                            batch_size: int = _CLEANUP_BATCH) -> int:
        """Delete entries whose ``timestamp`` is older than ``max_age_seconds``; return how many.

        Deletes in batches (each its own transaction, so appends are not blocked for long)
        and leaves a checkpoint per deleted run so ``verify_chain`` still passes.
        ``now`` (Unix time) defaults to the current time.
        """
        _require_int("batch_size", batch_size, 1)
        if isinstance(max_age_seconds, bool) or not isinstance(max_age_seconds, (int, float)) \
                or not math.isfinite(max_age_seconds) or max_age_seconds < 0:
            raise InvalidArgumentError(
                f"max_age_seconds must be a non-negative number, got {max_age_seconds!r}")
        cutoff = (utc_now().timestamp() if now is None else now) - max_age_seconds
        total = 0
        while True:
            deleted = self.db.write(lambda conn: self._delete_batch(conn, cutoff, batch_size),
                                    lock=CHAIN_LOCK)
            total += deleted
            if deleted < batch_size:
                break
        if total:
            self._cache.clear()
        return total

    @staticmethod
    def _delete_batch(conn: Any, cutoff: float, batch_size: int) -> int:
        doomed = conn.execute(
            "SELECT d.id, d.entry_hash,"
            " (SELECT MIN(n.id) FROM ledger n WHERE n.id > d.id) AS next_id"
            " FROM ledger d WHERE d.timestamp < ? ORDER BY d.id LIMIT ?",
            (cutoff, batch_size)).fetchall()
        if not doomed:
            return 0
        ids = {row["id"] for row in doomed}
        created_at = to_db(utc_now())
        # The last entry of each deleted run (its successor survives, or it was the last
        # entry) becomes a checkpoint: the survivor after the gap links to its hash.
        checkpoints = [(row["id"], row["entry_hash"], created_at) for row in doomed
                       if row["next_id"] is None or row["next_id"] not in ids]
        conn.executemany("DELETE FROM ledger WHERE id = ?", [(i,) for i in ids])
        conn.executemany("INSERT INTO ledger_checkpoints (id, entry_hash, created_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (id) DO UPDATE SET entry_hash = excluded.entry_hash, "
                         "created_at = excluded.created_at", checkpoints)
        # A checkpoint followed by another one with no surviving entry between them is now
        # inside a larger gap: only the later one is needed.
        conn.execute(
            "DELETE FROM ledger_checkpoints WHERE id IN ("
            " SELECT c.id FROM ledger_checkpoints c"
            " JOIN ledger_checkpoints c2"
            "   ON c2.id = (SELECT MIN(id) FROM ledger_checkpoints WHERE id > c.id)"
            " WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.id > c.id AND l.id < c2.id))")
        conn.execute(
            "UPDATE ledger_state SET cleanup_count = cleanup_count + 1 WHERE singleton = 1")
        return len(doomed)

    # -- reading --------------------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[tuple[Any, LedgerVersion]]:
        # One read transaction: the version and the rows come from the same snapshot, so a
        # result is never cached under a version older than its data.
        with self.db.transaction(immediate=False) as conn:
            row = conn.execute(
                "SELECT head_id, cleanup_count FROM ledger_state WHERE singleton = 1").fetchone()
            yield conn, LedgerVersion(row["head_id"], row["cleanup_count"])

    def read_ledger(self) -> list[Entry]:
        """Every entry, ascending by id."""
        with self._snapshot() as (conn, version):
            cached = self._cache.ledger()
            if cached is not None and cached[0] == version:
                entries, hit = cached[1], True
            elif (cached is not None and cached[0].cleanup_count == version.cleanup_count
                  and cached[0].head_id < version.head_id):
                # Only appends since: fetch just the new tail. A new list, because other
                # threads may be copying the cached one right now.
                new = conn.execute(f"SELECT {_COLUMNS} FROM ledger WHERE id > ? ORDER BY id",
                                   (cached[0].head_id,)).fetchall()
                entries, hit = cached[1] + [_entry_from_row(row) for row in new], False
            else:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM ledger ORDER BY id").fetchall()
                entries, hit = [_entry_from_row(row) for row in rows], False
        self._cache.store_ledger(version, entries, hit=hit)
        return [copy_entry(entry) for entry in entries]

    def get_new_entries(self, last_seen_id: int, limit: int | None = None) -> list[Entry]:
        """Entries with an id greater than ``last_seen_id`` (>= 0), ascending, at most ``limit``."""
        _require_int("last_seen_id", last_seen_id, 0)
        limit = _require_limit(limit)
        sql = f"SELECT {_COLUMNS} FROM ledger WHERE id > ? ORDER BY id"
        rows = self.db.query(sql, (last_seen_id,)) if limit is None else \
            self.db.query(sql + " LIMIT ?", (last_seen_id, limit))
        return [_entry_from_row(row) for row in rows]

    def get_entry_by_id(self, entry_id: int) -> Entry | None:
        """The entry with this id (a positive integer), or None."""
        _require_int("entry_id", entry_id, 1)
        with self._snapshot() as (conn, version):
            entry = self._cache.entry(version, entry_id)
            if entry is None:
                row = conn.execute(f"SELECT {_COLUMNS} FROM ledger WHERE id = ?",
                                   (entry_id,)).fetchone()
                if row is None:
                    return None
                entry = _entry_from_row(row)
                self._cache.store_entry(version, entry)
        return copy_entry(entry)

    def get_entries_by_node(self, node_id: str, limit: int | None = None) -> list[Entry]:
        """A node's entries, newest ``timestamp`` first, at most ``limit`` (a positive integer)."""
        if not isinstance(node_id, str) or not node_id.strip():
            raise InvalidArgumentError("node_id must be a non-empty string")
        limit = _require_limit(limit)
        key = (node_id, limit)
        with self._snapshot() as (conn, version):
            entries = self._cache.node_query(version, key)
            if entries is None:
                sql = f"SELECT {_COLUMNS} FROM ledger WHERE node_id = ? ORDER BY timestamp DESC, id DESC"
                rows = (conn.execute(sql, (node_id,)) if limit is None else
                        conn.execute(sql + " LIMIT ?", (node_id, limit))).fetchall()
                entries = [_entry_from_row(row) for row in rows]
                self._cache.store_node_query(version, key, entries)
        return [copy_entry(entry) for entry in entries]

    # -- integrity ------------------------------------------------------------------------

    def head(self) -> dict[str, Any]:
        """The id and hash of the last entry ever appended (publish it to anchor the chain)."""
        row = self.db.query_one("SELECT head_id, head_hash FROM ledger_state WHERE singleton = 1")
        return {"head_id": row["head_id"], "head_hash": row["head_hash"]}

    def verify_chain(self) -> ChainVerification:
        """Recompute every hash and link; the result is falsy and names the first broken entry
        if anything was altered, removed, inserted or cut off the end."""
        with self.db.transaction(immediate=False) as conn:
            state = conn.execute(
                "SELECT head_id, head_hash FROM ledger_state WHERE singleton = 1").fetchone()
            checkpoints = [(row["id"], row["entry_hash"]) for row in conn.execute(
                "SELECT id, entry_hash FROM ledger_checkpoints ORDER BY id")]
            rows = conn.execute(
                "SELECT id, timestamp, node_id, features, confidence, prev_hash, entry_hash "
                "FROM ledger ORDER BY id")
            entries = (StoredEntry(row["id"], row["timestamp"], row["node_id"], row["features"],
                                   row["confidence"], row["prev_hash"], row["entry_hash"])
                       for row in rows)
            return verify_entries(entries, checkpoints, state["head_id"], state["head_hash"])
