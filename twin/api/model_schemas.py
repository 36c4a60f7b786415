"""Response schemas of the model registry routes (``twin.model_registry.manager``'s records)."""

from __future__ import annotations

from marshmallow import Schema, fields

from .schemas import _Strict


class ModelPerformanceSchema(Schema):
    id = fields.Integer()
    model_id = fields.String()
    name = fields.String()
    version = fields.String()
    recorded_at = fields.String()
    mae = fields.Float(allow_none=True)
    mse = fields.Float(allow_none=True)
    r2 = fields.Float(allow_none=True)
    accuracy_score = fields.Float(allow_none=True)
    confidence_score = fields.Float(allow_none=True)
    training_time = fields.Float(allow_none=True)
    prediction_time = fields.Float(allow_none=True)
    training_samples = fields.Integer(allow_none=True)
    feature_count = fields.Integer(allow_none=True)
    extra = fields.Dict()


class ModelVersionSchema(Schema):
    model_id = fields.String()
    name = fields.String()
    version = fields.String()
    model_type = fields.String(allow_none=True)
    algorithms = fields.List(fields.String())
    metadata = fields.Dict()
    is_active = fields.Boolean()
    has_file = fields.Boolean()
    checksum_sha256 = fields.String(allow_none=True)
    size_bytes = fields.Integer(allow_none=True)
    format = fields.String(allow_none=True, metadata={
        "description": "bytes (stored as given) or pickle (loaded only with allow_pickle); "
                       "null without a file", "enum": ["bytes", "pickle", None]})
    created_at = fields.String()
    updated_at = fields.String()
    latest_performance = fields.Nested(ModelPerformanceSchema, allow_none=True)


class ModelSummarySchema(Schema):
    name = fields.String()
    version_count = fields.Integer()
    versions = fields.List(fields.String())
    latest_version = fields.String()
    active_version = fields.String(allow_none=True)
    active = fields.Nested(ModelVersionSchema, allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()


class ModelInfoSchema(_Strict):
    models = fields.List(fields.Nested(ModelSummarySchema))


class ModelVersionListSchema(_Strict):
    items = fields.List(fields.Nested(ModelVersionSchema))


class ModelPerformanceListSchema(_Strict):
    items = fields.List(fields.Nested(ModelPerformanceSchema))


class RemovedModelSchema(Schema):
    name = fields.String()
    version = fields.String()
    model_id = fields.String()


class CleanupReportSchema(_Strict):
    keep = fields.Integer()
    files_deleted = fields.Integer()
    removed = fields.List(fields.Nested(RemovedModelSchema))
