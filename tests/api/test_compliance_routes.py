"""The compliance routes over HTTP: DSR export/erase, legal holds, retention, consents, audit."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from compliance.job_lock import JobLock

CONSENT = {"consenter_name": "Robin Parent", "consenter_relationship": "parent",
           "consenter_contact": "robin@example.org", "method": "signed_form",
           "obtained_at": "2030-01-02T03:04:05+00:00"}
EXPORT_KEYS = {"format", "generated_at", "profiles", "sessions", "knowledge_states", "evidence", "consents",
               "legal_holds", "thread_contexts", "user_preferences", "disclosures"}


def _child_birth_date() -> str:
    return date(date.today().year - 8, 1, 1).isoformat()


@pytest.fixture
def create_profile(client, service):
    """create_profile("user-1", **fields) -> profile_id (with one session and one knowledge state)."""

    def create(user_id: str, **fields) -> str:
        response = client.post("/v1/profiles", json={"user_id": user_id, "personal": {"nick": user_id},
                                                     **fields}, headers=service)
        assert response.status_code == 201, response.get_json()
        pid = response.get_json()["profile_id"]
        assert client.post(f"/v1/profiles/{pid}/sessions", json={"session_type": "lesson"},
                           headers=service).status_code == 201
        assert client.put(f"/v1/profiles/{pid}/knowledge/math/fractions", json={"mastery_level": 0.5},
                          headers=service).status_code in (200, 201)
        return pid

    return create


def _export(client, headers, user_id):
    return client.post("/v1/dsr/export", json={"user_id": user_id}, headers=headers)


# -- DSR export -------------------------------------------------------------------------------

def test_an_admin_exports_a_subject_as_a_json_attachment(client, admin, create_profile):
    pid = create_profile("exp-1")

    response = _export(client, admin, "exp-1")

    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.is_streamed  # rows go out as they are read, never one big string
    assert "attachment" in response.headers["Content-Disposition"]
    doc = json.loads(response.get_data())
    assert set(doc) == EXPORT_KEYS
    assert doc["profiles"][0]["profile_id"] == pid and doc["profiles"][0]["personal"] == {"nick": "exp-1"}
    assert len(doc["sessions"]) == 1 and doc["knowledge_states"][0]["topic"] == "fractions"


def test_a_learner_exports_their_own_data_but_not_anyone_elses(client, learner_for, create_profile):
    create_profile("me")
    create_profile("someone-else")
    mine = learner_for("me")

    own = _export(client, mine, "me")
    other = _export(client, mine, "someone-else")

    assert own.status_code == 200 and len(json.loads(own.get_data())["profiles"]) == 1
    assert other.status_code == 404 and other.mimetype == "application/problem+json"
    assert "someone-else" not in other.get_data(as_text=True)


def test_the_service_role_may_not_export(client, service, create_profile):
    create_profile("svc-exp")

    assert _export(client, service, "svc-exp").status_code == 403
    assert client.post("/v1/dsr/export", json={"user_id": "svc-exp"}).status_code == 401


def test_an_export_needs_a_user_id(client, admin):
    response = client.post("/v1/dsr/export", json={}, headers=admin)

    assert response.status_code == 422 and "user_id" in response.get_json()["errors"]


def test_an_export_is_recorded_as_a_disclosure(client, admin, runtime, create_profile):
    create_profile("disclosed")
    _export(client, admin, "disclosed").get_data()

    (event,) = runtime.audit.query(subject_hash=runtime.hasher.hash("disclosed"), action="export")
    assert event.actor_role == "admin" and event.details["profiles"] == 1


# -- DSR erase --------------------------------------------------------------------------------

def test_an_admin_erases_a_subject_and_gets_a_receipt(client, admin, service, create_profile):
    pid = create_profile("erase-1")

    response = client.post("/v1/dsr/erase", json={"user_id": "erase-1"}, headers=admin)

    receipt = response.get_json()
    assert response.status_code == 200
    assert receipt["counts"]["learning_profiles"] == 1 and receipt["counts"]["learning_sessions"] == 1
    assert receipt["verified"] is True and receipt["dry_run"] is False
    assert client.get(f"/v1/profiles/{pid}", headers=service).status_code == 404


@pytest.mark.parametrize("role", ["service", "learner"])
def test_only_admins_may_erase(client, service, learner_for, create_profile, role):
    create_profile("not-yours")
    headers = service if role == "service" else learner_for("not-yours")

    assert client.post("/v1/dsr/erase", json={"user_id": "not-yours"}, headers=headers).status_code == 403


def test_a_dry_run_erasure_counts_and_deletes_nothing(client, admin, service, create_profile):
    pid = create_profile("dry-1")

    response = client.post("/v1/dsr/erase", json={"user_id": "dry-1", "dry_run": True}, headers=admin)

    assert response.status_code == 200
    receipt = response.get_json()
    assert receipt["dry_run"] is True and receipt["counts"]["learning_profiles"] == 1
    assert client.get(f"/v1/profiles/{pid}", headers=service).status_code == 200


def test_erasing_an_unknown_subject_answers_a_receipt_of_zeros(client, admin):
    response = client.post("/v1/dsr/erase", json={"user_id": "ghost"}, headers=admin)

    assert response.status_code == 200 and set(response.get_json()["counts"].values()) == {0}


# -- legal holds ------------------------------------------------------------------------------

def _place_hold(client, admin, user_id, **extra):
    return client.post("/v1/admin/holds", json={"user_id": user_id, "reason": "litigation", **extra},
                       headers=admin)


def test_a_hold_blocks_both_erasure_routes_until_lifted(client, admin, service, runtime, create_profile):
    pid = create_profile("held-1")
    placed = _place_hold(client, admin, "held-1")
    hold_id = placed.get_json()["hold_id"]

    erase = client.post("/v1/dsr/erase", json={"user_id": "held-1"}, headers=admin)
    delete = client.delete(f"/v1/profiles/{pid}", headers=service)

    assert placed.status_code == 201 and placed.get_json()["reason"] == "litigation"
    for response in (erase, delete):
        assert response.status_code == 409 and hold_id in response.get_json()["detail"]
    active = client.get("/v1/admin/holds", headers=admin).get_json()["items"]
    assert [h["hold_id"] for h in active] == [hold_id]
    lifted = client.delete(f"/v1/admin/holds/{hold_id}", headers=admin)
    assert lifted.status_code == 200 and lifted.get_json()["lifted_at"]
    assert client.delete(f"/v1/profiles/{pid}", headers=service).status_code == 200
    subject = runtime.hasher.hash("held-1")
    actions = [e.action for e in runtime.audit.query(subject_hash=subject)]
    assert actions.index("hold_place") < actions.index("hold_lift") < actions.index("erase")


def test_holds_are_exported_with_the_subject(client, admin, create_profile):
    create_profile("held-2")
    hold_id = _place_hold(client, admin, "held-2").get_json()["hold_id"]

    doc = json.loads(_export(client, admin, "held-2").get_data())

    assert [h["hold_id"] for h in doc["legal_holds"]] == [hold_id]
    assert "hold_place" in {e["action"] for e in doc["disclosures"]}


def test_holds_are_admin_only_and_validated(client, admin, service):
    assert _place_hold(client, service, "x").status_code == 403
    assert client.get("/v1/admin/holds", headers=service).status_code == 403
    bad = client.post("/v1/admin/holds", json={"user_id": "x"}, headers=admin)
    assert bad.status_code == 422 and "reason" in bad.get_json()["errors"]
    assert client.delete("/v1/admin/holds/hld_unknown", headers=admin).status_code == 404


def test_a_hold_may_carry_an_end_date(client, admin, clock):
    until = (datetime.now(timezone.utc) + timedelta(days=10)).isoformat()

    hold = _place_hold(client, admin, "held-3", until=until).get_json()
    clock.advance(days=11)

    assert hold["until"].endswith("Z")
    assert client.get("/v1/admin/holds", headers=admin).get_json()["items"] == []


# -- retention --------------------------------------------------------------------------------

def test_an_admin_runs_retention_now(client, admin, service, create_profile, clock):
    pid = create_profile("short-lived", retention_days=5)
    create_profile("long-lived")
    clock.advance(days=6)

    dry = client.post("/v1/admin/retention/run", json={"dry_run": True}, headers=admin)
    run = client.post("/v1/admin/retention/run", json={}, headers=admin)

    assert dry.status_code == 200 and dry.get_json()["sample_row_ids"]["learning_profiles"] == [pid]
    assert run.status_code == 200 and run.get_json()["counts"]["learning_profiles"] == 1
    assert run.get_json()["subject_keys_destroyed"] == 1
    assert client.post("/v1/dsr/erase", json={"user_id": "long-lived", "dry_run": True},
                       headers=admin).get_json()["counts"]["learning_profiles"] == 1


def test_retention_is_admin_only_and_runs_once_at_a_time(client, admin, service, runtime, clock):
    assert client.post("/v1/admin/retention/run", json={}, headers=service).status_code == 403
    held = JobLock(runtime.vault_db, "retention", clock)  # kept: on PostgreSQL, its session holds it
    held.acquire()

    busy = client.post("/v1/admin/retention/run", json={}, headers=admin)

    assert busy.status_code == 409 and "already running" in busy.get_json()["detail"]
    held.release()
    assert client.post("/v1/admin/retention/run", json={}, headers=admin).status_code == 200


# -- consents (COPPA) -------------------------------------------------------------------------

def test_a_child_without_parental_consent_is_refused_with_a_clear_message(client, service):
    response = client.post("/v1/profiles", json={"user_id": "kid-1", "birth_date": _child_birth_date()},
                           headers=service)

    problem = response.get_json()
    assert response.status_code == 422
    assert "parental consent" in problem["detail"] and "COPPA" in problem["detail"]
    assert "parental_consent" in problem["errors"]


def test_a_child_with_consent_is_created_and_withdrawal_erases(client, service, admin, runtime):
    created = client.post("/v1/profiles", json={"user_id": "kid-2", "birth_date": _child_birth_date(),
                                                "parental_consent": CONSENT}, headers=service)
    pid = created.get_json()["profile_id"]
    (consent,) = client.get(f"/v1/profiles/{pid}/consents", headers=service).get_json()["items"]

    withdrawn = client.delete(f"/v1/profiles/{pid}/consents/{consent['consent_id']}", headers=service)

    assert created.status_code == 201 and consent["method"] == "signed_form"
    assert withdrawn.status_code == 200
    assert withdrawn.get_json()["erased"] is True and withdrawn.get_json()["receipt"]["verified"] is True
    assert client.get(f"/v1/profiles/{pid}", headers=service).status_code == 404
    assert not runtime.keys.has_key(runtime.hasher.hash("kid-2"))


def test_consents_are_recorded_listed_and_exported(client, service, admin, create_profile):
    pid = create_profile("adult-1")

    granted = client.post(f"/v1/profiles/{pid}/consents", json=CONSENT, headers=service)

    assert granted.status_code == 201 and granted.get_json()["withdrawn_at"] is None
    listed = client.get(f"/v1/profiles/{pid}/consents", headers=service).get_json()["items"]
    assert [c["consent_id"] for c in listed] == [granted.get_json()["consent_id"]]
    (exported,) = json.loads(_export(client, admin, "adult-1").get_data())["consents"]
    assert exported["details"]["consenter_name"] == "Robin Parent"
    withdrawn = client.delete(f"/v1/profiles/{pid}/consents/{exported['consent_id']}", headers=service)
    assert withdrawn.status_code == 200 and withdrawn.get_json()["erased"] is False


def test_consent_routes_answer_404_for_unknown_ids(client, service, create_profile):
    pid = create_profile("adult-2")

    assert client.get("/v1/profiles/prf_unknown/consents", headers=service).status_code == 404
    assert client.post("/v1/profiles/prf_unknown/consents", json=CONSENT,
                       headers=service).status_code == 404
    assert client.delete(f"/v1/profiles/{pid}/consents/cns_unknown", headers=service).status_code == 404


def test_consent_bodies_are_validated_and_learners_may_not_touch_consents(client, service, learner_for,
                                                                          create_profile):
    pid = create_profile("adult-3")

    bad = client.post(f"/v1/profiles/{pid}/consents", json={**CONSENT, "method": "carrier_pigeon"},
                      headers=service)

    assert bad.status_code == 422 and "method" in bad.get_json()["errors"]
    assert client.get(f"/v1/profiles/{pid}/consents", headers=learner_for("adult-3")).status_code == 403


def test_withdrawing_a_held_childs_consent_is_a_conflict(client, service, admin):
    created = client.post("/v1/profiles", json={"user_id": "kid-3", "birth_date": _child_birth_date(),
                                                "parental_consent": CONSENT}, headers=service)
    pid = created.get_json()["profile_id"]
    (consent,) = client.get(f"/v1/profiles/{pid}/consents", headers=service).get_json()["items"]
    hold_id = _place_hold(client, admin, "kid-3").get_json()["hold_id"]

    response = client.delete(f"/v1/profiles/{pid}/consents/{consent['consent_id']}", headers=service)

    assert response.status_code == 409 and hold_id in response.get_json()["detail"]
    (still,) = client.get(f"/v1/profiles/{pid}/consents", headers=service).get_json()["items"]
    assert still["withdrawn_at"] is None


# -- audit ------------------------------------------------------------------------------------

def test_the_audit_trail_is_admin_only(client, admin, service, learner_for):
    assert client.get("/v1/audit", headers=service).status_code == 403
    assert client.get("/v1/audit", headers=learner_for("x")).status_code == 403
    assert client.get("/v1/audit").status_code == 401
    assert client.get("/v1/audit", headers=admin).status_code == 200


def test_audit_events_filter_by_subject_and_action(client, admin, runtime, create_profile):
    create_profile("audited-1")
    create_profile("audited-2")
    subject = runtime.hasher.hash("audited-1")

    items = client.get(f"/v1/audit?subject={subject}", headers=admin).get_json()["items"]
    creates = client.get("/v1/audit?action=create", headers=admin).get_json()["items"]

    assert items and {e["subject_hash"] for e in items} == {subject}
    assert {e["action"] for e in items} == {"create"}  # profile, session, knowledge
    assert len(creates) == 6 and {e["action"] for e in creates} == {"create"}
    assert "audited-1" not in json.dumps(items)  # user ids never reach the trail


def test_audit_events_page_with_a_cursor(client, admin, create_profile):
    for i in range(3):
        create_profile(f"paged-{i}")  # 9 events

    seen, cursor = [], None
    while True:
        url = "/v1/audit?limit=4" + (f"&cursor={cursor}" if cursor is not None else "")
        page = client.get(url, headers=admin).get_json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 9


def test_audit_events_filter_by_time(client, admin, create_profile, clock):
    create_profile("early")
    clock.advance(hours=2)
    middle = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    create_profile("late")

    since = client.get("/v1/audit", query_string={"since": middle}, headers=admin).get_json()["items"]
    until = client.get("/v1/audit", query_string={"until": middle}, headers=admin).get_json()["items"]

    assert len(since) == 3 and len(until) == 3
    assert max(e["occurred_at"] for e in until) < min(e["occurred_at"] for e in since)


@pytest.fixture
def archiving(config, keyring, clock):
    """(runtime, client, admin headers, service headers) of a runtime sealing, and so able to
    archive, every 3 audit events."""
    from twin.api.app import create_app
    from twin.runtime import Runtime

    rt = Runtime(dataclasses.replace(config, audit_seal_every=3, audit_archive_segment_events=3), keyring,
                 clock=clock)
    client = create_app(rt.config, runtime=rt).test_client()
    bearer = lambda role: {"Authorization": f"Bearer {rt.tokens.issue(role).token}"}  # noqa: E731
    yield rt, client, bearer("admin"), bearer("service")
    rt.close()


def test_a_subjects_audit_events_include_the_archived_ones_then_the_live(archiving, clock):
    rt, client, admin, service = archiving
    profile = client.post("/v1/profiles", json={"user_id": "archived-user"}, headers=service).get_json()
    client.get(f"/v1/profiles/{profile['profile_id']}", headers=service)
    client.post("/v1/profiles", json={"user_id": "someone-else"}, headers=service)
    clock.advance(days=2)
    client.get(f"/v1/profiles/{profile['profile_id']}", headers=service)
    assert rt.audit.archive_older_than(clock() - timedelta(days=1)).events >= 3
    subject = rt.hasher.hash("archived-user")
    assert [e.action for e in rt.audit.query() if e.subject_hash == subject] == ["read"]  # live: the last read

    items = client.get(f"/v1/audit?subject={subject}", headers=admin).get_json()["items"]
    assert [e["action"] for e in items] == ["create", "read", "read"]
    seen, cursor = [], None
    while True:
        page = client.get("/v1/audit", query_string={"subject": subject, "limit": 1, **(
            {"cursor": cursor} if cursor is not None else {})}, headers=admin).get_json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["seq"] for e in items]
    searched = client.post("/v1/audit/search", json={"user_id": "archived-user", "action": "create"},
                           headers=admin)
    assert [e["action"] for e in searched.get_json()["items"]] == ["create"]


@pytest.mark.parametrize("query", ["subject=not-a-hash", "action=steal", "limit=0", "limit=501",
                                   "since=yesterday", "cursor=-1", "colour=red"])
def test_bad_audit_queries_are_422(client, admin, query):
    response = client.get(f"/v1/audit?{query}", headers=admin)

    assert response.status_code == 422 and response.mimetype == "application/problem+json"


def test_retention_run_needs_no_body(client, admin):
    response = client.post("/v1/admin/retention/run", headers=admin)
    assert response.status_code == 200
    assert response.get_json()["dry_run"] is False


def test_audit_search_finds_a_users_events_by_user_id_in_the_body(client, admin, service):
    created = client.post("/v1/profiles", json={"user_id": "audited-user"}, headers=service)
    client.get(f"/v1/profiles/{created.get_json()['profile_id']}", headers=service)
    client.post("/v1/profiles", json={"user_id": "someone-else"}, headers=service)
    found = client.post("/v1/audit/search", json={"user_id": "audited-user"}, headers=admin)
    assert found.status_code == 200
    assert [e["action"] for e in found.get_json()["items"]] == ["create", "read"]
    reads = client.post("/v1/audit/search", json={"user_id": "audited-user", "action": "read"}, headers=admin)
    assert [e["action"] for e in reads.get_json()["items"]] == ["read"]
    both = client.post("/v1/audit/search", json={"user_id": "x", "subject": "a" * 64}, headers=admin)
    assert both.status_code == 422
    assert client.post("/v1/audit/search", json={"user_id": "x"}, headers=service).status_code == 403
