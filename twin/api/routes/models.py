"""Model registry routes (admin, service): info, versions, performance, cleanup.

Seed 002's paths (``/models/info``, ``/models/{name}/versions``,
``/models/performance/{name}?version=``, ``POST /models/cleanup``) answer too, as deprecated
aliases of the ``/v1/models`` routes: the same views, roles, validation and answers, marked
``deprecated`` in the OpenAPI document and answered with ``Deprecation`` and ``Link``
(successor) headers.
"""

from typing import Any, Callable

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, fields, validate

from twin.model_registry.errors import InvalidModelNameError

from ..endpoint import SERVICE, endpoint, runtime
from ..problems import NotFound
from ..formats import MODEL_VERSION_PATTERN
from ..model_schemas import (CleanupReportSchema, ModelInfoSchema, ModelPerformanceListSchema,
                             ModelVersionListSchema)
from ..schemas import StrictInteger

bp = Blueprint("models", __name__, url_prefix="/v1/models")
seed_bp = Blueprint("seed_models", __name__, url_prefix="/models")

_MODEL_NAME = "<string(maxlength=100):name>"
DEFAULT_KEEP = 3


class PerformanceQuerySchema(Schema):
    version = fields.String(validate=validate.Regexp(MODEL_VERSION_PATTERN))


class CleanupSchema(Schema):
    keep = StrictInteger(load_default=DEFAULT_KEEP, validate=validate.Range(1, 1000))


def _route(method: str, path: str, seed_path: str, summary: str, **declared: Any) -> Callable:
    """Register ``view`` at ``/v1/models{path}`` and, deprecated, at the seed's ``/models{seed_path}``."""
    def register(view: Callable) -> Callable:
        getattr(bp, method)(path)(endpoint(summary, tag="models", roles=SERVICE, **declared)(view))
        alias = endpoint(f"{summary} (deprecated: use /v1/models{path})", tag="models",
                         roles=SERVICE, deprecated=True, **declared)(view)
        getattr(seed_bp, method)(seed_path, endpoint=f"{view.__name__}_seed")(alias)
        return view
    return register


@seed_bp.after_request
def _deprecation_headers(response: Response) -> Response:
    response.headers["Deprecation"] = "true"
    successor = "/v1" + request.path
    if "/performance/" in request.path:  # the seed put the name after "performance"
        successor = "/v1/models/" + request.path.rsplit("/", 1)[1] + "/performance"
    response.headers["Link"] = f'<{successor}>; rel="successor-version"'
    return response


@_route("get", "/info", "/info", "Every registered model and its versions",
        responses={200: ModelInfoSchema})
def info():
    return jsonify(runtime().models.get_model_info())


@_route("get", f"/{_MODEL_NAME}/versions", f"/{_MODEL_NAME}/versions", "Versions of one model",
        responses={200: ModelVersionListSchema, 404: None})
def versions(name):
    try:
        return jsonify(items=runtime().models.get_versions(name))
    except InvalidModelNameError:  # no model can have that name
        raise NotFound("no such model") from None


@_route("get", f"/{_MODEL_NAME}/performance", f"/performance/{_MODEL_NAME}",
        "Performance history of a model (optionally one version)",
        query=PerformanceQuerySchema, responses={200: ModelPerformanceListSchema, 404: None})
def performance(name, query):
    try:
        return jsonify(items=runtime().models.get_performance(name, query.get("version")))
    except InvalidModelNameError:
        raise NotFound("no such model") from None


@_route("post", "/cleanup", "/cleanup",
        f"Delete all but the newest N versions of every model (never the active one); "
        f"no body keeps {DEFAULT_KEEP}",
        body=CleanupSchema, body_optional=True, responses={200: CleanupReportSchema})
def cleanup(body):
    return jsonify(runtime().models.cleanup_old_models(keep=body["keep"]))
