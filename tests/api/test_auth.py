"""Authentication (bearer tokens) and authorisation (roles; learners see only their own data)."""

from __future__ import annotations

import re
import time

import pytest

from api_support import assert_problem, create_profile, start_session
from compliance.tokens import TokenStore
from storage_backends import RawPostgresConnection, database_url

_PLACEHOLDER = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")


def _operations(app, predicate):
    """(method, concrete path) of every declared operation whose spec satisfies ``predicate``."""
    found = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions[rule.endpoint], "endpoint_spec", None)
        if spec is None or not predicate(spec):
            continue
        path = _PLACEHOLDER.sub("x", rule.rule)
        found += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return sorted(found)


def _call(client, method, path, headers):
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return client.open(path, method=method, headers=headers, **kwargs)


@pytest.fixture
def protected(app):
    return _operations(app, lambda spec: spec.roles is not None)


def test_every_v1_route_is_protected_and_only_v1_routes_and_their_deprecated_aliases_are(app, protected):
    public = _operations(app, lambda spec: spec.roles is None)
    aliases = _operations(app, lambda spec: spec.deprecated)

    assert protected and all(path.startswith("/v1/") for _, path in protected if (_, path) not in aliases)
    assert {path for _, path in aliases} == {"/models/info", "/models/x/versions",
                                             "/models/performance/x", "/models/cleanup"}
    assert set(aliases) <= set(protected)
    assert {path for _, path in public} == {"/healthz", "/readyz", "/openapi.json"}
    assert not [r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/v1/")
                and getattr(app.view_functions[r.endpoint], "endpoint_spec", None) is None]


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Bearer not-a-token", "Bearer lt_0000000000000000.secret",
    "Basic dXNlcjpwYXNz", "Bearer lt_" + "a" * 300,
])
def test_missing_or_invalid_tokens_get_401_with_a_bearer_challenge(client, protected, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in protected:
        response = _call(client, method, path, headers)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)


def test_a_token_with_a_wrong_secret_is_401(client, runtime):
    issued = runtime.tokens.issue("admin").token
    token_id = issued.partition(".")[0]

    response = client.get("/v1/profiles/x", headers={"Authorization": f"Bearer {token_id}.wrong-secret"})

    assert_problem(response, 401)


def test_a_revoked_token_is_401(client, runtime):
    """Revoked through the service's own store, a token is refused on the very next request,
    although the request before it was just verified (and remembered)."""
    assert runtime.config.token_cache_seconds > 0
    issued = runtime.tokens.issue("service")
    headers = {"Authorization": f"Bearer {issued.token}"}
    pid = create_profile(client, headers)["profile_id"]
    assert client.get(f"/v1/profiles/{pid}", headers=headers).status_code == 200

    runtime.tokens.revoke(issued.identity.token_id)

    response = client.get(f"/v1/profiles/{pid}", headers=headers)
    assert_problem(response, 401)
    assert "WWW-Authenticate" in response.headers


def test_the_scheme_name_is_case_insensitive(client, runtime):
    token = runtime.tokens.issue("service").token

    assert client.get("/v1/profiles/x", headers={"Authorization": f"bearer {token}"}).status_code == 404


def test_authentication_comes_before_body_validation(client):
    response = client.post("/v1/profiles", data="{not json", content_type="application/json")

    assert_problem(response, 401)


def test_public_routes_need_no_token(client):
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_learners_get_403_on_every_route_not_open_to_them(app, client, learner_for):
    learner = learner_for("learner-a")
    closed = _operations(app, lambda spec: spec.roles is not None and not spec.learner_own)

    assert ("POST", "/v1/profiles") in closed and ("PATCH", "/v1/sessions/x") in closed
    for method, path in closed:
        assert_problem(_call(client, method, path, learner), 403)


def test_the_role_check_comes_before_body_validation(client, learner_for):
    response = client.post("/v1/profiles", data="{not json", content_type="application/json",
                           headers=learner_for("learner-a"))

    assert_problem(response, 403)


@pytest.fixture
def two_learners(client, service):
    """Profiles of learner-a and learner-b, each with a session and a knowledge state."""
    ids = {}
    for user in ("learner-a", "learner-b"):
        pid = create_profile(client, service, user, personal={"owner": user})["profile_id"]
        start_session(client, service, pid)
        client.put(f"/v1/profiles/{pid}/knowledge/math/algebra", json={"mastery_level": 0.3}, headers=service)
        ids[user] = pid
    return ids


def test_a_learner_reads_their_own_profile_sessions_and_knowledge(client, learner_for, two_learners):
    learner = learner_for("learner-a")
    pid = two_learners["learner-a"]

    profile = client.get(f"/v1/profiles/{pid}", headers=learner)
    sessions = client.get(f"/v1/profiles/{pid}/sessions", headers=learner)
    knowledge = client.get(f"/v1/profiles/{pid}/knowledge", headers=learner)

    assert profile.status_code == 200 and profile.get_json()["personal"] == {"owner": "learner-a"}
    assert sessions.status_code == 200 and len(sessions.get_json()["items"]) == 1
    assert knowledge.status_code == 200 and len(knowledge.get_json()["items"]) == 1


def test_a_learner_asking_about_someone_else_gets_404_as_if_it_did_not_exist(client, learner_for, two_learners):
    learner = learner_for("learner-a")
    other = two_learners["learner-b"]

    for path in (f"/v1/profiles/{other}", f"/v1/profiles/{other}/sessions", f"/v1/profiles/{other}/knowledge"):
        body = assert_problem(client.get(path, headers=learner), 404)
        unknown = assert_problem(client.get(path.replace(other, "prf_unknown"), headers=learner), 404)
        assert body["detail"] == unknown["detail"]  # indistinguishable from a missing profile


def test_a_learner_without_a_profile_sees_nothing(client, learner_for, two_learners):
    stranger = learner_for("not-a-learner-here")

    for pid in two_learners.values():
        assert_problem(client.get(f"/v1/profiles/{pid}", headers=stranger), 404)


def test_service_and_admin_tokens_may_read_any_profile(client, service, admin, two_learners):
    for headers in (service, admin):
        for pid in two_learners.values():
            assert client.get(f"/v1/profiles/{pid}", headers=headers).status_code == 200


def test_a_learner_token_stops_working_once_its_subject_is_erased(client, service, learner_for, two_learners):
    learner = learner_for("learner-a")
    client.delete(f"/v1/profiles/{two_learners['learner-a']}", headers=service)

    assert_problem(client.get(f"/v1/profiles/{two_learners['learner-a']}", headers=learner), 401)


def test_a_learner_token_is_401_right_after_a_dsr_erasure_of_its_subject(client, service, admin, learner_for):
    """The erasure drops the remembered token with the subject's token rows, so a token used a
    moment before does not outlive the erasure by the token cache period."""
    pid = create_profile(client, service, "erased-learner")["profile_id"]
    learner = learner_for("erased-learner")
    assert client.get(f"/v1/profiles/{pid}", headers=learner).status_code == 200

    assert client.post("/v1/dsr/erase", json={"user_id": "erased-learner"}, headers=admin).status_code == 200

    assert_problem(client.get(f"/v1/profiles/{pid}", headers=learner), 401)
    assert_problem(client.post("/v1/dsr/export", json={"user_id": "erased-learner"}, headers=learner), 401)


def test_a_revocation_by_another_process_is_401_once_the_token_cache_period_passes(client, runtime, monkeypatch):
    """scripts/issue_token.py --revoke writes to the vault from another process: the service
    trusts a token it just verified for at most token_cache_seconds more."""
    now = [1000.0]
    monkeypatch.setattr(runtime.tokens._verified, "_monotonic", lambda: now[0])  # noqa: SLF001
    issued = runtime.tokens.issue("service")
    headers = {"Authorization": f"Bearer {issued.token}"}
    pid = create_profile(client, headers)["profile_id"]

    TokenStore(runtime.vault_db).revoke(issued.identity.token_id)

    assert client.get(f"/v1/profiles/{pid}", headers=headers).status_code == 200
    now[0] += runtime.config.token_cache_seconds + 0.01
    assert_problem(client.get(f"/v1/profiles/{pid}", headers=headers), 401)


@pytest.mark.sqlite_only("damages the database file")
def test_readyz_reports_each_database_and_503_when_one_cannot_be_read(client, runtime):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "databases": {"digital_twin": True, "privacy_vault": True,
                                                                   "settings": True},
                                "writable": True}

    runtime.twin_db.close_all()
    runtime.twin_db.path.write_bytes(b"\x00" * 8192)  # the file no longer opens with our key
    for suffix in ("-wal", "-shm"):
        runtime.twin_db.path.with_name(runtime.twin_db.path.name + suffix).unlink(missing_ok=True)
    broken = client.get("/readyz")
    assert broken.status_code == 503
    assert broken.get_json()["databases"] == {"digital_twin": False, "privacy_vault": True,
                                                  "settings": True}



@pytest.mark.postgresql_only("a database server that refuses connections")
def test_readyz_answers_503_naming_the_database_whose_server_refuses_it_and_200_once_it_is_back(
        client, runtime):
    assert client.get("/readyz").status_code == 200
    name = runtime.twin_db.settings.database
    admin = RawPostgresConnection(database_url("postgres"))
    try:  # the data database stops taking connections, and loses those it had
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ?", (name,))
        broken = client.get("/readyz")
        assert broken.status_code == 503
        assert broken.get_json()["databases"] == {"digital_twin": False, "privacy_vault": True,
                                                  "settings": True}
        assert broken.get_json()["status"] != "ready"
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "never ready again after the server came back"
        time.sleep(0.2)