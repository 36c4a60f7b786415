"""A data owner's provider built from its tables' descriptors (``compliance/providers.py``):
what a subject's export, counts, erasure and a retention purge do to a database, on two
described tables (a parent holding the subject hash, a child reaching it through the parent)
and one kept on erasure."""

from __future__ import annotations

import os

import pytest

from compliance.personal_data import (PersonalTable, SubjectVia, clear, json_text, key, sealed,
                                      subject_hash, timestamp)
from compliance.providers import SUBJECTS_PER_STATEMENT, TableProvider
from compliance.subject_keys import SubjectCipher

SCHEMA = """
CREATE TABLE owners (owner_id TEXT PRIMARY KEY, user_id_hash TEXT NOT NULL, name TEXT NOT NULL,
                     created_at TEXT NOT NULL);
CREATE TABLE notes (note_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, body BLOB, tags TEXT);
CREATE TABLE visits (visit_id TEXT PRIMARY KEY, user_id_hash TEXT NOT NULL, seen_at TEXT NOT NULL);
"""

OWNERS = PersonalTable(
    database="test", name="owners", pk="owner_id", order_by="name", export_as="owners",
    columns=(key("owner_id"), subject_hash("user_id_hash"), clear("name"), timestamp("created_at")),
    row_id=("owner_id",), subject_hash_column="user_id_hash", created="created_at")
NOTES = PersonalTable(
    database="test", name="notes", pk="note_id", export_as="notes",
    columns=(key("note_id"), key("owner_id"), sealed("body"), json_text("tags", null_as=[])),
    row_id=("note_id",), subject_hash_column="user_id_hash", via=SubjectVia(parent="owners", key="owner_id"))
VISITS = PersonalTable(
    database="test", name="visits", pk="visit_id",
    columns=(key("visit_id"), subject_hash("user_id_hash"), timestamp("seen_at")),
    row_id=("visit_id",), subject_hash_column="user_id_hash", erase=False,
    kept_reason="a test table kept on erasure")

ALICE, BOB = "a" * 64, "b" * 64
CIPHER = SubjectCipher(os.urandom(32))


@pytest.fixture
def db(database_with):
    return database_with(SCHEMA)


@pytest.fixture
def provider(db) -> TableProvider:
    return TableProvider(db, [NOTES, VISITS, OWNERS])  # children before parents


def add_owner(db, owner_id: str, subject: str, name: str, created_at: str) -> None:
    db.execute("INSERT INTO owners (owner_id, user_id_hash, name, created_at) VALUES (?, ?, ?, ?)",
               (owner_id, subject, name, created_at))


def add_note(db, note_id: str, owner_id: str, body: object, tags: str | None = None) -> None:
    db.execute("INSERT INTO notes (note_id, owner_id, body, tags) VALUES (?, ?, ?, ?)",
               (note_id, owner_id, CIPHER.seal("notes", "body", note_id, body), tags))


@pytest.fixture
def alice_and_bob(db):
    for owner_id, name, day in (("o-3", "carol", 3), ("o-1", "ann", 1), ("o-2", "bea", 2)):
        add_owner(db, owner_id, ALICE, name, f"2026-01-0{day}T00:00:00.000000Z")
    add_note(db, "n-2", "o-1", {"text": "second"}, '["b"]')
    add_note(db, "n-1", "o-2", {"text": "first"})
    add_note(db, "n-3", "o-3", "third", "[]")
    add_owner(db, "o-bob", BOB, "bob", "2026-01-01T00:00:00.000000Z")
    add_note(db, "n-bob", "o-bob", {"text": "bob's"})
    for visit_id, subject in (("v-1", ALICE), ("v-2", BOB)):
        db.execute("INSERT INTO visits (visit_id, user_id_hash, seen_at) VALUES (?, ?, ?)",
                   (visit_id, subject, "2026-01-05T00:00:00.000000Z"))


def exported(provider: TableProvider, subject: str, reader, batch: int = 10) -> list[tuple[str, list]]:
    return [(section, list(batches)) for section, batches in provider.export(subject, reader, batch)]


def test_an_export_is_the_subjects_rows_parents_first_in_batches_decoded(provider, alice_and_bob):
    assert exported(provider, ALICE, CIPHER, batch=2) == [
        ("owners", [[{"owner_id": "o-1", "name": "ann", "created_at": "2026-01-01T00:00:00.000000Z"},
                     {"owner_id": "o-2", "name": "bea", "created_at": "2026-01-02T00:00:00.000000Z"}],
                    [{"owner_id": "o-3", "name": "carol", "created_at": "2026-01-03T00:00:00.000000Z"}]]),
        ("notes", [[{"note_id": "n-1", "owner_id": "o-2", "body": {"text": "first"}, "tags": []},
                    {"note_id": "n-2", "owner_id": "o-1", "body": {"text": "second"}, "tags": ["b"]}],
                   [{"note_id": "n-3", "owner_id": "o-3", "body": "third", "tags": []}]]),
    ]
    assert provider.export_counts(ALICE) == {"owners": 3, "notes": 3}
    assert list(provider.export_counts(BOB).items()) == [("owners", 1), ("notes", 1)]


def test_without_a_key_the_export_holds_no_rows(provider, alice_and_bob):
    assert exported(provider, ALICE, None) == [("owners", []), ("notes", [])]


def test_counts_are_per_erasable_table_and_up_to_a_time_only_where_a_table_tells_it(provider, alice_and_bob):
    assert provider.count(ALICE) == {"notes": 3, "owners": 3}
    # Up to and including the second owner's creation; notes cannot tell when they were stored.
    assert provider.count(ALICE, created_before="2026-01-02T00:00:00.000000Z") == {"notes": 0, "owners": 2}
    assert provider.count("c" * 64) == {"notes": 0, "owners": 0}


def test_an_erasure_deletes_the_subjects_rows_children_first_and_keeps_the_kept_table(
        provider, db, alice_and_bob):
    ticks = []

    deleted = provider.erase([ALICE], tick=lambda: ticks.append(db.query_one("SELECT 1")[0]))

    assert deleted == {"notes": 3, "owners": 3} and len(ticks) == 2
    assert provider.count(ALICE) == {"notes": 0, "owners": 0}
    assert provider.count(BOB) == {"notes": 1, "owners": 1}
    assert sorted(r[0] for r in db.query("SELECT visit_id FROM visits")) == ["v-1", "v-2"]


def test_an_erasure_up_to_a_time_deletes_only_rows_stored_by_then(provider, db, alice_and_bob):
    deleted = provider.erase([ALICE, BOB], created_before="2026-01-02T00:00:00.000000Z")

    assert deleted == {"notes": 0, "owners": 3}
    assert [r[0] for r in db.query("SELECT owner_id FROM owners")] == ["o-3"]


def test_an_erasure_of_no_one_deletes_nothing_and_still_ticks_per_table(provider, alice_and_bob):
    ticks = []

    assert provider.erase([], tick=lambda: ticks.append(1)) == {"notes": 0, "owners": 0}
    assert len(ticks) == 2 and provider.count(ALICE) == {"notes": 3, "owners": 3}
    assert provider.erase([]) == {"notes": 0, "owners": 0}


def test_an_erasure_of_more_subjects_than_one_statement_binds_deletes_them_all(provider, db):
    subjects = [f"{i:064x}" for i in range(SUBJECTS_PER_STATEMENT + 2)]
    for i, subject in enumerate(subjects):
        add_owner(db, f"o-{i}", subject, "n", "2026-01-01T00:00:00.000000Z")
    add_owner(db, "o-kept", BOB, "bob", "2026-01-01T00:00:00.000000Z")

    assert provider.erase(subjects) == {"notes": 0, "owners": len(subjects)}
    assert [r[0] for r in db.query("SELECT owner_id FROM owners")] == ["o-kept"]


def test_a_retention_purge_deletes_one_batch_of_expired_rows_at_a_time(provider, db, alice_and_bob):
    expired = "SELECT owner_id FROM owners WHERE created_at <= :cutoff ORDER BY owner_id"
    params = {"cutoff": "2026-01-02T00:00:00.000000Z", "batch": 2}

    assert [provider.purge_expired(OWNERS, expired, params) for _ in range(3)] == [2, 1, 0]
    assert sorted(r[0] for r in db.query("SELECT owner_id FROM owners")) == ["o-3"]


def test_a_provider_names_its_database_and_tables(provider):
    assert repr(provider) == "TableProvider('test', ['notes', 'visits', 'owners'])"
    assert provider.holds_subject_keys is False


def test_an_erasure_of_many_subjects_costs_one_statement_per_table_and_chunk(provider, db):
    def statements_to_erase(count: int, first: int) -> int:
        subjects = [f"{first + i:064x}" for i in range(count)]
        for subject in subjects:
            add_owner(db, subject[-12:], subject, "n", "2026-01-01T00:00:00.000000Z")
        before = db.statement_counts()
        assert provider.erase(subjects)["owners"] == count
        return (db.statement_counts() - before).statements

    db.enable_statement_counting()
    one_chunk = statements_to_erase(1, first=0)
    # Two chunks of subjects: one more DELETE for each of the two erasable tables.
    assert statements_to_erase(SUBJECTS_PER_STATEMENT + 2, first=1000) == one_chunk + 2
