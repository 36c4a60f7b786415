"""The personal-table descriptor (``compliance/personal_data.py``): what a declaration must say,
the statements it generates (run here on a real database), and how it decodes stored rows for
the owner's views and the DSR export."""

from __future__ import annotations

import os
import sys

import pytest

from compliance.personal_data import (Kind, PersonalTable, RegistryError, Retention, SubjectVia, clear,
                                      json_text, key, other, sealed, subject_hash, subject_params,
                                      timestamp)
from compliance.subject_keys import SubjectCipher

SCHEMA = """
CREATE TABLE people (person_id TEXT PRIMARY KEY, user_id_hash TEXT NOT NULL, nick TEXT,
                     profile BLOB, secret BLOB, prefs TEXT, version INTEGER NOT NULL DEFAULT 0,
                     ends_at TEXT NOT NULL);
CREATE TABLE marks (person_id TEXT NOT NULL, topic TEXT NOT NULL, score BLOB, marked_at TEXT NOT NULL,
                    PRIMARY KEY (person_id, topic));
"""

def people() -> PersonalTable:
    return PersonalTable(
        database="test", name="people", pk="person_id",
        columns=(key("person_id"), subject_hash("user_id_hash"), clear("nick"),
                 sealed("profile", null_as={}, merged=True), sealed("secret", exported=False, why="kept from the export"),
                 json_text("prefs", null_as=[]), other("version", why="a row version"), timestamp("ends_at")),
        row_id=("person_id",), subject_hash_column="user_id_hash", retention=Retention("ends_at"))


def marks() -> PersonalTable:
    return PersonalTable(
        database="test", name="marks", pk="topic",
        columns=(key("person_id"), clear("topic"), sealed("score"), timestamp("marked_at")),
        row_id=("person_id", "topic"), subject_hash_column="user_id_hash",
        via=SubjectVia(parent="people", key="person_id"), retention=Retention("marked_at", window="marks"))


PEOPLE, MARKS = people(), marks()


@pytest.fixture(autouse=True)
def fresh_descriptors(monkeypatch):
    """Each test gets descriptors made for it: a descriptor keeps the statements and plans it
    built, and a test must see them built, not handed over from an earlier test."""
    monkeypatch.setattr(sys.modules[__name__], "PEOPLE", people())
    monkeypatch.setattr(sys.modules[__name__], "MARKS", marks())


ALICE, BOB = "a" * 64, "b" * 64
CIPHER = SubjectCipher(os.urandom(32))


class CountingReader:
    """The real subject cipher, counting how often it is asked to open values."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def open(self, *item):
        self.calls.append(("open", 1))
        return CIPHER.open(*item)

    def open_batch(self, items):
        self.calls.append(("open_batch", len(items)))
        return CIPHER.open_batch(items)


@pytest.fixture
def db(database_with):
    return database_with(SCHEMA)


def add_person(db, person_id: str, subject: str, ends_at: str = "2026-06-01T00:00:00.000000Z", **values) -> None:
    columns = ("person_id", "user_id_hash", "ends_at", *values)
    row = {"person_id": person_id, **values}
    for name in PEOPLE.sealed_columns:
        if name in values:
            values[name] = PEOPLE.seal(CIPHER, PEOPLE.row_id_of(row), name, values[name])
    db.execute(PEOPLE.insert_sql(columns), (person_id, subject, ends_at, *values.values()))


# -- what a declaration must say ---------------------------------------------------------

def test_each_kind_of_column_is_declared_by_its_helper():
    described = [(c.name, c.kind, c.null_as, c.exported, c.why) for c in (
        clear("a"), sealed("b", {}), json_text("c", []), key("d"), timestamp("e"), other("f", why="w"))]

    assert described == [("a", Kind.CLEAR, None, True, None), ("b", Kind.SEALED, {}, True, None),
                         ("c", Kind.JSON, [], True, None), ("d", Kind.KEY, None, True, None),
                         ("e", Kind.TIMESTAMP, None, True, None), ("f", Kind.OTHER, None, True, "w")]
    hashed = subject_hash("g")
    assert (hashed.kind, hashed.exported, hashed.why) == (
        Kind.SUBJECT_HASH, False, "the keyed hash of the subject's user id: it is the subject the export is for")
    assert sealed("h", merged=True).merged and not sealed("h").merged
    assert hashed.name == "g" and subject_hash("g", merged=True).merged
    left_out = dict(exported=False, why="left out")
    helpers = (clear("a", **left_out), sealed("b", **left_out), json_text("c", **left_out), key("d", **left_out),
               timestamp("e", **left_out), other("f", **left_out))
    assert [(c.exported, c.why) for c in helpers] == [(False, "left out")] * 6


def test_a_column_of_no_plain_kind_or_left_out_of_the_export_must_say_why():
    with pytest.raises(RegistryError) as unexplained:
        other("x", why="")
    assert str(unexplained.value) == "column x: say why it is other"
    with pytest.raises(RegistryError) as left_out:
        clear("y", exported=False)
    assert str(left_out.value) == "column y: say why it is clear and not exported"
    assert not clear("y", exported=False, why="internal").exported


def test_a_table_must_describe_each_column_once_and_say_why_it_is_kept():
    with pytest.raises(RegistryError) as twice:
        PersonalTable(database="t", name="t", columns=(key("id"), clear("id")), row_id=("id",),
                      subject_hash_column="id")
    assert str(twice.value) == "t: a column is described twice"
    with pytest.raises(RegistryError) as kept:
        PersonalTable(database="t", name="t", columns=(key("id"),), row_id=("id",), subject_hash_column="id",
                      erase=False)
    assert str(kept.value) == "t: a table kept on erasure must say why (kept_reason)"
    assert not PersonalTable(database="t", name="t", columns=(key("id"),), row_id=("id",), subject_hash_column="id",
                             erase=False, kept_reason="proof").erase


@pytest.mark.parametrize("options, unknown", [
    (dict(row_id=("nope", "id")), "nope"), (dict(pk="pk1"), "pk1"), (dict(created="made"), "made"),
    (dict(order_by="rank"), "rank"), (dict(retention=Retention("gone")), "gone"),
    (dict(subject_hash_column="owner"), "owner"),
    (dict(via=SubjectVia("parents", "parent_id"), subject_hash_column="in_the_parent"), "parent_id"),
    (dict(pk="zz", created="aa"), "aa, zz"),
])
def test_every_column_a_table_names_must_be_among_its_columns(options, unknown):
    declared = dict(database="t", name="t", columns=(key("id"),), row_id=("id",), subject_hash_column="id")

    with pytest.raises(RegistryError) as refused:
        PersonalTable(**{**declared, **options})
    assert str(refused.value) == f"t: {unknown} not among its columns"


def test_a_subject_reached_through_a_parent_is_not_a_column_of_the_child():
    assert MARKS.via.key == "person_id" and "user_id_hash" not in MARKS.column_names
    assert MARKS.column("score").kind is Kind.SEALED and PEOPLE.sealed_columns == ("profile", "secret")


# -- row ids, subjects and retention, on a database ---------------------------------------

def test_a_row_id_is_the_column_or_the_columns_joined_by_a_slash(db):
    assert PEOPLE.row_id_of({"person_id": 7}) == 7  # one column: its value as it is
    assert MARKS.row_id_of({"person_id": "p-1", "topic": 3}) == "p-1/3"
    db.execute("INSERT INTO marks (person_id, topic, marked_at) VALUES ('p-1', 'algebra', 'x')")
    assert db.query_one(f"SELECT {MARKS.row_id_sql} FROM marks")[0] == "p-1/algebra"


def test_subjects_where_selects_the_rows_of_the_given_subjects_directly_or_through_the_parent(db):
    for person, subject in (("p-a", ALICE), ("p-b", BOB), ("p-c", "c" * 64)):
        add_person(db, person, subject)
        db.execute("INSERT INTO marks (person_id, topic, marked_at) VALUES (?, 'algebra', 'x')", (person,))
    params = subject_params([ALICE, BOB])

    assert params == {"subject_0": ALICE, "subject_1": BOB}
    for table in (PEOPLE, MARKS):
        for _ in range(2):  # built once, then looked up
            assert sorted(r[0] for r in db.query(
                f"SELECT person_id FROM {table.name} WHERE {table.subjects_where(2)}", params)) == ["p-a", "p-b"]
    assert db.query(f"SELECT {MARKS.subject_sql}, {PEOPLE.subject_sql} FROM marks JOIN people "
                    "ON people.person_id = marks.person_id WHERE marks.person_id = 'p-a'")[0][0:2] == (ALICE, ALICE)


def test_a_row_is_expired_at_its_bound_and_live_only_before_it(db):
    for person, ends in (("before", "2026-01-01"), ("at", "2026-01-02"), ("after", "2026-01-03")):
        add_person(db, person, ALICE, ends_at=ends)

    def ids(where: str, alias: str = "") -> list[str]:
        return sorted(r[0] for r in db.query(f"SELECT person_id FROM people {alias} WHERE {where}",
                                             {"now": "2026-01-02"}))

    assert PEOPLE.expired_where() == "ends_at <= :now" and ids(PEOPLE.expired_where()) == ["at", "before"]
    assert ids(PEOPLE.live_where()) == ["after"] and ids(PEOPLE.live_where("p"), "p") == ["after"]
    assert PEOPLE.live_where("p") == "p.ends_at > :now"
    assert MARKS.expired_where() == "marked_at <= :marks_cutoff" and MARKS.live_where() == "marked_at > :marks_cutoff"
    assert Retention("at", window="marks").bound == ":marks_cutoff" and Retention("at").bound == ":now"
    assert Retention("at").ends_subject is False
    no_rule = PersonalTable(database="t", name="t", columns=(key("id"),), row_id=("id",), subject_hash_column="id")
    assert no_rule.live_where("x") == "1 = 1"


# -- statements ---------------------------------------------------------------------------

def test_select_insert_update_and_upsert_name_described_columns_only(db):
    add_person(db, "p-1", ALICE, nick="ann", prefs='["x"]')
    assert PEOPLE.select_list("p") == ("p.person_id, p.user_id_hash, p.nick, p.profile, p.secret, p.prefs, "
                                       "p.version, p.ends_at")
    assert PEOPLE.insert_sql(("person_id", "nick")) == "INSERT INTO people (person_id, nick) VALUES (?, ?)"

    db.execute(PEOPLE.update_sql(("nick",), "person_id", bump="version"), ("annie", "p-1"))
    db.execute(PEOPLE.update_sql(("prefs",), "person_id"), ("[]", "p-1"))
    assert tuple(db.query_one("SELECT nick, prefs, version FROM people")) == ("annie", "[]", 1)

    upsert = PEOPLE.upsert_sql(("person_id", "user_id_hash", "nick", "ends_at"), ("person_id",))
    assert upsert == PEOPLE.upsert_sql(("person_id", "user_id_hash", "nick", "ends_at"), ("person_id",))
    db.execute(upsert, ("p-1", BOB, "bea", "2027-01-01"))
    db.execute(upsert, ("p-2", BOB, "cy", "2027-01-01"))
    assert [tuple(r) for r in db.query("SELECT person_id, user_id_hash, nick, version FROM people "
                                       "ORDER BY person_id")] == [("p-1", BOB, "bea", 1), ("p-2", BOB, "cy", 0)]


def test_a_statement_is_built_once_per_column_set_and_then_only_looked_up():
    built = [lambda: PEOPLE.insert_sql(("person_id", "nick")),
             lambda: PEOPLE.update_sql(("nick",), "person_id", bump="version"),
             lambda: PEOPLE.upsert_sql(("person_id", "nick"), ("person_id",)),
             lambda: MARKS.subjects_where(3)]
    for build in built:
        assert build() is build()  # the same string, kept: not built again
    # Each column set (or subject count) has its own statement.
    assert MARKS.subjects_where(1) == "person_id IN (SELECT person_id FROM people WHERE user_id_hash IN (:subject_0))"
    assert PEOPLE.subjects_where(1) == "user_id_hash IN (:subject_0)"
    assert PEOPLE.subjects_where(2) == "user_id_hash IN (:subject_0, :subject_1)"
    assert PEOPLE.upsert_sql(("person_id", "user_id_hash", "nick"), ("person_id",)).endswith(
        "DO UPDATE SET user_id_hash = excluded.user_id_hash, nick = excluded.nick")


def test_an_upsert_on_a_key_of_two_columns_updates_the_rest(db):
    upsert = MARKS.upsert_sql(("person_id", "topic", "marked_at"), ("person_id", "topic"))
    for at in ("first", "second"):
        db.execute(upsert, ("p-1", "algebra", at))
    db.execute(upsert, ("p-1", "geometry", "third"))

    assert [tuple(r) for r in db.query("SELECT topic, marked_at FROM marks ORDER BY topic")] == [
        ("algebra", "second"), ("geometry", "third")]


@pytest.mark.parametrize("build", [
    lambda: PEOPLE.insert_sql(("person_id", "email", "phone")),
    lambda: PEOPLE.update_sql(("email", "phone"), "person_id"),
    lambda: PEOPLE.update_sql(("nick",), "email", bump="phone"),
])
def test_a_statement_naming_an_undescribed_column_is_refused(build):
    with pytest.raises(RegistryError) as refused:
        build()
    assert str(refused.value) == "people: email, phone not among its columns"


# -- values -------------------------------------------------------------------------------

def test_a_sealed_value_is_bound_to_its_table_column_and_row_and_none_stays_null():
    blob = PEOPLE.seal(CIPHER, "p-1", "secret", {"pin": 1234})

    assert CIPHER.open("people", "secret", "p-1", blob) == {"pin": 1234}
    assert PEOPLE.seal(CIPHER, "p-1", "secret", None) is None
    assert PEOPLE.null_as("prefs") == [] and PEOPLE.null_as("prefs") is not PEOPLE.null_as("prefs")
    assert PEOPLE.null_as("profile") == {} and PEOPLE.null_as("profile") is not PEOPLE.null_as("profile")
    assert PEOPLE.null_as("nick") is None


def test_decode_opens_sealed_values_parses_json_and_reads_null_as_declared(db):
    add_person(db, "p-1", ALICE, nick="ann", profile={"name": "Ann"}, secret="s3", prefs='{"dark": true}')
    add_person(db, "p-2", ALICE)
    rows = db.query(f"SELECT {PEOPLE.select_list()} FROM people ORDER BY person_id")
    reader = CountingReader()

    full, empty = PEOPLE.decode(rows[0], reader), PEOPLE.decode(rows[1], reader)

    assert full == {"person_id": "p-1", "user_id_hash": ALICE, "nick": "ann", "profile": {"name": "Ann"},
                    "secret": "s3", "prefs": {"dark": True}, "version": 0, "ends_at": "2026-06-01T00:00:00.000000Z"}
    assert list(full) == list(PEOPLE.column_names)  # in the columns' order
    assert (empty["profile"], empty["secret"], empty["prefs"]) == ({}, None, [])
    assert reader.calls == [("open_batch", 2)]  # two sealed values: one call
    assert PEOPLE.decode(rows[0], reader, ("secret", "nick")) == {"secret": "s3", "nick": "ann"}
    assert reader.calls[1:] == [("open", 1)]
    assert PEOPLE.decode(rows[1], reader, ("prefs",)) == {"prefs": []}


def test_decode_many_opens_every_rows_sealed_values_in_one_call(db):
    for person in ("p-1", "p-2", "p-3"):
        add_person(db, person, ALICE, profile={"n": person}, prefs=None if person == "p-2" else "[1]")
    rows = db.query(f"SELECT {PEOPLE.select_list()} FROM people ORDER BY person_id")
    reader = CountingReader()

    for _ in range(2):
        decoded = PEOPLE.decode_many(rows, reader, ("person_id", "profile", "prefs", "secret"))
        assert decoded == [{"person_id": "p-1", "profile": {"n": "p-1"}, "prefs": [1], "secret": None},
                           {"person_id": "p-2", "profile": {"n": "p-2"}, "prefs": [], "secret": None},
                           {"person_id": "p-3", "profile": {"n": "p-3"}, "prefs": [1], "secret": None}]
    assert reader.calls == [("open_batch", 3), ("open_batch", 3)]
    assert PEOPLE.decode_many(rows, reader, ("nick",)) == [{"nick": None}] * 3
    assert reader.calls[2:] == []  # nothing sealed: nothing opened


def test_the_export_form_joins_merged_objects_and_leaves_out_what_is_not_exported(db):
    add_person(db, "p-1", ALICE, nick="ann", profile={"name": "Ann", "age": 9}, secret="s3", prefs="[2]")
    add_person(db, "p-2", ALICE, nick="bo")
    rows = db.query(f"SELECT {PEOPLE.select_list()} FROM people ORDER BY person_id")

    assert PEOPLE.export_rows(rows, CIPHER) == [
        {"person_id": "p-1", "nick": "ann", "name": "Ann", "age": 9, "prefs": [2], "version": 0,
         "ends_at": "2026-06-01T00:00:00.000000Z"},
        {"person_id": "p-2", "nick": "bo", "prefs": [], "version": 0, "ends_at": "2026-06-01T00:00:00.000000Z"}]
    assert PEOPLE.export_row(rows[1], CIPHER)["nick"] == "bo"
    db.execute("INSERT INTO marks (person_id, topic, score, marked_at) VALUES ('p-1', 'algebra', ?, 'x')",
               (MARKS.seal(CIPHER, "p-1/algebra", "score", 0.5),))
    marks = db.query(f"SELECT {MARKS.select_list()} FROM marks")
    assert MARKS.export_rows(marks, CIPHER) == [{"person_id": "p-1", "topic": "algebra", "score": 0.5, "marked_at": "x"}]
