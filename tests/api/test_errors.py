"""Errors: every failure is an RFC 9457 problem with the documented status, never a 500."""

from __future__ import annotations

import json

import pytest

from api_support import PROBLEM_JSON, assert_problem, create_profile
from twin.api.app import create_app
from twin.storage import DatabaseBusyError


def _post_raw(client, headers, body: bytes | str, content_type: str = "application/json", path="/v1/profiles"):
    return client.post(path, data=body, content_type=content_type, headers=headers)


def test_an_unknown_route_is_a_404_problem(client, service):
    for path in ("/nope", "/v1/nothing-here", "/v2/profiles", "/v1/profiles/a/b/c/d"):
        assert_problem(client.get(path, headers=service), 404)


def test_a_wrong_method_is_a_405_problem_with_allow(client, service):
    response = client.put("/v1/profiles", json={}, headers=service)

    assert_problem(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}
    assert_problem(client.delete("/healthz"), 405)
    assert_problem(client.post("/v1/sessions/ses_x", json={}, headers=service), 405)


@pytest.mark.parametrize("body", [
    "{not json", '{"user_id": "u",}', "{'user_id': 'u'}", '{"user_id": "u"} trailing', "\x00",
    '{"user_id": "u"', "[1, 2", '"unterminated',
])
def test_malformed_json_is_400(client, service, body):
    assert_problem(_post_raw(client, service, body), 400)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_are_400_wherever_they_appear(client, service, literal):
    top = _post_raw(client, service, '{"user_id": "u", "retention_days": %s}' % literal)
    nested = _post_raw(client, service, '{"user_id": "u", "personal": {"x": [%s]}}' % literal)

    assert_problem(top, 400)
    assert_problem(nested, 400)
    assert_problem(client.post("/v1/profiles/lookup", json={"user_id": "u"}, headers=service), 404)


def test_invalid_utf8_is_400(client, service):
    assert_problem(_post_raw(client, service, b'{"user_id": "\xff\xfe"}'), 400)


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udfff", "a\\udc00b"])
def test_unpaired_surrogates_are_400_not_500(client, service, escaped):
    assert_problem(_post_raw(client, service, '{"user_id": "%s"}' % escaped), 400)
    assert_problem(_post_raw(client, service, '{"user_id": "u", "personal": {"n": "%s"}}' % escaped), 400)


def test_a_surrogate_pair_is_a_normal_character(client, service):
    response = _post_raw(client, service, '{"user_id": "u", "personal": {"emoji": "\\ud83d\\ude00"}}')

    assert response.status_code == 201 and response.get_json()["personal"] == {"emoji": "\U0001F600"}


@pytest.fixture
def roomy_client(runtime):
    """A client whose body limit (1 MiB) lets a 100k-deep document through to the parser."""
    app = create_app(runtime.config, runtime=runtime)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    return app.test_client()


@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a":', "}")])
def test_json_nested_100k_deep_is_400_never_500(roomy_client, service, opener, closer):
    body = opener * 100_000 + "1" * (opener == '{"a":') + closer * 100_000

    assert_problem(_post_raw(roomy_client, service, body), 400)


@pytest.mark.parametrize("depth", [40, 500, 950, 990])
def test_free_form_objects_nested_too_deep_are_400_at_any_depth(client, service, depth):
    # Depths the JSON parser accepts used to crash sealing or the response encoder (500).
    nested = '{"a":' * depth + "1" + "}" * depth
    response = _post_raw(client, service, '{"user_id": "deep-%d", "personal": %s}' % (depth, nested))

    assert_problem(response, 400)
    assert_problem(client.post("/v1/profiles/lookup", json={"user_id": f"deep-{depth}"}, headers=service), 404)


def test_reasonably_nested_free_form_objects_round_trip(client, service):
    nested: dict = {"leaf": [1, 2.5, None, True, "x"]}
    for level in range(25):
        nested = {f"l{level}": nested}

    created = create_profile(client, service, personal=nested)

    assert client.get(f"/v1/profiles/{created['profile_id']}", headers=service).get_json()["personal"] == nested


def test_a_body_over_the_limit_is_413(client, service, runtime):
    big = json.dumps({"user_id": "u", "personal": {"blob": "x" * runtime.config.max_body_bytes}})

    assert_problem(_post_raw(client, service, big), 413)


def test_a_body_just_under_the_limit_is_processed(client, service, runtime):
    body = json.dumps({"user_id": "u", "personal": {"blob": "x" * (runtime.config.max_body_bytes - 100)}})

    assert client.post("/v1/profiles", data=body, content_type="application/json",
                       headers=service).status_code == 201


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/xml", "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_json_is_415(client, service, content_type):
    assert_problem(_post_raw(client, service, '{"user_id": "u"}', content_type), 415)


def test_a_body_without_a_content_type_is_415(client, service):
    assert_problem(client.post("/v1/profiles", data=b'{"user_id": "u"}', headers=service), 415)


def test_json_with_a_charset_parameter_is_accepted(client, service):
    response = _post_raw(client, service, '{"user_id": "u"}', "application/json; charset=utf-8")

    assert response.status_code == 201


@pytest.mark.parametrize("body", ["[]", "[{\"user_id\": \"u\"}]", '"u"', "42", "null", "true", ""])
def test_a_json_body_that_is_not_an_object_is_422(client, service, body):
    assert_problem(_post_raw(client, service, body), 422, "_schema")


def test_unknown_query_parameters_are_422(client, service):
    pid = create_profile(client, service)["profile_id"]

    assert_problem(client.get(f"/v1/profiles/{pid}?fields=all", headers=service), 422, "fields")


def test_problems_carry_the_request_id_and_no_internals(client, service):
    response = client.get("/v1/profiles/prf_missing", headers={**service, "X-Request-ID": "req-123"})

    body = assert_problem(response, 404)
    assert body["request_id"] == "req-123" == response.headers["X-Request-ID"]
    assert set(body) <= {"type", "title", "status", "detail", "errors", "request_id"}


GARBAGE = [b"", b"{}", b"[]", b"null", b'{"user_id": {}}', b'{"user_id": "u", "personal": {"": 1}}',
           b'{"user_id": "u", "birth_date": "2001-02-30"}', b'{"user_id": "u", "birth_date": 20010203}',
           b'{"user_id": "u", "parental_consent": "yes"}', b'{"user_id": "u", "parental_consent": {"method": 1}}',
           b'{"session_type": "q", "start_time": "2026-02-30T00:00:00Z"}', b'{"mastery_level": 1e308}',
           b'{"end_time": "+999999-01-01T00:00:00Z"}', b'{"cursor": 1}', b"\xef\xbb\xbf{}", b"\x00\x00\x00{"]


def test_garbage_on_every_write_route_never_causes_a_500(client, service):
    pid = create_profile(client, service, "garbage-target")["profile_id"]
    sid = client.post(f"/v1/profiles/{pid}/sessions", json={"session_type": "q"}, headers=service).get_json()
    routes = [("POST", "/v1/profiles"), ("POST", "/v1/profiles/lookup"), ("PATCH", f"/v1/profiles/{pid}"),
              ("POST", f"/v1/profiles/{pid}/sessions"), ("PATCH", f"/v1/sessions/{sid['session_id']}"),
              ("PUT", f"/v1/profiles/{pid}/knowledge/math/algebra")]
    for method, path in routes:
        for body in GARBAGE:
            response = client.open(path, method=method, data=body, content_type="application/json",
                                   headers=service)
            assert response.status_code < 500, (method, path, body, response.get_data(as_text=True))
            if response.status_code >= 400:
                assert response.mimetype == PROBLEM_JSON


def test_a_database_that_stays_busy_answers_503_with_retry_after(app):
    # Holding a real lock would take the engine's whole retry budget (seconds); the mapping is
    # what this checks, so a route raises what the engine raises once retries are exhausted.
    def busy():
        raise DatabaseBusyError("digital_twin: database stayed busy after 5 attempts")
    app.add_url_rule("/busy", "busy", busy)

    response = app.test_client().get("/busy")

    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"


@pytest.mark.sqlite_only("a full disk under the local audit journal; PostgreSQL stages in the vault")
def test_a_read_that_cannot_be_audited_is_refused_with_503(client, service, monkeypatch):
    pid = create_profile(client, service, "u-unauditable", personal={"name": "Unseen"})["profile_id"]

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("compliance.audit_journal.os.write", disk_full)
    response = client.get(f"/v1/profiles/{pid}", headers=service)

    assert_problem(response, 503)
    assert "Unseen" not in response.get_data(as_text=True)
    assert "audit" in response.get_json()["detail"]


def test_a_read_the_vault_will_not_stage_is_refused_with_503(client, service, runtime, backend):
    if backend != "postgresql":
        pytest.skip("PostgreSQL stages audit events in the vault (SQLCipher: the test above)")
    pid = create_profile(client, service, "u-unstaged", personal={"name": "Unseen"})["profile_id"]
    # The vault refuses every staged event, as a full or read-only server would.
    runtime.vault_db.execute("ALTER TABLE audit_staged_events ADD CONSTRAINT refuse_all CHECK (false) "
                             "NOT VALID")
    try:
        response = client.get(f"/v1/profiles/{pid}", headers=service)
    finally:
        runtime.vault_db.execute("ALTER TABLE audit_staged_events DROP CONSTRAINT refuse_all")

    assert_problem(response, 503)
    assert "Unseen" not in response.get_data(as_text=True)
    assert "audit" in response.get_json()["detail"]
