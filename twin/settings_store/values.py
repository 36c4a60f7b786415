"""Value types of the settings store: typed app-setting encoding, returned records, validation.

App settings are stored as text plus a type tag, and decoded back to exactly the type that
was stored: ``True`` comes back as ``True`` (not ``1`` or ``"true"``), ``3`` as ``int``,
``0.5`` as ``float``, a dict or list as an equal dict or list.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twin.storage.timestamps import parse_to_db

from .errors import SettingsValidationError

MAX_KEY = 200
MASK = "***"


class ChangeOutcome(str, enum.Enum):
    """What a write did; ``UNCHANGED`` writes touch nothing and add no audit row."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, repr=False)
class ConfigEntry:
    """One configuration. ``repr()`` and ``to_dict()`` mask the value of a sensitive entry."""

    key: str
    value: str
    category: str
    description: str | None
    sensitive: bool
    created_at: str
    updated_at: str
    updated_by: str

    def __repr__(self) -> str:
        shown = MASK if self.sensitive else repr(self.value)
        return (f"ConfigEntry(key={self.key!r}, value={shown}, category={self.category!r}, "
                f"sensitive={self.sensitive}, updated_at={self.updated_at!r})")

    __str__ = __repr__

    def to_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """A JSON-ready view; a sensitive value is masked unless ``reveal`` is set."""
        return {"key": self.key, "value": self.value if reveal or not self.sensitive else MASK,
                "category": self.category, "description": self.description,
                "sensitive": self.sensitive, "created_at": self.created_at,
                "updated_at": self.updated_at, "updated_by": self.updated_by}


@dataclass(frozen=True)
class ConfigChange:
    """One audit row. For sensitive keys ``old_value``/``new_value`` are keyed hashes."""

    id: int
    scope: str
    key: str
    action: str
    old_value: str | None
    new_value: str | None
    sensitive: bool
    changed_by: str
    changed_at: str


@dataclass(frozen=True)
class PerformanceMetric:
    id: int
    name: str
    value: float
    unit: str | None
    extra: Any
    recorded_at: str


# -- typed app settings ------------------------------------------------------------------

def encode_setting(value: Any) -> tuple[str, str]:
    """``(text, type tag)`` for an app-setting value; refuses what would not round-trip."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return ("true" if value else "false"), "bool"
    if isinstance(value, int):
        return str(value), "int"
    if isinstance(value, float):
        return repr(value), "float"
    if isinstance(value, str):
        return value, "str"
    if isinstance(value, (dict, list)):
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SettingsValidationError(f"setting value is not JSON-serialisable ({exc})") from None
        # Tuples, non-string dict keys and the like would come back different: refuse them.
        if not _same_json(json.loads(text), value):
            raise SettingsValidationError(
                "setting value would not round-trip through JSON (tuples or non-string keys?)")
        return text, "json"
    raise SettingsValidationError(
        f"app settings hold bool, int, float, str, dict or list, not {type(value).__name__}")


def _same_json(decoded: Any, original: Any) -> bool:
    # ``==`` alone says 1 == 1.0 == True; JSON keeps those apart, so compare types too.
    if type(decoded) is not type(original):
        return False
    if isinstance(original, dict):
        return decoded.keys() == original.keys() and all(
            _same_json(decoded[k], original[k]) for k in original)
    if isinstance(original, list):
        return len(decoded) == len(original) and all(map(_same_json, decoded, original))
    return decoded == original


def decode_setting(text: str, value_type: str) -> Any:
    """The value of a stored app setting, as the type it was stored with."""
    if value_type == "bool":
        return text == "true"
    if value_type == "int":
        return int(text)
    if value_type == "float":
        return float(text)
    if value_type == "json":
        return json.loads(text)
    if value_type == "str":
        return text
    raise SettingsValidationError(f"unknown app-setting type tag {value_type!r}")


# -- validation ---------------------------------------------------------------------------

def check_key(key: Any, what: str = "key") -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY or key != key.strip():
        raise SettingsValidationError(
            f"{what} must be a non-empty string of at most {MAX_KEY} characters without "
            "surrounding whitespace")
    return key


def check_optional_text(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SettingsValidationError(f"{what} must be a string or null")
    return value


def check_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsValidationError(f"{what} must be a finite number")
    return float(value)


def time_param(value: datetime | str, what: str) -> str:
    """A stored timestamp from a datetime or an ISO-8601 string (naive = UTC)."""
    try:
        return parse_to_db(value)
    except ValueError:
        raise SettingsValidationError(f"{what} must be a datetime or ISO-8601 string") from None
