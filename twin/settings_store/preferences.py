"""Seed 001's user preferences: per-user overrides, owned by the keyed hash of their user,
values sealed under that user's key (``tables.py``: exported, erased and kept with them)."""

from __future__ import annotations

from typing import Any

from compliance.subject_keys import SubjectKeyMissingError
from twin.storage.timestamps import to_db, utc_now

from .people import PersonalParts
from .tables import USER_PREFERENCES as TABLE
from .values import check_key

_WRITE = ("user_id_hash", "preference_key", "value", "created_at", "updated_at")


class UserPreferences(PersonalParts):
    def set_user_preference(self, user_id: str, key: str, value: Any) -> None:
        """Set one preference (any JSON value) of a user."""
        subject = self._subject(user_id)
        check_key(key, "preference key")
        value = self._json(value, "preference value")
        sealed = TABLE.seal(self._sealer(subject, create=True), TABLE.row_id_of(
            {"user_id_hash": subject, "preference_key": key}), "value", value)
        now = to_db(utc_now())
        self.db.write(lambda conn: conn.execute(
            f"{TABLE.insert_sql(_WRITE)} ON CONFLICT (user_id_hash, preference_key) DO UPDATE SET "
            "value = excluded.value, updated_at = excluded.updated_at",
            (subject, key, sealed, now, now)))

    def get_user_preferences(self, user_id: str) -> dict[str, Any]:
        """Every preference of a user, by key ({} if none, or their key was erased)."""
        subject = self._subject(user_id)
        rows = self.db.query(f"SELECT {TABLE.select_list()} FROM {TABLE.name} "
                             "WHERE user_id_hash = ? ORDER BY preference_key", (subject,))
        if not rows:
            return {}
        try:
            reader = self._sealer(subject)
        except SubjectKeyMissingError:
            return {}
        return {row["preference_key"]: TABLE.decode(row, reader, ("value",))["value"] for row in rows}

    def get_user_preference(self, user_id: str, key: str, default: Any = None) -> Any:
        """One preference of a user, or ``default``."""
        check_key(key, "preference key")
        return self.get_user_preferences(user_id).get(key, default)

    def delete_user_preference(self, user_id: str, key: str) -> bool:
        """Delete one preference; whether it existed."""
        subject = self._subject(user_id)
        check_key(key, "preference key")
        return bool(self.db.write(lambda conn: conn.execute(
            f"DELETE FROM {TABLE.name} WHERE user_id_hash = ? AND preference_key = ?",
            (subject, key)).rowcount))
