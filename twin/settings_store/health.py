"""The settings store's health check: integrity, schema, a rolled-back write round trip and
that every stored secret decrypts.

``integrity`` is SQLite's ``quick_check`` of the file; a PostgreSQL database's pages are the
server's to check, so there it is ``skipped`` (and the health is the other checks')."""

from __future__ import annotations

from typing import Any

from twin.storage import FileBacked
from twin.storage.timestamps import to_db, utc_now

from .base import SettingsBase
from .errors import SensitiveValueError
from .schema import MIGRATIONS


class _Rollback(Exception):
    """Raised inside a transaction to undo it on purpose (health-check probe)."""


class HealthCheck(SettingsBase):
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

        if isinstance(self.db, FileBacked):
            check("integrity", quick_check)
        else:
            checks["integrity"] = "skipped"
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
        # Encrypted at rest by us: an SQLCipher file under its key (a server's disk is its own).
        encrypted = bool(getattr(self.db, "encrypted", False))
        return {"healthy": not errors, "database": self.db.name, "encrypted": encrypted,
                "schema_version": schema.get("current"), "expected_schema_version": len(MIGRATIONS),
                "checks": checks, "counts": counts, "errors": errors,
                "checked_at": to_db(utc_now())}
