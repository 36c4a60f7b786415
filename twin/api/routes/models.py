"""Model registry routes (admin, service): info, versions, performance, cleanup."""

from flask import Blueprint, jsonify
from marshmallow import Schema, fields, validate

from twin.model_registry.errors import InvalidModelNameError

from ..endpoint import SERVICE, endpoint, runtime
from ..problems import NotFound
from ..formats import MODEL_VERSION_PATTERN
from ..model_schemas import (CleanupReportSchema, ModelInfoSchema, ModelPerformanceListSchema,
                             ModelVersionListSchema)
from ..schemas import StrictInteger

bp = Blueprint("models", __name__, url_prefix="/v1/models")

_MODEL_NAME = "<string(maxlength=100):name>"


class PerformanceQuerySchema(Schema):
    version = fields.String(validate=validate.Regexp(MODEL_VERSION_PATTERN))


class CleanupSchema(Schema):
    keep = StrictInteger(required=True, validate=validate.Range(1, 1000))


@bp.get("/info")
@endpoint("Every registered model and its versions", tag="models", roles=SERVICE,
          responses={200: ModelInfoSchema})
def info():
    return jsonify(runtime().models.get_model_info())


@bp.get(f"/{_MODEL_NAME}/versions")
@endpoint("Versions of one model", tag="models", roles=SERVICE,
          responses={200: ModelVersionListSchema, 404: None})
def versions(name):
    try:
        return jsonify(items=runtime().models.get_versions(name))
    except InvalidModelNameError:  # no model can have that name
        raise NotFound("no such model") from None


@bp.get(f"/{_MODEL_NAME}/performance")
@endpoint("Performance history of a model (optionally one version)", tag="models", roles=SERVICE,
          query=PerformanceQuerySchema, responses={200: ModelPerformanceListSchema, 404: None})
def performance(name, query):
    try:
        return jsonify(items=runtime().models.get_performance(name, query.get("version")))
    except InvalidModelNameError:
        raise NotFound("no such model") from None


@bp.post("/cleanup")
@endpoint("Delete all but the newest N versions of every model (never the active one)", tag="models",
          roles=SERVICE, body=CleanupSchema, responses={200: CleanupReportSchema})
def cleanup(body):
    return jsonify(runtime().models.cleanup_old_models(keep=body["keep"]))
