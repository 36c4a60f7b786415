"""Seed 001's ``DatabaseManager`` / ``DatabaseConfig`` and its module-level ``db_manager``, over
the settings store (``SettingsStore``), with the seed's names, arguments and return shapes.

    >>> from twin.settings_store.manager import db_manager
    >>> db_manager.set_config(key="new_feature_enabled", value="true", category="features")
    >>> db_manager.save_thread_context(thread_key="C123:ts456", channel_id="C123",
    ...                                thread_ts="ts456", messages=["User: Hello"])

``db_manager`` is created on first use from the environment (the configured ``settings``
database, the privacy vault for per-user data, the deployment's keyring). Differences from the
seed: the file is a SQLCipher database (so are its backups), or the ``settings`` schema of a
PostgreSQL database (``SETTINGS_STORAGE_BACKEND``; backed up with the server's tools, not by
``backup_database``); sensitive configurations, thread
messages and preference values are encrypted; ``get_configs_by_category`` masks sensitive
values (read one with ``get_config``); ``save_thread_context`` takes an optional ``user_id=``
(see ``tables.py``); ``get_connection()`` is one write transaction, rolled back on an exception.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from twin.storage import FileBacked, backup_database

from .errors import SettingsError
from .store import SettingsStore
from .threads import DEFAULT_THREAD_TTL_HOURS
from .values import ChangeOutcome


@dataclass
class DatabaseConfig:
    """Where the settings live: ``db_path`` (default: the configured ``settings`` database,
    ``SETTINGS_DB_PATH`` or ``settings.db`` in ``TWIN_DATA_DIR``), ``backup_dir`` (default:
    ``backups/`` beside it) and how long a thread context lives (hours)."""

    db_path: str | None = None
    backup_dir: str | None = None
    thread_ttl_hours: float = DEFAULT_THREAD_TTL_HOURS


class DatabaseManager:
    """The seed's database interface (see the module docstring)."""

    def __init__(self, config: DatabaseConfig | None = None, *, store: SettingsStore | None = None) -> None:
        self.config = config or DatabaseConfig()
        self._owned: list[Any] = []
        if store is None:
            from twin.catalog import load_keyring, open_database, open_store_database
            from twin.config import Config

            twin_config = Config.from_env()
            keyring = load_keyring(twin_config)
            db = open_store_database("settings", self.config.db_path, twin_config, keyring)
            vault = open_database("privacy_vault", twin_config, keyring.database_keys)
            self._owned = [db, vault]
            store = SettingsStore.from_keyring(db, keyring, actor="db_manager", vault=vault)
        self.store = store

    def close(self) -> None:
        """Close the databases this manager opened."""
        for db in self._owned:
            db.close_all()

    # -- configurations -------------------------------------------------------------------

    def get_config(self, key: str, default: str | None = None) -> str | None:
        return self.store.get_config(key, default)

    def set_config(self, key: str, value: str, category: str = "general", description: str | None = None,
                   is_sensitive: bool = False) -> ChangeOutcome:
        return self.store.set_config(key, value, category, description, sensitive=is_sensitive)

    def get_configs_by_category(self, category: str) -> list[dict[str, Any]]:
        """The category's configurations as dicts (sensitive values masked)."""
        return [entry.to_dict() for entry in self.store.configs_by_category(category)]

    def delete_config(self, key: str) -> bool:
        return self.store.delete_config(key)

    # -- thread contexts and user preferences ---------------------------------------------

    def save_thread_context(self, thread_key: str, channel_id: str | None = None,
                            thread_ts: str | None = None, messages: Sequence[Any] = (), *,
                            user_id: str | None = None) -> dict[str, Any]:
        return self.store.save_thread_context(thread_key, channel_id, thread_ts, messages,
                                              user_id=user_id, ttl_hours=self.config.thread_ttl_hours)

    def get_thread_context(self, thread_key: str) -> dict[str, Any] | None:
        return self.store.get_thread_context(thread_key)

    def cleanup_expired_threads(self) -> int:
        return self.store.cleanup_expired_threads()

    def set_user_preference(self, user_id: str, key: str, value: Any) -> None:
        self.store.set_user_preference(user_id, key, value)

    def get_user_preference(self, user_id: str, key: str, default: Any = None) -> Any:
        return self.store.get_user_preference(user_id, key, default)

    def get_user_preferences(self, user_id: str) -> dict[str, Any]:
        return self.store.get_user_preferences(user_id)

    def delete_user_preference(self, user_id: str, key: str) -> bool:
        return self.store.delete_user_preference(user_id, key)

    # -- business goals and app settings --------------------------------------------------

    def save_business_goal(self, goal_data: Mapping[str, Any]) -> ChangeOutcome:
        return self.store.save_business_goal(goal_data)

    def get_business_goals(self, status: str | None = None, area: str | None = None) -> list[dict[str, Any]]:
        return self.store.get_business_goals(status=status, area=area)

    def set_app_setting(self, key: str, value: Any, description: str | None = None) -> ChangeOutcome:
        return self.store.set_app_setting(key, value, description)

    def get_app_setting(self, key: str, default: Any = None) -> Any:
        return self.store.get_app_setting(key, default)

    # -- performance metrics ----------------------------------------------------------------

    def log_performance_metric(self, metric_name: str, metric_value: float, metric_unit: str | None = None,
                               additional_data: Any = None) -> int:
        return self.store.log_performance_metric(metric_name, metric_value, metric_unit, additional_data)

    def get_performance_metrics(self, metric_name: str | None = None, hours: float = 24) -> list[dict[str, Any]]:
        """Metrics of the last ``hours``, oldest first, as the seed's dicts (``metric_name``,
        ``metric_value``, ``metric_unit``, ``additional_data``, ``recorded_at``)."""
        return [{"id": m.id, "metric_name": m.name, "metric_value": m.value, "metric_unit": m.unit,
                 "additional_data": m.extra, "recorded_at": m.recorded_at}
                for m in self.store.performance_metrics(metric_name, hours=hours)]

    # -- maintenance ----------------------------------------------------------------------

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        """A connection inside one write transaction: committed when the block ends, rolled
        back when it raises."""
        with self.store.db.transaction() as conn:
            yield conn

    def backup_database(self, backup_path: str | os.PathLike[str] | None = None) -> str:
        """An online, encrypted (same key) copy at ``backup_path`` (default:
        ``<backup_dir>/settings_backup_<UTC time>.db``); returns its path. SQLCipher only: on
        PostgreSQL it raises a one-line ``SettingsError`` naming the server's tool."""
        if not isinstance(self.store.db, FileBacked):
            raise SettingsError("backup_database copies the SQLCipher file; the settings store is on "
                                "postgresql: back up its schema with pg_dump --schema=settings")
        if backup_path is None:
            directory = Path(self.config.backup_dir or self.store.db.path.parent / "backups")
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            backup_path = directory / f"settings_backup_{stamp}.db"
        target = Path(backup_path)
        staging = target.parent / f".{target.name}.partial-dir"
        entry = backup_database(self.store.db, staging)
        os.replace(staging / entry.file, target)
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
        return str(target)

    def get_database_info(self) -> dict[str, Any]:
        """``database_path``, ``database_size_bytes`` (with its WAL), ``total_records``, rows
        per table (``tables``) and ``schema_version``. On PostgreSQL the path is the database's
        URL without credentials and the size that of the schema's tables (indexes and TOAST
        included)."""
        db = self.store.db
        names = [name for name in db.table_names() if name != "schema_version"]
        with db.transaction(immediate=False) as conn:
            counts = {name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
                      for name in names}
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if isinstance(db, FileBacked):
                where = str(db.path)
                size = sum(p.stat().st_size for p in (db.path, Path(f"{db.path}-wal")) if p.exists())
            else:
                where = db.display_url
                size = int(conn.execute(
                    "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()[0])
        return {"database_path": where, "database_size_bytes": size,
                "total_records": sum(counts.values()), "tables": counts, "schema_version": version}


_default: DatabaseManager | None = None
_default_lock = threading.Lock()


def default_manager() -> DatabaseManager:
    """The process's ``db_manager``, created from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DatabaseManager()
        return _default


def reset_default_manager() -> None:
    """Close and forget ``db_manager`` (the next use opens it again from the environment)."""
    global _default
    with _default_lock:
        manager, _default = _default, None
    if manager is not None:
        manager.close()


def __getattr__(name: str) -> Any:
    if name == "db_manager":  # the seed's module-level instance, opened lazily
        return default_manager()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
