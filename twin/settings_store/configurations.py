"""Configurations by key and category; sensitive values encrypted, every change logged.

Writes that change nothing are no-ops: no row touched, no log row, so re-running an import
is harmless.
"""

from __future__ import annotations

import logging
from typing import Any

from twin.storage.timestamps import to_db, utc_now

from .base import SettingsBase
from .errors import SettingsValidationError
from .values import ChangeOutcome, ConfigChange, ConfigEntry, check_key, check_optional_text

log = logging.getLogger(__name__)


class Configurations(SettingsBase):
    def set_config(self, key: str, value: str, category: str = "general",
                   description: str | None = None, sensitive: bool = False,
                   changed_by: str | None = None) -> ChangeOutcome:
        """Create or update a configuration; an identical write is a no-op (``UNCHANGED``)."""
        check_key(key)
        if not isinstance(value, str):
            raise SettingsValidationError(f"configuration {key!r}: value must be a string")
        check_key(category, "category")
        check_optional_text(description, "description")
        if not isinstance(sensitive, bool):
            raise SettingsValidationError("sensitive must be a bool")
        who = self._who(changed_by)

        def write(conn: Any) -> ChangeOutcome:
            row = conn.execute("SELECT * FROM configurations WHERE key = ?", (key,)).fetchone()
            old = None if row is None else self._plain_or_none(row)
            current = None if row is None else (
                old, row["category"], row["description"], bool(row["is_sensitive"]))
            if current == (value, category, description, sensitive):
                return ChangeOutcome.UNCHANGED
            now = to_db(utc_now())
            stored = self._stored(key, value, sensitive)
            if row is None:
                conn.execute("INSERT INTO configurations (key, value, category, description, "
                             "is_sensitive, created_at, updated_at, updated_by) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (key, stored, category, description, int(sensitive), now, now, who))
            else:
                conn.execute("UPDATE configurations SET value = ?, category = ?, description = ?, "
                             "is_sensitive = ?, updated_at = ?, updated_by = ? WHERE key = ?",
                             (stored, category, description, int(sensitive), now, who, key))
            # Hash both sides if either is secret: a key leaving "sensitive" keeps its old value hidden.
            was_sensitive = row is not None and bool(row["is_sensitive"])
            self._audit(conn, "configuration", key, "create" if row is None else "update", old, value,
                        sensitive or was_sensitive, who, now)
            return ChangeOutcome.CREATED if row is None else ChangeOutcome.UPDATED

        outcome = self.db.write(write)
        if outcome is not ChangeOutcome.UNCHANGED:
            log.info("configuration %r %s (category=%s, sensitive=%s) by %s",
                     key, outcome.value, category, sensitive, who)
        return outcome

    def get_config(self, key: str, default: str | None = None) -> str | None:
        """The (decrypted) value of a configuration, or ``default`` if there is none."""
        row = self.db.query_one("SELECT key, value, is_sensitive FROM configurations WHERE key = ?",
                                (check_key(key),))
        return default if row is None else self._plain(row)

    def _entry(self, row: Any) -> ConfigEntry:
        return ConfigEntry(row["key"], self._plain(row), row["category"], row["description"],
                           bool(row["is_sensitive"]), row["created_at"], row["updated_at"],
                           row["updated_by"])

    def get_config_entry(self, key: str) -> ConfigEntry | None:
        """A configuration with its metadata (``repr()`` masks a sensitive value), or None."""
        row = self.db.query_one("SELECT * FROM configurations WHERE key = ?", (check_key(key),))
        return None if row is None else self._entry(row)

    def configs_by_category(self, category: str) -> list[ConfigEntry]:
        """Every configuration of a category, sorted by key."""
        rows = self.db.query("SELECT * FROM configurations WHERE category = ? ORDER BY key",
                             (check_key(category, "category"),))
        return [self._entry(r) for r in rows]

    def delete_config(self, key: str, changed_by: str | None = None) -> bool:
        """Delete a configuration (audited); False if there was none."""
        check_key(key)
        who = self._who(changed_by)

        def write(conn: Any) -> bool:
            row = conn.execute("SELECT * FROM configurations WHERE key = ?", (key,)).fetchone()
            if row is None:
                return False
            sensitive = bool(row["is_sensitive"])
            old = self._plain_or_none(row)
            conn.execute("DELETE FROM configurations WHERE key = ?", (key,))
            self._audit(conn, "configuration", key, "delete", old, None, sensitive, who,
                        to_db(utc_now()))
            return True

        deleted = self.db.write(write)
        if deleted:
            log.info("configuration %r deleted by %s", key, who)
        return deleted

    def config_history(self, key: str, *, scope: str = "configuration") -> list[ConfigChange]:
        """Every recorded change of a configuration (or app setting), oldest first."""
        rows = self.db.query("SELECT * FROM config_audit WHERE config_key = ? AND scope = ? "
                             "ORDER BY id", (check_key(key), scope))
        return [ConfigChange(r["id"], r["scope"], r["config_key"], r["action"], r["old_value"],
                             r["new_value"], bool(r["is_sensitive"]), r["changed_by"], r["changed_at"])
                for r in rows]

    def rewrap_sensitive(self, batch_size: int = 500) -> int:
        """Re-encrypt sensitive values not under the active field key (after a rotation).

        Works through the table ``batch_size`` rows per transaction, so the write lock is
        never held for long. The values do not change, so no audit row is written. Returns
        how many were rewrapped (0 on a second run).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SettingsValidationError("batch_size must be a positive integer")

        def batch(after: int) -> tuple[int, int | None]:
            def write(conn: Any) -> tuple[int, int | None]:
                rows = conn.execute("SELECT id, key, value, is_sensitive FROM configurations "
                                    "WHERE is_sensitive = 1 AND id > ? ORDER BY id LIMIT ?",
                                    (after, batch_size)).fetchall()
                count = 0
                for row in rows:
                    if self.cipher.needs_rewrap(row["value"]):
                        conn.execute("UPDATE configurations SET value = ? WHERE id = ?",
                                     (self._encrypt(row["key"], self._plain(row)), row["id"]))
                        count += 1
                return count, (rows[-1]["id"] if len(rows) == batch_size else None)
            return self.db.write(write)

        total, cursor = 0, 0
        while cursor is not None:
            done, cursor = batch(cursor)
            total += done
        if total:
            log.info("rewrapped %d sensitive configuration value(s) under field key v%d",
                     total, self.cipher.active_key_id)
        return total

