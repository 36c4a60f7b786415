"""Property-based fuzzing of every operation in /openapi.json with schemathesis.

Each operation gets up to 25 generated requests (valid by the document) sent through the WSGI
app with an admin token; every response must be a non-5xx answer whose status, content type,
headers and body conform to the document. Half of the generated path parameters are swapped
for ids that exist, so the fuzzing reaches the services instead of stopping at 404.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,  # noqa: E402
                                               response_schema_conformance, status_code_conformance)

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance)


def _existing_ids(client, headers) -> dict[str, str]:
    """Create one profile with a session and a knowledge state; return their path values."""
    profile = client.post("/v1/profiles", json={"user_id": "fuzz-subject", "personal": {"k": "v"}},
                          headers=headers).get_json()
    session = client.post(f"/v1/profiles/{profile['profile_id']}/sessions", json={"session_type": "quiz"},
                          headers=headers).get_json()
    client.put(f"/v1/profiles/{profile['profile_id']}/knowledge/math/algebra", json={"mastery_level": 0.4},
               headers=headers)
    return {"profile_id": profile["profile_id"], "session_id": session["session_id"],
            "domain": "math", "topic": "algebra"}


@pytest.fixture
def fuzz_schema(app, admin):
    schema = schemathesis.from_wsgi("/openapi.json", app)
    existing = _existing_ids(app.test_client(), admin)

    @schema.hooks.register("before_generate_path_parameters")
    def _sometimes_existing(context, strategy):
        if context.operation.method.upper() == "DELETE" or not context.operation.path_parameters:
            return strategy  # erasing the shared profile would send every later case to 404
        return st.one_of(strategy, strategy.map(
            lambda params: {**params, **{k: existing[k] for k in params if k in existing}}))

    return schema


schema = schemathesis.from_pytest_fixture("fuzz_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
def test_no_generated_request_gets_a_server_error_or_an_undocumented_response(case, admin):
    case.call_and_validate(headers=admin, checks=CHECKS)
