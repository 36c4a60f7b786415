"""Legal holds: erasure and purges wait for a held subject until the hold is lifted or ends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compliance.audit import Actor
from compliance.legal_hold import HoldNotFoundError, SubjectOnHoldError

ADMIN = Actor("tok_test_admin", "admin")


def test_a_placed_hold_blocks_erasure_and_names_itself(runtime, make_subject):
    subject = make_subject("held")
    hold = runtime.holds.place(subject.subject_hash, "litigation 2030-17", None, "tok_admin")

    with pytest.raises(SubjectOnHoldError) as raised:
        runtime.subject_requests.erase(ADMIN, None, user_id=subject.user_id)

    assert raised.value.hold_id == hold["hold_id"] and hold["hold_id"] in str(raised.value)
    assert str(raised.value) == f"subject is under legal hold {hold['hold_id']} (no end date)"
    assert raised.value.until is None
    assert hold["reason"] == "litigation 2030-17" and hold["placed_by"] == "tok_admin"
    assert hold["lifted_at"] is None and hold["until"] is None


def test_lifting_the_hold_allows_erasure(runtime, make_subject):
    subject = make_subject("lifted")
    hold = runtime.holds.place(subject.subject_hash, "audit", None, "tok_admin")

    lifted, lifted_subject = runtime.holds.lift(hold["hold_id"], "tok_admin2")

    assert lifted_subject == subject.subject_hash
    assert lifted["lifted_by"] == "tok_admin2" and lifted["lifted_at"].endswith("Z")
    assert runtime.holds.active_hold(subject.subject_hash) is None
    assert runtime.subject_requests.erase(ADMIN, None, user_id=subject.user_id).counts["learning_profiles"] == 1


def test_a_hold_with_an_end_date_expires_by_itself(runtime, make_subject, clock):
    subject = make_subject("until")
    hold = runtime.holds.place(subject.subject_hash, "retention review", clock() + timedelta(days=30),
                               "tok_admin")

    with pytest.raises(SubjectOnHoldError, match=" until ") as raised:
        runtime.subject_requests.erase(ADMIN, None, user_id=subject.user_id)
    assert raised.value.until == hold["until"]
    assert str(raised.value) == f"subject is under legal hold {hold['hold_id']} until {hold['until']}"
    clock.advance(days=31)

    assert runtime.holds.list_active() == []
    assert runtime.subject_requests.erase(ADMIN, None, user_id=subject.user_id).verified
    assert hold["until"].endswith("Z")


def test_a_hold_ending_in_the_past_is_not_in_force(runtime, make_subject, clock):
    subject = make_subject("past")
    runtime.holds.place(subject.subject_hash, "typo", clock() - timedelta(days=1), "tok_admin")

    assert runtime.holds.active_hold(subject.subject_hash) is None


def test_lifting_an_unknown_or_lifted_hold_fails(runtime, make_subject):
    subject = make_subject("twice-lifted")
    hold = runtime.holds.place(subject.subject_hash, "x", None, "tok_admin")
    runtime.holds.lift(hold["hold_id"], "tok_admin")

    with pytest.raises(HoldNotFoundError):
        runtime.holds.lift(hold["hold_id"], "tok_admin")
    with pytest.raises(HoldNotFoundError):
        runtime.holds.lift("hld_unknown", "tok_admin")


def test_active_holds_are_listed_oldest_first(runtime, make_subject, clock):
    first, second = make_subject("h1"), make_subject("h2")
    a = runtime.holds.place(first.subject_hash, "a", None, "tok_admin")
    clock.advance(seconds=1)
    b = runtime.holds.place(second.subject_hash, "b", None, "tok_admin")
    runtime.holds.place(second.subject_hash, "over", clock() - timedelta(seconds=1), "tok_admin")

    assert [h["hold_id"] for h in runtime.holds.list_active()] == [a["hold_id"], b["hold_id"]]


def test_a_subject_without_a_profile_can_be_held(runtime):
    subject = runtime.hasher.hash("not-yet-stored")
    runtime.holds.place(subject, "preservation notice", None, "tok_admin")

    with pytest.raises(SubjectOnHoldError):
        runtime.subject_requests.erase(ADMIN, None, user_id="not-yet-stored")


def test_holds_are_part_of_the_subjects_export(runtime, make_subject):
    subject = make_subject("exported-hold", sessions=0, knowledge=0)
    hold = runtime.holds.place(subject.subject_hash, "litigation", None, "tok_admin")

    (exported,) = runtime.dsr.export(subject.subject_hash)["legal_holds"]

    assert exported == hold
