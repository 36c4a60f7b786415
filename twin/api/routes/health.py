"""Liveness, readiness and the OpenAPI document (no authentication)."""

from flask import Blueprint, current_app, jsonify

from ..endpoint import endpoint, runtime
from ..schemas import HealthSchema

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@endpoint("Liveness: the process answers", tag="health", roles=None, responses={200: HealthSchema})
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
@endpoint("Readiness: every database open and keyed, and the data directories can take writes",
          tag="health", roles=None, responses={200: HealthSchema, 503: HealthSchema})
def readyz():
    rt = runtime()
    databases = rt.ready()
    writable = rt.writable()
    ok = all(databases.values()) and writable
    return jsonify(status="ready" if ok else "unavailable", databases=databases,
                   writable=writable), 200 if ok else 503


@bp.get("/openapi.json")
@endpoint("This OpenAPI 3 document", tag="health", roles=None, responses={200: None})
def openapi():
    from ..openapi import build_spec
    spec = current_app.extensions.get("learner_twin_openapi")
    if spec is None:
        spec = current_app.extensions["learner_twin_openapi"] = build_spec(current_app)
    return jsonify(spec)
