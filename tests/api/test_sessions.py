"""Learning sessions over HTTP: start, read (ETag), finish/update (If-Match), pagination, expiry."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from api_support import assert_problem, create_profile, start_session
from twin.storage.timestamps import from_db


@pytest.fixture
def profile_id(client, service) -> str:
    return create_profile(client, service, "session-owner")["profile_id"]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def test_start_answers_201_with_location_etag_and_an_open_session(client, service, profile_id):
    before = datetime.now(timezone.utc)

    response = client.post(f"/v1/profiles/{profile_id}/sessions", headers=service,
                           json={"session_type": "practice", "topics_covered": ["fractions", "decimals"]})

    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/v1/sessions/{body['session_id']}"
    assert response.headers["ETag"]
    assert body["profile_id"] == profile_id and body["session_type"] == "practice"
    assert body["topics_covered"] == ["fractions", "decimals"]
    assert body["completion_status"] == "in_progress"
    assert body["end_time"] is None and body["duration_minutes"] is None and body["engagement_score"] is None
    assert before - timedelta(seconds=1) <= from_db(body["start_time"]) <= datetime.now(timezone.utc)


def test_start_keeps_a_given_start_time_in_utc(client, service, profile_id):
    start = datetime.now(timezone(timedelta(hours=2))).replace(microsecond=0) - timedelta(hours=1)

    body = start_session(client, service, profile_id, start_time=_iso(start))

    assert from_db(body["start_time"]) == start
    assert body["start_time"].endswith("Z")


def test_session_ids_are_long_random_and_distinct(client, service, profile_id):
    ids = {start_session(client, service, profile_id)["session_id"] for _ in range(3)}

    assert len(ids) == 3 and all(len(sid) >= 20 and not sid.isdigit() for sid in ids)


def test_starting_a_session_for_an_unknown_profile_is_404(client, service):
    assert_problem(client.post("/v1/profiles/prf_missing/sessions", json={"session_type": "quiz"},
                               headers=service), 404)


@pytest.mark.parametrize("body, bad", [
    ({}, "session_type"),
    ({"session_type": ""}, "session_type"),
    ({"session_type": "s" * 65}, "session_type"),
    ({"session_type": 7}, "session_type"),
    ({"session_type": "quiz", "topics_covered": "algebra"}, "topics_covered"),
    ({"session_type": "quiz", "topics_covered": [f"t{n}" for n in range(101)]}, "topics_covered"),
    ({"session_type": "quiz", "topics_covered": ["t" * 201]}, "topics_covered"),
    ({"session_type": "quiz", "start_time": "2026-01-01T10:00:00"}, "start_time"),  # no offset
    ({"session_type": "quiz", "start_time": "yesterday"}, "start_time"),
    ({"session_type": "quiz", "start_time": "0001-01-01T00:00:00+01:00"}, "start_time"),
    ({"session_type": "quiz", "start_time": "9999-12-31T23:59:59-01:00"}, "start_time"),
    ({"session_type": "quiz", "completion_status": "completed"}, "completion_status"),
])
def test_start_rejects_invalid_fields(client, service, profile_id, body, bad):
    response = client.post(f"/v1/profiles/{profile_id}/sessions", json=body, headers=service)

    assert_problem(response, 422, bad)
    assert client.get(f"/v1/profiles/{profile_id}/sessions", headers=service).get_json()["items"] == []


def test_a_start_time_in_the_future_is_rejected(client, service, profile_id):
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)

    response = client.post(f"/v1/profiles/{profile_id}/sessions",
                           json={"session_type": "quiz", "start_time": _iso(tomorrow)}, headers=service)

    assert_problem(response, 422, "start_time")


def test_a_start_time_older_than_the_session_retention_is_rejected_not_stored(client, service, profile_id,
                                                                              runtime):
    too_old = datetime.now(timezone.utc) - timedelta(days=runtime.config.session_retention_days + 1)

    response = client.post(f"/v1/profiles/{profile_id}/sessions",
                           json={"session_type": "quiz", "start_time": _iso(too_old)}, headers=service)

    assert_problem(response, 422, "start_time")
    assert runtime.twin_db.query_one("SELECT count(*) AS n FROM learning_sessions")["n"] == 0


def test_get_returns_the_session_with_the_same_etag_as_start(client, service, profile_id):
    started = client.post(f"/v1/profiles/{profile_id}/sessions", json={"session_type": "quiz"}, headers=service)

    response = client.get(started.headers["Location"], headers=service)

    assert response.status_code == 200
    assert response.get_json() == started.get_json()
    assert response.headers["ETag"] == started.headers["ETag"]


@pytest.mark.parametrize("changes", [
    {},
    {"end_time": "now"},
    {"end_time": None},
    {"engagement_score": 1},
    {"completion_status": "abandoned"},
    {"performance_metrics": {"score": 0.9, "nested": {"a": [1, 2.5, None, "x"]}}},
    {"performance_metrics": None},
    {"topics_covered": []},
    {"topics_covered": ["ratios"], "engagement_score": 0.3, "end_time": "now", "completion_status": "completed"},
])
def test_an_update_answers_exactly_what_a_read_returns_after_it(client, service, profile_id, changes):
    # The answer is made from the row the update read and the values it wrote, not read back.
    started = client.post(f"/v1/profiles/{profile_id}/sessions", headers=service,
                          json={"session_type": "lesson", "topics_covered": ["a", "b"],
                                "start_time": _iso(datetime.now(timezone.utc) - timedelta(minutes=30))})
    sid = started.get_json()["session_id"]
    client.patch(f"/v1/sessions/{sid}", json={"performance_metrics": {"before": True}}, headers=service)
    if changes.get("end_time") == "now":
        changes = {**changes, "end_time": _iso(datetime.now(timezone.utc))}

    updated = client.patch(f"/v1/sessions/{sid}", json=changes, headers=service)
    read = client.get(f"/v1/sessions/{sid}", headers=service)

    assert updated.status_code == 200
    assert updated.get_data() == read.get_data()
    assert updated.headers["ETag"] == read.headers["ETag"]


def test_a_start_answers_exactly_what_a_read_returns_after_it(client, service, profile_id):
    started = client.post(f"/v1/profiles/{profile_id}/sessions", headers=service,
                          json={"session_type": "lesson", "topics_covered": ["a", "ß"],
                                "start_time": _iso(datetime.now(timezone(timedelta(hours=2))) - timedelta(hours=2))})
    bare = client.post(f"/v1/profiles/{profile_id}/sessions", headers=service, json={"session_type": "quiz"})

    for response in (started, bare):
        read = client.get(response.headers["Location"], headers=service)
        assert response.status_code == 201
        assert response.get_data() == read.get_data()
        assert response.headers["ETag"] == read.headers["ETag"]


def test_get_of_an_unknown_session_is_404(client, service):
    assert_problem(client.get("/v1/sessions/ses_missing", headers=service), 404)


def test_finishing_a_session_computes_its_duration(client, service, profile_id):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=90)
    session = start_session(client, service, profile_id, start_time=_iso(start))

    response = client.patch(f"/v1/sessions/{session['session_id']}", headers=service, json={
        "end_time": _iso(start + timedelta(minutes=45, seconds=30)), "completion_status": "completed",
        "engagement_score": 0.75, "performance_metrics": {"score": 17, "attempts": [1, 2]}})

    assert response.status_code == 200
    body = response.get_json()
    assert body["duration_minutes"] == 45.5
    assert body["completion_status"] == "completed" and body["engagement_score"] == 0.75
    assert body["performance_metrics"] == {"score": 17, "attempts": [1, 2]}
    assert client.get(f"/v1/sessions/{session['session_id']}", headers=service).get_json() == body


def test_clearing_the_end_time_clears_the_duration(client, service, profile_id):
    session = start_session(client, service, profile_id)
    sid = session["session_id"]
    client.patch(f"/v1/sessions/{sid}", json={"end_time": _iso(datetime.now(timezone.utc))}, headers=service)

    body = client.patch(f"/v1/sessions/{sid}", json={"end_time": None}, headers=service).get_json()

    assert body["end_time"] is None and body["duration_minutes"] is None


@pytest.mark.parametrize("engagement", [0, 0.0, 1, 0.5])
def test_engagement_accepts_the_closed_unit_interval(client, service, profile_id, engagement):
    sid = start_session(client, service, profile_id)["session_id"]

    response = client.patch(f"/v1/sessions/{sid}", json={"engagement_score": engagement}, headers=service)

    assert response.status_code == 200 and response.get_json()["engagement_score"] == engagement


@pytest.mark.parametrize("changes, bad", [
    ({"engagement_score": 1.01}, "engagement_score"),
    ({"engagement_score": -0.01}, "engagement_score"),
    ({"engagement_score": "0.5"}, "engagement_score"),
    ({"engagement_score": True}, "engagement_score"),
    ({"completion_status": "done"}, "completion_status"),
    ({"completion_status": None}, "completion_status"),
    ({"performance_metrics": [1, 2]}, "performance_metrics"),
    ({"end_time": "not a time"}, "end_time"),
    ({"end_time": "2000-01-01T00:00:00Z"}, "end_time"),  # before the start
    ({"duration_minutes": 5}, "duration_minutes"),        # computed by the server only
    ({"session_id": "ses_other"}, "session_id"),
])
def test_update_rejects_invalid_fields_and_changes_nothing(client, service, profile_id, changes, bad):
    session = start_session(client, service, profile_id)

    assert_problem(client.patch(f"/v1/sessions/{session['session_id']}", json=changes, headers=service), 422, bad)
    assert client.get(f"/v1/sessions/{session['session_id']}", headers=service).get_json() == session


def test_an_end_time_in_the_future_is_rejected(client, service, profile_id):
    sid = start_session(client, service, profile_id)["session_id"]
    later = datetime.now(timezone.utc) + timedelta(hours=3)

    assert_problem(client.patch(f"/v1/sessions/{sid}", json={"end_time": _iso(later)}, headers=service),
                   422, "end_time")


def test_update_with_a_matching_if_match_succeeds_and_a_stale_one_is_412(client, service, profile_id):
    started = client.post(f"/v1/profiles/{profile_id}/sessions", json={"session_type": "quiz"}, headers=service)
    sid, first_etag = started.get_json()["session_id"], started.headers["ETag"]

    updated = client.patch(f"/v1/sessions/{sid}", json={"engagement_score": 0.2},
                           headers={**service, "If-Match": first_etag})
    stale = client.patch(f"/v1/sessions/{sid}", json={"engagement_score": 0.9},
                         headers={**service, "If-Match": first_etag})

    assert updated.status_code == 200 and updated.headers["ETag"] != first_etag
    assert_problem(stale, 412)
    current = client.get(f"/v1/sessions/{sid}", headers=service)
    assert current.get_json()["engagement_score"] == 0.2
    assert current.headers["ETag"] == updated.headers["ETag"]


def test_update_of_an_unknown_session_is_404(client, service):
    assert_problem(client.patch("/v1/sessions/ses_missing", json={"engagement_score": 0.5}, headers=service), 404)


def _all_pages(client, headers, profile_id, limit):
    pages, cursor = [], None
    while True:
        query = f"limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(f"/v1/profiles/{profile_id}/sessions?{query}", headers=headers)
        assert response.status_code == 200
        page = response.get_json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 10, "pagination does not terminate"


def test_cursor_pagination_walks_every_session_once_in_start_order(client, service, profile_id):
    created = [start_session(client, service, profile_id, topics_covered=[f"t{n}"])["session_id"]
               for n in range(25)]

    pages = _all_pages(client, service, profile_id, limit=10)

    assert [len(p) for p in pages] == [10, 10, 5]
    assert [s["session_id"] for page in pages for s in page] == created


def test_the_default_page_size_is_20(client, service, profile_id):
    for _ in range(21):
        start_session(client, service, profile_id)

    page = client.get(f"/v1/profiles/{profile_id}/sessions", headers=service).get_json()

    assert len(page["items"]) == 20 and page["next_cursor"]


def test_pagination_only_lists_the_profiles_own_sessions(client, service, profile_id):
    other = create_profile(client, service, "someone-else")["profile_id"]
    mine = start_session(client, service, profile_id)["session_id"]
    start_session(client, service, other)

    items = client.get(f"/v1/profiles/{profile_id}/sessions", headers=service).get_json()["items"]

    assert [s["session_id"] for s in items] == [mine]


@pytest.mark.parametrize("query, bad", [
    ("cursor=garbage!!", "cursor"),
    ("cursor=" + base64.urlsafe_b64encode(b"s" + b"9" * 40).decode(), "cursor"),  # beyond 64-bit rowids
    ("cursor=" + base64.urlsafe_b64encode(b"x12").decode(), "cursor"),
    ("cursor=" + base64.urlsafe_b64encode(b"s-5").decode(), "cursor"),
    ("cursor=" + "c" * 101, "cursor"),
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=ten", "limit"),
    ("page=2", "page"),
])
def test_invalid_list_parameters_are_422(client, service, profile_id, query, bad):
    assert_problem(client.get(f"/v1/profiles/{profile_id}/sessions?{query}", headers=service), 422, bad)


def test_listing_the_sessions_of_an_unknown_profile_is_404(client, service):
    assert_problem(client.get("/v1/profiles/prf_missing/sessions", headers=service), 404)


def test_sessions_older_than_the_session_window_vanish(client, service, profile_id, clock, runtime):
    old = start_session(client, service, profile_id)["session_id"]
    clock.advance(days=runtime.config.session_retention_days - 1)
    recent = start_session(client, service, profile_id)["session_id"]

    clock.advance(days=1, seconds=1)

    items = client.get(f"/v1/profiles/{profile_id}/sessions", headers=service).get_json()["items"]
    assert [s["session_id"] for s in items] == [recent]
    assert_problem(client.get(f"/v1/sessions/{old}", headers=service), 404)
    assert_problem(client.patch(f"/v1/sessions/{old}", json={"engagement_score": 1}, headers=service), 404)
