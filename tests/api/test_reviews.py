"""Topics due for review over HTTP: FSRS over the same evidence, soonest first, learner own."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from api_support import assert_problem, create_profile

NOW = datetime.now(timezone.utc)


def _evidence(client, headers, pid, topic, hours_ago, correct):
    response = client.post(f"/v1/profiles/{pid}/evidence", headers=headers, json={"observations": [
        {"evidence_id": f"{topic}-{hours_ago}", "domain": "math", "topic": topic, "item_id": "q",
         "correct": correct, "observed_at": (NOW - timedelta(hours=hours_ago)).isoformat()}]})
    assert response.status_code == 200


def test_due_topics_are_listed_soonest_first_with_their_predicted_recall(client, service):
    pid = create_profile(client, service, "reviewer")["profile_id"]
    _evidence(client, service, pid, "algebra", 1, True)        # right an hour ago: due in days
    _evidence(client, service, pid, "geometry", 50, False)      # wrong two days ago: due already
    client.put(f"/v1/profiles/{pid}/knowledge/math/ratios", json={"mastery_level": 0.5}, headers=service)

    now = client.get(f"/v1/profiles/{pid}/reviews/due", headers=service)
    later = client.get(f"/v1/profiles/{pid}/reviews/due",
                       query_string={"before": (NOW + timedelta(days=90)).isoformat()}, headers=service)

    assert now.status_code == 200
    assert [(i["domain"], i["topic"]) for i in now.get_json()["items"]] == [("math", "geometry")]
    items = later.get_json()["items"]
    assert [i["topic"] for i in items] == ["geometry", "algebra"]  # ratios has no evidence to schedule
    assert set(items[0]) == {"domain", "topic", "due", "predicted_recall", "last_reviewed"}
    assert all(0 < i["predicted_recall"] < 1 for i in items) and items[0]["due"] <= items[1]["due"]


def test_reviews_follow_the_learner_own_rule_and_refuse_bad_times(client, service, learner_for):
    own = create_profile(client, service, "rev-own")["profile_id"]
    other = create_profile(client, service, "rev-other")["profile_id"]
    token = learner_for("rev-own")

    assert client.get(f"/v1/profiles/{own}/reviews/due", headers=token).status_code == 200
    assert_problem(client.get(f"/v1/profiles/{other}/reviews/due", headers=token), 404)
    assert_problem(client.get("/v1/profiles/prf_none/reviews/due", headers=service), 404)
    assert_problem(client.get(f"/v1/profiles/{own}/reviews/due?before=tomorrow", headers=service), 422, "before")


def test_reading_reviews_is_audited(client, service, runtime):
    pid = create_profile(client, service, "rev-audit")["profile_id"]
    _evidence(client, service, pid, "algebra", 50, False)

    client.get(f"/v1/profiles/{pid}/reviews/due", headers=service)

    (event,) = runtime.audit.query(subject_hash=runtime.profiles.subject_of(pid), action="read")
    assert event.resource == f"profile:{pid}/reviews" and event.details == {"count": 1}
