"""Helpers shared by the API tests: creating resources and asserting on what clients see."""

from __future__ import annotations

import re
from typing import Any, Iterator

PROBLEM_JSON = "application/problem+json"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Names that would reveal the subject, a key or raw ciphertext if a response ever carried them.
FORBIDDEN_KEYS = {"user_id", "user_id_hash", "subject_hash", "key_id", "wrapped_key", "encrypted_data",
                  "ciphertext", "token_hash"}


def create_profile(client: Any, headers: dict[str, str], user_id: str = "learner-1", **fields: Any) -> dict:
    """POST /v1/profiles and return the created profile (asserting 201)."""
    response = client.post("/v1/profiles", json={"user_id": user_id, **fields}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def start_session(client: Any, headers: dict[str, str], profile_id: str, **fields: Any) -> dict:
    """POST a session (session_type defaults to "quiz") and return it (asserting 201)."""
    body = {"session_type": "quiz", **fields}
    response = client.post(f"/v1/profiles/{profile_id}/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def assert_problem(response: Any, status: int, *fields: str) -> dict:
    """The response is an RFC 9457 problem with ``status``; each of ``fields`` has messages."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    for name in fields:
        assert name in body.get("errors", {}), body
        assert all(isinstance(m, str) and m for m in body["errors"][name]), body["errors"][name]
    return body


def walk(value: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair in a JSON document, depth first (key None for list items)."""
    stack: list[tuple[str | None, Any]] = [(None, value)]
    while stack:
        key, item = stack.pop()
        yield key, item
        if isinstance(item, dict):
            stack.extend(item.items())
        elif isinstance(item, list):
            stack.extend((None, v) for v in item)


def assert_no_identifiers(document: Any, user_id: str, subject_hash: str) -> None:
    """No user id, subject hash, key material or ciphertext field anywhere in ``document``."""
    for key, value in walk(document):
        assert key not in FORBIDDEN_KEYS, f"response carries {key!r}"
        if isinstance(value, str):
            assert value != user_id, f"response echoes the user id under {key!r}"
            assert value != subject_hash and not _HEX64.match(value), f"response carries a hash under {key!r}"
            assert user_id not in value or len(user_id) < 6, f"response embeds the user id under {key!r}"
