"""Learning sessions: start, read, finish/update, list per profile with cursor pagination."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

from compliance.audit import Actor
from compliance.subject_keys import KeyProof
from twin.storage.timestamps import from_db, to_db

from .context import LearnerContext, new_id
from .errors import InvalidFieldsError, NotFoundError, PreconditionFailedError
from .profiles import ProfileService, etag_for, if_match_allows

TABLE = "learning_sessions"
_EMPTY: dict[str, Any] = {"performance_metrics": None, "topics_covered": []}  # what null means
_MAX_ROWID = 2**63 - 1
# Client clocks run a little ahead; a start or end further in the future is a client error.
CLOCK_SKEW = timedelta(minutes=5)

# A session is served only while its profile is unexpired and it is inside its own window.
_LIVE = ("s.start_time > :session_cutoff AND p.ttl_expires_at > :now")
_SELECT = (f"SELECT s.*, p.user_id_hash FROM {TABLE} s "
           "JOIN learning_profiles p ON p.profile_id = s.profile_id WHERE ")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"s{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The internal position behind an opaque cursor; InvalidFieldsError if it is not ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("s") or not text[1:].isascii() or not text[1:].isdigit():
            raise ValueError
        position = int(text[1:])
        if position > _MAX_ROWID:  # SQLite rowids are signed 64-bit; larger cannot be bound
            raise ValueError
        return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidFieldsError({"cursor": ["Not a valid cursor."]}) from None


class SessionService:
    def __init__(self, ctx: LearnerContext, profiles: ProfileService) -> None:
        self.ctx = ctx
        self.profiles = profiles

    def _view(self, row: Any) -> dict[str, Any]:
        sealer = self.ctx.keys.reader(row["user_id_hash"])
        metrics = row["performance_metrics"]
        return {
            "session_id": row["session_id"],
            "profile_id": row["profile_id"],
            "session_type": sealer.open(TABLE, "session_type", row["session_id"], row["session_type"]),
            "start_time": row["start_time"],
            "end_time": row["end_time"],
            "duration_minutes": row["duration_minutes"],
            "topics_covered": sealer.open(TABLE, "topics_covered", row["session_id"], row["topics_covered"])
            if row["topics_covered"] is not None else [],
            "performance_metrics": sealer.open(TABLE, "performance_metrics", row["session_id"], metrics)
            if metrics is not None else None,
            "engagement_score": row["engagement_score"],
            "completion_status": row["completion_status"],
        }

    def _row(self, session_id: str, conn: Any = None) -> Any:
        conn = conn or self.ctx.db.connection()
        row = conn.execute(_SELECT + "s.session_id = :sid AND " + _LIVE,
                           {"sid": session_id, **self.ctx.cutoffs()}).fetchone()
        if row is None:
            raise NotFoundError("session not found")
        return row

    def start(self, actor: Actor, request_id: str | None, profile_id: str,
              data: dict[str, Any]) -> tuple[dict[str, Any], str]:
        ctx = self.ctx
        subject, sealer = self.profiles.subject_and_sealer(profile_id)
        session_id = new_id("ses")
        start: datetime = data.get("start_time") or ctx.clock()
        self._check_start(start)

        def insert(conn: Any) -> None:
            self.profiles.require_live(conn, profile_id)  # erased or expired since the check above?
            conn.execute(
                f"INSERT INTO {TABLE} (session_id, profile_id, session_type, start_time, topics_covered) "
                "VALUES (?, ?, ?, ?, ?)",
                (session_id, profile_id, sealer.seal(TABLE, "session_type", session_id, data["session_type"]),
                 to_db(start), sealer.seal(TABLE, "topics_covered", session_id, data.get("topics_covered") or [])))

        ctx.db.write(insert)
        ctx.record(actor, "create", subject, f"session:{session_id}", request_id)
        row = self._row(session_id)
        return self._view(row), etag_for(session_id, row["row_version"])

    def _check_start(self, start: datetime) -> None:
        # A session older than its retention window would be stored, never served and purged
        # the next night; one in the future is a client clock or unit error.
        now = self.ctx.clock()
        if start <= now - timedelta(days=self.ctx.config.session_retention_days):
            raise InvalidFieldsError({"start_time": [
                f"Must be within the last {self.ctx.config.session_retention_days} days (session retention)."]})
        if start > now + CLOCK_SKEW:
            raise InvalidFieldsError({"start_time": ["Must not be in the future."]})

    def get(self, actor: Actor, request_id: str | None, session_id: str) -> tuple[dict[str, Any], str]:
        row = self._row(session_id)
        self.ctx.record(actor, "read", row["user_id_hash"], f"session:{session_id}", request_id)
        return self._view(row), etag_for(session_id, row["row_version"])

    def update(self, actor: Actor, request_id: str | None, session_id: str, changes: dict[str, Any],
               if_match: str | None) -> tuple[dict[str, Any], str]:
        """Finish or update a session; ``duration_minutes`` is computed from start and end."""
        ctx = self.ctx

        def apply(conn: Any) -> str:
            row = self._row(session_id, conn)
            if not if_match_allows(if_match, etag_for(session_id, row["row_version"])):
                raise PreconditionFailedError("the session changed since it was read (ETag mismatch)")
            sets: dict[str, Any] = {}
            if "end_time" in changes:
                end: datetime | None = changes["end_time"]
                if end is not None:
                    start = from_db(row["start_time"])
                    if end < start:
                        raise InvalidFieldsError({"end_time": ["Must not be before start_time."]})
                    if end > ctx.clock() + CLOCK_SKEW:
                        raise InvalidFieldsError({"end_time": ["Must not be in the future."]})
                    sets["end_time"] = to_db(end)
                    sets["duration_minutes"] = round((end - start).total_seconds() / 60, 3)
                else:
                    sets["end_time"] = sets["duration_minutes"] = None
            for column in ("engagement_score", "completion_status"):
                if column in changes:
                    sets[column] = changes[column]
            sealed = [c for c in ("performance_metrics", "topics_covered") if c in changes]
            if sealed:
                sealer = ctx.keys.writer(row["user_id_hash"], proof=KeyProof(
                    TABLE, "session_type", session_id, row["session_type"]))
                for column in sealed:
                    value = changes[column] if changes[column] is not None else _EMPTY[column]
                    sets[column] = None if value is None else sealer.seal(TABLE, column, session_id, value)
            if sets:
                assignments = ", ".join(f"{c} = ?" for c in sets)
                conn.execute(f"UPDATE {TABLE} SET {assignments}, row_version = row_version + 1 "
                             "WHERE session_id = ?", (*sets.values(), session_id))
            return row["user_id_hash"]

        subject = ctx.db.write(apply)
        ctx.record(actor, "update", subject, f"session:{session_id}", request_id,
                   {"fields": sorted(changes)})
        row = self._row(session_id)
        return self._view(row), etag_for(session_id, row["row_version"])

    def list(self, actor: Actor, request_id: str | None, profile_id: str, *, limit: int,
             cursor: str | None, subject: str | None = None) -> dict[str, Any]:
        """``{items, next_cursor}`` in start order; ``subject`` restricts to one learner."""
        owner = self.profiles.subject_of(profile_id)
        if subject is not None and owner != subject:
            raise NotFoundError("profile not found")
        after = decode_cursor(cursor) if cursor else 0
        rows = self.ctx.db.query(
            _SELECT + "s.profile_id = :pid AND s.id > :after AND " + _LIVE + " ORDER BY s.id LIMIT :limit",
            {"pid": profile_id, "after": after, "limit": limit + 1, **self.ctx.cutoffs()})
        more = len(rows) > limit
        rows = rows[:limit]
        self.ctx.record(actor, "read", owner, f"profile:{profile_id}/sessions", request_id,
                        {"count": len(rows)})
        return {"items": [self._view(r) for r in rows],
                "next_cursor": encode_cursor(rows[-1]["id"]) if more else None}
