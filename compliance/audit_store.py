"""Where the trail's events are, and how they read back: the compact ``audit_log`` (every event
appended since vault migration 6, see ``compliance.audit_codec``) after the legacy
``audit_events`` rows written before it (read as they are, until retention deletes them).

Both tables share one sequence: every legacy seq is lower than every compact one, so reading the
legacy table and then the log is reading the chain in order.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator

from twin.storage.dialect import Dialect

from . import audit_terms
from .audit_codec import ACTION_CODES, ACTION_NAMES, iso, micros, unpack_id
from .audit_events import SELECT as LEGACY_SELECT
from .audit_events import AuditEvent, parse_details, to_event
from .hash_chain import GENESIS_HASH

LEGACY, LOG = "audit_events", "audit_log"
# Every append to the chain holds it, from its transaction's start (``write(fn, lock=CHAIN_LOCK)``), and
# so does what deletes interned values (``audit_terms.prune_unused_terms``): on PostgreSQL
# a locked transaction runs at READ COMMITTED, each statement's snapshot taken after the lock,
# so an append never reads a head or a value's reference another holder changed meanwhile.
CHAIN_LOCK = "audit-chain"

LOG_COLUMNS = ("seq", "event_id", "occurred_at", "actor_ref", "action", "subject_ref",
               "resource_ref", "request_id", "details", "event_hash")
# Decoded through the interned values; LEFT JOINs, so an event whose value went missing still
# reads (and fails verification) instead of vanishing from the chain.
LOG_SELECT = """SELECT l.seq, l.event_id, l.occurred_at, a.actor_id, a.actor_role, l.action,
    s.subject_hash, r.resource, l.request_id, l.details, l.event_hash{extra}
FROM audit_log l LEFT JOIN audit_actors a ON a.actor_ref = l.actor_ref
LEFT JOIN audit_subjects s ON s.subject_ref = l.subject_ref
LEFT JOIN audit_resources r ON r.resource_ref = l.resource_ref"""
_WITH_PREV = LOG_SELECT.format(
    extra=", (SELECT p.event_hash FROM audit_log p WHERE p.seq = l.seq - 1) AS prev_hash")
LOG_PLAIN = LOG_SELECT.format(extra="")

# The head, in one statement: the newest compact and legacy events, the newest retention cut,
# the newest archive segment's end (compliance.audit_archive), and the highest seq ever used (the identity's high-water mark, sqlite_sequence or the
# PostgreSQL sequence, remembers seqs of deleted tail events, so deleting the newest events
# leaves a gap the next append exposes).
@functools.lru_cache(maxsize=None)
def _head_sql(dialect: Dialect) -> str:
    return f"""
SELECT
    (SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1) AS log_seq,
    (SELECT event_hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS log_hash,
    (SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 1) AS legacy_seq,
    (SELECT event_hash FROM audit_events ORDER BY seq DESC LIMIT 1) AS legacy_hash,
    (SELECT purged_through_seq FROM audit_checkpoints ORDER BY id DESC LIMIT 1) AS cut_seq,
    (SELECT last_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1) AS cut_hash,
    (SELECT last_seq FROM audit_archive_segments WHERE complete = 1 ORDER BY first_seq DESC LIMIT 1) AS arch_seq,
    (SELECT last_hash FROM audit_archive_segments WHERE complete = 1 ORDER BY first_seq DESC LIMIT 1) AS arch_hash,
    {_high_water(dialect)} AS max_seq
"""


def _high_water(dialect: Dialect) -> str:
    return (f"(SELECT max(s) FROM (SELECT {dialect.identity_high_water('audit_events', 'seq')} AS s "
            f"UNION ALL SELECT {dialect.identity_high_water('audit_log', 'seq')}) AS marks)")


def hash_bytes(value: Any) -> bytes:
    """A stored hash (32 raw bytes, or legacy hex text) as bytes; a damaged one as what it is,
    so that the event after it fails verification instead of the append failing."""
    if isinstance(value, (bytes, memoryview)):
        return bytes(value)
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        return str(value).encode("utf-8", errors="replace")


def hash_text(value: Any) -> str:
    return bytes(value).hex() if isinstance(value, (bytes, memoryview)) else value


def head(conn: Any, dialect: Dialect) -> tuple[int, bytes]:
    """(seq of the next event, hash it chains to); call inside the write transaction."""
    return head_of(conn.execute(_head_sql(dialect)).fetchone())


def head_statement(dialect: Dialect) -> tuple[str, list[Any]]:
    """``head``'s statement, to send with others (``execute_all``); ``head_of`` reads its row."""
    return _head_sql(dialect), []


def head_of(row: Any) -> tuple[int, bytes]:
    candidates = [(row["log_seq"], row["log_hash"]), (row["legacy_seq"], row["legacy_hash"]),
                  (row["cut_seq"], row["cut_hash"]), (row["arch_seq"], row["arch_hash"])]
    last_seq, last_hash = max(((s, h) for s, h in candidates if s is not None),
                              key=lambda c: c[0], default=(0, GENESIS_HASH))
    return max(last_seq, row["max_seq"] or 0) + 1, hash_bytes(last_hash)


def hash_before(conn: Any, seq: int) -> str:
    """The hash event ``seq`` chains to, read where it is kept: the previous event (compact or
    legacy), or the archive segment, the retention cut (or genesis) it continues from."""
    for sql in ("SELECT event_hash FROM audit_log WHERE seq = ?",
                "SELECT event_hash FROM audit_events WHERE seq = ?",
                "SELECT last_hash FROM audit_archive_segments WHERE last_seq = ? AND complete = 1",
                "SELECT last_hash FROM audit_checkpoints WHERE purged_through_seq = ? "
                "ORDER BY id DESC LIMIT 1"):
        found = conn.execute(sql, (seq - 1,)).fetchone()
        if found is not None:
            return hash_text(found[0])
    return GENESIS_HASH if seq == 1 else ""


def log_event(row: Any, prev_hash: str) -> AuditEvent:
    """An ``AuditEvent`` from a decoded compact row (``LOG_SELECT``)."""
    return AuditEvent(
        seq=row["seq"], event_id=unpack_id(row["event_id"]) or "", occurred_at=iso(row["occurred_at"]),
        actor_id=row["actor_id"], actor_role=row["actor_role"],
        action=ACTION_NAMES.get(row["action"], f"unknown:{row['action']}"),
        subject_hash=row["subject_hash"], resource=row["resource"],
        request_id=unpack_id(row["request_id"]), details=parse_details(row["details"]),
        prev_hash=prev_hash, event_hash=hash_text(row["event_hash"]))


def _page(conn: Any, table: str, where: list[tuple[str, Any]], limit: int) -> list[AuditEvent]:
    clauses = " AND ".join(c for c, _ in where)
    params = [v for _, v in where]
    if table == LEGACY:
        sql = LEGACY_SELECT + (f" WHERE {clauses}" if clauses else "") + " ORDER BY seq LIMIT ?"
        return [to_event(r) for r in conn.execute(sql, [*params, limit]).fetchall()]
    sql = _WITH_PREV + (f" WHERE {clauses}" if clauses else "") + " ORDER BY l.seq LIMIT ?"
    return [log_event(r, hash_text(r["prev_hash"]) if r["prev_hash"] is not None
                      else hash_before(conn, r["seq"]))
            for r in conn.execute(sql, [*params, limit]).fetchall()]


def query(conn: Any, *, subject_hash: str | None, action: str | None, since: str | None,
          until: str | None, after_seq: int | None, limit: int) -> list[AuditEvent]:
    """Events matching every given filter, ascending seq, legacy rows first. A subject filter
    goes through the subject's index in each table: time proportional to their events."""
    legacy = [(c, v) for c, v in (("subject_hash = ?", subject_hash), ("action = ?", action),
                                  ("occurred_at >= ?", since), ("occurred_at < ?", until),
                                  ("seq > ?", after_seq)) if v is not None]
    events = _page(conn, LEGACY, legacy, limit)
    if len(events) >= limit:
        return events
    log: list[tuple[str, Any]] = []
    if subject_hash is not None:
        ref = audit_terms.subject_ref(conn, subject_hash)
        if ref is None:
            return events
        log.append(("l.subject_ref = ?", ref))
    for clause, value in (("l.action = ?", None if action is None else ACTION_CODES[action]),
                          ("l.occurred_at >= ?", None if since is None else micros(since)),
                          ("l.occurred_at < ?", None if until is None else micros(until)),
                          ("l.seq > ?", after_seq)):
        if value is not None:
            log.append((clause, value))
    return events + _page(conn, LOG, log, limit - len(events))


def chain_rows(conn: Any, batch_size: int, after: int | None = None) -> Iterator[tuple[str, Any]]:
    """Every stored event in chain order as (table, row): legacy rows (``LEGACY_SELECT``) from
    the very first one, then compact rows (``LOG_PLAIN``), ``batch_size`` rows per statement.
    ``after``: only events past that seq."""
    for table, select, seq_col in ((LEGACY, LEGACY_SELECT, "seq"), (LOG, LOG_PLAIN, "l.seq")):
        last = after
        while True:
            if last is None:
                rows = conn.execute(select + f" ORDER BY {seq_col} LIMIT ?", (batch_size,)).fetchall()
            else:
                rows = conn.execute(select + f" WHERE {seq_col} > ? ORDER BY {seq_col} LIMIT ?",
                                    (last, batch_size)).fetchall()
            for row in rows:
                yield table, row
            if len(rows) < batch_size:
                break
            last = rows[-1]["seq"]


def max_seq_used(conn: Any, dialect: Dialect) -> int:
    """The highest seq ever handed out, in either table."""
    row = conn.execute(f"SELECT {_high_water(dialect)} AS seq").fetchone()
    return (row[0] if row is not None else None) or 0
