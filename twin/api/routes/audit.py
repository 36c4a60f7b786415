"""The audit trail, for admins: filter by subject, action and time; cursor pagination."""

from typing import Any

from flask import Blueprint, jsonify

from ..endpoint import ADMIN, endpoint, runtime
from ..problems import Unprocessable
from ..schemas import AuditPageSchema, AuditQuerySchema, AuditSearchSchema

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")


def _page(filters: dict[str, Any], subject_hash: str | None):
    limit = filters["limit"]
    events = runtime().audit.query(subject_hash=subject_hash, action=filters.get("action"),
                                   since=filters.get("since"), until=filters.get("until"),
                                   after_seq=filters.get("cursor"), limit=limit + 1)
    more = len(events) > limit
    events = events[:limit]
    return jsonify(items=[e.to_dict() for e in events], next_cursor=events[-1].seq if more else None)


@bp.get("")
@endpoint("Audit events (record of disclosures); subject is a keyed subject hash", tag="audit",
          roles=ADMIN, query=AuditQuerySchema, responses={200: AuditPageSchema})
def list_events(query):
    return _page(query, query.get("subject"))


@bp.post("/search")
@endpoint("Audit events of a user_id (given in the body, so it stays out of URLs and logs)",
          tag="audit", roles=ADMIN, body=AuditSearchSchema, responses={200: AuditPageSchema})
def search_events(body):
    if "user_id" in body and "subject" in body:
        raise Unprocessable("give user_id or subject, not both",
                            errors={"user_id": ["Give user_id or subject, not both."]})
    subject = runtime().hasher.hash(body["user_id"]) if "user_id" in body else body.get("subject")
    return _page(body, subject)
