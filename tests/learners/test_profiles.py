"""ProfileService, called directly: what it stores, what it serves, to whom, and what it audits."""

from __future__ import annotations

from datetime import date

import pytest

from compliance.audit import Actor
from twin.learners.errors import DuplicateProfileError, NotFoundError, PreconditionFailedError
from twin.learners.tables import PROFILES

SERVICE = Actor("tok_learners_service", "service")


def _create(runtime, user_id="u-profile", **fields):
    return runtime.profiles.create(SERVICE, "req-create", {"user_id": user_id, **fields})


def test_a_created_profile_reads_back_and_its_row_holds_only_ciphertext_and_the_hash(runtime):
    view, etag = _create(runtime, learning_style="visual", knowledge_domains=["algebra"],
                         learning_goals=["pass"], privacy_settings={"share": False},
                         personal={"name": "Ada Lovelace"}, birth_date=date(1990, 5, 1))

    assert runtime.profiles.get(SERVICE, None, view["profile_id"]) == (view, etag)
    row = runtime.twin_db.query_one(f"SELECT {PROFILES.select_list()} FROM learning_profiles")
    assert row["user_id_hash"] == runtime.hasher.hash("u-profile") != "u-profile"
    for column in PROFILES.sealed_columns:
        assert isinstance(row[column], bytes), column
    stored = b"".join(bytes(row[c]) for c in PROFILES.sealed_columns)
    for plain in (b"visual", b"algebra", b"pass", b"Ada Lovelace", b"1990-05-01"):
        assert plain not in stored
    assert (view["personal"], view["birth_date"]) == ({"name": "Ada Lovelace"}, "1990-05-01")


def test_absent_fields_read_as_their_descriptor_defaults(runtime):
    view, _ = _create(runtime)

    assert (view["learning_style"], view["knowledge_domains"], view["learning_goals"],
            view["privacy_settings"], view["personal"], view["birth_date"]) == (None, [], [], {}, {}, None)
    assert runtime.profiles.get(SERVICE, None, view["profile_id"])[0] == view


def test_a_second_profile_for_the_same_user_is_refused(runtime):
    _create(runtime)
    with pytest.raises(DuplicateProfileError):
        _create(runtime)


def test_a_learner_restriction_hides_other_subjects_profiles_without_auditing_a_read(runtime):
    mine, _ = _create(runtime, user_id="me")
    theirs, _ = _create(runtime, user_id="them")
    me = runtime.hasher.hash("me")

    assert runtime.profiles.get(SERVICE, None, mine["profile_id"], restricted_to=me)[0] == mine
    with pytest.raises(NotFoundError):
        runtime.profiles.get(SERVICE, "req-peek", theirs["profile_id"], restricted_to=me)
    assert [e.request_id for e in runtime.audit.query(action="read")] == [None]


def test_every_read_and_write_is_audited_with_the_subject_and_the_request(runtime):
    view, etag = _create(runtime)
    runtime.profiles.update(SERVICE, "req-update", view["profile_id"], {"learning_style": "aural"}, etag)
    runtime.profiles.lookup(SERVICE, "req-lookup", "u-profile")

    events = runtime.audit.query(subject_hash=runtime.hasher.hash("u-profile"))
    assert [(e.action, e.request_id, e.resource) for e in events] == [
        ("create", "req-create", f"profile:{view['profile_id']}"),
        ("update", "req-update", f"profile:{view['profile_id']}"),
        ("read", "req-lookup", f"profile:{view['profile_id']}")]
    assert events[1].details == {"fields": ["learning_style"]}


def test_an_update_needs_the_current_etag_and_makes_a_new_one(runtime):
    view, etag = _create(runtime, personal={"name": "Old"})

    updated, new_etag = runtime.profiles.update(SERVICE, None, view["profile_id"],
                                                {"personal": {"name": "New"}, "knowledge_domains": None}, etag)

    assert new_etag != etag
    assert (updated["personal"], updated["knowledge_domains"]) == ({"name": "New"}, [])
    with pytest.raises(PreconditionFailedError):
        runtime.profiles.update(SERVICE, None, view["profile_id"], {"learning_style": "x"}, etag)


def test_an_expired_profile_is_not_served(runtime, clock):
    view, _ = _create(runtime, retention_days=10)
    clock.advance(days=11)

    with pytest.raises(NotFoundError):
        runtime.profiles.get(SERVICE, None, view["profile_id"])
    with pytest.raises(NotFoundError):
        runtime.profiles.lookup(SERVICE, None, "u-profile")
