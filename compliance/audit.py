"""The audit trail: an append-only, hash-chained record of every access to personal data.

It serves FERPA's record of disclosures and GDPR accountability (art. 5(2)): who (token id
and role) did what (read, export, update, erase, purge, consent change...) to whose data
(the keyed subject hash, never a user id), when, and under which request id.

Each event's ``event_hash`` is SHA-256 over the canonical JSON of all its other columns,
``seq`` and ``prev_hash`` included, and ``prev_hash`` is the previous event's ``event_hash``.
Editing, renumbering, reordering or deleting an event therefore breaks the chain, and
``AuditTrail.verify()`` names the first event where it breaks. A database trigger blocks
UPDATE as a guard against accidents; the chain is what catches someone who drops it.

Retention cuts the head of the chain: ``purge_older_than`` deletes the oldest events and
records, in the same transaction, a checkpoint (last purged seq and its hash) that the
surviving chain is verified from.

``details`` is stored unencrypted and kept for the trail's whole retention window, so callers
put counts, table names and opaque ids in it, never personal data (no names, user ids,
e-mail addresses, free text from a request).

With a journal (``compliance.audit_journal``), ``stage()`` records an event durably without a
vault transaction per call: the event is on disk in an encrypted journal segment when the call
returns and joins the chain within ``flush_delay`` seconds, in a batch. Everything that reads
the trail (``query``, ``iter_subject``, ``verify``, ``purge_older_than``) and every direct
``record`` flushes first, so a process always sees its own events in order.

A hash chain kept in the same file proves integrity against edits by anyone who does not
recompute every later hash; someone holding the key who rewrites the whole tail is caught
only by comparing with a copy of a recent ``event_hash`` kept elsewhere (backups, logs).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

from twin.storage import Database
from twin.storage.timestamps import to_db, utc_now

from .audit_journal import AuditJournal, StagedEvents
from .errors import ComplianceError

log = logging.getLogger(__name__)

ACTIONS = frozenset({"read", "create", "update", "delete", "export", "erase", "purge",
                     "consent_grant", "consent_withdraw", "hold_place", "hold_lift", "key_rotate",
                     "restore_reapply"})
ROLES = frozenset({"admin", "service", "learner", "operator", "system"})

GENESIS_HASH = "0" * 64
MAX_DETAILS_BYTES = 8192
MAX_QUERY_LIMIT = 1000

# Every column but event_hash goes into the hash; seq is in so renumbering is detected.
_HASHED_COLUMNS = ("seq", "event_id", "occurred_at", "actor_id", "actor_role", "action",
                   "subject_hash", "resource", "request_id", "details", "prev_hash")
_COLUMNS = _HASHED_COLUMNS + ("event_hash",)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM audit_events"
_MAX_ROWS_PER_INSERT = 64


@functools.lru_cache(maxsize=None)
def _insert_sql(rows: int) -> str:
    values = "(" + ", ".join("?" for _ in _COLUMNS) + ")"
    return f"INSERT INTO audit_events ({', '.join(_COLUMNS)}) VALUES " + ", ".join([values] * rows)

_RECORD_FIELDS = frozenset({"subject_hash", "resource", "request_id", "details"})
# What a staged event holds: the validated fields plus when it happened and its id.
_STAGED_FIELDS = frozenset({"actor_id", "actor_role", "action", "subject_hash", "resource",
                            "request_id", "details", "event_id", "occurred_at"})
FLUSH_DELAY_S = 0.05

# Where the next event goes, in one statement: the last event's hash (else the latest
# checkpoint's, else genesis) and the highest seq ever used. sqlite_sequence remembers seqs
# of deleted tail events, so deleting the newest events leaves a gap the next append exposes.
_HEAD_SQL = """
SELECT
    (SELECT event_hash FROM audit_events ORDER BY seq DESC LIMIT 1) AS last_hash,
    (SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 1) AS last_seq,
    (SELECT last_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1) AS checkpoint_hash,
    (SELECT purged_through_seq FROM audit_checkpoints ORDER BY id DESC LIMIT 1) AS checkpoint_seq,
    (SELECT seq FROM sqlite_sequence WHERE name = 'audit_events') AS max_seq
"""


class AuditError(ComplianceError):
    """Base class for every audit-trail error."""


class UnknownAuditActionError(AuditError, ValueError):
    """An action outside ``ACTIONS``."""


class InvalidAuditEventError(AuditError, ValueError):
    """An event that cannot be recorded: bad actor, unknown field, details not small JSON."""


class InvalidAuditQueryError(AuditError, ValueError):
    """A query argument out of range (e.g. ``limit``)."""


class AuditChainBrokenError(AuditError):
    """The hash chain is broken at ``seq``; raised where continuing would hide the evidence."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit trail broken at event {seq}: {reason}")
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True)
class Actor:
    """Who acted: a token id (or ``script:...`` / ``system:...``) and its role."""

    actor_id: str
    role: str

    def __post_init__(self) -> None:
        if not isinstance(self.actor_id, str) or not self.actor_id:
            raise InvalidAuditEventError("actor_id must be a non-empty string")
        if self.role not in ROLES:
            raise InvalidAuditEventError(f"actor role must be one of {', '.join(sorted(ROLES))}")


@dataclass(frozen=True)
class AuditEvent:
    """One recorded event, as stored."""

    seq: int
    event_id: str
    occurred_at: str  # ISO-8601 UTC, e.g. 2026-11-22T02:30:00.000000Z
    actor_id: str
    actor_role: str
    action: str
    subject_hash: str | None
    resource: str | None
    request_id: str | None
    details: dict[str, Any] | None
    prev_hash: str
    event_hash: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (one item of ``GET /v1/audit``)."""
        return {
            "seq": self.seq, "event_id": self.event_id, "occurred_at": self.occurred_at,
            "actor_id": self.actor_id, "actor_role": self.actor_role, "action": self.action,
            "subject_hash": self.subject_hash, "resource": self.resource,
            "request_id": self.request_id,
            "details": None if self.details is None else dict(self.details),
            "prev_hash": self.prev_hash, "event_hash": self.event_hash,
        }


@dataclass(frozen=True)
class ChainVerification:
    """The outcome of ``AuditTrail.verify()``.

    ``reason`` describes what is wrong at ``first_bad_seq`` without repeating the seq, e.g.
    ``content does not match its hash (edited?)``; ``summary`` is the one-line report.
    """

    ok: bool
    events_checked: int
    first_bad_seq: int | None
    reason: str | None

    @property
    def summary(self) -> str:
        if self.ok:
            return f"audit trail OK: {self.events_checked} events verified"
        return f"audit trail BROKEN at event {self.first_bad_seq}: {self.reason}"


def compute_event_hash(row: Mapping[str, Any] | Any) -> str:
    """SHA-256 (hex) of an event's canonical JSON: every column but ``event_hash``.

    ``row`` is a database row or a dict with the stored values (``details`` as its JSON text).
    """
    content = {name: row[name] for name in _HASHED_COLUMNS}
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def _details_json(details: Mapping[str, Any] | None) -> str | None:
    if details is None:
        return None
    if not isinstance(details, Mapping):
        raise InvalidAuditEventError("details must be a dict of counts and ids, or None")
    try:
        text = json.dumps(dict(details), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidAuditEventError(f"details must be plain JSON: {exc}") from None
    if len(text) > MAX_DETAILS_BYTES:
        raise InvalidAuditEventError(
            f"details are {len(text)} bytes; keep them under {MAX_DETAILS_BYTES} "
            "(counts and ids only)")
    return text


def _optional_text(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidAuditEventError(f"{name} must be a string or None")
    return value


def _parse_details(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    # A hand-edited row must not make the whole listing unreadable; verify() reports it.
    return value if isinstance(value, dict) else {"_unparsed": text}


def _is_staged_event(event: Any) -> bool:
    return isinstance(event, dict) and set(event) == _STAGED_FIELDS \
        and all(isinstance(value, str) or (value is None and name in _RECORD_FIELDS)
                for name, value in event.items()) \
        and event["action"] in ACTIONS and event["actor_role"] in ROLES


def _span(first: int, last: int) -> str:
    return f"event {first}" if first == last else f"events {first}-{last}"


def _to_event(row: Any) -> AuditEvent:
    values = {name: row[name] for name in _COLUMNS}
    values["details"] = _parse_details(row["details"])
    return AuditEvent(**values)


class _ChainWalker:
    """Checks events one by one in seq order against the chain so far."""

    def __init__(self, anchor_seq: int, anchor_hash: str) -> None:
        self.last_seq = anchor_seq
        self.last_hash = anchor_hash
        self.checked = 0

    def check(self, row: Any) -> str | None:
        """None if ``row`` continues the chain, else why not (and the walker stops moving)."""
        seq = row["seq"]
        if compute_event_hash(row) != row["event_hash"]:
            return "content does not match its hash (edited?)"
        expected = self.last_seq + 1
        if seq != expected:
            if self.checked == 0 and self.last_seq > 0 and seq <= self.last_seq:
                return (f"event lies inside the purged range (through {self.last_seq}); "
                        "checkpoint altered?")
            if seq > expected:
                where = "at the start of the trail" if self.checked == 0 else "before it"
                return f"{_span(expected, seq - 1)} missing {where} (deleted?)"
            return f"out of sequence after event {self.last_seq} (renumbered?)"
        if row["prev_hash"] != self.last_hash:
            return "previous-hash link broken (event deleted or reordered?)"
        self.last_seq = seq
        self.last_hash = row["event_hash"]
        self.checked += 1
        return None


def _latest_checkpoint(conn: Any) -> tuple[int, str, int | None]:
    row = conn.execute("SELECT id, purged_through_seq, last_hash FROM audit_checkpoints "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return 0, GENESIS_HASH, None
    return row["purged_through_seq"], row["last_hash"], row["id"]


class AuditTrail:
    """Appends, queries, verifies and purges the audit trail in the privacy vault.

    With a ``journal``, ``stage()`` records through it (see the module docstring); call
    ``close()`` at shutdown to move the last staged events into the chain.
    """

    def __init__(self, vault: Database, clock: Callable[[], datetime] = utc_now, *,
                 journal: AuditJournal | None = None, flush_delay: float = FLUSH_DELAY_S) -> None:
        self.vault = vault
        self._clock = clock
        self._staging = None if journal is None else \
            StagedEvents(journal, vault, self._append_staged, clock, flush_delay)

    # -- writing ------------------------------------------------------------------------

    def record(self, actor: Actor, action: str, *, subject_hash: str | None = None,
               resource: str | None = None, request_id: str | None = None,
               details: dict[str, Any] | None = None) -> AuditEvent:
        """Append one event and return it.

        ``details`` holds counts and opaque ids only, never personal data. Runs in one
        immediate transaction (nested in the caller's if there is one), so concurrent
        appenders in any thread or process are serialised and the chain stays linear.
        """
        fields = self._validated(actor, action, dict(subject_hash=subject_hash, resource=resource,
                                                     request_id=request_id, details=details))
        self._flush_before_use()
        # Concurrent appenders share one commit (twin.storage.group_commit).
        row = self.vault.write_shared(lambda conn: self._append_rows(conn, [fields])[0])
        return _to_event(row)

    def stage(self, actor: Actor, action: str, *, subject_hash: str | None = None,
              resource: str | None = None, request_id: str | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Record one event durably without waiting for a vault transaction (API requests).

        With a journal the event is on disk, encrypted, when this returns, and joins the
        chain within the flush delay; ``AuditJournalError`` means it could not be written and
        the caller must not go on. Without a journal (or after ``close()``) this is ``record()``.
        """
        if self._staging is None or self._staging.closed:
            self.record(actor, action, subject_hash=subject_hash, resource=resource,
                        request_id=request_id, details=details)
            return
        fields = self._validated(actor, action, dict(subject_hash=subject_hash, resource=resource,
                                                     request_id=request_id, details=details))
        fields["event_id"] = secrets.token_urlsafe(12)
        fields["occurred_at"] = to_db(self._clock())
        self._staging.stage(fields)

    def flush(self) -> int:
        """Move staged events into the chain now: this process's and any a dead process left
        behind. Returns how many were appended (0 without a journal, or inside this thread's
        open vault transaction)."""
        return 0 if self._staging is None else self._staging.flush()

    def close(self) -> None:
        """Stop the background flusher and flush what is staged (graceful shutdown)."""
        if self._staging is not None:
            self._staging.close()

    def _flush_before_use(self) -> None:
        # Readers and direct appends see this process's staged events first. If the vault
        # refuses the backlog, they still go on: the backlog is safe on disk.
        if self._staging is None:
            return
        try:
            self._staging.flush()
        except Exception as exc:
            log.warning("staged audit events could not be flushed first (%s); continuing",
                        type(exc).__name__)

    def _append_staged(self, conn: Any, events: list[dict[str, Any]]) -> int:
        """Chain staged events (as a journal segment holds them) inside ``conn``'s write
        transaction; malformed ones (only a forged plaintext segment could hold any) are
        skipped and logged. Returns how many were appended."""
        valid = [e for e in events if _is_staged_event(e)]
        if len(valid) != len(events):
            log.error("%d malformed staged audit events skipped", len(events) - len(valid))
        if valid:
            self._append_rows(conn, valid)
        return len(valid)

    def _append_rows(self, conn: Any, validated: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chain and insert validated events; call inside the write transaction."""
        seq, prev_hash = self._head(conn)
        rows = []
        for fields in validated:
            row = self._chained(fields, seq, prev_hash)
            rows.append(row)
            seq, prev_hash = seq + 1, row["event_hash"]
        # Multi-row INSERTs in chunks of 64, 32, ... 1 rows: each statement is one trip through
        # the driver (which releases the GIL, costing a thread switch in a busy server), and at
        # most seven distinct statements are ever prepared.
        start = 0
        while start < len(rows):
            size = min(_MAX_ROWS_PER_INSERT, 1 << ((len(rows) - start).bit_length() - 1))
            chunk = rows[start:start + size]
            conn.execute(_insert_sql(size), [row[name] for row in chunk for name in _COLUMNS])
            start += size
        return rows

    def record_many(self, events: Iterable[tuple[Actor, str, dict[str, Any]]]) -> int:
        """Append several events in one transaction; returns how many.

        Each item is ``(actor, action, fields)`` where ``fields`` holds any of ``subject_hash``,
        ``resource``, ``request_id``, ``details`` (the keyword arguments of ``record``). All
        are validated before anything is written: one bad item records none.
        """
        validated = []
        for actor, action, fields in events:
            unknown = set(fields) - _RECORD_FIELDS
            if unknown:
                raise InvalidAuditEventError(
                    f"unknown event field(s): {', '.join(sorted(unknown))}")
            validated.append(self._validated(actor, action, fields))
        if not validated:
            return 0
        self._flush_before_use()
        return len(self.vault.write(lambda conn: self._append_rows(conn, validated)))

    def _validated(self, actor: Actor, action: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(actor, Actor):
            raise InvalidAuditEventError("actor must be an Actor")
        if action not in ACTIONS:
            raise UnknownAuditActionError(
                f"unknown audit action {action!r}; known: {', '.join(sorted(ACTIONS))}")
        return {
            "actor_id": actor.actor_id, "actor_role": actor.role, "action": action,
            "subject_hash": _optional_text("subject_hash", fields.get("subject_hash")),
            "resource": _optional_text("resource", fields.get("resource")),
            "request_id": _optional_text("request_id", fields.get("request_id")),
            "details": _details_json(fields.get("details")),
        }

    def _chained(self, fields: Mapping[str, Any], seq: int, prev_hash: str) -> dict[str, Any]:
        row = dict(fields, seq=seq, prev_hash=prev_hash)
        if "event_id" not in row:  # staged events got theirs when they happened
            row["event_id"] = secrets.token_urlsafe(12)
            row["occurred_at"] = to_db(self._clock())
        row["event_hash"] = compute_event_hash(row)
        return row

    @staticmethod
    def _head(conn: Any) -> tuple[int, str]:
        """(seq of the next event, hash it chains to); call inside the write transaction."""
        head = conn.execute(_HEAD_SQL).fetchone()
        seq = max(head["max_seq"] or 0, head["last_seq"] or 0, head["checkpoint_seq"] or 0) + 1
        prev_hash = head["last_hash"] or head["checkpoint_hash"] or GENESIS_HASH
        return seq, prev_hash

    # -- reading ------------------------------------------------------------------------

    def query(self, *, subject_hash: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after_seq: int | None = None, limit: int = 100) -> list[AuditEvent]:
        """Events matching every given filter, oldest first (ascending seq).

        ``since`` is inclusive, ``until`` exclusive. Page by passing the last item's ``seq``
        as ``after_seq``. ``limit`` is 1..``MAX_QUERY_LIMIT``.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or not 1 <= limit <= MAX_QUERY_LIMIT:
            raise InvalidAuditQueryError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
        if action is not None and action not in ACTIONS:
            raise UnknownAuditActionError(f"unknown audit action {action!r}")
        self._flush_before_use()
        where, params = [], []
        for clause, value in (("subject_hash = ?", subject_hash), ("action = ?", action),
                              ("occurred_at >= ?", None if since is None else to_db(since)),
                              ("occurred_at < ?", None if until is None else to_db(until)),
                              ("seq > ?", after_seq)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq LIMIT ?"
        return [_to_event(row) for row in self.vault.query(sql, [*params, limit])]

    def iter_subject(self, subject_hash: str, batch: int = 1000) -> Iterator[AuditEvent]:
        """Every event about one subject, oldest first, fetched ``batch`` rows at a time.

        For DSR exports (the subject's record of disclosures): memory stays bounded by
        ``batch`` however long the history is.
        """
        if batch < 1:
            raise InvalidAuditQueryError("batch must be at least 1")
        self._flush_before_use()
        after = 0
        while True:
            rows = self.vault.query(
                _SELECT + " WHERE subject_hash = ? AND seq > ? ORDER BY seq LIMIT ?",
                (subject_hash, after, batch))
            for row in rows:
                yield _to_event(row)
            if len(rows) < batch:
                return
            after = rows[-1]["seq"]

    # -- integrity ----------------------------------------------------------------------

    def verify(self, batch_size: int = 5000) -> ChainVerification:
        """Walk the chain from the latest purge checkpoint and report the first bad event.

        Reads one consistent snapshot, ``batch_size`` rows at a time, so memory is bounded and
        concurrent appends and purges do not cause false alarms.
        """
        self._flush_before_use()
        with self.vault.transaction(immediate=False) as conn:
            anchor_seq, anchor_hash, _ = _latest_checkpoint(conn)
            walker = _ChainWalker(anchor_seq, anchor_hash)
            after: int | None = None
            while True:
                if after is None:
                    # From the very first row: rows left below the checkpoint are suspicious too.
                    rows = conn.execute(_SELECT + " ORDER BY seq LIMIT ?", (batch_size,)).fetchall()
                else:
                    rows = conn.execute(_SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?",
                                        (after, batch_size)).fetchall()
                for row in rows:
                    reason = walker.check(row)
                    if reason is not None:
                        return ChainVerification(False, walker.checked, row["seq"], reason)
                if len(rows) < batch_size:
                    break
                after = rows[-1]["seq"]
            max_row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'").fetchone()
            max_seq = max_row["seq"] if max_row is not None else 0
            if max_seq > walker.last_seq:
                first = walker.last_seq + 1
                return ChainVerification(False, walker.checked, first,
                                         f"{_span(first, max_seq)} missing at the end of the trail "
                                         "(deleted?)")
        return ChainVerification(True, walker.checked, None, None)

    def purge_older_than(self, cutoff: datetime, batch_size: int = 5000) -> int:
        """Delete events that occurred before ``cutoff``; returns how many.

        Deletes the oldest events in seq order, each batch in its own short transaction so
        the API keeps serving, and stops at the first event not older than ``cutoff``. Each
        batch advances this run's checkpoint (last purged seq and its hash) in the same
        transaction as its delete, so ``verify()`` keeps passing. The purged events are
        verified first: a tampered event raises ``AuditChainBrokenError`` and is not purged,
        so retention never launders the evidence. The caller (the retention job) records its
        own ``purge`` event with the count.
        """
        if batch_size < 1:
            raise InvalidAuditQueryError("batch_size must be at least 1")
        self._flush_before_use()
        threshold = to_db(cutoff)
        total, run_checkpoint = 0, None

        def purge_batch(conn: Any) -> tuple[int, int | None]:
            anchor_seq, anchor_hash, latest_id = _latest_checkpoint(conn)
            rows = conn.execute(_SELECT + " ORDER BY seq LIMIT ?", (batch_size,)).fetchall()
            walker = _ChainWalker(anchor_seq, anchor_hash)
            for row in rows:
                if row["occurred_at"] >= threshold:
                    break
                reason = walker.check(row)
                if reason is not None:
                    raise AuditChainBrokenError(row["seq"], reason)
            if walker.checked == 0:
                return 0, latest_id
            conn.execute("DELETE FROM audit_events WHERE seq <= ?", (walker.last_seq,))
            now = to_db(self._clock())
            if run_checkpoint is not None and run_checkpoint == latest_id:
                # One checkpoint row per run, advanced batch by batch.
                conn.execute("UPDATE audit_checkpoints SET purged_through_seq = ?, last_hash = ?, "
                             "created_at = ? WHERE id = ?",
                             (walker.last_seq, walker.last_hash, now, latest_id))
                return walker.checked, latest_id
            cursor = conn.execute("INSERT INTO audit_checkpoints (purged_through_seq, last_hash, "
                                  "created_at) VALUES (?, ?, ?)",
                                  (walker.last_seq, walker.last_hash, now))
            return walker.checked, cursor.lastrowid

        while True:
            deleted, run_checkpoint = self.vault.write(purge_batch)
            total += deleted
            if deleted < batch_size:
                return total
