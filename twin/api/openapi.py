"""The OpenAPI 3 document, generated from the routes' ``endpoint`` specs and their marshmallow
schemas, so the document cannot drift from what the code validates."""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from twin import __version__

from .schemas import ProblemSchema

_CONVERTER = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")
_MAXLENGTH = re.compile(r"<[a-z]+\([^)]*maxlength=(\d+)[^)]*\):([a-z_]+)>")
_STATUS_TEXT = {200: "OK", 201: "Created", 400: "Malformed JSON", 401: "Missing or invalid token",
                403: "Role not allowed", 404: "Not found", 409: "Conflict", 412: "If-Match mismatch",
                413: "Body too large", 415: "Not application/json", 422: "Invalid fields",
                503: "Unavailable"}


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


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.0 document of every route declared with ``endpoint``."""
    spec = APISpec(title="learner twin API", version=__version__, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
                   info={"description": "Encrypted learner profiles, sessions and knowledge states."})
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Problem", schema=ProblemSchema)
    problem = {"description": "Problem details (RFC 9457)",
               "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        endpoint_spec = getattr(view, "endpoint_spec", None)
        if endpoint_spec is None:
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        path_params = _CONVERTER.findall(rule.rule)
        max_lengths = {name: int(limit) for limit, name in _MAXLENGTH.findall(rule.rule)}
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation: dict[str, Any] = {"summary": endpoint_spec.summary, "tags": [endpoint_spec.tag],
                                         "operationId": rule.endpoint.replace(".", "_"), "responses": {}}
            parameters: list[dict[str, Any]] = [
                _path_parameter(p, max_lengths.get(p), endpoint_spec.path_patterns.get(p)) for p in path_params]
            if endpoint_spec.query is not None:
                parameters.append({"in": "query", "schema": endpoint_spec.query})
            if method == "PATCH":
                parameters.append({"in": "header", "name": "If-Match", "required": False,
                                   "schema": {"type": "string"}})
            if parameters:
                operation["parameters"] = parameters
            if endpoint_spec.body is not None:
                operation["requestBody"] = {"required": not endpoint_spec.body_optional,
                                            "content": {"application/json": {"schema": endpoint_spec.body}}}
            if endpoint_spec.roles is not None:
                operation["security"] = [{"bearerAuth": []}]
            for status, schema in sorted(endpoint_spec.responses.items()):
                if status >= 400:
                    operation["responses"][str(status)] = {**problem, "description": _STATUS_TEXT.get(status, "Error")}
                    continue
                content = {"application/json": {"schema": schema}} if schema is not None else \
                    {"application/json": {"schema": {"type": "object"}}}
                operation["responses"][str(status)] = {"description": _STATUS_TEXT.get(status, "OK"),
                                                       "content": content}
            errors = set()
            if endpoint_spec.roles is not None:
                errors |= {401, 403}
            if endpoint_spec.body is not None:
                errors |= {400, 413, 415, 422}
            if endpoint_spec.query is not None or path_params:
                errors |= {404, 422}
            for status in sorted(errors):
                operation["responses"].setdefault(str(status), {**problem, "description": _STATUS_TEXT[status]})
            operation["responses"]["default"] = {**problem, "description": "Any other error"}
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
