"""Knowledge states over HTTP: upsert per (domain, topic), list with a domain filter, expiry."""

from __future__ import annotations

import pytest

from api_support import assert_problem, create_profile


@pytest.fixture
def profile_id(client, service) -> str:
    return create_profile(client, service, "knower", retention_days=3650)["profile_id"]


def _put(client, headers, profile_id, domain, topic, **body):
    return client.put(f"/v1/profiles/{profile_id}/knowledge/{domain}/{topic}", json=body, headers=headers)


def test_the_first_put_creates_201_and_applies_defaults(client, service, profile_id):
    response = _put(client, service, profile_id, "math", "algebra", mastery_level=0.4)

    assert response.status_code == 201
    body = response.get_json()
    assert (body["domain"], body["topic"], body["mastery_level"]) == ("math", "algebra", 0.4)
    assert body["confidence_score"] == 0.0 and body["prerequisites_met"] is False
    assert body["learning_trajectory"] is None and body["last_accessed"].endswith("Z")


def test_a_second_put_replaces_the_state_with_200(client, service, profile_id):
    _put(client, service, profile_id, "math", "algebra", mastery_level=0.4, confidence_score=0.9,
         learning_trajectory={"steps": [0.1, 0.4]}, prerequisites_met=True)

    response = _put(client, service, profile_id, "math", "algebra", mastery_level=0.6)

    assert response.status_code == 200
    body = response.get_json()
    assert body["mastery_level"] == 0.6
    # A PUT replaces: omitted fields go back to their defaults.
    assert body["confidence_score"] == 0.0 and body["prerequisites_met"] is False
    assert body["learning_trajectory"] is None
    items = client.get(f"/v1/profiles/{profile_id}/knowledge", headers=service).get_json()["items"]
    assert items == [body]


def test_the_list_returns_every_state_sorted_and_the_domain_filter_narrows_it(client, service, profile_id):
    _put(client, service, profile_id, "physics", "optics", mastery_level=0.1)
    _put(client, service, profile_id, "math", "geometry", mastery_level=0.2, learning_trajectory={"t": [1]})
    _put(client, service, profile_id, "math", "algebra", mastery_level=0.3)

    everything = client.get(f"/v1/profiles/{profile_id}/knowledge", headers=service).get_json()["items"]
    math = client.get(f"/v1/profiles/{profile_id}/knowledge?domain=math", headers=service).get_json()["items"]
    none = client.get(f"/v1/profiles/{profile_id}/knowledge?domain=art", headers=service).get_json()["items"]

    assert [(s["domain"], s["topic"]) for s in everything] == [
        ("math", "algebra"), ("math", "geometry"), ("physics", "optics")]
    assert [s["topic"] for s in math] == ["algebra", "geometry"]
    assert math[1]["learning_trajectory"] == {"t": [1]}
    assert none == []


def test_states_belong_to_one_profile(client, service, profile_id):
    other = create_profile(client, service, "other-knower")["profile_id"]
    _put(client, service, other, "math", "algebra", mastery_level=1)

    assert client.get(f"/v1/profiles/{profile_id}/knowledge", headers=service).get_json()["items"] == []


@pytest.mark.parametrize("domain, topic", [("Data Science", "k-means"), ("math", "1.2:vectors+"), ("ü", "x_y")])
def test_domain_and_topic_may_hold_spaces_and_punctuation(client, service, profile_id, domain, topic):
    body = _put(client, service, profile_id, domain, topic, mastery_level=0.5).get_json()

    assert (body["domain"], body["topic"]) == (domain, topic)


@pytest.mark.parametrize("domain, topic, bad", [
    ("math!", "algebra", "domain"),
    ("math", "alg%0Aebra", "topic"),
    ("math", "trailing%0A", "topic"),
    ("ma%00th", "algebra", "domain"),
])
def test_unsafe_path_segments_are_422(client, service, profile_id, domain, topic, bad):
    assert_problem(_put(client, service, profile_id, domain, topic, mastery_level=0.5), 422, bad)


def test_an_over_long_segment_never_matches_the_route(client, service, profile_id):
    assert_problem(_put(client, service, profile_id, "d" * 101, "t", mastery_level=0.5), 404)


@pytest.mark.parametrize("body, bad", [
    ({}, "mastery_level"),
    ({"mastery_level": -0.01}, "mastery_level"),
    ({"mastery_level": 1.0001}, "mastery_level"),
    ({"mastery_level": "0.5"}, "mastery_level"),
    ({"mastery_level": None}, "mastery_level"),
    ({"mastery_level": False}, "mastery_level"),
    ({"mastery_level": 0.5, "confidence_score": 1.5}, "confidence_score"),
    ({"mastery_level": 0.5, "confidence_score": -1}, "confidence_score"),
    ({"mastery_level": 0.5, "prerequisites_met": "yes"}, "prerequisites_met"),
    ({"mastery_level": 0.5, "prerequisites_met": 1}, "prerequisites_met"),
    ({"mastery_level": 0.5, "learning_trajectory": [0.1]}, "learning_trajectory"),
    ({"mastery_level": 0.5, "topic": "other"}, "topic"),
])
def test_invalid_bodies_are_422_and_store_nothing(client, service, profile_id, body, bad):
    response = client.put(f"/v1/profiles/{profile_id}/knowledge/math/algebra", json=body, headers=service)

    assert_problem(response, 422, bad)
    assert client.get(f"/v1/profiles/{profile_id}/knowledge", headers=service).get_json()["items"] == []


@pytest.mark.parametrize("mastery", [0, 1, 0.0, 1.0])
def test_the_bounds_of_mastery_are_inclusive(client, service, profile_id, mastery):
    assert _put(client, service, profile_id, "math", "algebra", mastery_level=mastery).status_code == 201


def test_unknown_profiles_are_404(client, service):
    assert_problem(_put(client, service, "prf_missing", "math", "algebra", mastery_level=0.5), 404)
    assert_problem(client.get("/v1/profiles/prf_missing/knowledge", headers=service), 404)


@pytest.mark.parametrize("query, bad", [("domain=", "domain"), ("domain=" + "d" * 101, "domain"),
                                        ("topic=algebra", "topic")])
def test_invalid_list_filters_are_422(client, service, profile_id, query, bad):
    assert_problem(client.get(f"/v1/profiles/{profile_id}/knowledge?{query}", headers=service), 422, bad)


def test_states_not_updated_within_the_knowledge_window_vanish(client, service, profile_id, clock, runtime):
    _put(client, service, profile_id, "math", "stale", mastery_level=0.1)
    clock.advance(days=runtime.config.knowledge_retention_days - 1)
    _put(client, service, profile_id, "math", "fresh", mastery_level=0.2)

    clock.advance(days=1, seconds=1)

    items = client.get(f"/v1/profiles/{profile_id}/knowledge", headers=service).get_json()["items"]
    assert [s["topic"] for s in items] == ["fresh"]
