"""Operations: run retention now; place, list and lift legal holds."""

from flask import Blueprint, jsonify

from twin.retention_schedule import run_observed

from ..endpoint import ADMIN, actor, endpoint, request_id, runtime
from ..schemas import HoldCreateSchema, HoldListSchema, HoldSchema, RetentionReportSchema, RetentionRunSchema

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")


@bp.post("/retention/run")
@endpoint("Purge expired data now (body optional: {\"dry_run\": true} only previews)", tag="admin",
          roles=ADMIN, body=RetentionRunSchema, body_optional=True,
          responses={200: RetentionReportSchema, 409: None})
def run_retention(body):
    report = run_observed(runtime(), dry_run=body["dry_run"], actor=actor())
    return jsonify(report.to_dict())


@bp.post("/holds")
@endpoint("Place a legal hold on a subject", tag="admin", roles=ADMIN, body=HoldCreateSchema,
          responses={201: HoldSchema})
def place_hold(body):
    hold = runtime().subject_requests.place_hold(actor(), request_id(), body["user_id"], body["reason"],
                                                 body.get("until"))
    return jsonify(hold), 201


@bp.get("/holds")
@endpoint("List active legal holds", tag="admin", roles=ADMIN, responses={200: HoldListSchema})
def list_holds():
    return jsonify(items=runtime().subject_requests.active_holds())


@bp.delete("/holds/<string(maxlength=64):hold_id>")
@endpoint("Lift a legal hold", tag="admin", roles=ADMIN, responses={200: HoldSchema, 404: None})
def lift_hold(hold_id):
    return jsonify(runtime().subject_requests.lift_hold(actor(), request_id(), hold_id))
