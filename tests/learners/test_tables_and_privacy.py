"""The learner tables' descriptors and the learner domain's privacy provider, called directly."""

from __future__ import annotations

import pytest

from twin.learners.holds import LegalHolds
from twin.learners.tables import KNOWLEDGE, LEARNER_TABLES, PROFILES, SESSIONS


def test_statements_come_from_the_descriptor_and_name_only_described_columns():
    assert PROFILES.insert_sql(("profile_id", "user_id_hash")) == \
        "INSERT INTO learning_profiles (profile_id, user_id_hash) VALUES (?, ?)"
    assert SESSIONS.update_sql(("end_time",), "session_id", bump="row_version") == \
        "UPDATE learning_sessions SET end_time = ?, row_version = row_version + 1 WHERE session_id = ?"
    assert KNOWLEDGE.row_id_sql == "profile_id || '/' || knowledge_domain || '/' || topic"
    with pytest.raises(Exception, match="not among its columns"):
        PROFILES.insert_sql(("profile_id", "user_id"))


def test_live_and_expired_are_one_rule_read_both_ways():
    assert SESSIONS.live_where("s") == "s.start_time > :sessions_cutoff"
    assert SESSIONS.expired_where() == "start_time <= :sessions_cutoff"
    assert PROFILES.live_where() == "ttl_expires_at > :now" and PROFILES.expired_where() == "ttl_expires_at <= :now"


def test_null_reads_as_a_fresh_default_every_time():
    row = {c: None for c in PROFILES.column_names}
    row["profile_id"] = "prf_x"

    first, second = PROFILES.decode(row, None), PROFILES.decode(row, None)
    first["knowledge_domains"].append("mutated")

    assert second["knowledge_domains"] == [] and second["encrypted_data"] == {}


def test_the_learner_provider_exports_parents_first_and_erases_children_first(runtime, make_subject):
    subject = make_subject("provided", sessions=1, knowledge=1, child=True)
    (provider,) = [p for p in runtime.providers if p.db is runtime.twin_db]
    reader = runtime.keys.reader(subject.subject_hash)

    sections = [(name, list(rows)) for name, rows in provider.export(subject.subject_hash, reader, 10)]

    assert [name for name, _ in sections] == ["profiles", "legal_holds", "consents", "sessions", "knowledge_states",
                                              "evidence"]
    assert [t.name for t in provider.tables] == [t.name for t in LEARNER_TABLES]
    assert provider.count(subject.subject_hash) == {"evidence": 1, "knowledge_states": 1, "learning_sessions": 1,
                                                    "consents": 1, "legal_holds": 0, "learning_profiles": 1}
    # Only tables that know when a row was stored can be erased up to a time; the rest cascade.
    assert provider.count(subject.subject_hash, created_before="2000-01-01T00:00:00.000000Z") == \
        {"evidence": 0, "knowledge_states": 0, "learning_sessions": 0, "consents": 0, "legal_holds": 0,
         "learning_profiles": 0}
    assert provider.erase([subject.subject_hash])["learning_profiles"] == 1
    assert set(provider.count(subject.subject_hash).values()) == {0}


def test_held_subjects_are_those_with_a_hold_in_force(runtime, clock):
    holds = LegalHolds(runtime.twin_db, clock)
    open_hold = holds.place("a" * 64, "open", None, "tok")
    holds.place("b" * 64, "ended", clock(), "tok")
    lifted = holds.place("c" * 64, "lifted", None, "tok")
    holds.lift(lifted["hold_id"], "tok")

    assert holds.held_subjects() == ["a" * 64]
    assert holds.active_hold("a" * 64) == open_hold
