"""Profiles over HTTP: create, lookup, read (ETag), patch (If-Match), erase, validation, expiry."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta

import pytest

from api_support import assert_no_identifiers, assert_problem, create_profile, start_session
from twin.storage.timestamps import from_db


def test_create_answers_201_with_location_etag_and_the_stored_fields(client, service, runtime):
    response = client.post("/v1/profiles", headers=service, json={
        "user_id": "student-4711", "learning_style": "visual", "preferred_difficulty": "hard",
        "knowledge_domains": ["math", "physics"], "learning_goals": ["pass the exam"],
        "privacy_settings": {"share_progress": False}, "personal": {"nickname": "Zed"},
        "birth_date": "2001-02-03", "retention_days": 30})

    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/v1/profiles/{body['profile_id']}"
    assert response.headers["ETag"].startswith('"')
    assert body["learning_style"] == "visual" and body["preferred_difficulty"] == "hard"
    assert body["knowledge_domains"] == ["math", "physics"] and body["learning_goals"] == ["pass the exam"]
    assert body["privacy_settings"] == {"share_progress": False}
    assert body["personal"] == {"nickname": "Zed"} and body["birth_date"] == "2001-02-03"
    assert body["retention_days"] == 30
    assert from_db(body["expires_at"]) - from_db(body["created_at"]) == timedelta(days=30)
    assert_no_identifiers(body, "student-4711", runtime.hasher.hash("student-4711"))


def test_create_applies_defaults_and_the_configured_retention(client, service, runtime):
    body = create_profile(client, service)

    assert body["preferred_difficulty"] == "medium"
    assert body["knowledge_domains"] == [] and body["learning_goals"] == [] and body["personal"] == {}
    assert body["retention_days"] is None and body["birth_date"] is None
    retention = timedelta(days=runtime.config.profile_retention_days)
    assert from_db(body["expires_at"]) - from_db(body["created_at"]) == retention


def test_profile_ids_are_long_random_and_unrelated(client, service):
    ids = [create_profile(client, service, f"user-{n}")["profile_id"] for n in range(3)]

    assert len(set(ids)) == 3
    assert all(len(pid) >= 20 for pid in ids)
    assert not any(pid.isdigit() for pid in ids)
    # Not sequential: consecutive ids share no long common prefix beyond the type tag.
    assert all(len(os.path.commonprefix([x, y])) <= 8 for x, y in zip(ids, ids[1:]))


def test_a_second_profile_for_the_same_user_is_a_409_and_leaves_the_first_intact(client, service):
    first = create_profile(client, service, "twin-user", learning_style="visual")

    response = client.post("/v1/profiles", json={"user_id": "twin-user", "learning_style": "aural"},
                           headers=service)

    assert_problem(response, 409)
    found = client.post("/v1/profiles/lookup", json={"user_id": "twin-user"}, headers=service).get_json()
    assert found["profile_id"] == first["profile_id"] and found["learning_style"] == "visual"


def test_lookup_finds_the_profile_of_a_user_id_sent_in_the_body(client, service):
    created = create_profile(client, service, "lookup-me")

    response = client.post("/v1/profiles/lookup", json={"user_id": "lookup-me"}, headers=service)

    assert response.status_code == 200
    assert response.get_json() == created
    assert response.headers["ETag"]


@pytest.mark.parametrize("body, status, field", [
    ({"user_id": "nobody-here"}, 404, None),
    ({}, 422, "user_id"),
    ({"user_id": ""}, 422, "user_id"),
    ({"user_id": 42}, 422, "user_id"),
    ({"user_id": "a", "extra": 1}, 422, "extra"),
])
def test_lookup_failures(client, service, body, status, field):
    response = client.post("/v1/profiles/lookup", json=body, headers=service)

    assert_problem(response, status, *([field] if field else []))


def test_get_returns_the_profile_with_the_same_etag_as_create(client, service):
    created = client.post("/v1/profiles", json={"user_id": "u-get", "personal": {"a": 1}}, headers=service)

    response = client.get(f"/v1/profiles/{created.get_json()['profile_id']}", headers=service)

    assert response.status_code == 200
    assert response.get_json() == created.get_json()
    assert response.headers["ETag"] == created.headers["ETag"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("profile_id", ["prf_does-not-exist", "x"])
def test_get_of_an_unknown_profile_is_404(client, service, profile_id):
    assert_problem(client.get(f"/v1/profiles/{profile_id}", headers=service), 404)


def test_an_id_longer_than_any_real_one_never_reaches_the_database(client, service):
    assert_problem(client.get("/v1/profiles/" + "p" * 65, headers=service), 404)


def test_patch_changes_only_the_given_fields_and_returns_a_new_etag(client, service):
    created = client.post("/v1/profiles", headers=service, json={
        "user_id": "u-patch", "learning_style": "visual", "personal": {"nickname": "Zed"}})
    pid = created.get_json()["profile_id"]

    response = client.patch(f"/v1/profiles/{pid}", json={"preferred_difficulty": "easy", "learning_style": None},
                            headers=service)

    assert response.status_code == 200
    body = response.get_json()
    assert body["preferred_difficulty"] == "easy" and body["learning_style"] is None
    assert body["personal"] == {"nickname": "Zed"}
    assert response.headers["ETag"] != created.headers["ETag"]
    again = client.get(f"/v1/profiles/{pid}", headers=service)
    assert again.get_json() == body and again.headers["ETag"] == response.headers["ETag"]


def test_patch_with_the_current_etag_in_if_match_succeeds(client, service):
    pid = create_profile(client, service)["profile_id"]
    etag = client.get(f"/v1/profiles/{pid}", headers=service).headers["ETag"]

    response = client.patch(f"/v1/profiles/{pid}", json={"learning_goals": ["read more"]},
                            headers={**service, "If-Match": etag})

    assert response.status_code == 200
    assert response.get_json()["learning_goals"] == ["read more"]
    assert response.headers["ETag"] != etag


def test_patch_with_a_stale_etag_is_412_and_changes_nothing(client, service):
    pid = create_profile(client, service, personal={"v": 1})["profile_id"]
    stale = client.get(f"/v1/profiles/{pid}", headers=service).headers["ETag"]
    client.patch(f"/v1/profiles/{pid}", json={"personal": {"v": 2}}, headers=service)
    before = client.get(f"/v1/profiles/{pid}", headers=service)

    response = client.patch(f"/v1/profiles/{pid}", json={"personal": {"v": 3}},
                            headers={**service, "If-Match": stale})

    assert_problem(response, 412)
    after = client.get(f"/v1/profiles/{pid}", headers=service)
    assert after.get_json() == before.get_json() and after.get_json()["personal"] == {"v": 2}
    assert after.headers["ETag"] == before.headers["ETag"]


def test_patch_of_retention_days_moves_the_expiry(client, service):
    created = create_profile(client, service)

    body = client.patch(f"/v1/profiles/{created['profile_id']}", json={"retention_days": 10},
                        headers=service).get_json()

    assert from_db(body["expires_at"]) - from_db(created["created_at"]) == timedelta(days=10)


def test_patch_of_an_unknown_profile_is_404(client, service):
    assert_problem(client.patch("/v1/profiles/prf_missing", json={"learning_style": "x"}, headers=service), 404)


def test_patch_rejects_user_id_changes(client, service):
    pid = create_profile(client, service)["profile_id"]

    assert_problem(client.patch(f"/v1/profiles/{pid}", json={"user_id": "someone-else"}, headers=service),
                   422, "user_id")


def test_delete_erases_the_profile_with_its_sessions_and_knowledge(client, service):
    pid = create_profile(client, service, "erase-me")["profile_id"]
    session = start_session(client, service, pid)
    client.put(f"/v1/profiles/{pid}/knowledge/math/algebra", json={"mastery_level": 0.5}, headers=service)

    response = client.delete(f"/v1/profiles/{pid}", headers=service)

    assert response.status_code == 200
    receipt = response.get_json()
    assert receipt["counts"]["learning_profiles"] == 1
    assert receipt["counts"]["learning_sessions"] == 1 and receipt["counts"]["knowledge_states"] == 1
    assert_problem(client.get(f"/v1/profiles/{pid}", headers=service), 404)
    assert_problem(client.get(f"/v1/sessions/{session['session_id']}", headers=service), 404)
    assert_problem(client.post("/v1/profiles/lookup", json={"user_id": "erase-me"}, headers=service), 404)
    assert_problem(client.delete(f"/v1/profiles/{pid}", headers=service), 404)


def test_delete_with_a_stale_etag_is_412_and_erases_nothing(client, service):
    # A client that sends If-Match asks for a precondition: "erase what I saw, not what it
    # became". Without one the erasure is unconditional (the test above).
    pid = create_profile(client, service, "changed-meanwhile", personal={"v": 1})["profile_id"]
    session = start_session(client, service, pid)
    stale = client.get(f"/v1/profiles/{pid}", headers=service).headers["ETag"]
    client.patch(f"/v1/profiles/{pid}", json={"personal": {"v": 2}}, headers=service)

    for tag in (stale, f"W/{stale}"):  # a weak tag never matches
        assert_problem(client.delete(f"/v1/profiles/{pid}", headers={**service, "If-Match": tag}), 412)

    assert client.get(f"/v1/profiles/{pid}", headers=service).get_json()["personal"] == {"v": 2}
    assert client.get(f"/v1/sessions/{session['session_id']}", headers=service).status_code == 200


@pytest.mark.parametrize("if_match", ["current", "*", "listed with others"])
def test_delete_whose_if_match_allows_the_current_version_erases(client, service, if_match):
    pid = create_profile(client, service, "still-current")["profile_id"]
    current = client.get(f"/v1/profiles/{pid}", headers=service).headers["ETag"]
    header = {"current": current, "*": "*", "listed with others": f'"0000000000000000", {current}'}[if_match]

    response = client.delete(f"/v1/profiles/{pid}", headers={**service, "If-Match": header})

    assert response.status_code == 200 and response.get_json()["counts"]["learning_profiles"] == 1
    assert_problem(client.get(f"/v1/profiles/{pid}", headers=service), 404)


def test_delete_of_an_unknown_profile_is_404_with_or_without_if_match(client, service):
    for headers in (service, {**service, "If-Match": '"0000000000000000"'}):
        assert_problem(client.delete("/v1/profiles/prf_missing", headers=headers), 404)


def test_a_new_profile_can_be_created_after_erasure(client, service):
    pid = create_profile(client, service, "comes-back")["profile_id"]
    client.delete(f"/v1/profiles/{pid}", headers=service)

    assert create_profile(client, service, "comes-back")["profile_id"] != pid


TOO_MANY = [f"d{n}" for n in range(51)]


@pytest.mark.parametrize("fields, bad", [
    ({"user_id": None}, "user_id"),
    ({"user_id": "u" * 257}, "user_id"),
    ({"user_id": ["u"]}, "user_id"),
    ({"preferred_difficulty": "extreme"}, "preferred_difficulty"),
    ({"preferred_difficulty": None}, "preferred_difficulty"),
    ({"learning_style": ""}, "learning_style"),
    ({"learning_style": "s" * 65}, "learning_style"),
    ({"learning_style": 3}, "learning_style"),
    ({"knowledge_domains": "math"}, "knowledge_domains"),
    ({"knowledge_domains": TOO_MANY}, "knowledge_domains"),
    ({"knowledge_domains": ["d" * 101]}, "knowledge_domains"),
    ({"knowledge_domains": [1]}, "knowledge_domains"),
    ({"learning_goals": ["g" * 501]}, "learning_goals"),
    ({"learning_goals": TOO_MANY}, "learning_goals"),
    ({"privacy_settings": ["not", "an", "object"]}, "privacy_settings"),
    ({"personal": {f"k{n}": n for n in range(51)}}, "personal"),
    ({"personal": {"k" * 65: 1}}, "personal"),
    ({"personal": "free text"}, "personal"),
    ({"birth_date": "03/02/2001"}, "birth_date"),
    ({"birth_date": "1850-01-01"}, "birth_date"),
    ({"birth_date": (date.today() + timedelta(days=2)).isoformat()}, "birth_date"),
    ({"retention_days": 0}, "retention_days"),
    ({"retention_days": 3651}, "retention_days"),
    ({"retention_days": "30"}, "retention_days"),
    ({"retention_days": 30.5}, "retention_days"),
    ({"retention_days": True}, "retention_days"),
    ({"profile_id": "prf_chosen"}, "profile_id"),
    ({"unknown": "field"}, "unknown"),
])
def test_create_rejects_invalid_fields_with_422_naming_the_field(client, service, fields, bad):
    body = {"user_id": "valid-user", **fields}

    assert_problem(client.post("/v1/profiles", json=body, headers=service), 422, bad)
    assert_problem(client.post("/v1/profiles/lookup", json={"user_id": "valid-user"}, headers=service), 404)


def test_several_invalid_fields_are_reported_together(client, service):
    response = client.post("/v1/profiles", headers=service,
                           json={"user_id": "u", "preferred_difficulty": "x", "retention_days": -1, "zzz": 1})

    assert set(assert_problem(response, 422)["errors"]) == {"preferred_difficulty", "retention_days", "zzz"}


@pytest.mark.parametrize("fields, bad", [
    ({"preferred_difficulty": "EASY"}, "preferred_difficulty"),
    ({"knowledge_domains": None}, "knowledge_domains"),
    ({"retention_days": 5000}, "retention_days"),
    ({"parental_consent": {}}, "parental_consent"),
])
def test_patch_rejects_invalid_fields_and_changes_nothing(client, service, fields, bad):
    created = create_profile(client, service)

    assert_problem(client.patch(f"/v1/profiles/{created['profile_id']}", json=fields, headers=service), 422, bad)
    assert client.get(f"/v1/profiles/{created['profile_id']}", headers=service).get_json() == created


def test_a_child_cannot_be_stored_without_parental_consent(client, service):
    ten_years_ago = date.today().replace(year=date.today().year - 10).isoformat()

    response = client.post("/v1/profiles", json={"user_id": "child", "birth_date": ten_years_ago}, headers=service)

    assert_problem(response, 422, "parental_consent")
    assert_problem(client.post("/v1/profiles/lookup", json={"user_id": "child"}, headers=service), 404)


def test_an_expired_profile_is_never_served(client, service, clock):
    pid = create_profile(client, service, "short-lived", retention_days=3)["profile_id"]
    assert client.get(f"/v1/profiles/{pid}", headers=service).status_code == 200

    clock.advance(days=3, seconds=1)

    assert_problem(client.get(f"/v1/profiles/{pid}", headers=service), 404)
    assert_problem(client.post("/v1/profiles/lookup", json={"user_id": "short-lived"}, headers=service), 404)
    assert_problem(client.patch(f"/v1/profiles/{pid}", json={"learning_style": "x"}, headers=service), 404)
    assert_problem(client.get(f"/v1/profiles/{pid}/sessions", headers=service), 404)
    assert_problem(client.get(f"/v1/profiles/{pid}/knowledge", headers=service), 404)


def test_no_response_of_a_full_flow_carries_the_user_id_its_hash_keys_or_ciphertext(client, service, runtime,
                                                                                    learner_for):
    user_id = "flow-user-77"
    learner = learner_for(user_id)
    responses = [client.post("/v1/profiles", headers=service, json={
        "user_id": user_id, "personal": {"k": "v"}, "learning_goals": ["g"], "birth_date": "2000-01-01"})]
    pid = responses[0].get_json()["profile_id"]
    responses.append(client.post(f"/v1/profiles/{pid}/sessions", json={"session_type": "quiz"}, headers=service))
    sid = responses[-1].get_json()["session_id"]
    responses += [
        client.post("/v1/profiles/lookup", json={"user_id": user_id}, headers=service),
        client.get(f"/v1/profiles/{pid}", headers=service),
        client.get(f"/v1/profiles/{pid}", headers=learner),
        client.patch(f"/v1/profiles/{pid}", json={"personal": {"k": "w"}}, headers=service),
        client.patch(f"/v1/sessions/{sid}", json={"performance_metrics": {"m": 1}}, headers=service),
        client.get(f"/v1/sessions/{sid}", headers=service),
        client.get(f"/v1/profiles/{pid}/sessions", headers=learner),
        client.put(f"/v1/profiles/{pid}/knowledge/math/algebra", headers=service,
                   json={"mastery_level": 0.5, "learning_trajectory": {"t": 1}}),
        client.get(f"/v1/profiles/{pid}/knowledge", headers=learner),
        client.delete(f"/v1/profiles/{pid}", headers=service),
    ]

    assert all(r.status_code in (200, 201) for r in responses), [r.status_code for r in responses]
    subject_hash = runtime.hasher.hash(user_id)
    for response in responses:
        assert_no_identifiers(response.get_json(), user_id, subject_hash)
        assert subject_hash not in response.get_data(as_text=True)
        assert subject_hash not in str(dict(response.headers))


def test_if_match_with_a_list_of_etags_matches_when_one_is_current(client, service):
    created = client.post("/v1/profiles", json={"user_id": "list-etag"}, headers=service)
    pid, etag = created.get_json()["profile_id"], created.headers["ETag"]
    stale = '"0000000000000000"'
    listed = client.patch(f"/v1/profiles/{pid}", json={"learning_style": "visual"},
                          headers={**service, "If-Match": f"{stale}, {etag}"})
    assert listed.status_code == 200
    weak = client.patch(f"/v1/profiles/{pid}", json={"learning_style": "aural"},
                        headers={**service, "If-Match": f"W/{listed.headers['ETag']}"})
    assert weak.status_code == 412  # If-Match uses strong comparison


def test_a_read_answers_flasks_compact_sorted_ascii_json_text(client, service):
    pid = create_profile(client, service, "json-text-user", personal={"name": "Zoë ✓", "quote": "a\"b"})["profile_id"]

    response = client.get(f"/v1/profiles/{pid}", headers=service)

    assert response.status_code == 200 and response.mimetype == "application/json"
    expected = json.dumps(response.get_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
    assert response.get_data() == expected.encode() and b"Zo\\u00eb \\u2713" in response.get_data()


def test_a_read_refuses_query_parameters_it_does_not_take_and_ignores_an_empty_query(client, service):
    pid = create_profile(client, service, "query-user")["profile_id"]

    body = assert_problem(client.get(f"/v1/profiles/{pid}?fields=personal&x=1", headers=service), 422, "fields", "x")
    assert body["errors"] == {"fields": ["Unknown field."], "x": ["Unknown field."]}
    assert client.get(f"/v1/profiles/{pid}?", headers=service).status_code == 200
    assert client.get(f"/v1/profiles/{pid}?&", headers=service).status_code == 200
    # The query is refused before any lookup; an id of another form names nothing first.
    assert client.get("/v1/profiles/prf_no-such-profile?x=1", headers=service).status_code == 422
    assert client.get("/v1/profiles/not-a-profile-id?x=1", headers=service).status_code == 404
