"""Data-subject requests: export (admin, or a learner for themself) and erasure (admin)."""

from flask import Blueprint, Response, jsonify, stream_with_context

from ..endpoint import ADMIN, actor, endpoint, request_id, runtime, subject_restriction
from ..schemas import ErasureReceiptSchema, ExportSchema, StrictBoolean, UserIdSchema

bp = Blueprint("dsr", __name__, url_prefix="/v1/dsr")


class EraseRequestSchema(UserIdSchema):
    dry_run = StrictBoolean(load_default=False)


@bp.post("/export")
@endpoint("Export every stored datum of a subject", tag="dsr", roles=ADMIN, learner_own=True,
          body=UserIdSchema, responses={200: ExportSchema, 404: None}, read_only=True)
def export(body):
    chunks = runtime().subject_requests.export(actor(), request_id(), body["user_id"],
                                               restricted_to=subject_restriction())
    return Response(stream_with_context(chunks), mimetype="application/json",
                    headers={"Content-Disposition": 'attachment; filename="dsr-export.json"'})


@bp.post("/erase")
@endpoint("Erase every stored datum of a subject", tag="dsr", roles=ADMIN, body=EraseRequestSchema,
          responses={200: ErasureReceiptSchema, 409: None})
def erase(body):
    receipt = runtime().subject_requests.erase(actor(), request_id(), user_id=body["user_id"],
                                               dry_run=body["dry_run"])
    return jsonify(receipt.to_dict())
