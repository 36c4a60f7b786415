"""The settings store (``settings.db``): configurations with encrypted secrets and an audit
trail, typed app settings, business goals, performance metrics, legacy JSON import."""

from .errors import (LegacyImportError, SensitiveValueError, SettingsError,
                     SettingsValidationError)
from .store import SettingsStore
from .values import ChangeOutcome, ConfigChange, ConfigEntry, PerformanceMetric

__all__ = [
    "ChangeOutcome", "ConfigChange", "ConfigEntry", "LegacyImportError", "PerformanceMetric",
    "SensitiveValueError", "SettingsError", "SettingsStore", "SettingsValidationError",
]
