"""Named errors of the settings store. Messages never contain a configuration value."""


class SettingsError(Exception):
    """Base class of settings-store errors."""


class SettingsValidationError(SettingsError, ValueError):
    """A key, value or field the store refuses before it reaches SQL."""


class SensitiveValueError(SettingsError):
    """A stored sensitive value cannot be decrypted (wrong or missing field key, tampering)."""


class LegacyImportError(SettingsError):
    """A legacy JSON file is unreadable or holds something the importer cannot map."""
