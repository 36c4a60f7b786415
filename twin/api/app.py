"""The Flask application factory."""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
from inspect import CO_COROUTINE
from types import FunctionType
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask.json.provider import DefaultJSONProvider
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from compliance.audit_journal import AuditJournalError
from compliance.compact_json import compact_encoder
from compliance.consent import ConsentError, ConsentRequiredError
from compliance.job_lock import JobAlreadyRunningError
from compliance.legal_hold import HoldNotFoundError, SubjectOnHoldError
from compliance.subject_keys import SubjectKeyMissingError
from twin.config import Config
from twin.learners.errors import (DuplicateProfileError, EvidenceConflictError, InvalidFieldsError,
                                  NotFoundError, PreconditionFailedError)
from twin.logs import SiteRecords, request_context
from twin.metrics import observe_request
from twin.model_registry.errors import (DuplicateVersionError, InvalidModelFieldError,
                                        ModelNotFoundError)
from twin.runtime import Runtime
from twin.storage import DatabaseBusyError, StorageFullError

from . import problems
from .problems import ProblemError, problem_response
from .formats import PATH_PATTERNS

log = logging.getLogger("twin.access")
error_log = logging.getLogger("twin.api")

# The access line's source (this file, _finish) is given, not found by ``Logger.findCaller``
# walking the stack on every request; line 0: no line of the hook is named.
_ACCESS_LINE = 0
_ACCESS = SiteRecords(log, logging.INFO, __file__, _ACCESS_LINE, "%s %s %s %.1fms rid=%s", "_finish")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CONVERTER = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")


def route_template() -> str:
    """The matched route with bare placeholders (``/v1/profiles/<profile_id>``), never the
    concrete path: paths hold ids, and logs must not link requests to a learner."""
    rule = request.url_rule
    return _template_of(rule.rule) if rule is not None else "<unmatched>"


@functools.lru_cache(maxsize=None)  # one entry per route of the app: a bounded set
def _template_of(rule: str) -> str:
    return _CONVERTER.sub(r"<\1>", rule)

# Domain errors -> problems. Messages of these errors never contain personal data.
_DOMAIN_ERRORS: list[tuple[type[Exception], type[ProblemError]]] = [
    (NotFoundError, problems.NotFound),
    (ModelNotFoundError, problems.NotFound),
    # A subject whose key is gone was erased (possibly during this request): nothing to serve.
    (SubjectKeyMissingError, problems.NotFound),
    (HoldNotFoundError, problems.NotFound),
    (DuplicateProfileError, problems.Conflict),
    (SubjectOnHoldError, problems.Conflict),
    (JobAlreadyRunningError, problems.Conflict),
    (DuplicateVersionError, problems.Conflict),
    (InvalidModelFieldError, problems.Unprocessable),
    (PreconditionFailedError, problems.PreconditionFailed),
    (DatabaseBusyError, problems.ServiceUnavailable),
    # An access that cannot be audited is refused rather than left unrecorded.
    (AuditJournalError, problems.ServiceUnavailable),
]


def _request_writes() -> bool:
    """Whether the matched route changes stored data (its endpoint spec says; else the method)."""
    view = current_app.view_functions.get(request.endpoint or "")
    spec = getattr(view, "endpoint_spec", None)
    if spec is None:
        return request.method not in ("GET", "HEAD")
    return spec.writes(request.method)


def _to_problem(exc: Exception) -> ProblemError:
    if isinstance(exc, ProblemError):
        return exc
    if isinstance(exc, StorageFullError):
        # A write that cannot be stored is 507; a read refused because its access could not be
        # recorded (the audit journal's disk is full) is unavailable for now.
        if _request_writes():
            return problems.InsufficientStorage(str(exc))
        return problems.ServiceUnavailable(str(exc), headers={"Retry-After": "30"})
    if isinstance(exc, InvalidFieldsError):
        if exc.rule is not None:
            return problems.RuleViolation(exc.rule, "one or more fields break a rule", errors=exc.errors)
        return problems.Unprocessable("one or more fields are invalid", errors=exc.errors)
    if isinstance(exc, EvidenceConflictError):
        return problems.Conflict(str(exc), errors={"observations": {
            str(i): {"evidence_id": ["Already used with different content."]} for i in exc.indices}})
    if isinstance(exc, ConsentRequiredError):
        return problems.RuleViolation("parental-consent-required", str(exc),
                                      errors={"parental_consent": [str(exc)]})
    if isinstance(exc, InvalidModelFieldError):
        return problems.Unprocessable(str(exc))
    if isinstance(exc, ConsentError):
        return problems.Unprocessable(str(exc))
    if isinstance(exc, ValidationError):
        return problems.Unprocessable("one or more fields are invalid", errors=exc.normalized_messages())
    for error_type, problem in _DOMAIN_ERRORS:
        if isinstance(exc, error_type):
            extra = {"Retry-After": "1"} if problem is problems.ServiceUnavailable else None
            return problem(str(exc), headers=extra)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        by_status = {400: problems.BadRequest, 404: problems.NotFound, 405: problems.MethodNotAllowed,
                     413: problems.PayloadTooLarge, 415: problems.UnsupportedMediaType}
        problem_cls = by_status.get(status)
        if problem_cls is None:
            problem_cls = type("HttpProblem", (ProblemError,), {"status": status, "title": exc.name,
                                                                "slug": exc.name.lower().replace(" ", "-")})
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        detail = {404: "no such route", 405: "method not allowed on this route",
                  413: "request body too large"}.get(status, exc.name)
        return problem_cls(detail, headers=headers)
    error_log.error("unhandled %s on %s %s (request %s)", type(exc).__name__, request.method,
                    route_template(), g.get("request_id"), exc_info=exc)
    return ProblemError("an unexpected error occurred; quote the request id when reporting it")


class _JSONProvider(DefaultJSONProvider):
    """Flask's JSON, the response bodies' compact form from an encoder made once (every JSON
    response is one): the same text, dates and the other types Flask serialises included."""

    _RESPONSE = {"separators": (",", ":")}  # what response() passes out of debug mode

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        self._compact = compact_encoder(ensure_ascii=self.ensure_ascii, sort_keys=self.sort_keys,
                                        default=self.default)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs == self._RESPONSE:
            return self._compact(obj)
        return super().dumps(obj, **kwargs)


class _TwinFlask(Flask):
    json_provider_class = _JSONProvider

    def ensure_sync(self, func: Any) -> Any:
        """A plain function as it is, without ``inspect.iscoroutinefunction``'s unwrapping: Flask
        asks this of every hook and view on every request (four times a request here), and
        only an ``async def`` (a coroutine function's code) needs wrapping."""
        if type(func) is FunctionType and not func.__code__.co_flags & CO_COROUTINE:
            return func
        return super().ensure_sync(func)

    def make_default_options_response(self) -> Response:
        """``Allow`` lists only the methods this path is served for: ``/v1/profiles/lookup``
        also fits ``/v1/profiles/<profile_id>``'s rule, but "lookup" is no profile id."""
        from flask.globals import request_ctx
        adapter = request_ctx.url_adapter
        allowed = set()
        for method in adapter.allowed_methods():
            try:
                _endpoint, values = adapter.match(method=method)
            except HTTPException:
                continue
            if all(re.search(PATH_PATTERNS[name], str(value))
                   for name, value in values.items() if name in PATH_PATTERNS):
                allowed.add(method)
        response = self.response_class()
        response.allow.update(allowed)
        return response


def create_app(config: Config | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the API. Pass a ``runtime`` to share one (tests, benchmarks), else one is opened."""
    config = config or (runtime.config if runtime else Config.from_env())
    runtime = runtime or Runtime.open(config)
    app = _TwinFlask("twin", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["learner_twin"] = runtime

    from .routes import (admin, audit, consents, dsr, evidence, health, knowledge, models, profiles,
                         sessions)
    for module in (health, profiles, sessions, knowledge, evidence, consents, dsr, admin, audit, models):
        app.register_blueprint(module.bp)
    app.register_blueprint(models.seed_bp)  # seed 002's paths, deprecated aliases

    # The hooks resolve ``g`` and ``request`` once each: every access through Flask's proxies
    # looks the context up again, and these run on every request.
    @app.before_request
    def _start() -> None:
        state, req = g._get_current_object(), request._get_current_object()
        state.started = time.perf_counter()
        incoming = req.environ.get("HTTP_X_REQUEST_ID", "")  # = req.headers.get("X-Request-ID")
        state.request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        # Every line logged while this request runs carries these (twin.logs, JSON format).
        rule = req.url_rule  # the access line and the metrics reuse the route
        state.route = _template_of(rule.rule) if rule is not None else "<unmatched>"
        state.log_context = request_context.set({"request_id": state.request_id, "method": req.method,
                                                 "route": state.route})

    @app.after_request
    def _finish(response: Response) -> Response:
        state, req = g._get_current_object(), request._get_current_object()
        request_id = state.get("request_id")
        # Added, not set: no view or problem sets these two (set would look for one first).
        headers = response.headers
        headers.add("X-Request-ID", request_id or "")
        if req.path.startswith("/v1/"):
            headers.add("Cache-Control", "no-store")
        # Route template, never the concrete path: paths hold ids, bodies hold personal data.
        route, status = state.get("route") or route_template(), response.status_code
        seconds = time.perf_counter() - state.get("started", time.perf_counter())
        if log.isEnabledFor(logging.INFO):  # the record made directly: see _ACCESS_LINE
            log.handle(_ACCESS.make((req.method, route, status, seconds * 1000, request_id),
                                    {"status": status, "duration_ms": round(seconds * 1000, 2)}))
        observe_request(req.method, route, status, seconds)
        return response

    @app.teardown_request
    def _forget_context(_exc: BaseException | None) -> None:
        token = g.pop("log_context", None)
        if token is not None:
            request_context.reset(token)

    @app.errorhandler(Exception)
    def _problem(exc: Exception) -> Any:
        return problem_response(_to_problem(exc), g.get("request_id"))

    return app
