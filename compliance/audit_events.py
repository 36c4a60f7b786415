"""What an audit event is: who did what to whose data, validated, and how it is hashed.

An event records who (token id and role) did what (read, export, update, erase, purge, consent
change...) to whose data (the keyed subject hash, never a user id), when, and under which
request id. ``details`` is stored unencrypted and kept for the trail's whole retention window,
so callers put counts, table names and opaque ids in it, never personal data (no names, user
ids, e-mail addresses, free text from a request).

Each event's ``event_hash`` is SHA-256 over the canonical JSON (ASCII) of all its other columns,
``seq`` and ``prev_hash`` included (``compliance.hash_chain``).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from twin.storage.timestamps import to_db

from .errors import ComplianceError
from .hash_chain import link_hash

ACTIONS = frozenset({"read", "create", "update", "delete", "export", "erase", "purge",
                     "consent_grant", "consent_withdraw", "hold_place", "hold_lift", "key_rotate",
                     "restore_reapply", "model_fit", "model_recompute"})
ROLES = frozenset({"admin", "service", "learner", "operator", "system"})

MAX_DETAILS_BYTES = 8192
MAX_QUERY_LIMIT = 1000

# Every column but event_hash goes into the hash; seq is in so renumbering is detected.
HASHED_COLUMNS = ("seq", "event_id", "occurred_at", "actor_id", "actor_role", "action",
                  "subject_hash", "resource", "request_id", "details", "prev_hash")
COLUMNS = HASHED_COLUMNS + ("event_hash",)
SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit_events"

RECORD_FIELDS = frozenset({"subject_hash", "resource", "request_id", "details"})
_STR_OR_NONE = frozenset({str, type(None)})
# What a staged event holds: the validated fields plus when it happened and its id.
_STAGED_FIELDS = frozenset({"actor_id", "actor_role", "action", "subject_hash", "resource",
                            "request_id", "details", "event_id", "occurred_at"})


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


def compute_event_hash(row: Mapping[str, Any] | Any) -> str:
    """SHA-256 (hex) of an event's canonical JSON: every column but ``event_hash``.

    ``row`` is a database row or a dict with the stored values (``details`` as its JSON text).
    """
    return link_hash({name: row[name] for name in HASHED_COLUMNS}, ascii_only=True)


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


def validated(actor: Actor, action: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of an event's fields; raises the ``InvalidAuditEventError`` family."""
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


def stamped(fields: dict[str, Any], clock: Callable[[], Any]) -> dict[str, Any]:
    """``fields`` with the event's random id and the time it happened."""
    fields["event_id"] = secrets.token_urlsafe(12)
    fields["occurred_at"] = to_db(clock())
    return fields


def is_staged_event(event: Any) -> bool:
    """Whether a journal record holds a well-formed staged event."""
    if not isinstance(event, dict) or event.keys() != _STAGED_FIELDS:
        return False
    # Every event chained is checked: the common case (each value a str or None, those that
    # may not be None set) in C, and anything else by the loop.
    if not _STR_OR_NONE.issuperset(map(type, event.values())) \
            or None in (event["event_id"], event["occurred_at"], event["actor_id"]):
        for name, value in event.items():
            if not isinstance(value, str) and (value is not None or name not in RECORD_FIELDS):
                return False
    return event["action"] in ACTIONS and event["actor_role"] in ROLES


def parse_details(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    # A hand-edited row must not make the whole listing unreadable; verify() reports it.
    return value if isinstance(value, dict) else {"_unparsed": text}


def to_event(row: Any) -> AuditEvent:
    values = {name: row[name] for name in COLUMNS}
    values["details"] = parse_details(row["details"])
    return AuditEvent(**values)
