"""SubjectRequests, called directly: one way to name the subject, check the learner-own rule and
audit, for export, erasure, holds, consent withdrawal and the record of disclosures."""

from __future__ import annotations

import json

import pytest

from compliance.audit import Actor
from compliance.legal_hold import SubjectOnHoldError
from twin.learners.errors import NotFoundError

ADMIN = Actor("tok_learners_admin", "admin")
LEARNER = Actor("tok_learners_learner", "learner")


def test_an_export_is_checked_before_it_starts_and_audited_with_its_counts(runtime, make_subject):
    subject = make_subject("exporter", sessions=2, knowledge=1)
    other = runtime.hasher.hash("someone-else")

    with pytest.raises(NotFoundError):
        runtime.subject_requests.export(LEARNER, "req-1", subject.user_id, restricted_to=other)
    doc = json.loads("".join(runtime.subject_requests.export(
        LEARNER, "req-2", subject.user_id, restricted_to=subject.subject_hash)))

    assert len(doc["sessions"]) == 2 and doc["profiles"][0]["profile_id"] == subject.profile_id
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="export")
    assert (event.request_id, event.actor_role) == ("req-2", "learner")
    assert event.details == {"profiles": 1, "legal_holds": 0, "consents": 0, "sessions": 2,
                             "knowledge_states": 1, "evidence": 1, "thread_contexts": 0,
                             "user_preferences": 0}


def test_erasure_names_its_subject_by_user_id_or_profile_id(runtime, make_subject):
    by_user, by_profile = make_subject("by-user"), make_subject("by-profile")

    first = runtime.subject_requests.erase(ADMIN, "req-u", user_id=by_user.user_id)
    second = runtime.subject_requests.erase(ADMIN, "req-p", profile_id=by_profile.profile_id)

    assert first.verified and second.verified
    assert [e.request_id for e in runtime.audit.query(action="erase")] == ["req-u", "req-p"]
    with pytest.raises(NotFoundError):  # the profile is gone: there is no subject to name by it
        runtime.subject_requests.erase(ADMIN, None, profile_id=by_profile.profile_id)
    with pytest.raises(ValueError):
        runtime.subject_requests.erase(ADMIN, None, user_id="x", profile_id=by_user.profile_id)


def test_a_dry_run_counts_and_is_not_audited(runtime, make_subject):
    subject = make_subject("dry-runner", sessions=3)

    receipt = runtime.subject_requests.erase(ADMIN, None, user_id=subject.user_id, dry_run=True)

    assert receipt.counts["learning_sessions"] == 3 and runtime.audit.query(action="erase") == []


def test_holds_are_placed_and_lifted_as_audited_requests_and_block_erasure_meanwhile(runtime, make_subject):
    subject = make_subject("held-learner")

    hold = runtime.subject_requests.place_hold(ADMIN, "req-hold", subject.user_id, "litigation", None)
    with pytest.raises(SubjectOnHoldError):
        runtime.subject_requests.erase(ADMIN, None, user_id=subject.user_id)
    assert runtime.subject_requests.active_holds() == [hold]
    runtime.subject_requests.lift_hold(ADMIN, "req-lift", hold["hold_id"])

    events = runtime.audit.query(subject_hash=subject.subject_hash)
    assert [(e.action, e.request_id, e.resource) for e in events if e.action.startswith("hold")] == [
        ("hold_place", "req-hold", f"hold:{hold['hold_id']}"), ("hold_lift", "req-lift", f"hold:{hold['hold_id']}")]
    assert runtime.subject_requests.erase(ADMIN, None, user_id=subject.user_id).verified


def test_withdrawing_a_childs_last_consent_is_an_erasure(runtime, make_subject):
    child = make_subject("small-one", child=True)

    result = runtime.subject_requests.withdraw_consent(ADMIN, "req-w", child.profile_id, child.consent_ids[0])

    assert result["erased"] and result["receipt"]["verified"]
    actions = [e.action for e in runtime.audit.query(subject_hash=child.subject_hash)]
    assert actions[-2:] == ["erase", "consent_withdraw"]


def test_the_record_of_disclosures_pages_by_subject_named_by_user_id_or_hash(runtime, make_subject):
    subject = make_subject("disclosed", sessions=0, knowledge=0)
    for _ in range(3):
        runtime.profiles.get(ADMIN, None, subject.profile_id)

    page = runtime.subject_requests.disclosures({"limit": 2}, user_id=subject.user_id)
    rest = runtime.subject_requests.disclosures({"limit": 10, "cursor": page["next_cursor"]},
                                                subject_hash=subject.subject_hash)

    assert len(page["items"]) == 2 and page["next_cursor"] == page["items"][-1]["seq"]
    assert {e["subject_hash"] for e in page["items"] + rest["items"]} == {subject.subject_hash}
    assert rest["next_cursor"] is None and len(page["items"] + rest["items"]) == 4  # create + 3 reads
