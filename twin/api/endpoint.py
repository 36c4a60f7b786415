"""One decorator gives every route its authentication, role check, body/query validation and
OpenAPI description, so no route can forget one of them."""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import Response, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError

from compliance.audit import Actor
from twin.runtime import Runtime

from .problems import (BadRequest, Forbidden, NotFound, Unauthorized, Unprocessable,
                       UnsupportedMediaType)
from .formats import PATH_PATTERNS

ADMIN = ("admin",)
SERVICE = ("service", "admin")

# Deeper documents are refused before any code walks them recursively (validation, sealing,
# jsonify): Python's recursion limit would otherwise turn a legal body into a 500.
MAX_JSON_DEPTH = 32
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_COMPACT = (",", ":")  # jsonify's separators outside debug mode


@dataclass(frozen=True)
class EndpointSpec:
    summary: str
    tag: str
    roles: tuple[str, ...] | None             # None: public
    learner_own: bool = False                  # learners may call it for their own data
    body: Schema | None = None
    query: Schema | None = None
    responses: dict[int, Any] = field(default_factory=dict)  # status -> Schema class or None
    path_patterns: dict[str, str] = field(default_factory=dict)  # path parameter -> full-match regex
    body_optional: bool = False                # no body at all means "all defaults"
    read_only: bool | None = None              # None: GET is, other methods are not
    rules: tuple[str, ...] = ()                # 422 rules beyond the schema (problems.RULES)
    max_body_bytes: int | None = None          # this route's body limit (None: the general one)
    deprecated: bool = False                   # an old path kept for compatibility (OpenAPI says so)
    if_match: str | None = None                # honours If-Match (its OpenAPI description); PATCH always does

    def writes(self, method: str) -> bool:
        """Whether a request of ``method`` to this route changes stored data."""
        if self.read_only is None:
            return method not in ("GET", "HEAD", "OPTIONS")
        return not self.read_only


def runtime() -> Runtime:
    """The app's Runtime (databases, keys, services)."""
    return current_app.extensions["learner_twin"]


def actor() -> Actor:
    return g.actor


def request_id() -> str:
    return g.request_id


def subject_restriction() -> str | None:
    """The subject a learner token is bound to; None for service/admin tokens."""
    identity = g.identity
    return identity.subject_hash if identity.role == "learner" else None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf, which cannot be written back as JSON
        raise ValueError("number out of range")
    return value


def check_json_document(data: Any, max_depth: int = MAX_JSON_DEPTH, *, strings: bool = True) -> None:
    """Refuse documents nested deeper than ``max_depth`` or holding unpaired UTF-16 surrogates
    (they cannot be encoded as UTF-8, so storing or echoing them would fail). Iterative, so
    that the check itself cannot exhaust the stack. ``strings=False`` skips the surrogate
    check (the caller knows the document has none)."""
    def scalar(value: Any) -> None:
        if strings and isinstance(value, str) and _SURROGATE.search(value):
            raise BadRequest("the request body holds an unpaired UTF-16 surrogate")

    if not isinstance(data, (dict, list)):
        scalar(data)
        return
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise BadRequest(f"the request body is nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            if strings:
                for key in value:
                    scalar(key)
            children = value.values()
        else:
            children = value
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif strings:
                scalar(child)


def _may_hold_surrogates(raw: bytes) -> bool:
    """Whether a body can decode to a lone surrogate: an ASCII body only through a ``\\uD8xx``
    to ``\\uDFxx`` escape (bodies that are not ASCII are always checked)."""
    return not raw.isascii() or _SURROGATE_ESCAPE.search(raw) is not None


def parse_json_body(schema: Schema) -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    raw = request.get_data(cache=True)  # raises 413 above MAX_CONTENT_LENGTH
    try:
        data = json.loads(raw or b"null", parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    check_json_document(data, strings=_may_hold_surrogates(raw or b""))
    if not isinstance(data, dict):
        raise Unprocessable("the request body must be a JSON object", errors={"_schema": ["Must be an object."]})
    return load(schema, data)


def load(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise Unprocessable("one or more fields are invalid", errors=exc.normalized_messages()) from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None


def authenticate(spec: EndpointSpec, runtime: Runtime | None = None, environ: dict[str, Any] | None = None) -> None:
    """The request's bearer token checked (401), its role allowed by ``spec`` (403), and its
    identity and actor kept on ``g``. ``runtime`` and ``environ``: the caller's, when it
    already holds them (each lookup through Flask's proxies finds the context again)."""
    runtime = runtime or current_app.extensions["learner_twin"]
    # The header as the WSGI server passed it: what ``request.headers.get`` reads, without
    # its per-call name conversion.
    header = (environ if environ is not None else request.environ).get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    identity = runtime.tokens.verify(token.strip()) if scheme.lower() == "bearer" and token else None
    if identity is None:
        raise Unauthorized("a valid bearer token is required",
                           headers={"WWW-Authenticate": 'Bearer realm="learner-twin"'})
    allowed = spec.roles + (("learner",) if spec.learner_own else ())
    if identity.role not in allowed:
        raise Forbidden(f"the {identity.role} role may not do this")
    state = g._get_current_object()  # one context lookup for both
    state.identity = identity
    state.actor = _actor_of(identity.token_id, identity.role)


@functools.lru_cache(maxsize=1024)  # a token's Actor made (and checked) once, not per request
def _actor_of(token_id: str, role: str) -> Actor:
    return Actor(token_id, role)


# Compiled once: every request with an id in its path is checked (re.search(text) looks the
# pattern up in re's cache each call).
_PATH_REGEXES = {name: re.compile(pattern) for name, pattern in PATH_PATTERNS.items()}


def _check_path(spec: EndpointSpec, path: dict[str, Any]) -> None:
    for name, value in path.items():
        regex = _PATH_REGEXES.get(name)
        if regex is not None and not regex.search(value):
            raise NotFound("no such resource")  # an id of another form names nothing
    errors = {name: [f"Must match {pattern}"] for name, pattern in spec.path_patterns.items()
              if name in path and not re.fullmatch(pattern, path[name])}
    if errors:
        raise Unprocessable("one or more fields are invalid", errors=errors)


def endpoint(summary: str, *, tag: str, roles: tuple[str, ...] | None, learner_own: bool = False,
             body: type[Schema] | None = None, query: type[Schema] | None = None,
             responses: dict[int, Any] | None = None,
             path_patterns: dict[str, str] | None = None, body_optional: bool = False,
             read_only: bool | None = None, rules: tuple[str, ...] = (),
             max_body_bytes: int | None = None, deprecated: bool = False,
             if_match: str | None = None) -> Callable:
    """Declare a route: who may call it, what it takes and answers (also its OpenAPI entry).
    ``read_only=True`` marks a POST that only reads (its body keeps ids out of URLs);
    ``rules`` the checks beyond the schema it may refuse a valid request for (422);
    ``max_body_bytes`` raises (or lowers) the body limit for this route alone (413 above);
    ``deprecated`` marks an alias kept for old clients (same rules, listed as deprecated);
    ``if_match`` says what an If-Match header means to a route other than a PATCH (which
    always honours it)."""
    spec = EndpointSpec(summary, tag, roles, learner_own, body() if body else None,
                        query() if query else None, responses or {}, path_patterns or {},
                        body_optional, read_only, rules, max_body_bytes, deprecated, if_match)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(**path: Any) -> Any:
            req = request._get_current_object()  # the proxies resolved once a request
            environ = req.environ
            if spec.roles is not None:
                served = current_app.extensions["learner_twin"]
                authenticate(spec, served, environ)
                # Refused now, while nothing has changed, if the disk could not take the
                # request's audit event later (compliance.audit_journal: the reserve).
                served.audit.ensure_room()
            _check_path(spec, path)
            kwargs = dict(path)
            if spec.query is not None:
                kwargs["query"] = load(spec.query, req.args.to_dict(flat=True))
            # No query string (most requests): nothing to parse into request.args.
            elif spec.roles is not None and environ.get("QUERY_STRING") and req.args:
                raise Unprocessable("this route takes no query parameters",
                                    errors={k: ["Unknown field."] for k in request.args})
            if spec.body is not None:
                if spec.max_body_bytes is not None:
                    req.max_content_length = spec.max_body_bytes
                empty = spec.body_optional and not req.content_length and not req.get_data()
                kwargs["body"] = load(spec.body, {}) if empty else parse_json_body(spec.body)
            return view(**kwargs)

        wrapper.endpoint_spec = spec  # type: ignore[attr-defined]
        return wrapper

    return decorate


def with_etag(view: dict, etag: str, status: int = 200, location: str | None = None) -> Response:
    """A JSON response carrying the resource's ETag (and ``location``: a created resource's
    path). The body is ``jsonify``'s; the response is built in one step, without jsonify's
    argument handling and the header lookups of setting each header on its own."""
    app = current_app._get_current_object()
    provider = app.json
    response = app.response_class(provider.dumps(view, separators=_COMPACT) + "\n", status,
                                  mimetype=provider.mimetype)
    headers = response.headers  # a new response's: add, not set (nothing to replace)
    headers.add("ETag", etag)
    if location is not None:
        headers.add("Location", location)
    return response
