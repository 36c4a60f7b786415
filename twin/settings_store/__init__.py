"""The settings store (``settings.db``): configurations with encrypted secrets and an audit
trail, typed app settings, business goals, performance metrics, thread contexts, user
preferences, legacy JSON import; seed 001's ``DatabaseManager`` and ``db_manager`` over it."""

from typing import Any

from .errors import (LegacyImportError, SensitiveValueError, SettingsError,
                     SettingsValidationError)
from .manager import DatabaseConfig, DatabaseManager
from .store import SettingsStore
from .values import ChangeOutcome, ConfigChange, ConfigEntry, PerformanceMetric

__all__ = [
    "ChangeOutcome", "ConfigChange", "ConfigEntry", "DatabaseConfig", "DatabaseManager", "LegacyImportError", "PerformanceMetric",
    "SensitiveValueError", "SettingsError", "SettingsStore", "SettingsValidationError",
]


def __getattr__(name: str) -> Any:
    if name == "db_manager":  # seed 001's module-level instance, opened on first use
        from .manager import default_manager

        return default_manager()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
