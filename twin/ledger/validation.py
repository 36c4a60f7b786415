"""Validation of ledger entries before they reach SQL (the seed's rules, every failure named)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .errors import InvalidEntryError

REQUIRED_KEYS = ("timestamp", "node_id", "features", "confidence")
MAX_NODE_ID_LENGTH = 256


@dataclass(frozen=True)
class ValidEntry:
    """An entry that passed validation, normalised to what is stored and hashed."""

    timestamp: float
    node_id: str
    features: list[Any] | dict[str, Any]
    features_json: str
    confidence: float


def _is_number(value: Any) -> bool:
    # bool is an int subclass; True as a confidence is a bug, not 1.0.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_timestamp(value: Any) -> list[str]:
    if not _is_number(value):
        return [f"must be a float (Unix time), got {type(value).__name__}"]
    if not math.isfinite(value):
        return [f"must be finite, got {value!r}"]
    if value < 0:
        return [f"must not be negative, got {value!r}"]
    return []


def _check_node_id(value: Any) -> list[str]:
    if not isinstance(value, str):
        return [f"must be a string, got {type(value).__name__}"]
    if not value.strip():
        return ["must not be empty"]
    if len(value) > MAX_NODE_ID_LENGTH:
        return [f"must be at most {MAX_NODE_ID_LENGTH} characters, got {len(value)}"]
    return []


def _check_confidence(value: Any) -> list[str]:
    if not _is_number(value):
        return [f"must be a float between 0.0 and 1.0, got {type(value).__name__}"]
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return [f"must be between 0.0 and 1.0, got {value!r}"]
    return []


def _normalise_features(value: Any, errors: dict[str, list[str]]) -> tuple[Any, str] | None:
    if not isinstance(value, (list, dict)):
        errors["features"] = [f"must be a list or a dict, got {type(value).__name__}"]
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        errors["features"] = [f"must be JSON-serialisable with finite numbers ({exc})"]
        return None
    # Round-trip so what we hash now is exactly what a reader decodes later (tuples become
    # lists, non-string keys become strings).
    return json.loads(text), text


def validate_entry(entry: Any) -> ValidEntry:
    """Check one entry against the seed's rules; raise ``InvalidEntryError`` listing every problem.

    Rules: a dict with exactly the keys ``timestamp`` (finite, non-negative number),
    ``node_id`` (non-blank string, at most 256 characters), ``features`` (list or dict,
    JSON-serialisable) and ``confidence`` (number in 0.0..1.0). Unknown keys are refused
    rather than silently dropped, since an immutable ledger cannot be corrected later.
    """
    if not isinstance(entry, dict):
        raise InvalidEntryError({"entry": [f"must be a dict, got {type(entry).__name__}"]})
    errors: dict[str, list[str]] = {}
    for key in REQUIRED_KEYS:
        if key not in entry:
            errors[key] = ["is required"]
    unknown = sorted(str(key) for key in entry if key not in REQUIRED_KEYS)
    if unknown:
        errors["entry"] = [f"unknown keys: {', '.join(unknown)}"]
    checks = (("timestamp", _check_timestamp), ("node_id", _check_node_id),
              ("confidence", _check_confidence))
    for key, check in checks:
        if key in entry:
            problems = check(entry[key])
            if problems:
                errors[key] = problems
    features = _normalise_features(entry["features"], errors) if "features" in entry else None
    if errors:
        raise InvalidEntryError(errors)
    assert features is not None
    return ValidEntry(timestamp=float(entry["timestamp"]), node_id=entry["node_id"],
                      features=features[0], features_json=features[1],
                      confidence=float(entry["confidence"]))
