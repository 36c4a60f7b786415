"""RFC 9457 problem details: the only error format the API speaks."""

from __future__ import annotations

from typing import Any

from flask import Response, json

PROBLEM_TYPE_BASE = "https://learner-twin.dev/problems/"
CONTENT_TYPE = "application/problem+json"


class ProblemError(Exception):
    """An error that becomes a problem+json response."""

    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __init__(self, detail: str | None = None, *, errors: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}


def _problem(status: int, title: str, slug: str) -> type[ProblemError]:
    return type(slug.title().replace("-", "") + "Problem", (ProblemError,),
                {"status": status, "title": title, "slug": slug})


BadRequest = _problem(400, "Bad Request", "malformed-request")
Unauthorized = _problem(401, "Unauthorized", "unauthorized")
Forbidden = _problem(403, "Forbidden", "forbidden")
NotFound = _problem(404, "Not Found", "not-found")
MethodNotAllowed = _problem(405, "Method Not Allowed", "method-not-allowed")
Conflict = _problem(409, "Conflict", "conflict")
PreconditionFailed = _problem(412, "Precondition Failed", "precondition-failed")
PayloadTooLarge = _problem(413, "Payload Too Large", "payload-too-large")
UnsupportedMediaType = _problem(415, "Unsupported Media Type", "unsupported-media-type")
Unprocessable = _problem(422, "Unprocessable Content", "validation-failed")
ServiceUnavailable = _problem(503, "Service Unavailable", "unavailable")
InsufficientStorage = _problem(507, "Insufficient Storage", "insufficient-storage")


class RuleViolation(ProblemError):
    """A request valid by the OpenAPI document that breaks a rule JSON Schema cannot express
    (it depends on today's date, on stored data or on two fields at once). Its problem type
    names the rule (``RULES``); each operation lists the rules it checks in the document."""

    status = 422
    title = "Unprocessable Content"

    def __init__(self, rule: str, detail: str, *, errors: dict[str, Any] | None = None) -> None:
        if rule not in RULES:
            raise ValueError(f"undocumented rule {rule!r}")
        super().__init__(detail, errors=errors)
        self.slug = rule


# Every problem type the API answers with: PROBLEM_TYPE_BASE + slug (README, /openapi.json).
PROBLEM_TYPES: dict[str, str] = {
    "malformed-request": "400: the body is not JSON, or nested too deep",
    "unauthorized": "401: no valid bearer token",
    "forbidden": "403: the token's role may not do this",
    "not-found": "404: no such route, resource or subject (also another learner's data)",
    "method-not-allowed": "405: the route does not serve this method",
    "conflict": "409: duplicate profile, legal hold, a job already running, an evidence id reused",
    "precondition-failed": "412: If-Match names a version that is no longer current",
    "payload-too-large": "413: body above TWIN_MAX_BODY_BYTES",
    "unsupported-media-type": "415: the body is not application/json",
    "validation-failed": "422: fields the document itself rules out (``errors`` names them)",
    "unavailable": "503: busy, or an access that could not be recorded in the audit trail",
    "insufficient-storage": "507: the disk is full; the write was not made",
    "internal": "500: a bug; quote the request id",
}
# 422 for a request valid by the document: rules beyond JSON Schema.
RULES: dict[str, str] = {
    "parental-consent-required": "COPPA: a learner under 13 on today's date needs parental_consent",
    "birth-date-in-the-future": "birth_date is after today's date",
    "time-in-the-future": "start_time, end_time or observed_at is later than now (5 minutes' clock skew "
                          "allowed)",
    "start-time-outside-retention": "start_time is older than the session retention window",
    "session-ends-before-it-starts": "end_time is before the session's start_time",
    "invalid-cursor": "a cursor of the documented form that this server did not issue",
    "observed-at-outside-retention": "an observation's observed_at is older than the evidence retention window",
    "observed-before-purged-evidence": "an observation is older than evidence of its skill that retention "
                                       "already folded into the carried-over summary",
}
PROBLEM_TYPES.update({rule: f"422: {text}" for rule, text in RULES.items()})


def problem_response(error: ProblemError, request_id: str | None = None) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + error.slug, "title": error.title,
                            "status": error.status, "detail": error.detail}
    if error.errors is not None:
        body["errors"] = error.errors
    if request_id:
        body["request_id"] = request_id
    response = Response(json.dumps(body), status=error.status, mimetype=CONTENT_TYPE)
    for name, value in error.headers.items():
        response.headers[name] = value
    return response
