"""The audit trail, for admins: filter by subject, action and time; cursor pagination."""

from flask import Blueprint, jsonify

from ..endpoint import ADMIN, endpoint, runtime
from ..problems import Unprocessable
from ..schemas import AuditPageSchema, AuditQuerySchema, AuditSearchSchema

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")


@bp.get("")
@endpoint("Audit events (record of disclosures); subject is a keyed subject hash", tag="audit",
          roles=ADMIN, query=AuditQuerySchema, responses={200: AuditPageSchema})
def list_events(query):
    return jsonify(runtime().subject_requests.disclosures(query, subject_hash=query.get("subject")))


@bp.post("/search")
@endpoint("Audit events of a user_id (given in the body, so it stays out of URLs and logs)",
          tag="audit", roles=ADMIN, body=AuditSearchSchema, responses={200: AuditPageSchema},
          read_only=True)
def search_events(body):
    if "user_id" in body and "subject" in body:
        raise Unprocessable("give user_id or subject, not both",
                            errors={"user_id": ["Give user_id or subject, not both."]})
    return jsonify(runtime().subject_requests.disclosures(body, user_id=body.get("user_id"),
                                                         subject_hash=body.get("subject")))
