"""What the model learns from: observations of a learner's responses, and manual values.

An ``Observation`` is one response on a skill: ``correct`` (bool) or ``score`` in 0..1, never
both, at ``observed_at``. ``evidence_id`` is the client's id, unique per learner: the same id
with the same content is a retry, with different content a conflict. Item ids, sessions and the
skill itself are the caller's business (the caller keeps one trace per skill).

A ``ManualValue`` is a mastery a caller set by hand at ``set_at`` (a PUT of the knowledge
state): evidence observed after it continues from it as its prior.

Times are timezone-aware datetimes or ISO-8601 strings; naive ones are taken as UTC, as
everywhere in the project. Entries are ordered by time; at the same instant observations come
by ``evidence_id`` and a manual value after them (it was set knowing that moment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from .errors import InvalidObservationError

MAX_EVIDENCE_ID_LENGTH = 128
_OBSERVATION, _MANUAL = 0, 1


def as_utc(value: datetime | str, field: str) -> datetime:
    """A UTC datetime from a datetime or an ISO-8601 string; naive means UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidObservationError(f"{field} is not an ISO-8601 date-time: {value[:40]!r}",
                                          field=field) from None
    if not isinstance(value, datetime):
        raise InvalidObservationError(f"{field} must be a date-time", field=field)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def iso(moment: datetime) -> str:
    """``2026-03-01T09:30:00Z`` (microseconds only when there are some)."""
    return moment.isoformat().replace("+00:00", "Z")


def _probability(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidObservationError(f"{field} must be a number within 0..1", field=field)
    if not 0.0 <= value <= 1.0:
        raise InvalidObservationError(f"{field} must be within 0..1, got {value}", field=field)
    return float(value)


@dataclass(frozen=True, slots=True)
class Observation:
    evidence_id: str
    observed_at: datetime
    correct: bool | None = None
    score: float | None = None

    def __post_init__(self) -> None:
        ident = self.evidence_id
        if not isinstance(ident, str) or not 0 < len(ident) <= MAX_EVIDENCE_ID_LENGTH:
            raise InvalidObservationError(f"evidence_id must be a non-empty string of at most "
                                          f"{MAX_EVIDENCE_ID_LENGTH} characters", field="evidence_id")
        object.__setattr__(self, "observed_at", as_utc(self.observed_at, "observed_at"))
        if (self.correct is None) == (self.score is None):
            raise InvalidObservationError("give exactly one of correct and score", field="correct")
        if self.correct is not None and not isinstance(self.correct, bool):
            raise InvalidObservationError("correct must be true or false", field="correct")
        if self.score is not None:
            object.__setattr__(self, "score", _probability(self.score, "score"))

    @property
    def outcome(self) -> float:
        """The response as a number: 1.0 correct, 0.0 wrong, or the fractional score."""
        if self.correct is not None:
            return 1.0 if self.correct else 0.0
        return self.score  # type: ignore[return-value]

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.observed_at, _OBSERVATION, self.evidence_id)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], index: int | None = None) -> "Observation":
        """An observation from its JSON form; other keys (item_id, session_id, ...) are ignored."""
        if not isinstance(data, Mapping):
            raise InvalidObservationError("an observation must be an object", index=index)
        try:
            missing = [name for name in ("evidence_id", "observed_at") if name not in data]
            if missing:
                raise InvalidObservationError(f"{missing[0]} is required", field=missing[0])
            return cls(data["evidence_id"], data["observed_at"], data.get("correct"), data.get("score"))
        except InvalidObservationError as exc:
            if index is None:
                raise
            raise InvalidObservationError(str(exc), field=exc.field, index=index) from None


@dataclass(frozen=True, slots=True)
class ManualValue:
    set_at: datetime
    mastery: float
    confidence: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "set_at", as_utc(self.set_at, "set_at"))
        object.__setattr__(self, "mastery", _probability(self.mastery, "mastery_level"))
        if self.confidence is not None:
            object.__setattr__(self, "confidence", _probability(self.confidence, "confidence_score"))

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.set_at, _MANUAL, "")


Entry = Observation | ManualValue
