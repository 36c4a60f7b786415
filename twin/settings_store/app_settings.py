"""Typed app settings: a value comes back as the type it was stored with; changes logged."""

from __future__ import annotations

import logging
from typing import Any

from twin.storage.timestamps import to_db, utc_now

from .base import SettingsBase
from .values import ChangeOutcome, check_key, check_optional_text, decode_setting, encode_setting

log = logging.getLogger(__name__)


class AppSettings(SettingsBase):
    def set_app_setting(self, key: str, value: Any, description: str | None = None,
                        changed_by: str | None = None) -> ChangeOutcome:
        """Store a bool/int/float/str/dict/list setting; ``get_app_setting`` returns the same type."""
        check_key(key)
        check_optional_text(description, "description")
        text, value_type = encode_setting(value)
        who = self._who(changed_by)

        def write(conn: Any) -> ChangeOutcome:
            row = conn.execute("SELECT value, value_type, description FROM app_settings WHERE key = ?",
                               (key,)).fetchone()
            if row is not None and (row["value"], row["value_type"], row["description"]) \
                    == (text, value_type, description):
                return ChangeOutcome.UNCHANGED
            now = to_db(utc_now())
            conn.execute("INSERT INTO app_settings (key, value, value_type, description, updated_at, "
                         "updated_by) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                         "value = excluded.value, value_type = excluded.value_type, "
                         "description = excluded.description, updated_at = excluded.updated_at, "
                         "updated_by = excluded.updated_by",
                         (key, text, value_type, description, now, who))
            self._audit(conn, "app_setting", key, "create" if row is None else "update",
                        None if row is None else row["value"], text, False, who, now)
            return ChangeOutcome.CREATED if row is None else ChangeOutcome.UPDATED

        outcome = self.db.write(write)
        if outcome is not ChangeOutcome.UNCHANGED:
            log.info("app setting %r %s (%s) by %s", key, outcome.value, value_type, who)
        return outcome

    def get_app_setting(self, key: str, default: Any = None) -> Any:
        """A setting as the type it was stored with, or ``default``."""
        row = self.db.query_one("SELECT value, value_type FROM app_settings WHERE key = ?",
                                (check_key(key),))
        return default if row is None else decode_setting(row["value"], row["value_type"])

    def app_settings(self) -> dict[str, Any]:
        """Every app setting, decoded, by key."""
        return {r["key"]: decode_setting(r["value"], r["value_type"])
                for r in self.db.query("SELECT key, value, value_type FROM app_settings ORDER BY key")}

    def delete_app_setting(self, key: str, changed_by: str | None = None) -> bool:
        """Delete an app setting (audited); False if there was none."""
        check_key(key)
        who = self._who(changed_by)

        def write(conn: Any) -> bool:
            row = conn.execute("SELECT value FROM app_settings WHERE key = ?", (key,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM app_settings WHERE key = ?", (key,))
            self._audit(conn, "app_setting", key, "delete", row["value"], None, False, who,
                        to_db(utc_now()))
            return True

        return self.db.write(write)

