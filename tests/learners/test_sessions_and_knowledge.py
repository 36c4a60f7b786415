"""SessionService and KnowledgeService, called directly (and the knowledge PUT's answer over
HTTP), on both storage backends: on PostgreSQL a PUT's writes go with its COMMIT."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest

from compliance.audit import Actor
from compliance.errors import DecryptionError
from twin.learners.errors import InvalidFieldsError, NotFoundError
from twin.learners.sessions import decode_cursor, encode_cursor
from twin.learners.tables import KNOWLEDGE

SERVICE = Actor("tok_learners_service", "service")


@pytest.fixture
def config(backend_config):
    """This module runs on both storage backends (``backend_config``)."""
    return backend_config


@pytest.fixture
def profile_id(runtime):
    return runtime.profiles.create(SERVICE, None, {"user_id": "u-learning"})[0]["profile_id"]


def test_a_finished_session_has_its_duration_and_sealed_metrics(runtime, profile_id, clock):
    started = clock() - timedelta(minutes=30)
    view, etag = runtime.sessions.start(SERVICE, None, profile_id, {"session_type": "lesson",
                                                                   "start_time": started})

    done, _ = runtime.sessions.update(SERVICE, None, view["session_id"],
                                      {"end_time": started + timedelta(minutes=12),
                                       "performance_metrics": {"score": 0.8}}, etag)

    assert (done["duration_minutes"], done["performance_metrics"], done["topics_covered"]) == (12.0, {"score": 0.8}, [])
    row = runtime.twin_db.query_one("SELECT performance_metrics FROM learning_sessions")
    assert b"0.8" not in bytes(row[0])
    with pytest.raises(InvalidFieldsError):
        runtime.sessions.update(SERVICE, None, view["session_id"], {"end_time": started - timedelta(minutes=1)}, None)


def test_sessions_page_by_an_opaque_cursor_and_only_for_their_learner(runtime, profile_id):
    ids = [runtime.sessions.start(SERVICE, None, profile_id, {"session_type": "drill"})[0]["session_id"]
           for _ in range(3)]

    first = runtime.sessions.list(SERVICE, None, profile_id, limit=2, cursor=None)
    rest = runtime.sessions.list(SERVICE, None, profile_id, limit=2, cursor=first["next_cursor"])

    assert [s["session_id"] for s in first["items"] + rest["items"]] == ids and rest["next_cursor"] is None
    assert decode_cursor(encode_cursor(41)) == 41
    with pytest.raises(InvalidFieldsError):
        decode_cursor("not-ours")
    with pytest.raises(NotFoundError):
        runtime.sessions.list(SERVICE, None, profile_id, limit=2, cursor=None,
                              restricted_to=runtime.hasher.hash("someone-else"))


def test_a_knowledge_state_is_created_then_replaced_and_bound_to_its_own_row(runtime, profile_id):
    view, created = runtime.knowledge.upsert(SERVICE, None, profile_id, "math", "fractions",
                                             {"mastery_level": 0.4, "learning_trajectory": {"steps": [1]}})
    again, created_again = runtime.knowledge.upsert(SERVICE, None, profile_id, "math", "fractions",
                                                    {"mastery_level": 0.7})

    assert (created, created_again) == (True, False)
    assert (view["learning_trajectory"], again["learning_trajectory"], again["mastery_level"]) == \
        ({"steps": [1]}, None, 0.7)
    runtime.knowledge.upsert(SERVICE, None, profile_id, "math", "ratios",
                             {"mastery_level": 0.1, "learning_trajectory": {"steps": [2]}})
    # The composite row id is in each ciphertext's associated data: moved to another topic, it fails.
    ratios = runtime.twin_db.query_one("SELECT learning_trajectory FROM knowledge_states WHERE topic = 'ratios'")[0]
    reader = runtime.keys.reader(runtime.hasher.hash("u-learning"))
    with pytest.raises(DecryptionError):
        reader.open(KNOWLEDGE.name, "learning_trajectory", f"{profile_id}/math/fractions", ratios)


def test_a_puts_answer_is_the_state_as_stored(runtime, profile_id, clock):
    # The answer is made from the values the PUT wrote: it must be what reading them back says,
    # created or replaced, with or without the optional fields, after evidence or not.
    runtime.evidence.ingest(SERVICE, None, profile_id, [
        {"evidence_id": f"e-{i}", "domain": "math", "topic": "ratios", "item_id": f"i-{i}",
         "correct": i % 3 != 0, "observed_at": clock() - timedelta(hours=5 - i)} for i in range(5)])
    puts = [("fractions", {"mastery_level": 0.4, "confidence_score": 0.25, "prerequisites_met": True,
                           "learning_trajectory": {"steps": [1, 0.5], "note": "é"}}),
            ("fractions", {"mastery_level": 1.0}),
            ("ratios", {"mastery_level": 0.3}),  # confidence: the model's track record
            ("ratios", {"mastery_level": 0.0, "learning_trajectory": {}})]
    for topic, body in puts:
        clock.advance(seconds=1)
        view, _ = runtime.knowledge.upsert(SERVICE, None, profile_id, "math", topic, body)
        stored = [s for s in runtime.knowledge.list(SERVICE, None, profile_id) if s["topic"] == topic]
        assert stored == [view]
        assert [type(view[k]) for k in ("mastery_level", "confidence_score")] == [float, float]


def test_a_puts_answer_keeps_every_float_exactly_as_a_fresh_get_returns_it(client, service, profile_id):
    # 17 significant digits (the shortest repr of these doubles), a trajectory at the edge of
    # the double range and a signed zero: the answer, made from the values written, must be
    # what the database gives back, byte for byte once encoded.
    body = {"mastery_level": 0.30000000000000004, "confidence_score": 0.12345678901234568,
            "learning_trajectory": {"far": 1e300, "tiny": 5e-324, "signed_zero": -0.0, "steps": [0.1, -1e300]}}
    put = client.put(f"/v1/profiles/{profile_id}/knowledge/math/fractions", json=body, headers=service)
    listed = client.get(f"/v1/profiles/{profile_id}/knowledge", headers=service)

    assert (put.status_code, listed.status_code) == (201, 200)
    [stored] = listed.get_json()["items"]
    assert json.dumps(put.get_json(), sort_keys=True) == json.dumps(stored, sort_keys=True)
    assert (stored["mastery_level"], stored["confidence_score"]) == (0.30000000000000004, 0.12345678901234568)
    trajectory = stored["learning_trajectory"]
    assert (trajectory["far"], trajectory["tiny"], trajectory["steps"]) == (1e300, 5e-324, [0.1, -1e300])
    assert trajectory["signed_zero"] == 0.0 and math.copysign(1.0, trajectory["signed_zero"]) == -1.0


def test_knowledge_filters_by_domain_and_hides_states_past_their_window(runtime, clock):
    profile_id = runtime.profiles.create(SERVICE, None, {"user_id": "u-long", "retention_days": 3650})[0]["profile_id"]
    runtime.knowledge.upsert(SERVICE, None, profile_id, "math", "old", {"mastery_level": 0.1})
    clock.advance(days=runtime.config.knowledge_retention_days - 1)
    runtime.knowledge.upsert(SERVICE, None, profile_id, "art", "new", {"mastery_level": 0.2})
    clock.advance(days=2)

    assert [k["topic"] for k in runtime.knowledge.list(SERVICE, None, profile_id)] == ["new"]
    assert runtime.knowledge.list(SERVICE, None, profile_id, domain="math") == []
