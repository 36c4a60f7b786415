"""Learning sessions."""

from flask import Blueprint, jsonify, request

from ..endpoint import SERVICE, actor, endpoint, request_id, runtime, subject_restriction, with_etag
from ..schemas import (SessionListQuerySchema, SessionPageSchema, SessionSchema, SessionStartSchema,
                       SessionUpdateSchema)

bp = Blueprint("sessions", __name__, url_prefix="/v1")


@bp.post("/profiles/<string(maxlength=64):profile_id>/sessions")
@endpoint("Start a learning session", tag="sessions", roles=SERVICE, body=SessionStartSchema,
          responses={201: SessionSchema, 404: None},
          rules=("time-in-the-future", "start-time-outside-retention"))
def start_session(profile_id, body):
    view, etag = runtime().sessions.start(actor(), request_id(), profile_id, body)
    return with_etag(view, etag, 201, location=f"/v1/sessions/{view['session_id']}")


@bp.get("/profiles/<string(maxlength=64):profile_id>/sessions")
@endpoint("List a profile's sessions (cursor pagination)", tag="sessions", roles=SERVICE,
          learner_own=True, query=SessionListQuerySchema, responses={200: SessionPageSchema, 404: None},
          rules=("invalid-cursor",))
def list_sessions(profile_id, query):
    page = runtime().sessions.list(actor(), request_id(), profile_id, limit=query["limit"],
                                   cursor=query.get("cursor"), restricted_to=subject_restriction())
    return jsonify(page)


@bp.get("/sessions/<string(maxlength=64):session_id>")
@endpoint("Read a session (ETag)", tag="sessions", roles=SERVICE, responses={200: SessionSchema, 404: None})
def get_session(session_id):
    return with_etag(*runtime().sessions.get(actor(), request_id(), session_id))


@bp.patch("/sessions/<string(maxlength=64):session_id>")
@endpoint("Finish or update a session (If-Match honoured)", tag="sessions", roles=SERVICE,
          body=SessionUpdateSchema, responses={200: SessionSchema, 404: None, 412: None},
          rules=("time-in-the-future", "session-ends-before-it-starts"))
def update_session(session_id, body):
    return with_etag(*runtime().sessions.update(actor(), request_id(), session_id, body,
                                                 request.headers.get("If-Match")))
