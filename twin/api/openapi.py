"""The OpenAPI 3.1 document, generated from the routes' ``endpoint`` specs and their marshmallow
schemas, so the document cannot drift from what the code validates.

It declares what the server enforces: every field's bounds and formats (dates in the years
1900-9999, free-form object keys of 1-64 characters as ``propertyNames``, id, cursor and model
name formats), the headers responses carry (``X-Request-ID`` always, ``ETag`` on versioned
resources), 412 wherever ``If-Match`` is honoured, and every problem ``type``: a request valid
by this document is refused with 422 only for one of its operation's ``x-rules`` (checks JSON
Schema cannot express, listed in ``twin.api.problems.RULES``). OpenAPI 3.1 because 3.0's schema
dialect has no ``propertyNames``.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import fields

from twin import __version__

from .problems import PROBLEM_TYPE_BASE, PROBLEM_TYPES, RULES
from .formats import PATH_PATTERNS
from .schemas import ProblemSchema

_CONVERTER = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")
_MAXLENGTH = re.compile(r"<[a-z]+\([^)]*maxlength=(\d+)[^)]*\):([a-z_]+)>")
_STATUS_TEXT = {200: "OK", 201: "Created", 400: "Malformed JSON", 401: "Missing or invalid token",
                403: "Role not allowed", 404: "Not found", 409: "Conflict", 412: "If-Match mismatch",
                413: "Body too large", 415: "Not application/json", 422: "Invalid fields",
                503: "Unavailable (busy, or the access could not be recorded in the audit trail)",
                507: "Insufficient storage (the disk is full; nothing was written)"}
_REQUEST_ID = {"description": "This request's id (the caller's X-Request-ID if well-formed); quote it "
                              "when reporting a problem", "schema": {"type": "string"}}
_ETAG = {"description": "Strong validator of the returned version; send it as If-Match to update",
         "schema": {"type": "string"}}


def _schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema")


def _path_parameter(name: str, max_length: int | None, pattern: str | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if max_length is not None:
        schema["maxLength"] = max_length
    if pattern is not None:
        schema["pattern"] = pattern
    return {"in": "path", "name": name, "required": True, "schema": schema}


def _property_names(self: Any, field: fields.Field, **_: Any) -> dict[str, Any]:
    """A dict's key constraints (e.g. lengths 1-64) as JSON Schema's ``propertyNames``."""
    keys = getattr(field, "key_field", None)
    if not isinstance(field, fields.Dict) or keys is None or not keys.validators:
        return {}
    return {"propertyNames": self.field2property(keys)}


class _Plugin(MarshmallowPlugin):
    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        self.converter.add_attribute_function(_property_names)


def _problem_component() -> dict[str, Any]:
    types = [PROBLEM_TYPE_BASE + slug for slug in PROBLEM_TYPES]
    listing = "; ".join(f"`{slug}`: {text}" for slug, text in PROBLEM_TYPES.items())
    return {"type": {"type": "string", "enum": types,
                     "description": f"One of {PROBLEM_TYPE_BASE}<slug>: {listing}."}}


def _responses(endpoint_spec: Any, method: str, path_params: list[str], problem: dict[str, Any],
               headers: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, schema in sorted(endpoint_spec.responses.items()):
        if status >= 400:
            responses[str(status)] = {**problem, "description": _STATUS_TEXT.get(status, "Error")}
            continue
        content = {"application/json": {"schema": schema if schema is not None else {"type": "object"}}}
        success_headers = dict(headers)
        if getattr(schema, "carries_etag", False):
            success_headers["ETag"] = _ETAG
        responses[str(status)] = {"description": _STATUS_TEXT.get(status, "OK"), "content": content,
                                  "headers": success_headers}
    errors = set()
    if endpoint_spec.roles is not None:
        errors |= {401, 403, 503}
    if endpoint_spec.body is not None:
        errors |= {400, 413, 415, 422}
    if endpoint_spec.query is not None or path_params:
        errors |= {404, 422}
    if method == "PATCH":
        errors.add(412)
    if endpoint_spec.roles is not None and endpoint_spec.writes(method):
        errors.add(507)
    for status in sorted(errors):
        responses.setdefault(str(status), {**problem, "description": _STATUS_TEXT[status]})
    if endpoint_spec.rules:
        rules = "; ".join(f"`{rule}` ({RULES[rule]})" for rule in endpoint_spec.rules)
        responses["422"] = {**problem, "description": "Invalid fields (`validation-failed`), or a valid "
                                                      f"request that breaks one of these rules: {rules}"}
    responses["default"] = {**problem, "description": "Any other error"}
    for response in responses.values():
        response.setdefault("headers", headers)
    return responses


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route declared with ``endpoint``."""
    spec = APISpec(title="learner twin API", version=__version__, openapi_version="3.1.0",
                   plugins=[_Plugin(schema_name_resolver=_schema_name)],
                   info={"description": "Encrypted learner profiles, sessions and knowledge states. "
                                        f"Errors are RFC 9457 problems; their types are {PROBLEM_TYPE_BASE}"
                                        "<slug> (see the Problem schema)."})
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Problem", schema=ProblemSchema)
    headers = {"X-Request-ID": _REQUEST_ID}
    problem = {"description": "Problem details (RFC 9457)",
               "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    paths: dict[str, dict[str, Any]] = {}
    extras: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        endpoint_spec = getattr(view, "endpoint_spec", None)
        if endpoint_spec is None:
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        path_params = _CONVERTER.findall(rule.rule)
        max_lengths = {name: int(limit) for limit, name in _MAXLENGTH.findall(rule.rule)}
        for schema in (endpoint_spec.body, *endpoint_spec.responses.values()):
            _collect_extras(schema, extras)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation: dict[str, Any] = {"summary": endpoint_spec.summary, "tags": [endpoint_spec.tag],
                                         "operationId": rule.endpoint.replace(".", "_"), "responses": {}}
            parameters: list[dict[str, Any]] = [
                _path_parameter(p, max_lengths.get(p), endpoint_spec.path_patterns.get(p, PATH_PATTERNS.get(p)))
                for p in path_params]
            if endpoint_spec.query is not None:
                parameters.append({"in": "query", "schema": endpoint_spec.query})
            if method == "PATCH" or endpoint_spec.if_match:
                parameters.append({"in": "header", "name": "If-Match", "required": False,
                                   "description": endpoint_spec.if_match or "Update only if the resource "
                                                  "is still at this ETag (else 412)", "schema": {"type": "string"}})
            if parameters:
                operation["parameters"] = parameters
            if endpoint_spec.body is not None:
                limit = endpoint_spec.max_body_bytes or app.config["MAX_CONTENT_LENGTH"]
                operation["requestBody"] = {"required": not endpoint_spec.body_optional,
                                            "description": f"At most {limit:,} bytes (413 above)",
                                            "x-max-body-bytes": limit,
                                            "content": {"application/json": {"schema": endpoint_spec.body}}}
            if endpoint_spec.roles is not None:
                operation["security"] = [{"bearerAuth": []}]
            if endpoint_spec.deprecated:
                operation["deprecated"] = True
            if endpoint_spec.rules:
                operation["x-rules"] = [PROBLEM_TYPE_BASE + rule for rule in endpoint_spec.rules]
            operation["responses"] = _responses(endpoint_spec, method, path_params, problem, headers)
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    schemas = document["components"]["schemas"]
    schemas["Problem"]["properties"].update(_problem_component())
    for name, extra in extras.items():  # what marshmallow cannot say (e.g. "one of these fields")
        schemas[name].update(extra)
    return document


def _collect_extras(schema: Any, extras: dict[str, dict[str, Any]]) -> None:
    """``openapi_extra`` of a schema and of the schemas nested in it, by component name."""
    if schema is None:
        return
    instance = schema() if isinstance(schema, type) else schema
    if getattr(instance, "openapi_extra", None):
        extras[_schema_name(instance)] = instance.openapi_extra
    for field in instance.fields.values():
        inner = getattr(field, "inner", field)
        nested = getattr(inner, "schema", None) if hasattr(inner, "nested") else None
        if nested is not None:
            _collect_extras(nested, extras)
