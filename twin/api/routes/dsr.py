"""Data-subject requests: export (admin, or a learner for themself) and erasure (admin)."""

from flask import Blueprint, Response, jsonify, stream_with_context

from ..endpoint import ADMIN, actor, endpoint, request_id, runtime, subject_restriction
from ..problems import NotFound
from ..schemas import ErasureReceiptSchema, ExportSchema, StrictBoolean, UserIdSchema

bp = Blueprint("dsr", __name__, url_prefix="/v1/dsr")


class EraseRequestSchema(UserIdSchema):
    dry_run = StrictBoolean(load_default=False)


@bp.post("/export")
@endpoint("Export every stored datum of a subject", tag="dsr", roles=ADMIN, learner_own=True,
          body=UserIdSchema, responses={200: ExportSchema, 404: None})
def export(body):
    rt = runtime()
    subject = rt.hasher.hash(body["user_id"])
    own = subject_restriction()
    if own is not None and own != subject:
        raise NotFound("no such subject")  # a learner asking about someone else
    chunks = rt.dsr.export_chunks(subject, actor(), request_id())
    return Response(stream_with_context(chunks), mimetype="application/json",
                    headers={"Content-Disposition": 'attachment; filename="dsr-export.json"'})


@bp.post("/erase")
@endpoint("Erase every stored datum of a subject", tag="dsr", roles=ADMIN, body=EraseRequestSchema,
          responses={200: ErasureReceiptSchema, 409: None})
def erase(body):
    rt = runtime()
    receipt = rt.dsr.erase(rt.hasher.hash(body["user_id"]), actor(), request_id(), dry_run=body["dry_run"])
    return jsonify(receipt.to_dict())
