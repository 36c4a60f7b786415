"""Evidence over HTTP: batches of observations, idempotent retries, conflicts, every refusal with
its index and field, all or nothing, its own body limit, the list, and who may read it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from api_support import assert_problem, create_profile

NOW = datetime.now(timezone.utc)


def obs(i: int, *, domain: str = "math", topic: str = "algebra", hours_ago: float | None = None,
        **fields) -> dict:
    """Observation ``i`` (evidence id e-i), an hour apart in order unless told otherwise."""
    at = NOW - timedelta(hours=(100 - i) if hours_ago is None else hours_ago)
    body = {"evidence_id": f"e-{i}", "domain": domain, "topic": topic, "item_id": f"item-{i}",
            "correct": i % 2 == 0, "observed_at": at.isoformat()}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
def pid(client, service) -> str:
    return create_profile(client, service, "evidence-learner")["profile_id"]


def post(client, headers, pid, observations):
    return client.post(f"/v1/profiles/{pid}/evidence", json={"observations": observations}, headers=headers)


def stored(runtime) -> int:
    return runtime.twin_db.query_one("SELECT count(*) FROM evidence WHERE kind = 'observation'")[0]


def test_a_batch_answers_how_many_were_new_and_a_retry_is_all_repeats(client, service, pid, runtime):
    batch = [obs(i) for i in range(5)]

    first = post(client, service, pid, batch)
    retry = post(client, service, pid, batch)

    assert first.status_code == 200 and first.get_json() == {"new": 5, "repeats": 0}
    assert retry.status_code == 200 and retry.get_json() == {"new": 0, "repeats": 5}
    assert stored(runtime) == 5
    mixed = post(client, service, pid, batch[3:] + [obs(5), obs(6)])
    assert mixed.get_json() == {"new": 2, "repeats": 2}
    assert stored(runtime) == 7


def test_the_same_id_twice_in_one_batch_is_a_repeat(client, service, pid):
    assert post(client, service, pid, [obs(1), obs(1)]).get_json() == {"new": 1, "repeats": 1}


def test_an_id_reused_with_other_content_is_a_409_naming_it_and_nothing_is_stored(
        client, service, pid, runtime):
    post(client, service, pid, [obs(1), obs(2)])
    before = client.get(f"/v1/profiles/{pid}/knowledge", headers=service).get_json()

    response = post(client, service, pid, [obs(3), obs(1, correct=True), obs(2, item_id="other")])

    body = assert_problem(response, 409)
    assert "e-1" in body["detail"] and "e-2" in body["detail"]
    assert set(body["errors"]["observations"]) == {"1", "2"}
    assert body["errors"]["observations"]["1"] == {"evidence_id": ["Already used with different content."]}
    assert stored(runtime) == 2  # e-3 was not stored either: all or nothing
    assert client.get(f"/v1/profiles/{pid}/knowledge", headers=service).get_json() == before


def test_an_id_twice_in_one_batch_with_different_content_is_a_409(client, service, pid, runtime):
    response = post(client, service, pid, [obs(1), obs(1, topic="geometry")])

    assert_problem(response, 409)
    assert stored(runtime) == 0


@pytest.mark.parametrize("change, field", [
    ({"evidence_id": None}, "evidence_id"),
    ({"evidence_id": ""}, "evidence_id"),
    ({"evidence_id": "x" * 129}, "evidence_id"),
    ({"evidence_id": 7}, "evidence_id"),
    ({"domain": None}, "domain"),
    ({"domain": "math!"}, "domain"),
    ({"topic": "a/b"}, "topic"),
    ({"topic": "t" * 101}, "topic"),
    ({"item_id": None}, "item_id"),
    ({"item_id": "i" * 129}, "item_id"),
    ({"correct": None}, "correct"),                   # neither correct nor score
    ({"score": 0.5}, "correct"),                      # both
    ({"correct": "yes"}, "correct"),
    ({"correct": 1}, "correct"),
    ({"correct": None, "score": 1.5}, "score"),
    ({"correct": None, "score": -0.1}, "score"),
    ({"correct": None, "score": "0.5"}, "score"),
    ({"correct": None, "score": True}, "score"),
    ({"observed_at": None}, "observed_at"),
    ({"observed_at": "yesterday"}, "observed_at"),
    ({"observed_at": "2026-03-01T10:00:00"}, "observed_at"),   # no offset
    ({"observed_at": (NOW + timedelta(hours=1)).isoformat()}, "observed_at"),   # the future
    ({"observed_at": (NOW - timedelta(days=731)).isoformat()}, "observed_at"),  # past retention
    ({"session_id": "s" * 65}, "session_id"),
    ({"session_id": 12}, "session_id"),
    ({"mood": "happy"}, "mood"),
])
def test_each_refused_observation_is_named_by_index_and_field(client, service, pid, runtime, change, field):
    bad = {**obs(2), **change}
    bad = {k: v for k, v in bad.items() if v is not None}

    response = post(client, service, pid, [obs(0), obs(1), bad])

    body = assert_problem(response, 422)
    assert list(body["errors"]) == ["observations"]
    assert list(body["errors"]["observations"]) == ["2"]
    assert field in body["errors"]["observations"]["2"], body["errors"]
    assert all(isinstance(m, str) and m for m in body["errors"]["observations"]["2"][field])
    assert stored(runtime) == 0


def test_every_refused_observation_of_a_batch_is_named(client, service, pid):
    batch = [obs(0), obs(1, correct="no"), obs(2), obs(3, observed_at="soon"),
             obs(4, observed_at=(NOW + timedelta(days=1)).isoformat())]

    body = assert_problem(post(client, service, pid, batch), 422)

    assert body["errors"]["observations"] == {"1": {"correct": ["Not a valid boolean."]},
                                              "3": {"observed_at": [
                                                  "Must be in the years 1900-9999, not on 1900-01-01 or 9999-12-31."]}}
    # Once the schema is satisfied, the service's own rules name theirs the same way.
    body = assert_problem(post(client, service, pid, [obs(0), batch[4]]), 422)
    assert body["errors"]["observations"] == {"1": {"observed_at": ["Must not be in the future."]}}


@pytest.mark.parametrize("body, field", [
    ({}, "observations"),
    ({"observations": []}, "observations"),
    ({"observations": "e-1"}, "observations"),
    ({"observations": [obs(1)], "extra": 1}, "extra"),
])
def test_a_malformed_batch_is_a_422(client, service, pid, body, field):
    response = client.post(f"/v1/profiles/{pid}/evidence", json=body, headers=service)

    assert_problem(response, 422, field)


def test_a_batch_holds_at_most_1000_observations(client, service, pid, runtime):
    batch = [obs(i, hours_ago=i / 100) for i in range(1001)]

    assert_problem(post(client, service, pid, batch), 422, "observations")
    response = post(client, service, pid, batch[:1000])

    assert response.status_code == 200 and response.get_json() == {"new": 1000, "repeats": 0}
    assert stored(runtime) == 1000


def test_the_route_has_its_own_body_limit_above_the_general_one(client, service, pid, app):
    long_ids = [obs(i, hours_ago=i / 100, item_id=f"item-{i:04d}-" + "x" * 100) for i in range(1000)]
    body = json.dumps({"observations": long_ids})
    assert 64 * 1024 < len(body) < 512 * 1024

    accepted = client.post(f"/v1/profiles/{pid}/evidence", data=body, content_type="application/json",
                           headers=service)
    elsewhere = client.post("/v1/profiles", data=json.dumps({"user_id": "u", "personal": {"n": "x" * len(body)}}),
                            content_type="application/json", headers=service)
    too_big = client.post(f"/v1/profiles/{pid}/evidence", content_type="application/json", headers=service,
                          data=json.dumps({"observations": [obs(1, item_id="x" * 600_000)]}))

    assert accepted.status_code == 200, accepted.get_json()
    assert_problem(elsewhere, 413)
    assert_problem(too_big, 413)
    spec = client.get("/openapi.json").get_json()
    request_body = spec["paths"]["/v1/profiles/{profile_id}/evidence"]["post"]["requestBody"]
    assert request_body["x-max-body-bytes"] == 512 * 1024 and "524,288 bytes" in request_body["description"]
    profile_body = spec["paths"]["/v1/profiles"]["post"]["requestBody"]
    assert profile_body["x-max-body-bytes"] == 64 * 1024


def test_unknown_profiles_and_learner_tokens_are_refused(client, service, learner_for, pid):
    assert_problem(post(client, service, "prf_nobody", [obs(1)]), 404)
    create_profile(client, service, "learner-self")
    assert_problem(post(client, learner_for("learner-self"), pid, [obs(1)]), 403)


def test_the_list_pages_through_observations_filtered_by_domain_and_topic(client, service, pid):
    post(client, service, pid, [obs(i, topic="algebra" if i < 5 else "geometry") for i in range(8)]
         + [obs(9, domain="physics", topic="optics", score=0.25, correct=None, session_id="ses_1")])

    first = client.get(f"/v1/profiles/{pid}/evidence?limit=3", headers=service).get_json()
    second = client.get(f"/v1/profiles/{pid}/evidence?limit=3&cursor={first['next_cursor']}",
                        headers=service).get_json()
    geometry = client.get(f"/v1/profiles/{pid}/evidence?domain=math&topic=geometry", headers=service).get_json()
    physics = client.get(f"/v1/profiles/{pid}/evidence?domain=physics", headers=service).get_json()

    assert [e["evidence_id"] for e in first["items"]] == ["e-0", "e-1", "e-2"]
    assert [e["evidence_id"] for e in second["items"]] == ["e-3", "e-4", "e-5"]
    assert [e["evidence_id"] for e in geometry["items"]] == ["e-5", "e-6", "e-7"]
    assert geometry["next_cursor"] is None
    (optics,) = physics["items"]
    assert optics == {"evidence_id": "e-9", "domain": "physics", "topic": "optics", "item_id": "item-9",
                      "score": 0.25, "session_id": "ses_1", "observed_at": optics["observed_at"],
                      "recorded_at": optics["recorded_at"]}
    assert first["items"][0]["correct"] is True and "score" not in first["items"][0]
    assert_problem(client.get(f"/v1/profiles/{pid}/evidence?cursor=bogus", headers=service), 422, "cursor")


def test_a_learner_reads_their_own_evidence_and_no_one_elses(client, service, learner_for, pid):
    own = create_profile(client, service, "reader")["profile_id"]
    post(client, service, own, [obs(1)])
    post(client, service, pid, [obs(2)])
    token = learner_for("reader")

    mine = client.get(f"/v1/profiles/{own}/evidence", headers=token)
    theirs = client.get(f"/v1/profiles/{pid}/evidence", headers=token)

    assert mine.status_code == 200 and [e["evidence_id"] for e in mine.get_json()["items"]] == ["e-1"]
    assert_problem(theirs, 404)


def test_ingest_and_every_read_are_audited(client, service, pid, runtime):
    post(client, service, pid, [obs(1), obs(2)])
    post(client, service, pid, [obs(2), obs(3)])
    client.get(f"/v1/profiles/{pid}/evidence", headers=service, environ_overrides={})

    subject = runtime.profiles.subject_of(pid)
    events = [e for e in runtime.audit.query(subject_hash=subject) if e.resource.endswith("/evidence")]
    assert [(e.action, e.details) for e in events] == [
        ("create", {"new": 2, "repeats": 0}), ("create", {"new": 1, "repeats": 1}), ("read", {"count": 3})]


def test_item_ids_outcomes_and_ids_are_sealed_in_the_row(client, service, pid, runtime):
    post(client, service, pid, [obs(1, item_id="item-Quokka", session_id="ses-Quokka")])

    (row,) = runtime.twin_db.query("SELECT * FROM evidence")

    assert isinstance(row["content"], bytes) and b"Quokka" not in row["content"] and b"e-1" not in row["content"]
    assert "e-1" not in row["entry_key"] and len(row["entry_key"]) == 64  # a keyed hash, not the id
    assert (row["knowledge_domain"], row["topic"], row["kind"]) == ("math", "algebra", "observation")
