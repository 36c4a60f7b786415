"""The settings store: configurations, typed app settings, business goals, performance metrics.

Sensitive configuration values are encrypted with the field cipher before they reach SQL
(associated data ``configurations/value/<key>``, so a ciphertext copied to another key fails
to decrypt) and never appear in logs, ``repr()`` or the audit trail, which records keyed
hashes of them instead. Writes that change nothing are no-ops: no row touched, no audit row,
so re-running an import is harmless.

    >>> store = SettingsStore.from_keyring(db, keyring, actor="ops")
    >>> store.set_config("openai_api_key", "sk-...", category="ai", sensitive=True)
    >>> store.get_config("openai_api_key")
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import Any, Mapping

from compliance.errors import DecryptionError
from compliance.field_crypto import FieldCipher, associated_data
from compliance.keyring import Keyring, derive_key
from twin.storage import Database
from twin.storage.timestamps import to_db, utc_now

from .errors import SensitiveValueError, SettingsValidationError
from .goals import FIELDS as GOAL_FIELDS
from .goals import goal_from_row, goal_params, normalize_goal
from .schema import MIGRATIONS
from .values import (ChangeOutcome, ConfigChange, ConfigEntry, PerformanceMetric, check_key,
                     check_number, check_optional_text, decode_setting, encode_setting, time_param)

log = logging.getLogger(__name__)

_AUDIT_HASH_LABEL = "settings-store/config-audit-hash"


class _Rollback(Exception):
    """Raised inside a transaction to undo it on purpose (health-check probe)."""


class SettingsStore:
    """Settings in one ``settings`` database (already migrated).

    ``actor`` is recorded as ``changed_by`` when a call does not name one. ``audit_hash_key``
    keys the HMAC of sensitive values in the audit trail; without it a plain SHA-256 is used
    (weaker: a guessable secret can be confirmed from its hash). ``from_keyring`` derives one.
    """

    def __init__(self, db: Database, cipher: FieldCipher, *, actor: str = "system",
                 audit_hash_key: bytes | None = None) -> None:
        self.db = db
        self.cipher = cipher
        self.actor = check_key(actor, "actor")
        self._audit_hash_key = audit_hash_key

    @classmethod
    def from_keyring(cls, db: Database, keyring: Keyring, *, actor: str = "system") -> "SettingsStore":
        """A store using the keyring's field keys and an audit-hash key derived from it."""
        cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
        return cls(db, cipher, actor=actor,
                   audit_hash_key=derive_key(keyring.id_pepper, _AUDIT_HASH_LABEL))

    def __repr__(self) -> str:
        return f"SettingsStore(db={self.db.name!r}, actor={self.actor!r})"

    # -- helpers ----------------------------------------------------------------------------

    def _who(self, changed_by: str | None) -> str:
        return self.actor if changed_by is None else check_key(changed_by, "changed_by")

    def _fingerprint(self, key: str, value: str) -> str:
        # The key is part of the input: equal secrets under two keys get different hashes.
        message = key.encode() + b"\x00" + value.encode()
        if self._audit_hash_key is not None:
            return "hmac-sha256:" + hmac.new(self._audit_hash_key, message, hashlib.sha256).hexdigest()
        return "sha256:" + hashlib.sha256(message).hexdigest()

    def _encrypt(self, key: str, value: str) -> bytes:
        return self.cipher.encrypt(value.encode(), associated_data("configurations", "value", key))

    def _decrypt(self, key: str, blob: bytes) -> str:
        try:
            return self.cipher.decrypt(blob, associated_data("configurations", "value", key)).decode()
        except DecryptionError:
            raise SensitiveValueError(f"sensitive configuration {key!r} cannot be decrypted") from None

    def _plain(self, row: Any) -> str:
        return self._decrypt(row["key"], row["value"]) if row["is_sensitive"] else row["value"]

    def _plain_or_none(self, row: Any) -> str | None:
        # A secret that no longer decrypts (its key version lost) can still be overwritten or
        # deleted; the audit then records its old hash as unknown.
        try:
            return self._plain(row)
        except SensitiveValueError:
            return None

    def _audit(self, conn: Any, scope: str, key: str, action: str, old: str | None, new: str | None,
               sensitive: bool, who: str, now: str) -> None:
        if sensitive:
            old = None if old is None else self._fingerprint(key, old)
            new = None if new is None else self._fingerprint(key, new)
        conn.execute("INSERT INTO config_audit (scope, config_key, action, old_value, new_value, "
                     "is_sensitive, changed_by, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (scope, key, action, old, new, int(sensitive), who, now))

    # -- configurations -------------------------------------------------------------------

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
            stored = self._encrypt(key, value) if sensitive else value
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

    # -- typed app settings ---------------------------------------------------------------

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

    # -- business goals ---------------------------------------------------------------------

    def save_business_goal(self, goal: Mapping[str, Any]) -> ChangeOutcome:
        """Create or replace a goal by its ``id`` (see ``goals.normalize_goal`` for fields)."""
        params = goal_params(normalize_goal(goal))
        columns = ", ".join(GOAL_FIELDS)

        def write(conn: Any) -> ChangeOutcome:
            row = conn.execute(f"SELECT {columns} FROM business_goals WHERE id = ?",
                               (params[0],)).fetchone()
            if row is not None and tuple(row) == params:
                return ChangeOutcome.UNCHANGED
            now = to_db(utc_now())
            if row is None:
                conn.execute(f"INSERT INTO business_goals ({columns}, created_at, updated_at) "
                             f"VALUES ({', '.join('?' for _ in GOAL_FIELDS)}, ?, ?)",
                             (*params, now, now))
                return ChangeOutcome.CREATED
            assignments = ", ".join(f"{f} = ?" for f in GOAL_FIELDS[1:])
            conn.execute(f"UPDATE business_goals SET {assignments}, updated_at = ? WHERE id = ?",
                         (*params[1:], now, params[0]))
            return ChangeOutcome.UPDATED

        return self.db.write(write)

    def get_business_goal(self, goal_id: str) -> dict[str, Any] | None:
        """One goal by id, or None."""
        row = self.db.query_one("SELECT * FROM business_goals WHERE id = ?",
                                (check_key(goal_id, "goal id"),))
        return None if row is None else goal_from_row(row)

    def get_business_goals(self, status: str | None = None,
                           area: str | None = None) -> list[dict[str, Any]]:
        """Goals, highest priority first, optionally filtered by status and/or area."""
        where, params = [], []
        for column, value in (("status", status), ("area", area)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM business_goals" + (" WHERE " + " AND ".join(where) if where else "")
        return [goal_from_row(r) for r in self.db.query(sql + " ORDER BY priority DESC, id", params)]

    def delete_business_goal(self, goal_id: str) -> bool:
        """Delete a goal; False if there was none."""
        check_key(goal_id, "goal id")
        return bool(self.db.write(lambda conn: conn.execute(
            "DELETE FROM business_goals WHERE id = ?", (goal_id,)).rowcount))

    # -- performance metrics --------------------------------------------------------------

    def log_performance_metric(self, name: str, value: float, unit: str | None = None,
                               extra: Any = None, *, recorded_at: datetime | str | None = None) -> int:
        """Record one measurement; returns its id. ``extra`` is any JSON-serialisable value.

        This database is declared free of personal data: never put user IDs or other learner
        data in ``extra`` (counts and endpoints are fine).
        """
        check_key(name, "metric name")
        check_optional_text(unit, "unit")
        try:
            extra_text = None if extra is None else json.dumps(extra, separators=(",", ":"),
                                                               allow_nan=False)
        except (TypeError, ValueError):
            raise SettingsValidationError("metric extra data is not JSON-serialisable") from None
        when = to_db(utc_now()) if recorded_at is None else time_param(recorded_at, "recorded_at")
        params = (name, check_number(value, "metric value"), unit, extra_text, when)
        return self.db.write(lambda conn: conn.execute(
            "INSERT INTO performance_metrics (metric_name, metric_value, metric_unit, "
            "additional_data, recorded_at) VALUES (?, ?, ?, ?, ?)", params).lastrowid)

    def performance_metrics(self, name: str | None = None, *, since: datetime | str | None = None,
                            until: datetime | str | None = None, hours: float | None = None,
                            limit: int | None = None) -> list[PerformanceMetric]:
        """Metrics with ``since <= recorded_at < until``, oldest first.

        ``hours`` is the seed's shorthand for ``since = now - hours``; give it or ``since``.
        """
        if hours is not None:
            if since is not None:
                raise SettingsValidationError("give since or hours, not both")
            since = utc_now() - timedelta(hours=check_number(hours, "hours"))
        where, params = [], []
        if name is not None:
            where.append("metric_name = ?")
            params.append(check_key(name, "metric name"))
        if since is not None:
            where.append("recorded_at >= ?")
            params.append(time_param(since, "since"))
        if until is not None:
            where.append("recorded_at < ?")
            params.append(time_param(until, "until"))
        sql = ("SELECT * FROM performance_metrics" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY recorded_at, id LIMIT ?")
        rows = self.db.query(sql, (*params, -1 if limit is None else limit))
        return [PerformanceMetric(r["id"], r["metric_name"], r["metric_value"], r["metric_unit"],
                                  json.loads(r["additional_data"]) if r["additional_data"] else None,
                                  r["recorded_at"]) for r in rows]

    def purge_performance_metrics(self, before: datetime | str) -> int:
        """Delete metrics recorded before ``before``; returns how many."""
        cutoff = time_param(before, "before")
        return self.db.write(lambda conn: conn.execute(
            "DELETE FROM performance_metrics WHERE recorded_at < ?", (cutoff,)).rowcount)

    # -- health -----------------------------------------------------------------------------

    def health_check(self) -> dict[str, Any]:
        """Is the store usable? Checks integrity, schema version, a write/encrypt/decrypt round
        trip (rolled back, so it leaves no trace and no audit row) and that every stored
        secret decrypts. Never raises; ``healthy`` is False and ``errors`` says why."""
        checks: dict[str, str] = {}
        errors: list[str] = []

        def check(name: str, fn: Any) -> None:
            try:
                fn()
                checks[name] = "ok"
            except Exception as exc:  # a health check reports, it does not crash the caller
                checks[name] = "failed"
                errors.append(f"{name}: {type(exc).__name__}: {exc}")

        def quick_check() -> None:
            result = [r[0] for r in self.db.query("PRAGMA quick_check")]
            if result != ["ok"]:
                raise RuntimeError("; ".join(result[:3]))

        schema: dict[str, int] = {}

        def schema_version() -> None:
            row = self.db.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            schema["current"], schema["expected"] = int(row[0]), len(MIGRATIONS)
            if schema["current"] != schema["expected"]:
                raise RuntimeError(f"schema version {schema['current']}, expected {schema['expected']}")

        def round_trip() -> None:
            probe_key, probe = "__health_check__", "probe-" + utc_now().isoformat()
            try:
                with self.db.transaction() as conn:
                    now = to_db(utc_now())
                    conn.execute("INSERT INTO configurations (key, value, category, is_sensitive, "
                                 "created_at, updated_at, updated_by) "
                                 "VALUES (?, ?, 'health', 1, ?, ?, ?)",
                                 (probe_key, self._encrypt(probe_key, probe), now, now, self.actor))
                    row = conn.execute("SELECT key, value, is_sensitive FROM configurations "
                                       "WHERE key = ?", (probe_key,)).fetchone()
                    if self._plain(row) != probe:
                        raise RuntimeError("read back a different value")
                    raise _Rollback
            except _Rollback:
                pass

        def secrets_decrypt() -> None:
            bad = []
            for row in self.db.query("SELECT key, value, is_sensitive FROM configurations "
                                     "WHERE is_sensitive = 1"):
                try:
                    self._plain(row)
                except SensitiveValueError:
                    bad.append(row["key"])
            if bad:
                raise SensitiveValueError(f"{len(bad)} sensitive value(s) do not decrypt: {bad[:5]}")

        check("integrity", quick_check)
        check("schema", schema_version)
        check("write_round_trip", round_trip)
        check("sensitive_values", secrets_decrypt)
        counts: dict[str, int] = {}
        try:
            counts = {t: int(self.db.query_one(f'SELECT count(*) FROM "{t}"')[0])
                      for t in ("configurations", "app_settings", "business_goals", "config_audit",
                                "performance_metrics")}
        except Exception as exc:
            errors.append(f"counts: {type(exc).__name__}: {exc}")
        return {"healthy": not errors, "database": self.db.name, "encrypted": self.db.encrypted,
                "schema_version": schema.get("current"), "expected_schema_version": len(MIGRATIONS),
                "checks": checks, "counts": counts, "errors": errors,
                "checked_at": to_db(utc_now())}
