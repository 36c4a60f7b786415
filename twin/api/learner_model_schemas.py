"""Schemas of the learner model's routes: evidence, explanations, reviews.

A batch holds up to 1,000 observations, and marshmallow spends tens of microseconds on each
nested object, as much as the rest of an ingest: ``ObservationList`` checks each item with a
plain function first and hands the list to the nested schema only when an item does not pass,
so the schema alone decides what is refused and says why (index, field, message). The quick
check accepts a subset of what the schema accepts, and returns what the schema would return for
it (``tests/api/test_evidence_schema.py`` holds the two together).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from .formats import CURSOR_PATTERN, DATE_TIME_PATTERN
from .schemas import _EARLIEST, _LATEST, StrictBoolean, StrictFloat, UtcDateTime, _Strict

MAX_OBSERVATIONS = 1000
# Domain and topic are path segments of the knowledge routes: letters, digits, spaces, . : + - _
SKILL_NAME = r"^[\w .:+-]{1,100}$"
_SKILL_NAME = re.compile(SKILL_NAME)
_EVIDENCE_ID = 128
_ITEM_ID = 128
_SESSION_ID = 64


class ObservationSchema(_Strict):
    evidence_id = fields.String(required=True, validate=validate.Length(1, _EVIDENCE_ID),
                                metadata={"description": "The client's id of this observation, unique "
                                                         "per profile: a retry with the same content is a repeat"})
    domain = fields.String(required=True, validate=validate.Regexp(SKILL_NAME))
    topic = fields.String(required=True, validate=validate.Regexp(SKILL_NAME))
    item_id = fields.String(required=True, validate=validate.Length(1, _ITEM_ID),
                            metadata={"description": "Opaque id of the item answered (stored sealed)"})
    correct = StrictBoolean(metadata={"description": "Whether the answer was right (or give score)"})
    score = StrictFloat(validate=validate.Range(0, 1),
                        metadata={"description": "Partial credit 0..1 (or give correct)"})
    observed_at = UtcDateTime(required=True)
    session_id = fields.String(validate=validate.Length(1, _SESSION_ID))

    openapi_extra = {"oneOf": [{"required": ["correct"]}, {"required": ["score"]}]}

    @validates_schema
    def _one_outcome(self, data: dict[str, Any], **_: Any) -> None:
        if ("correct" in data) == ("score" in data):
            raise ValidationError("Give exactly one of correct and score.", "correct")


_FIELDS = frozenset(ObservationSchema().fields)
_DATE_TIME = re.compile(DATE_TIME_PATTERN)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")


def _text(item: dict[str, Any], name: str, limit: int) -> bool:
    value = item.get(name)
    return type(value) is str and 0 < len(value) <= limit


def quick_observation(item: Any) -> dict[str, Any] | None:
    """What ``ObservationSchema`` loads from ``item`` when ``item`` is plainly valid, else None
    (the schema then decides, and explains)."""
    if type(item) is not dict or not item.keys() <= _FIELDS:
        return None
    if not (_text(item, "evidence_id", _EVIDENCE_ID) and _text(item, "item_id", _ITEM_ID)):
        return None
    for name in ("domain", "topic"):
        value = item.get(name)
        if type(value) is not str or not _SKILL_NAME.fullmatch(value):
            return None
    if "session_id" in item and not _text(item, "session_id", _SESSION_ID):
        return None
    loaded = dict(item)
    if "correct" in item:
        if "score" in item or type(item["correct"]) is not bool:
            return None
    else:
        score = item.get("score")
        if type(score) not in (int, float) or not math.isfinite(score) or not 0 <= score <= 1:
            return None
        loaded["score"] = float(score)
    observed = item.get("observed_at")
    if type(observed) is not str or not _RFC3339.fullmatch(observed) or not _DATE_TIME.match(observed):
        return None
    try:
        moment = datetime.fromisoformat(observed).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    if not _EARLIEST <= moment <= _LATEST:
        return None
    loaded["observed_at"] = moment
    return loaded


class ObservationList(fields.List):
    """A list of observations: each checked by ``quick_observation``, the whole list by the
    nested schema as soon as one item is not plainly valid."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if type(value) is list:
            loaded = [quick_observation(item) for item in value]
            if None not in loaded:
                return loaded  # type: ignore[return-value]
        return super()._deserialize(value, attr, data, **kwargs)


class EvidenceBatchSchema(_Strict):
    observations = ObservationList(fields.Nested(ObservationSchema), required=True,
                                   validate=validate.Length(1, MAX_OBSERVATIONS))


class EvidenceIngestSchema(_Strict):
    new = fields.Integer(required=True, metadata={"description": "Observations stored by this request"})
    repeats = fields.Integer(required=True, metadata={"description": "Observations already stored "
                                                                     "with the same content (retries)"})


class EvidenceSchema(_Strict):
    evidence_id = fields.String(required=True)
    domain = fields.String(required=True)
    topic = fields.String(required=True)
    item_id = fields.String(required=True)
    correct = fields.Boolean()
    score = fields.Float()
    session_id = fields.String()
    observed_at = fields.String(required=True)
    recorded_at = fields.String(required=True)


class EvidencePageSchema(_Strict):
    items = fields.List(fields.Nested(EvidenceSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class EvidenceQuerySchema(_Strict):
    domain = fields.String(validate=validate.Regexp(SKILL_NAME))
    topic = fields.String(validate=validate.Regexp(SKILL_NAME))
    cursor = fields.String(validate=validate.Regexp(CURSOR_PATTERN))
    limit = fields.Integer(validate=validate.Range(1, 500), load_default=100)


class SkillParametersSchema(_Strict):
    version = fields.String(required=True)
    prior = fields.Float(required=True)
    learn = fields.Float(required=True)
    slip = fields.Float(required=True)
    guess = fields.Float(required=True)
    forget = fields.Float(required=True)


class ExplanationStepSchema(_Strict):
    kind = fields.String(required=True, validate=validate.OneOf(["observation", "manual", "carried_over"]))
    evidence_id = fields.String()
    observed_at = fields.String()
    correct = fields.Boolean()
    score = fields.Float()
    set_at = fields.String(metadata={"description": "manual: when the value was set"})
    confidence_score = fields.Float(metadata={"description": "manual: the confidence given with it"})
    count = fields.Integer(metadata={"description": "carried_over: observations purged by retention"})
    manual_values = fields.Integer(metadata={"description": "carried_over: manual values purged"})
    first_observed_at = fields.String()
    last_observed_at = fields.String()
    parameters_version = fields.String(metadata={"description": "carried_over: the version they "
                                                                "were last computed under"})
    before = fields.Float(required=True)
    after = fields.Float(required=True)


class ExplanationSchema(_Strict):
    mastery_level = fields.Float(required=True)
    confidence_score = fields.Float(required=True)
    source = fields.String(required=True)
    parameters = fields.Nested(SkillParametersSchema, required=True)
    steps = fields.List(fields.Nested(ExplanationStepSchema), required=True)
    summary = fields.String(required=True)


class ReviewsQuerySchema(_Strict):
    before = UtcDateTime(metadata={"description": "List topics due at or before this time (default now)"})


class DueReviewSchema(_Strict):
    domain = fields.String(required=True)
    topic = fields.String(required=True)
    due = fields.String(required=True)
    predicted_recall = fields.Float(required=True, metadata={"description": "FSRS retrievability at `before`"})
    last_reviewed = fields.String(required=True)


class DueReviewListSchema(_Strict):
    items = fields.List(fields.Nested(DueReviewSchema), required=True)
