"""COPPA: no child's profile without a recorded parental consent; withdrawal erases the child."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from compliance.audit import Actor
from compliance.consent import ConsentError, ConsentRequiredError, ParentalConsent, age_on, is_child
from compliance.legal_hold import SubjectOnHoldError
from twin.learners.consents import insert_consent
from twin.learners.errors import NotFoundError

SERVICE = Actor("tok_test_service", "service")


@pytest.mark.parametrize("birth, today, age", [
    (date(2010, 6, 15), date(2023, 6, 14), 12),
    (date(2010, 6, 15), date(2023, 6, 15), 13),
    (date(2012, 2, 29), date(2025, 2, 28), 12),
    (date(2012, 2, 29), date(2025, 3, 1), 13),
])
def test_age_counts_completed_years(birth, today, age):
    assert age_on(birth, today) == age


def test_coppa_applies_under_thirteen_only():
    today = date(2030, 5, 1)
    assert is_child(date(2017, 5, 2), today)
    assert not is_child(date(2017, 5, 1), today)
    assert not is_child(None, today)


def _child_profile(user_id: str, today: date, consent: dict | None) -> dict:
    data = {"user_id": user_id, "birth_date": date(today.year - 8, 3, 3), "personal": {"nick": "kiddo"}}
    if consent:
        data["parental_consent"] = consent
    return data


def test_a_child_profile_without_consent_is_refused_and_nothing_is_stored(runtime):
    with pytest.raises(ConsentRequiredError, match="parental consent"):
        runtime.profiles.create(SERVICE, None, _child_profile("kid", runtime.clock().date(), None))

    assert runtime.twin_db.query_one("SELECT count(*) FROM learning_profiles")[0] == 0


def test_a_child_profile_with_consent_stores_the_consent_sealed(runtime, consent_body):
    view, _ = runtime.profiles.create(SERVICE, None, _child_profile(
        "kid", runtime.clock().date(), consent_body("Morgan Guardian")))

    row = runtime.twin_db.query_one("SELECT * FROM consents WHERE profile_id = ?", (view["profile_id"],))
    assert (row["consent_type"], row["method"], row["withdrawn_at"]) == ("parental", "signed_form", None)
    assert b"Morgan" not in bytes(row["details"])  # sealed, not JSON
    subject = runtime.hasher.hash("kid")
    sealer = runtime.keys.writer(subject)
    details = sealer.open("consents", "details", row["consent_id"], row["details"])
    assert details["consenter_name"] == "Morgan Guardian" and details["consenter_relationship"] == "parent"
    assert [e.action for e in runtime.audit.query(subject_hash=subject)] == ["create", "consent_grant"]


def test_consents_appear_decrypted_in_the_export(runtime, make_subject):
    subject = make_subject("exported-kid", child=True, sessions=0, knowledge=0)

    (consent,) = runtime.dsr.export(subject.subject_hash)["consents"]

    assert consent["consent_id"] == subject.consent_ids[0]
    assert consent["details"]["consenter_name"] == f"Parent-{subject.marker}"
    assert consent["details"]["consenter_contact"] == "pat@example.org"
    assert consent["granted_at"].endswith("Z") and consent["withdrawn_at"] is None


def test_withdrawing_a_childs_only_consent_erases_the_child(runtime, make_subject):
    child = make_subject("withdrawn-kid", child=True)
    other = make_subject("other-kid", child=True)

    result = runtime.subject_requests.withdraw_consent(SERVICE, "req-w", child.profile_id, child.consent_ids[0])

    assert result["erased"] is True and result["receipt"]["verified"] is True
    assert result["receipt"]["counts"]["learning_profiles"] == 1
    assert set(runtime.dsr.counts(child.subject_hash).values()) == {0}
    assert not runtime.keys.has_key(child.subject_hash)
    actions = [e.action for e in runtime.audit.query(subject_hash=child.subject_hash)]
    assert actions[-2:] == ["erase", "consent_withdraw"]  # the erasure is the withdrawal
    assert runtime.dsr.counts(other.subject_hash)["learning_profiles"] == 1


def test_a_child_with_another_active_consent_is_kept(runtime, make_subject, consent_body):
    child = make_subject("two-parents", child=True)
    second = runtime.consents.grant(SERVICE, None, child.profile_id, consent_body("Second Parent"))

    result = runtime.subject_requests.withdraw_consent(SERVICE, None, child.profile_id, child.consent_ids[0])

    assert result["erased"] is False and result["receipt"] is None
    listed = runtime.consents.list(SERVICE, None, child.profile_id)
    assert [(c["consent_id"], c["withdrawn_at"] is None) for c in listed] == \
        [(child.consent_ids[0], False), (second["consent_id"], True)]
    last = runtime.subject_requests.withdraw_consent(SERVICE, None, child.profile_id, second["consent_id"])
    assert last["erased"] is True


def test_an_adults_withdrawal_is_recorded_without_erasure(runtime, make_subject, consent_body):
    adult = make_subject("adult", child=False)
    granted = runtime.consents.grant(SERVICE, None, adult.profile_id, consent_body())

    result = runtime.subject_requests.withdraw_consent(SERVICE, None, adult.profile_id, granted["consent_id"])

    assert result["erased"] is False and result["withdrawn_at"].endswith("Z")
    assert runtime.dsr.counts(adult.subject_hash)["learning_profiles"] == 1


def test_withdrawing_an_unknown_or_already_withdrawn_consent_is_not_found(runtime, make_subject,
                                                                          consent_body):
    adult = make_subject("adult-2")
    granted = runtime.consents.grant(SERVICE, None, adult.profile_id, consent_body())
    runtime.subject_requests.withdraw_consent(SERVICE, None, adult.profile_id, granted["consent_id"])

    with pytest.raises(NotFoundError):
        runtime.subject_requests.withdraw_consent(SERVICE, None, adult.profile_id, granted["consent_id"])
    with pytest.raises(NotFoundError):
        runtime.subject_requests.withdraw_consent(SERVICE, None, adult.profile_id, "cns_nope")


def test_a_consent_cannot_be_withdrawn_through_another_profile(runtime, make_subject):
    child = make_subject("kid-a", child=True)
    other = make_subject("kid-b", child=True)

    with pytest.raises(NotFoundError):
        runtime.subject_requests.withdraw_consent(SERVICE, None, other.profile_id, child.consent_ids[0])
    assert runtime.dsr.counts(child.subject_hash)["learning_profiles"] == 1


def test_a_held_childs_withdrawal_is_refused_whole(runtime, make_subject):
    child = make_subject("held-kid", child=True)
    hold = runtime.holds.place(child.subject_hash, "court order", None, "tok_admin")

    with pytest.raises(SubjectOnHoldError) as raised:
        runtime.subject_requests.withdraw_consent(SERVICE, None, child.profile_id, child.consent_ids[0])

    assert raised.value.hold_id == hold["hold_id"]
    (consent,) = runtime.consents.list(SERVICE, None, child.profile_id)
    assert consent["withdrawn_at"] is None  # nothing half-done: retry once the hold is lifted
    runtime.holds.lift(hold["hold_id"], "tok_admin")
    assert runtime.subject_requests.withdraw_consent(SERVICE, None, child.profile_id, child.consent_ids[0])["erased"]


def test_making_an_adult_a_child_needs_an_active_consent(runtime, make_subject, consent_body):
    adult = make_subject("turns-out-young")
    young = date(runtime.clock().date().year - 7, 1, 1)

    with pytest.raises(ConsentRequiredError):
        runtime.profiles.update(SERVICE, None, adult.profile_id, {"birth_date": young}, None)

    runtime.consents.grant(SERVICE, None, adult.profile_id, consent_body())
    view, _ = runtime.profiles.update(SERVICE, None, adult.profile_id, {"birth_date": young}, None)
    assert view["birth_date"] == young.isoformat()


def test_an_unknown_consent_method_is_refused(runtime, make_subject):
    adult = make_subject("odd-method")
    consent = ParentalConsent("A", "parent", None, "carrier_pigeon", "2030-01-01T00:00:00.000000Z")
    sealer = runtime.keys.writer(adult.subject_hash)

    with pytest.raises(ConsentError, match="^method must be one of signed_form, credit_card_verification, "
                       "video_call, government_id, knowledge_based_questions, email_plus$"):
        with runtime.twin_db.transaction() as conn:
            insert_consent(conn, sealer, consent_id="cns_x", profile_id=adult.profile_id,
                           subject_hash=adult.subject_hash, consent=consent,
                           granted_at=datetime.now(timezone.utc).isoformat())


def test_a_failed_erasure_leaves_the_childs_consent_in_force_so_a_retry_works(runtime, make_subject,
                                                                               monkeypatch):
    from twin.storage import DatabaseBusyError

    child = make_subject("busy-kid", child=True)
    real_erase = runtime.dsr.erase

    def busy(*args, **kwargs):
        raise DatabaseBusyError("digital_twin: database stayed busy")

    monkeypatch.setattr(runtime.dsr, "erase", busy)
    with pytest.raises(DatabaseBusyError):
        runtime.subject_requests.withdraw_consent(SERVICE, None, child.profile_id, child.consent_ids[0])
    (consent,) = runtime.consents.list(SERVICE, None, child.profile_id)
    assert consent["withdrawn_at"] is None  # the child is not left stored without consent

    monkeypatch.setattr(runtime.dsr, "erase", real_erase)
    assert runtime.subject_requests.withdraw_consent(SERVICE, None, child.profile_id, child.consent_ids[0])["erased"]
    assert set(runtime.dsr.counts(child.subject_hash).values()) == {0}


def test_the_sealed_details_of_a_consent_are_who_consented_and_when():
    consent = ParentalConsent("Morgan Guardian", "parent", "pat@example.org", "signed_form",
                              "2030-01-01T00:00:00.000000Z")

    assert consent.sealed_details() == {"consenter_name": "Morgan Guardian", "consenter_relationship": "parent",
                                        "consenter_contact": "pat@example.org",
                                        "obtained_at": "2030-01-01T00:00:00.000000Z"}
