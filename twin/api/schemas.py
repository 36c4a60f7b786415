"""Marshmallow schemas: every request body and query, and every response (for OpenAPI)."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from compliance.audit import ACTIONS
from compliance.consent import CONSENT_METHODS

from .formats import CURSOR_PATTERN, DATE_PATTERN, DATE_TIME_PATTERN
from .problems import RuleViolation

_ID = validate.Length(1, 64)
_NAME = validate.Length(1, 100)
MAX_OBJECT_PROPERTIES = 50
MAX_KEY_LENGTH = 64
_EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
_OUT_OF_RANGE = "Must be in the years 1900-9999, not on 1900-01-01 or 9999-12-31."


class MaxProperties(validate.Validator):
    """At most ``maximum`` keys in an object (documented as ``maxProperties``, not ``maxLength``)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum

    def __call__(self, value: Any) -> Any:
        if len(value) > self.maximum:
            raise ValidationError(f"Must have at most {self.maximum} properties.")
        return value


JSON_OBJECT_LIMIT = MaxProperties(MAX_OBJECT_PROPERTIES)


# marshmallow's number and boolean fields coerce "0.5", "5", 1 and "yes"; a JSON API that
# documents ``type: number`` must refuse a string, and ``type: boolean`` must refuse 1.
class StrictFloat(fields.Float):
    """A JSON number (not a string, not a boolean), finite."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictInteger(fields.Integer):
    """A JSON integer (not a string, a boolean or a float)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON ``true`` or ``false`` (not 1, "yes" or "true")."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 timestamp with an offset, returned in UTC; years 1900-9999 only (see
    ``DATE_TIME_PATTERN``), so that converting to UTC and storing as fixed-width text can
    never overflow."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["metadata"] = {"pattern": DATE_TIME_PATTERN, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and not re.match(DATE_TIME_PATTERN, value):
            raise ValidationError(_OUT_OF_RANGE)
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment = moment.astimezone(timezone.utc)
        except OverflowError:
            raise ValidationError(_OUT_OF_RANGE) from None
        if not _EARLIEST <= moment <= _LATEST:
            raise ValidationError(_OUT_OF_RANGE)
        return moment


class _Strict(Schema):
    class Meta:
        ordered = True


def _json_object(**kwargs) -> fields.Dict:
    # Key lengths reach the document as propertyNames (twin.api.openapi).
    return fields.Dict(keys=fields.String(validate=validate.Length(1, MAX_KEY_LENGTH)),
                       values=fields.Raw(allow_none=True),
                       validate=JSON_OBJECT_LIMIT, metadata={"maxProperties": MAX_OBJECT_PROPERTIES}, **kwargs)


class ParentalConsentSchema(_Strict):
    consenter_name = fields.String(required=True, validate=validate.Length(1, 200))
    consenter_relationship = fields.String(required=True, validate=validate.OneOf(["parent", "legal_guardian"]))
    consenter_contact = fields.String(validate=validate.Length(1, 320), allow_none=True, load_default=None)
    method = fields.String(required=True, validate=validate.OneOf(CONSENT_METHODS))
    obtained_at = UtcDateTime(required=True)


class _ProfileFields(_Strict):
    birth_date = fields.Date(allow_none=True, metadata={"pattern": DATE_PATTERN})
    learning_style = fields.String(validate=validate.Length(1, 64), allow_none=True)
    preferred_difficulty = fields.String(validate=validate.OneOf(["easy", "medium", "hard"]))
    knowledge_domains = fields.List(fields.String(validate=_NAME), validate=validate.Length(max=50))
    learning_goals = fields.List(fields.String(validate=validate.Length(1, 500)), validate=validate.Length(max=50))
    privacy_settings = _json_object()
    personal = _json_object()
    retention_days = StrictInteger(validate=validate.Range(1, 3650), allow_none=True)

    @validates("birth_date")
    def _not_in_future(self, value: date | None, **_: object) -> None:
        if value is None:
            return
        if value.year < 1900:
            raise ValidationError("Must be in the years 1900-9999.")
        if value > date.today():
            message = "Must not be after today."
            raise RuleViolation("birth-date-in-the-future", message, errors={"birth_date": [message]})


class ProfileCreateSchema(_ProfileFields):
    user_id = fields.String(required=True, validate=validate.Length(1, 256))
    parental_consent = fields.Nested(ParentalConsentSchema)


class ProfilePatchSchema(_ProfileFields):
    pass


class UserIdSchema(_Strict):
    user_id = fields.String(required=True, validate=validate.Length(1, 256))


class ProfileSchema(_Strict):
    carries_etag = True  # responses of this resource carry its ETag (twin.api.openapi)
    profile_id = fields.String(required=True)
    learning_style = fields.String(allow_none=True)
    preferred_difficulty = fields.String()
    knowledge_domains = fields.List(fields.String())
    learning_goals = fields.List(fields.String())
    privacy_settings = fields.Dict()
    personal = fields.Dict()
    birth_date = fields.String(allow_none=True)
    retention_days = fields.Integer(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()
    expires_at = fields.String()


class SessionStartSchema(_Strict):
    session_type = fields.String(required=True, validate=validate.Length(1, 64))
    topics_covered = fields.List(fields.String(validate=validate.Length(1, 200)), validate=validate.Length(max=100))
    start_time = UtcDateTime()


class SessionUpdateSchema(_Strict):
    end_time = UtcDateTime(allow_none=True)
    performance_metrics = _json_object(allow_none=True)
    engagement_score = StrictFloat(validate=validate.Range(0, 1), allow_none=True)
    completion_status = fields.String(validate=validate.OneOf(["in_progress", "completed", "abandoned"]))
    topics_covered = fields.List(fields.String(validate=validate.Length(1, 200)), validate=validate.Length(max=100))


class SessionSchema(_Strict):
    carries_etag = True
    session_id = fields.String(required=True)
    profile_id = fields.String()
    session_type = fields.String()
    start_time = fields.String()
    end_time = fields.String(allow_none=True)
    duration_minutes = fields.Float(allow_none=True)
    topics_covered = fields.List(fields.String())
    performance_metrics = fields.Dict(allow_none=True)
    engagement_score = fields.Float(allow_none=True)
    completion_status = fields.String()


class SessionPageSchema(_Strict):
    items = fields.List(fields.Nested(SessionSchema))
    next_cursor = fields.String(allow_none=True)


class SessionListQuerySchema(_Strict):
    limit = fields.Integer(validate=validate.Range(1, 100), load_default=20)
    cursor = fields.String(validate=validate.Regexp(CURSOR_PATTERN))


class KnowledgeUpsertSchema(_Strict):
    mastery_level = StrictFloat(required=True, validate=validate.Range(0, 1))
    confidence_score = StrictFloat(validate=validate.Range(0, 1), metadata={
        "description": "Kept until the next observation; without it, the model's track record on "
                       "the learner's evidence (0 without evidence)"})
    learning_trajectory = _json_object(allow_none=True)
    prerequisites_met = StrictBoolean(load_default=False)


class KnowledgeStateSchema(_Strict):
    domain = fields.String()
    topic = fields.String()
    mastery_level = fields.Float()
    confidence_score = fields.Float()
    source = fields.String(validate=validate.OneOf(["evidence", "manual"]),
                           metadata={"description": "What set mastery_level: the evidence, or a PUT"})
    parameters_version = fields.String(allow_none=True, metadata={
        "description": "The skill parameters it was computed under (null: set before the learner model)"})
    review_due = fields.String(allow_none=True, metadata={"description": "When FSRS says to review the topic"})
    learning_trajectory = fields.Dict(allow_none=True)
    prerequisites_met = fields.Boolean()
    last_accessed = fields.String()


class KnowledgeListSchema(_Strict):
    items = fields.List(fields.Nested(KnowledgeStateSchema))


class KnowledgeQuerySchema(_Strict):
    domain = fields.String(validate=_NAME)


class ConsentSchema(_Strict):
    consent_id = fields.String()
    method = fields.String()
    granted_at = fields.String()
    withdrawn_at = fields.String(allow_none=True)


class ConsentWithdrawalSchema(_Strict):
    consent_id = fields.String()
    withdrawn_at = fields.String()
    erased = fields.Boolean()
    receipt = fields.Dict(allow_none=True)


class ErasureReceiptSchema(_Strict):
    receipt_id = fields.String()
    erased_at = fields.String()
    dry_run = fields.Boolean()
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    subject_key_destroyed = fields.Boolean()
    rescan = fields.Dict(keys=fields.String(), values=fields.Integer())
    verified = fields.Boolean()
    wal_truncated = fields.Boolean()
    duration_ms = fields.Float()


class ExportSchema(Schema):
    format = fields.String()
    generated_at = fields.String()
    profiles = fields.List(fields.Dict())
    sessions = fields.List(fields.Dict())
    knowledge_states = fields.List(fields.Dict())
    evidence = fields.List(fields.Dict())
    consents = fields.List(fields.Dict())
    legal_holds = fields.List(fields.Dict())
    user_preferences = fields.List(fields.Dict())   # the settings store's personal tables
    thread_contexts = fields.List(fields.Dict())
    disclosures = fields.List(fields.Dict())


class RetentionRunSchema(_Strict):
    dry_run = StrictBoolean(load_default=False)


class RetentionReportSchema(Schema):
    dry_run = fields.Boolean()
    started_at = fields.String()
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    sample_row_ids = fields.Dict()
    subject_keys_destroyed = fields.Integer()
    audit_chain_broken = fields.String(allow_none=True)
    audit_archived = fields.Integer(metadata={"description": "audit events moved into archive segments"})
    duration_s = fields.Float()


class HoldCreateSchema(_Strict):
    user_id = fields.String(required=True, validate=validate.Length(1, 256))
    reason = fields.String(required=True, validate=validate.Length(1, 500))
    until = UtcDateTime(allow_none=True)


class HoldSchema(_Strict):
    hold_id = fields.String()
    reason = fields.String()
    placed_at = fields.String()
    placed_by = fields.String()
    until = fields.String(allow_none=True)
    lifted_at = fields.String(allow_none=True)
    lifted_by = fields.String(allow_none=True)


class HoldListSchema(_Strict):
    items = fields.List(fields.Nested(HoldSchema))


class AuditQuerySchema(_Strict):
    subject = fields.String(validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    action = fields.String(validate=validate.OneOf(sorted(ACTIONS)))
    since = UtcDateTime()
    until = UtcDateTime()
    cursor = fields.Integer(validate=validate.Range(0, 2**62))
    limit = fields.Integer(validate=validate.Range(1, 500), load_default=100)


class AuditSearchSchema(AuditQuerySchema):
    """The body of POST /v1/audit/search: the query filters, or a user_id (never in a URL)."""

    openapi_extra = {"not": {"required": ["user_id", "subject"]},
                     "description": "user_id and subject exclude each other."}

    user_id = fields.String(validate=validate.Length(1, 256))
    cursor = StrictInteger(validate=validate.Range(0, 2**62))
    limit = StrictInteger(validate=validate.Range(1, 500), load_default=100)


class AuditEventSchema(Schema):
    seq = fields.Integer()
    event_id = fields.String()
    occurred_at = fields.String()
    actor_id = fields.String()
    actor_role = fields.String()
    action = fields.String()
    subject_hash = fields.String(allow_none=True)
    resource = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    details = fields.Dict(allow_none=True)
    prev_hash = fields.String()
    event_hash = fields.String()


class AuditPageSchema(_Strict):
    items = fields.List(fields.Nested(AuditEventSchema))
    next_cursor = fields.Integer(allow_none=True)


class ConsentListSchema(_Strict):
    items = fields.List(fields.Nested(ConsentSchema))


class HealthSchema(Schema):
    status = fields.String()
    databases = fields.Dict(keys=fields.String(), values=fields.Boolean())
    writable = fields.Boolean(metadata={"description": "every data directory can take writes"})


class ProblemSchema(Schema):
    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict()
    request_id = fields.String()
