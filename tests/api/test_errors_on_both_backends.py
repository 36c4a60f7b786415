"""The black-box error cases answer alike on both backends: the same request sent to a
service on SQLCipher files and to one on PostgreSQL gets the same status and the same
problem+json document (type, title, status, detail, failing fields), only the request id and
each backend's own profile and session ids told apart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from api_support import PROBLEM_JSON, create_profile, start_session
from storage_backends import learner_config
from twin.api.app import create_app
from twin.runtime import Runtime


@dataclass
class Service:
    """One backend's service as a client sees it, with the ids of what it created."""

    client: Any
    headers: dict[str, str]
    ids: dict[str, str]
    runtime: Runtime


@pytest.fixture
def services(tmp_path, keyring, pg_learner_pair, clock):
    """The same deployment twice: SQLCipher files, and the PostgreSQL pair; each holds one
    learner (``pid``) with a session (``sid``) and the profile's current ETag (``etag``)."""
    made = {}
    for backend in ("sqlcipher", "postgresql"):
        config = learner_config(tmp_path / backend, keyring,
                                pg_learner_pair if backend == "postgresql" else None)
        runtime = Runtime(config, keyring, clock=clock)
        client = create_app(config, runtime=runtime).test_client()
        headers = {"Authorization": f"Bearer {runtime.tokens.issue('service').token}"}
        profile = create_profile(client, headers, "twin-learner", personal={"n": 1})
        pid = profile["profile_id"]
        sid = start_session(client, headers, pid)["session_id"]
        etag = client.get(f"/v1/profiles/{pid}", headers=headers).headers["ETag"]
        assert client.patch(f"/v1/profiles/{pid}", json={"personal": {"n": 2}},
                            headers={**headers, "If-Match": etag}).status_code == 200
        made[backend] = Service(client, headers, {"pid": pid, "sid": sid, "etag": etag}, runtime)
    yield made
    for service in made.values():
        service.runtime.close()


# (name, method, path, body: JSON value or raw bytes, extra headers); {pid}, {sid} and {etag}
# are each backend's own. The ETag is the one the update above made stale.
CASES = [
    ("malformed JSON", "POST", "/v1/profiles", b'{"user_id": "u",}', {}),
    ("invalid UTF-8", "POST", "/v1/profiles", b'{"user_id": "\xff"}', {}),
    ("non-finite number", "POST", "/v1/profiles", b'{"user_id": "u", "retention_days": NaN}', {}),
    ("body over the limit", "POST", "/v1/profiles", {"user_id": "u", "personal": {"x": "y" * 70_000}}, {}),
    ("not JSON", "POST", "/v1/profiles", b"user_id=u", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("no content type", "POST", "/v1/profiles", b'{"user_id": "u"}', {"Content-Type": ""}),
    ("not an object", "POST", "/v1/profiles", [1, 2], {}),
    ("invalid fields", "POST", "/v1/profiles", {"user_id": "", "birth_date": "2001-02-30",
                                                 "retention_days": -1}, {}),
    ("unknown field", "POST", "/v1/profiles/{pid}/sessions", {"session_type": "quiz", "nope": 1}, {}),
    ("bad mastery", "PUT", "/v1/profiles/{pid}/knowledge/math/algebra", {"mastery_level": 1.5}, {}),
    ("unknown query parameter", "GET", "/v1/profiles/{pid}/sessions?colour=blue", None, {}),
    ("unknown profile", "GET", "/v1/profiles/prf_doesnotexist", None, {}),
    ("unknown session", "PATCH", "/v1/sessions/ses_doesnotexist", {"engagement_score": 0.5}, {}),
    ("unknown user id", "POST", "/v1/profiles/lookup", {"user_id": "nobody-here"}, {}),
    ("unknown route", "GET", "/v1/nothing-here", None, {}),
    ("duplicate user id", "POST", "/v1/profiles", {"user_id": "twin-learner"}, {}),
    ("stale ETag", "PATCH", "/v1/profiles/{pid}", {"personal": {"n": 3}}, {"If-Match": "{etag}"}),
    ("stale ETag on erasure", "DELETE", "/v1/profiles/{pid}", None, {"If-Match": "{etag}"}),
]


def _send(service: Service, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    ids = service.ids
    sent = {"Content-Type": "application/json", **service.headers,
            **{k: v.format(**ids) for k, v in headers.items()}}
    if not sent["Content-Type"]:
        del sent["Content-Type"]
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    return service.client.open(path.format(**ids), method=method, data=data, headers=sent)


def _as_seen(service: Service, response: Any) -> tuple[int, str, dict[str, Any]]:
    """Status, media type and problem document, with this backend's own ids made generic."""
    text = response.get_data(as_text=True)
    for name, value in service.ids.items():
        text = text.replace(value, "{" + name + "}")
    document = json.loads(text)
    document.pop("request_id", None)
    return response.status_code, response.mimetype, document


@pytest.mark.parametrize("name, method, path, body, headers", CASES, ids=[c[0] for c in CASES])
def test_an_error_case_answers_the_same_on_both_backends(services, name, method, path, body, headers):
    seen = {backend: _as_seen(service, _send(service, method, path, body, headers))
            for backend, service in services.items()}

    status, mimetype, problem = seen["sqlcipher"]
    assert status in (400, 404, 409, 412, 413, 415, 422) and mimetype == PROBLEM_JSON, seen
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert seen["postgresql"] == seen["sqlcipher"]


def test_the_cases_cover_every_documented_client_error_status(services):
    statuses = {_send(s, *case[1:]).status_code for case in CASES for s in [services["sqlcipher"]]}
    assert statuses == {400, 404, 409, 412, 413, 415, 422}
