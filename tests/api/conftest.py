"""The API suite runs on both storage backends: ``config`` is the parametrised
``backend_config`` (tests/conftest.py). ``secrets_in_flight``: the privacy scenario the
privacy tests of both backends search for."""

import logging
import secrets
from datetime import datetime, timezone

import pytest

from api_support import create_profile, start_session


@pytest.fixture
def config(backend_config):
    return backend_config


@pytest.fixture
def secrets_in_flight(client, service, caplog):
    """A profile whose personal data holds a distinctive string, used through every route."""
    caplog.set_level(logging.DEBUG)
    marker = f"Quokka-{secrets.token_hex(6)}-Xylophone"
    user_id = f"student-{secrets.token_hex(6)}@school.example"
    token = service["Authorization"].split()[1]
    profile = create_profile(client, service, user_id, personal={"full_name": marker, "notes": [marker]},
                             learning_goals=[f"goal {marker}"], birth_date="2004-05-06")
    pid = profile["profile_id"]
    session = start_session(client, service, pid)
    client.patch(f"/v1/sessions/{session['session_id']}", headers=service,
                 json={"performance_metrics": {"comment": marker}, "engagement_score": 0.5})
    client.put(f"/v1/profiles/{pid}/knowledge/math/algebra", headers=service,
               json={"mastery_level": 0.5, "learning_trajectory": {"note": marker}})
    observed = datetime.now(timezone.utc).isoformat()
    client.post(f"/v1/profiles/{pid}/evidence", headers=service, json={"observations": [
        {"evidence_id": f"ev-{marker}", "domain": "math", "topic": "algebra", "item_id": f"item-{marker}",
         "correct": True, "observed_at": observed, "session_id": f"s-{marker}"[:64]}]})
    client.get(f"/v1/profiles/{pid}/evidence", headers=service)
    client.get(f"/v1/profiles/{pid}/knowledge/math/algebra/explanation", headers=service)
    client.patch(f"/v1/profiles/{pid}", json={"personal": {"full_name": marker, "v": 2}}, headers=service)
    client.post("/v1/profiles/lookup", json={"user_id": user_id}, headers=service)
    client.post("/v1/profiles", json={"user_id": user_id}, headers=service)                   # 409
    client.post("/v1/profiles", json={"user_id": user_id, "personal": marker}, headers=service)  # 422
    client.get(f"/v1/profiles/{pid}", headers=service)
    return {"marker": marker, "user_id": user_id, "token": token, "profile_id": pid}
