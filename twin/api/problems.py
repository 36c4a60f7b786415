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
