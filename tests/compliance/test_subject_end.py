"""The one way a subject's data ends (erasure and retention): every row of theirs goes from every
database, their data key with them, and this process forgets both: no key of an ended subject
stays in its memory."""

from __future__ import annotations

from compliance.audit import Actor

SERVICE = Actor("tok_test_service", "service")


def remembered_keys(runtime) -> list[str]:
    """The subjects whose unwrapped data key this process holds in memory."""
    return list(runtime.keys._remembered)  # noqa: SLF001 - what a memory dump would find


def test_an_ended_subjects_key_leaves_memory_with_the_vault_row(runtime, make_subject):
    ended = make_subject("ended", sessions=1, knowledge=0)
    staying = make_subject("staying", sessions=1, knowledge=0)
    for subject in (ended, staying):
        runtime.profiles.get(SERVICE, None, subject.profile_id)
    assert {ended.subject_hash, staying.subject_hash} <= set(remembered_keys(runtime))

    runtime.dsr.erase(ended.subject_hash)

    assert ended.subject_hash not in remembered_keys(runtime)
    assert staying.subject_hash in remembered_keys(runtime)  # only the ended subject's goes

