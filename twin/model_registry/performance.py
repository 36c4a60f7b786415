"""Performance metrics and training records: the seed's ``ModelPerformance`` and its checks."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from twin.storage.timestamps import to_db, utc_now

from .errors import InvalidModelFieldError

# Metrics with their own column (what the seed's table had); anything else goes to ``extra``.
FLOAT_METRICS = ("mae", "mse", "r2", "accuracy_score", "confidence_score", "training_time",
                 "prediction_time")
INT_METRICS = ("training_samples", "feature_count")
METRIC_COLUMNS = FLOAT_METRICS + INT_METRICS


@dataclass
class ModelPerformance:
    """One measurement of a model version. Every metric is optional."""

    mae: float | None = None
    mse: float | None = None
    r2: float | None = None
    accuracy_score: float | None = None
    confidence_score: float | None = None
    training_time: float | None = None
    prediction_time: float | None = None
    training_samples: int | None = None
    feature_count: int | None = None
    last_updated: datetime | None = None


@dataclass(frozen=True)
class MetricsRecord:
    """Validated metrics, ready to insert."""

    columns: dict[str, float | int | None]
    extra: dict[str, Any]
    recorded_at: str


def to_timestamp(value: Any, field: str) -> str | None:
    """A datetime (naive = UTC) or ISO-8601 string as stored text; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidModelFieldError(f"{field} must be an ISO-8601 timestamp") from None
    if not isinstance(value, datetime):
        raise InvalidModelFieldError(f"{field} must be a datetime or ISO-8601 string")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return to_db(value)


def _number(field: str, value: Any, integer: bool) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidModelFieldError(f"{field} must be a number, got {type(value).__name__}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise InvalidModelFieldError(f"{field} must be an integer, got {value!r}")
        if value < 0:
            raise InvalidModelFieldError(f"{field} must not be negative")
        return int(value)
    if not math.isfinite(value):
        raise InvalidModelFieldError(f"{field} must be finite, got {value!r}")
    return float(value)


def json_text(value: Any, field: str) -> str:
    """JSON text of ``value``; InvalidModelFieldError if it is not JSON-serialisable."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidModelFieldError(f"{field} must be JSON-serialisable ({exc})") from None


def metrics_record(performance: ModelPerformance | Mapping[str, Any]) -> MetricsRecord:
    """Validate a ``ModelPerformance`` or a dict of metrics.

    Dict keys naming a seed metric go to its column; other keys are kept in ``extra``
    (JSON values); ``last_updated`` (or ``recorded_at``) sets when it was measured.
    """
    if isinstance(performance, ModelPerformance):
        values = asdict(performance)
    elif isinstance(performance, Mapping):
        values = dict(performance)
    else:
        raise InvalidModelFieldError(
            "performance must be a ModelPerformance or a dict, got " + type(performance).__name__)
    when = values.pop("last_updated", None)
    when = values.pop("recorded_at", None) if when is None else when
    columns = {name: _number(name, values.pop(name, None), name in INT_METRICS)
               for name in METRIC_COLUMNS}
    extra = {str(key): value for key, value in values.items()}
    json_text(extra, "performance")
    if all(value is None for value in columns.values()) and not extra:
        raise InvalidModelFieldError("performance has no metrics")
    return MetricsRecord(columns, extra, to_timestamp(when, "last_updated") or to_db(utc_now()))

