"""Mastery inferred from evidence, over HTTP: the BKT posterior as computed by hand, late
observations folded in at their place, manual values evidence continues from, and the
explanation that always ends at the stored estimate."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from api_support import assert_problem, create_profile

T0 = datetime.now(timezone.utc) - timedelta(days=3)


def obs(eid: str, hour: float, correct: bool | None = None, *, score: float | None = None,
        topic: str = "algebra") -> dict:
    body = {"evidence_id": eid, "domain": "math", "topic": topic, "item_id": f"q-{eid}",
            "observed_at": (T0 + timedelta(hours=hour)).isoformat()}
    body.update({"correct": correct} if score is None else {"score": score})
    return body


def post(client, headers, pid, *observations):
    response = client.post(f"/v1/profiles/{pid}/evidence", json={"observations": list(observations)},
                           headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def state(client, headers, pid, topic="algebra") -> dict:
    items = client.get(f"/v1/profiles/{pid}/knowledge?domain=math", headers=headers).get_json()["items"]
    return next(s for s in items if s["topic"] == topic)


def explanation(client, headers, pid, topic="algebra"):
    return client.get(f"/v1/profiles/{pid}/knowledge/math/{topic}/explanation", headers=headers)


@pytest.fixture
def pid(client, service) -> str:
    return create_profile(client, service, "bkt-learner")["profile_id"]


def test_mastery_is_the_bkt_posterior_computed_by_hand(client, service, pid):
    # Defaults: prior 0.3, learn 0.15, slip 0.1, guess 0.2. Correct:
    #   P(L|right) = 0.3*0.9 / (0.3*0.9 + 0.7*0.2) = 0.27/0.41 = 0.658537
    #   then learning: 0.658537 + (1 - 0.658537)*0.15          = 0.709756
    # Correct again: 0.709756*0.9 / (0.709756*0.9 + 0.290244*0.2) = 0.916696 -> 0.929191
    # A slip (wrong): 0.929191*0.1 / (0.929191*0.1 + 0.070809*0.8) = 0.621259 -> 0.678070
    post(client, service, pid, obs("a", 1, True))
    assert state(client, service, pid)["mastery_level"] == pytest.approx(0.709756, abs=1e-6)

    post(client, service, pid, obs("b", 2, True))
    rising = state(client, service, pid)["mastery_level"]
    post(client, service, pid, obs("c", 3, False))
    fallen = state(client, service, pid)

    assert rising == pytest.approx(0.929191, abs=1e-6)
    assert fallen["mastery_level"] == pytest.approx(0.678070, abs=1e-6) and fallen["mastery_level"] < rising
    assert fallen["source"] == "evidence" and fallen["parameters_version"] == "default-1"
    # confidence = sum of each prediction's Brier skill max(0, 1 - 4(outcome - predicted)^2)
    # over observations + 3: predictions 0.41 (right: 0), 0.696829 (right: 0.632350), 0.850434
    # (wrong: 0), so 0.632350 / 6
    assert fallen["confidence_score"] == pytest.approx(0.105392, abs=1e-6)


def test_a_score_is_soft_evidence_between_a_wrong_and_a_right_answer(client, service, pid):
    # score 0.5: 0.3*0.9^.5*0.1^.5 / (that + 0.7*0.2^.5*0.8^.5) = 0.243243 -> 0.356757
    post(client, service, pid, obs("s", 1, score=0.5))

    assert state(client, service, pid)["mastery_level"] == pytest.approx(0.356757, abs=1e-6)


def test_late_observations_are_folded_in_at_their_place(client, service, pid):
    other = create_profile(client, service, "in-order")["profile_id"]
    in_time_order = [obs("1", 1, True), obs("2", 2, False), obs("3", 3, True), obs("4", 4, True)]
    post(client, service, other, *in_time_order)

    post(client, service, pid, in_time_order[0], in_time_order[3])   # 2 and 3 arrive late,
    post(client, service, pid, in_time_order[2])                       # one by one,
    post(client, service, pid, in_time_order[1])                       # in reverse

    assert state(client, service, pid)["mastery_level"] == state(client, service, other)["mastery_level"]
    steps = explanation(client, service, pid).get_json()["steps"]
    assert [s["evidence_id"] for s in steps] == ["1", "2", "3", "4"]


def test_the_explanation_is_shaped_and_ends_at_the_stored_estimate(client, service, pid):
    post(client, service, pid, obs("a", 1, True), obs("b", 2, False), obs("c", 3, score=0.8))

    response = explanation(client, service, pid)

    assert response.status_code == 200
    body = response.get_json()
    stored = state(client, service, pid)
    assert set(body) == {"mastery_level", "confidence_score", "source", "parameters", "steps", "summary"}
    assert body["mastery_level"] == stored["mastery_level"]
    assert body["confidence_score"] == pytest.approx(stored["confidence_score"], abs=1e-12)
    assert body["parameters"] == {"version": "default-1", "prior": 0.3, "learn": 0.15, "slip": 0.1,
                                  "guess": 0.2, "forget": 0.0}
    steps = body["steps"]
    assert [(s["kind"], s["evidence_id"]) for s in steps] == [("observation", "a"), ("observation", "b"),
                                                              ("observation", "c")]
    assert steps[0]["correct"] is True and steps[1]["correct"] is False and steps[2]["score"] == 0.8
    assert steps[0]["before"] == 0.3
    assert all(later["before"] == earlier["after"] for earlier, later in zip(steps, steps[1:]))
    assert steps[-1]["after"] == stored["mastery_level"]
    assert body["summary"].startswith("Mastery ") and "default-1" in body["summary"]
    assert body["summary"].endswith(".") and body["summary"].count(". ") == 0  # one sentence


def test_a_manual_value_is_marked_and_later_evidence_continues_from_it(client, service, pid):
    post(client, service, pid, obs("a", 1, True))
    put = client.put(f"/v1/profiles/{pid}/knowledge/math/algebra", json={"mastery_level": 0.2},
                     headers=service)
    assert put.status_code == 200
    assert (put.get_json()["mastery_level"], put.get_json()["source"]) == (0.2, "manual")

    # Evidence after the PUT (observed now) starts from 0.2, not from the evidence before it:
    # 0.2*0.9 / (0.2*0.9 + 0.8*0.2) = 0.529412 -> 0.6
    later = {**obs("b", 0, True), "observed_at": datetime.now(timezone.utc).isoformat()}
    post(client, service, pid, later)

    after = state(client, service, pid)
    assert after["source"] == "evidence" and after["mastery_level"] == pytest.approx(0.6, abs=1e-9)
    steps = explanation(client, service, pid).get_json()["steps"]
    assert [s["kind"] for s in steps] == ["observation", "manual", "observation"]
    assert steps[1]["after"] == 0.2 and steps[2]["before"] == 0.2 and steps[2]["after"] == after["mastery_level"]


def test_a_state_set_only_by_hand_is_explained_by_its_manual_step(client, service, pid):
    client.put(f"/v1/profiles/{pid}/knowledge/math/geometry", json={"mastery_level": 0.7,
                                                                    "confidence_score": 0.4}, headers=service)

    body = explanation(client, service, pid, "geometry").get_json()

    assert (body["mastery_level"], body["confidence_score"], body["source"]) == (0.7, 0.4, "manual")
    (step,) = body["steps"]
    assert (step["kind"], step["before"], step["after"], step["confidence_score"]) == ("manual", 0.3, 0.7, 0.4)
    assert "set manually" in body["summary"]


def test_an_unknown_state_or_profile_has_no_explanation(client, service, pid):
    assert_problem(explanation(client, service, pid, "never"), 404)
    assert_problem(client.get("/v1/profiles/prf_x/knowledge/math/algebra/explanation", headers=service), 404)
    assert_problem(client.get(f"/v1/profiles/{pid}/knowledge/ma%21th/algebra/explanation", headers=service),
                   422, "domain")


def test_a_learner_sees_their_own_explanation_and_no_one_elses(client, service, learner_for, pid):
    own = create_profile(client, service, "explained")["profile_id"]
    post(client, service, own, obs("a", 1, True))
    post(client, service, pid, obs("a", 1, True))
    token = learner_for("explained")

    assert explanation(client, token, own).status_code == 200
    assert_problem(explanation(client, token, pid), 404)


def test_reading_an_explanation_is_audited(client, service, pid, runtime):
    post(client, service, pid, obs("a", 1, True), obs("b", 2, True))
    explanation(client, service, pid)

    (event,) = runtime.audit.query(subject_hash=runtime.profiles.subject_of(pid), action="read")
    assert event.resource == f"profile:{pid}/knowledge/explanation" and event.details == {"steps": 2}
