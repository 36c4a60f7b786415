"""Seed 001's thread contexts: a conversation's messages, sealed, kept until they expire.

A thread saved with ``user_id=`` is that user's (sealed under their key, exported and erased
with them); without, it belongs to no subject and only its expiry deletes it (``tables.py``).
Reads never return an expired thread; ``cleanup_expired_threads`` (and the retention job)
delete them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Sequence

from compliance.subject_keys import SubjectKeyMissingError
from twin.storage.timestamps import to_db, utc_now

from .errors import SettingsValidationError
from .people import PersonalParts
from .tables import THREAD_CONTEXTS as TABLE
from .values import check_key, check_number, check_optional_text

DEFAULT_THREAD_TTL_HOURS = 24.0
_VIEW = ("thread_key", "channel_id", "thread_ts", "messages", "created_at", "updated_at", "expires_at")
_WRITE = ("thread_key", "channel_id", "thread_ts", "messages", "user_id_hash", "created_at",
          "updated_at", "expires_at")


class ThreadContexts(PersonalParts):
    def save_thread_context(self, thread_key: str, channel_id: str | None = None,
                            thread_ts: str | None = None, messages: Sequence[Any] = (), *,
                            user_id: str | None = None,
                            ttl_hours: float = DEFAULT_THREAD_TTL_HOURS) -> dict[str, Any]:
        """Create or replace a thread's context; it expires ``ttl_hours`` from now. Returns it."""
        check_key(thread_key, "thread_key")
        check_optional_text(channel_id, "channel_id")
        check_optional_text(thread_ts, "thread_ts")
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise SettingsValidationError("messages must be a list")
        messages = self._json(list(messages), "messages")
        if check_number(ttl_hours, "ttl_hours") <= 0:
            raise SettingsValidationError("ttl_hours must be positive")
        subject = None if user_id is None else self._subject(user_id)
        sealed = TABLE.seal(self._sealer(subject, create=True), thread_key, "messages", messages)
        now = utc_now()
        row = (thread_key, channel_id, thread_ts, sealed, subject, to_db(now), to_db(now),
               to_db(now + timedelta(hours=ttl_hours)))

        def write(conn: Any) -> None:
            # A thread changing hands starts over: its creation time is the new owner's.
            conn.execute(f"DELETE FROM {TABLE.name} WHERE thread_key = ? "
                         "AND user_id_hash IS DISTINCT FROM ?",
                         (thread_key, subject))
            conn.execute(f"{TABLE.insert_sql(_WRITE)} ON CONFLICT (thread_key) DO UPDATE SET "
                         "channel_id = excluded.channel_id, thread_ts = excluded.thread_ts, "
                         "messages = excluded.messages, updated_at = excluded.updated_at, "
                         "expires_at = excluded.expires_at", row)

        self.db.write(write)
        return {"thread_key": thread_key, "channel_id": channel_id, "thread_ts": thread_ts,
                "messages": messages, "created_at": row[5], "updated_at": row[6], "expires_at": row[7]}

    def get_thread_context(self, thread_key: str) -> dict[str, Any] | None:
        """The thread's context (``messages``, ids, times), or None if unknown or expired."""
        check_key(thread_key, "thread_key")
        row = self.db.query_one(f"SELECT {TABLE.select_list()} FROM {TABLE.name} "
                                f"WHERE thread_key = :thread_key AND {TABLE.live_where()}",
                                {"thread_key": thread_key, "now": to_db(utc_now())})
        if row is None:
            return None
        try:
            return TABLE.decode(row, self._sealer(row["user_id_hash"]), _VIEW)
        except SubjectKeyMissingError:  # its owner was erased; the row goes with them
            return None

    def cleanup_expired_threads(self) -> int:
        """Delete every expired thread context (owned or not); returns how many."""
        params = {"now": to_db(utc_now())}
        return self.db.write(lambda conn: conn.execute(
            f"DELETE FROM {TABLE.name} WHERE {TABLE.expired_where()}", params).rowcount)
