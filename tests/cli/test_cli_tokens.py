"""``twin tokens``: tokens that end, and a list that shows their dates but never a secret."""

from __future__ import annotations

import time

import pytest

from cli_support import operator_env, running_server, twin


@pytest.fixture
def env(tmp_path):
    env = operator_env(tmp_path)
    assert twin(env, "keys", "generate").returncode == 0
    return env


@pytest.mark.slow
def test_an_expired_token_answers_401_and_the_list_shows_created_expires_and_last_used(env, tmp_path):
    lasting = twin(env, "tokens", "issue", "--role", "service", "--label", "backend")
    assert lasting.returncode == 0, lasting.stderr
    assert "expires in 90d" in lasting.stderr
    with running_server(env, lasting.stdout.strip(), tmp_path / "server.log") as (api, _):
        # Issued once the server is up (a slow start must not use up its ten seconds); it
        # expires at the latest ten seconds after the command returns.
        brief = twin(env, "tokens", "issue", "--role", "service", "--label", "brief", "--expires-in", "10s")
        expires = time.monotonic() + 10
        assert brief.returncode == 0, brief.stderr
        status, created = api("POST", "/v1/profiles", {"user_id": "u-1"})
        assert status == 201
        assert api("GET", f"/v1/profiles/{created['profile_id']}", token=brief.stdout.strip())[0] == 200
        time.sleep(max(0.0, expires - time.monotonic()) + 0.3)
        status, problem = api("GET", f"/v1/profiles/{created['profile_id']}", token=brief.stdout.strip())
        assert status == 401 and problem["status"] == 401
        assert api("GET", f"/v1/profiles/{created['profile_id']}")[0] == 200
    listed = twin(env, "tokens", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["TOKEN", "ID", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST", "USED", "LABEL"]
    by_label = {row.split()[-1]: row.split() for row in rows}
    assert by_label["backend"][2] == "active" and by_label["brief"][2] == "expired"
    assert "never" not in by_label["backend"]  # used: recorded when the service stopped
    for secret in (lasting.stdout.strip(), brief.stdout.strip()):
        assert secret.partition(".")[2] not in listed.stdout


@pytest.mark.parametrize("value", ["0d", "90", "3 years", "-1d"])
def test_a_bad_lifetime_is_one_line_and_issues_nothing(env, value):
    result = twin(env, "tokens", "issue", "--role", "admin", "--expires-in", value)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--expires-in" in result.stderr and result.stdout == ""
    assert twin(env, "tokens", "list").stdout.splitlines()[1:] == []
