"""/openapi.json: a valid OpenAPI 3 document describing every route the app serves."""

from __future__ import annotations

import re

import pytest

from twin.api.formats import ID_PATTERNS

_CONVERTER = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_document_is_valid_openapi_3(spec):
    schemathesis = pytest.importorskip("schemathesis")
    schemathesis.experimental.OPEN_API_3_1.enable()

    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    # Raises SchemaError when the document breaks the OpenAPI 3.0 meta-schema.
    schemathesis.from_dict(spec, validate_schema=True)


def test_the_validation_used_above_rejects_a_broken_document(spec):
    schemathesis = pytest.importorskip("schemathesis")
    broken = {**spec, "paths": {"/x": {"get": {"responses": "not an object"}}}}

    with pytest.raises(schemathesis.exceptions.SchemaError):
        schemathesis.from_dict(broken, validate_schema=True)


def test_every_registered_route_and_method_is_documented(app, spec):
    served = {(_CONVERTER.sub(r"{\1}", rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, method, _ in _operations(spec)}

    assert served == documented


def test_every_v1_operation_and_deprecated_alias_requires_the_bearer_scheme_and_public_ones_do_not(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer"}
    for path, method, operation in _operations(spec):
        if path.startswith("/v1/") or operation.get("deprecated"):
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
        else:
            assert "security" not in operation, (method, path)


def test_operations_have_unique_ids_success_responses_and_problem_errors(spec):
    ids = [operation["operationId"] for _, _, operation in _operations(spec)]
    assert len(ids) == len(set(ids))
    for path, method, operation in _operations(spec):
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), (method, path)
        for code, response in responses.items():
            if code == "default" or code.startswith(("4", "5")) and code != "503":
                assert "application/problem+json" in response["content"], (method, path, code)


def test_path_parameters_match_the_placeholders(spec):
    for path, method, operation in _operations(spec):
        placeholders = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert placeholders == declared, (method, path)
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["required"] is True and parameter["schema"]["maxLength"] in (64, 100)


def test_bodies_are_json_and_reject_unknown_fields(spec):
    bodies = [(path, method, operation["requestBody"]) for path, method, operation in _operations(spec)
              if "requestBody" in operation]
    assert ("/v1/profiles", "post") in {(p, m) for p, m, _ in bodies}
    for path, method, body in bodies:
        schema = body["content"]["application/json"]["schema"]
        name = schema["$ref"].rsplit("/", 1)[1]
        resolved = spec["components"]["schemas"][name]
        assert resolved.get("additionalProperties") is False, (method, path)
        for status in ("400", "413", "415", "422"):
            assert status in spec["paths"][path][method]["responses"], (method, path, status)


def test_every_reference_resolves(spec):
    text = repr(spec)
    for ref in set(re.findall(r"'\$ref': '#/components/schemas/(\w+)'", text)):
        assert ref in spec["components"]["schemas"], ref


def test_the_schemas_carry_the_validation_rules(spec):
    schemas = spec["components"]["schemas"]
    create = schemas["ProfileCreate"]
    knowledge = schemas["KnowledgeUpsert"]["properties"]
    session = schemas["SessionUpdate"]["properties"]

    assert create["required"] == ["user_id"]
    assert create["properties"]["preferred_difficulty"]["enum"] == ["easy", "medium", "hard"]
    assert create["properties"]["personal"]["type"] == "object"
    assert create["properties"]["personal"]["maxProperties"] == 50
    assert "maxLength" not in create["properties"]["personal"]  # maxLength means nothing on an object
    for field in ("mastery_level", "confidence_score"):
        assert (knowledge[field]["minimum"], knowledge[field]["maximum"]) == (0, 1)
    assert (session["engagement_score"]["minimum"], session["engagement_score"]["maximum"]) == (0, 1)
    assert session["completion_status"]["enum"] == ["in_progress", "completed", "abandoned"]
    assert session["end_time"]["format"] == "date-time"


def test_the_knowledge_path_documents_the_allowed_segment_characters(spec):
    operation = spec["paths"]["/v1/profiles/{profile_id}/knowledge/{domain}/{topic}"]["put"]
    patterns = {p["name"]: p["schema"].get("pattern") for p in operation["parameters"]}

    assert patterns["domain"] and patterns["domain"] == patterns["topic"]
    assert patterns["profile_id"] == ID_PATTERNS["profile_id"]  # the form of every profile id


def test_the_document_is_built_once_and_served_from_cache(client):
    assert client.get("/openapi.json").get_data() == client.get("/openapi.json").get_data()


def test_options_on_the_lookup_route_advertises_only_what_it_serves(client):
    lookup = client.options("/v1/profiles/lookup")
    profile = client.options("/v1/profiles/prf_abc")

    assert set(lookup.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert set(profile.headers["Allow"].split(", ")) == {"GET", "HEAD", "PATCH", "DELETE", "OPTIONS"}


def test_every_response_declares_x_request_id_and_versioned_resources_declare_their_etag(spec):
    for path, method, operation in _operations(spec):
        for code, response in operation["responses"].items():
            assert "X-Request-ID" in response["headers"], (method, path, code)
    etagged = {(path, method) for path, method, operation in _operations(spec)
               if any("ETag" in r.get("headers", {}) for r in operation["responses"].values())}
    assert etagged == {("/v1/profiles", "post"), ("/v1/profiles/lookup", "post"),
                       ("/v1/profiles/{profile_id}", "get"), ("/v1/profiles/{profile_id}", "patch"),
                       ("/v1/profiles/{profile_id}/sessions", "post"), ("/v1/sessions/{session_id}", "get"),
                       ("/v1/sessions/{session_id}", "patch")}


def test_if_match_operations_declare_412_and_model_routes_declare_their_records(spec):
    honouring = set()
    for path, method, operation in _operations(spec):
        if any(p["name"] == "If-Match" for p in operation.get("parameters", [])):
            assert "412" in operation["responses"], (method, path)
            honouring.add((path, method))
    # An erasure honours a precondition sent with it (and runs unconditionally without one).
    assert {("/v1/profiles/{profile_id}", "patch"), ("/v1/profiles/{profile_id}", "delete"),
            ("/v1/sessions/{session_id}", "patch")} <= honouring
    for path in ("/v1/models/info", "/v1/models/{name}/versions", "/v1/models/{name}/performance"):
        schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in schema, path


def test_every_problem_type_is_documented_and_free_form_keys_and_dates_are_bounded(spec):
    from twin.api.problems import PROBLEM_TYPE_BASE, PROBLEM_TYPES
    schemas = spec["components"]["schemas"]
    assert set(schemas["Problem"]["properties"]["type"]["enum"]) == {PROBLEM_TYPE_BASE + s for s in PROBLEM_TYPES}
    assert schemas["ProfileCreate"]["properties"]["personal"]["propertyNames"] == {
        "type": "string", "minLength": 1, "maxLength": 64}
    assert schemas["SessionStart"]["properties"]["start_time"]["pattern"].startswith("^(?!1900-01-01|9999-12-31)")
    assert schemas["AuditSearch"]["not"] == {"required": ["user_id", "subject"]}


def test_the_learner_model_routes_are_documented_with_their_rules(spec):
    paths = spec["paths"]
    schemas = spec["components"]["schemas"]
    evidence = paths["/v1/profiles/{profile_id}/evidence"]
    explanation = paths["/v1/profiles/{profile_id}/knowledge/{domain}/{topic}/explanation"]["get"]
    reviews = paths["/v1/profiles/{profile_id}/reviews/due"]["get"]

    assert set(evidence) == {"get", "post"}
    assert {"200", "404", "409", "413", "422"} <= set(evidence["post"]["responses"])
    batch = schemas["EvidenceBatch"]["properties"]["observations"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
    observation = schemas["Observation"]
    assert observation["oneOf"] == [{"required": ["correct"]}, {"required": ["score"]}]
    assert set(observation["required"]) == {"evidence_id", "domain", "topic", "item_id", "observed_at"}
    assert observation["properties"]["domain"]["pattern"] == observation["properties"]["topic"]["pattern"]
    assert {p["name"] for p in evidence["get"]["parameters"] if p["in"] == "query"} >= {"domain", "topic",
                                                                                         "cursor", "limit"}
    assert explanation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Explanation")
    assert set(schemas["Explanation"]["required"]) == {"mastery_level", "confidence_score", "source",
                                                       "parameters", "steps", "summary"}
    assert set(schemas["ExplanationStep"]["properties"]["kind"]["enum"]) == {"observation", "manual", "carried_over"}
    assert [p["name"] for p in reviews["parameters"] if p["in"] == "query"] == ["before"]
    assert schemas["KnowledgeState"]["properties"]["source"]["enum"] == ["evidence", "manual"]
