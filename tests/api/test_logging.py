"""Request logging and request ids: one line per request, route templates only, no personal data."""

from __future__ import annotations

import logging
import re

import pytest

from api_support import assert_problem, create_profile

ACCESS = re.compile(r"^(?P<method>[A-Z]+) (?P<route>\S+) (?P<status>\d{3}) (?P<ms>\d+\.\d)ms rid=(?P<rid>\S+)$")
GENERATED_ID = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture
def access_log(caplog):
    """Parsed access-log lines of the requests made in the test (all loggers at DEBUG)."""
    caplog.set_level(logging.DEBUG)

    def lines() -> list[dict]:
        parsed = []
        for record in caplog.records:
            if record.name == "twin.access":
                match = ACCESS.match(record.getMessage())
                assert match, record.getMessage()
                parsed.append(match.groupdict())
        return parsed
    return lines


def test_each_request_logs_method_route_template_status_duration_and_request_id(client, service, access_log,
                                                                                 caplog):
    pid = create_profile(client, service)["profile_id"]

    response = client.get(f"/v1/profiles/{pid}", headers=service)

    line = access_log()[-1]
    assert line["method"] == "GET" and line["status"] == "200"
    assert line["route"] == "/v1/profiles/<profile_id>"
    assert float(line["ms"]) >= 0
    assert line["rid"] == response.headers["X-Request-ID"]
    record = [r for r in caplog.records if r.name == "twin.access"][-1]
    assert (record.levelname, record.funcName, record.module) == ("INFO", "_finish", "app")
    assert (record.status, record.duration_ms) == (200, pytest.approx(float(line["ms"]), abs=0.06))


def test_routes_with_several_ids_log_every_placeholder_and_no_concrete_value(client, service, access_log, caplog):
    pid = create_profile(client, service)["profile_id"]
    client.put(f"/v1/profiles/{pid}/knowledge/secret-domain/secret-topic", json={"mastery_level": 0.1},
               headers=service)
    client.get(f"/v1/profiles/{pid}/sessions?cursor=secret-cursor", headers=service)

    routes = [line["route"] for line in access_log()]

    assert "/v1/profiles/<profile_id>/knowledge/<domain>/<topic>" in routes
    assert "/v1/profiles/<profile_id>/sessions" in routes
    for value in (pid, "secret-domain", "secret-topic", "secret-cursor"):
        assert value not in caplog.text


def test_failures_are_logged_with_their_status(client, service, access_log):
    client.get("/v1/profiles/prf_missing", headers=service)
    client.get("/v1/profiles/prf_missing")
    client.get("/no/such/route")
    client.post("/v1/profiles", data="{", content_type="application/json", headers=service)

    assert [(line["route"], line["status"]) for line in access_log()] == [
        ("/v1/profiles/<profile_id>", "404"), ("/v1/profiles/<profile_id>", "401"),
        ("<unmatched>", "404"), ("/v1/profiles", "400")]


def test_a_valid_x_request_id_is_echoed_and_logged(client, access_log):
    response = client.get("/healthz", headers={"X-Request-ID": "trace-42.a_b"})

    assert response.headers["X-Request-ID"] == "trace-42.a_b"
    assert access_log()[-1]["rid"] == "trace-42.a_b"


@pytest.mark.parametrize("incoming", [None, "", "has spaces", "x" * 65, "<script>", "id;drop", "ünï"])
def test_a_missing_or_unsafe_x_request_id_is_replaced_by_a_generated_one(client, access_log, incoming):
    headers = {} if incoming is None else {"X-Request-ID": incoming}

    response = client.get("/healthz", headers=headers)

    generated = response.headers["X-Request-ID"]
    assert GENERATED_ID.match(generated) and generated != incoming
    assert access_log()[-1]["rid"] == generated


def test_generated_request_ids_differ_per_request(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}

    assert len(ids) == 5


def test_no_bodies_user_ids_or_tokens_reach_any_log(client, service, caplog):
    caplog.set_level(logging.DEBUG)
    token = service["Authorization"].split()[1]
    user_id = "logged-user-id-93817"
    pid = create_profile(client, service, user_id, personal={"secret": "body-secret-5512"})["profile_id"]
    client.post("/v1/profiles/lookup", json={"user_id": user_id}, headers=service)
    client.patch(f"/v1/profiles/{pid}", json={"personal": "body-secret-5512"}, headers=service)  # 422
    client.post("/v1/profiles", data='{"user_id": "%s", "bad": body-secret-5512}' % user_id,
                content_type="application/json", headers=service)                              # 400
    client.get(f"/v1/profiles/{pid}", headers={"Authorization": f"Bearer {token}x"})            # 401

    assert len(caplog.records) >= 5
    for secret in (user_id, "body-secret-5512", token, token.partition(".")[2]):
        assert secret not in caplog.text


def test_an_unexpected_error_is_a_500_problem_without_internals_and_logged_with_its_request_id(
        app, runtime, caplog):
    caplog.set_level(logging.DEBUG)

    def explode():
        raise RuntimeError("internal detail that must not reach the client")
    app.add_url_rule("/explode", "explode", explode)

    response = app.test_client().get("/explode", headers={"X-Request-ID": "boom-1"})

    body = assert_problem(response, 500)
    assert "internal detail" not in response.get_data(as_text=True)
    assert body["request_id"] == "boom-1"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and "boom-1" in errors[0].getMessage() and errors[0].exc_info is not None
