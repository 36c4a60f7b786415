"""Learning sessions: start, read, finish/update, list per profile with cursor pagination."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from compliance.audit import Actor
from compliance.subject_keys import KeyProof
from twin.storage.timestamps import from_db, to_db

from .context import LearnerContext, new_id
from .cursors import decode_cursor, encode_cursor
from .errors import InvalidFieldsError, NotFoundError, PreconditionFailedError
from .profiles import ProfileService, etag_for, if_match_allows
from .tables import PROFILES, SESSIONS

# Client clocks run a little ahead; a start or end further in the future is a client error.
CLOCK_SKEW = timedelta(minutes=5)

# A session is served only while its profile is unexpired and it is inside its own window.
_LIVE = f"{SESSIONS.live_where('s')} AND {PROFILES.live_where('p')}"
_SELECT = (f"SELECT {SESSIONS.select_list('s')}, p.{PROFILES.subject_hash_column} AS subject_hash "
           f"FROM {SESSIONS.name} s JOIN {PROFILES.name} p ON p.profile_id = s.profile_id WHERE ")
_INSERT_COLUMNS = ("session_id", "profile_id", "session_type", "start_time", "topics_covered",
                   "completion_status")
_INSERT = SESSIONS.insert_sql(_INSERT_COLUMNS)
_FIRST_ROW_VERSION = 1  # row_version's column default: what a new row's ETag is made from
_VIEW_COLUMNS = tuple(c.name for c in SESSIONS.columns if c.exported)


class SessionService:
    def __init__(self, ctx: LearnerContext, profiles: ProfileService) -> None:
        self.ctx = ctx
        self.profiles = profiles

    def _view(self, row: Any) -> dict[str, Any]:
        """The API view: the session's exported columns, decoded (the export's form too)."""
        return SESSIONS.decode(row, self.ctx.keys.reader(row["subject_hash"]), _VIEW_COLUMNS)

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
        session_id = new_id("ses")
        start: datetime = data.get("start_time") or ctx.clock()
        view = {name: SESSIONS.null_as(name) for name in _VIEW_COLUMNS}
        view.update(session_id=session_id, profile_id=profile_id, session_type=data["session_type"],
                    start_time=to_db(start), topics_covered=data.get("topics_covered") or [],
                    completion_status="in_progress")

        # The profile is read in the write, on the writers' connection whose pages the last
        # write left cached (read before it, through this thread's connection, whose cache every
        # write of the process empties, its pages were read and decrypted again each time); it
        # is also the check that the profile is still live. An unknown profile is 404 before a
        # refused start_time is 422, as before.
        def insert(conn: Any) -> str:
            subject_hash, proof = self.profiles.key_proof(profile_id, conn)
            self._check_start(start)
            writer = ctx.keys.writer(subject_hash, proof=proof)
            conn.execute(_INSERT, [SESSIONS.seal(writer, session_id, c, view[c]) if c in SESSIONS.sealed_columns
                                   else view[c] for c in _INSERT_COLUMNS])
            return subject_hash

        subject_hash = ctx.write(insert)
        ctx.record(actor, "create", subject_hash, f"session:{session_id}", request_id)
        # Rendered from what was just written: reading it back would only decrypt it again.
        return view, etag_for(session_id, _FIRST_ROW_VERSION)

    def _check_start(self, start: datetime) -> None:
        # A session older than its retention window would be stored, never served and purged
        # the next night; one in the future is a client clock or unit error.
        now = self.ctx.clock()
        if start <= now - timedelta(days=self.ctx.config.session_retention_days):
            raise InvalidFieldsError({"start_time": [
                f"Must be within the last {self.ctx.config.session_retention_days} days (session retention)."]},
                rule="start-time-outside-retention")
        if start > now + CLOCK_SKEW:
            raise InvalidFieldsError({"start_time": ["Must not be in the future."]}, rule="time-in-the-future")

    def get(self, actor: Actor, request_id: str | None, session_id: str) -> tuple[dict[str, Any], str]:
        row = self._row(session_id)
        self.ctx.record(actor, "read", row["subject_hash"], f"session:{session_id}", request_id)
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
                        raise InvalidFieldsError({"end_time": ["Must not be before start_time."]},
                                                 rule="session-ends-before-it-starts")
                    if end > ctx.clock() + CLOCK_SKEW:
                        raise InvalidFieldsError({"end_time": ["Must not be in the future."]},
                                                 rule="time-in-the-future")
                    sets["end_time"] = to_db(end)
                    sets["duration_minutes"] = round((end - start).total_seconds() / 60, 3)
                else:
                    sets["end_time"] = sets["duration_minutes"] = None
            for column in ("engagement_score", "completion_status"):
                if column in changes:
                    sets[column] = changes[column]
            sealed = [c for c in ("performance_metrics", "topics_covered") if c in changes]
            opened: dict[str, Any] = {}  # the sealed columns' new values, as they read
            if sealed:
                writer = ctx.keys.writer(row["subject_hash"], proof=KeyProof(
                    SESSIONS.name, "session_type", session_id, row["session_type"]))
                for column in sealed:
                    value = changes[column] if changes[column] is not None else SESSIONS.null_as(column)
                    sets[column] = SESSIONS.seal(writer, session_id, column, value)
                    opened[column] = SESSIONS.null_as(column) if value is None else value
            if sets:
                conn.execute(SESSIONS.update_sql(tuple(sets), "session_id", bump="row_version"),
                             (*sets.values(), session_id))
            return row, sets, opened

        row, sets, opened = ctx.write(apply)
        ctx.record(actor, "update", row["subject_hash"], f"session:{session_id}", request_id,
                   {"fields": sorted(changes)})
        # Rendered from the row the transaction read and what it wrote (reading it back would
        # only decrypt it again): the columns it left, decoded, and the new values.
        view = SESSIONS.decode(row, self.ctx.keys.reader(row["subject_hash"]),
                               tuple(c for c in _VIEW_COLUMNS if c not in sets))
        view.update((c, opened.get(c, sets[c])) for c in _VIEW_COLUMNS if c in sets)
        return view, etag_for(session_id, row["row_version"] + (1 if sets else 0))

    def list(self, actor: Actor, request_id: str | None, profile_id: str, *, limit: int,
             cursor: str | None, restricted_to: str | None = None) -> dict[str, Any]:
        """``{items, next_cursor}`` in start order; ``restricted_to`` (a subject hash) allows
        only that subject's profile."""
        subject_hash = self.profiles.subject_of(profile_id)
        self.ctx.require_own(restricted_to, subject_hash)
        after = decode_cursor(cursor) if cursor else 0
        rows = self.ctx.db.query(
            _SELECT + "s.profile_id = :pid AND s.id > :after AND " + _LIVE + " ORDER BY s.id LIMIT :limit",
            {"pid": profile_id, "after": after, "limit": limit + 1, **self.ctx.cutoffs()})
        more = len(rows) > limit
        rows = rows[:limit]
        self.ctx.record(actor, "read", subject_hash, f"profile:{profile_id}/sessions", request_id,
                        {"count": len(rows)})
        return {"items": [self._view(r) for r in rows],
                "next_cursor": encode_cursor(rows[-1]["id"]) if more else None}
