"""The audit trail, for admins: filter by subject hash, action and time; cursor pagination."""

from flask import Blueprint, jsonify

from ..endpoint import ADMIN, endpoint, runtime
from ..schemas import AuditPageSchema, AuditQuerySchema

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")


@bp.get("")
@endpoint("Audit events (record of disclosures)", tag="audit", roles=ADMIN, query=AuditQuerySchema,
          responses={200: AuditPageSchema})
def list_events(query):
    limit = query["limit"]
    events = runtime().audit.query(subject_hash=query.get("subject"), action=query.get("action"),
                                   since=query.get("since"), until=query.get("until"),
                                   after_seq=query.get("cursor"), limit=limit + 1)
    more = len(events) > limit
    events = events[:limit]
    return jsonify(items=[e.to_dict() for e in events], next_cursor=events[-1].seq if more else None)
