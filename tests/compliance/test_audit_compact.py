"""Compact audit events: what an event costs on disk, lossless ids, and the PostgreSQL form of
the vault migration that introduced them."""

from __future__ import annotations

import secrets

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.audit_codec import iso, micros, pack_id, unpack_id
from compliance.vault_schema import MIGRATIONS
from tests.storage_backends import database_url

MAX_REQUEST_ID = 64  # twin.api.app accepts X-Request-ID up to 64 characters


# Random values get fixed ids, so that a test can be re-run by its name (mutmut, `pytest path::id`).
@pytest.mark.parametrize("value", [
    "req-1", "0123456789abcdef", "ABCDEFabcdef0123",
    pytest.param(secrets.token_urlsafe(12), id="random-event-id"),
    pytest.param(secrets.token_urlsafe(48), id="random-64-char-base64url"),
    pytest.param(secrets.token_hex(8), id="random-api-request-id"), "a.b_c-d", "Ünïcødé", "x", "",
    "abc=", "QUJD", "ab", "0A",
])
def test_every_id_reads_back_exactly_as_it_was_given(value):
    assert unpack_id(pack_id(value)) == value
    assert unpack_id(pack_id(None)) is None


def test_base64url_and_hex_ids_are_stored_as_the_bytes_they_spell():
    assert len(pack_id(secrets.token_urlsafe(48))) == 1 + 48   # 64 characters
    assert len(pack_id(secrets.token_hex(8))) == 1 + 8          # the API's own request ids
    assert len(pack_id(secrets.token_urlsafe(12))) == 1 + 12    # event ids


def test_times_are_exact_to_the_microsecond():
    for text in ("2026-01-01T00:00:00.000000Z", "1999-12-31T23:59:59.999999Z", "2091-06-30T12:00:00.000001Z"):
        assert iso(micros(text)) == text


def _vault_bytes(vault) -> int:
    vault.execute("VACUUM")
    vault.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in vault.path.parent.glob(vault.path.name + "*"))


@pytest.mark.sqlite_only("the size of the vault file (bench/audit.py reports PostgreSQL's)")
def test_an_event_costs_at_most_150_bytes_of_vault_file_with_its_index(open_catalog_db):
    vault = open_catalog_db("privacy_vault")
    trail = AuditTrail(vault)
    empty = _vault_bytes(vault)  # every table's first page: the file's cost, not the events'
    subjects = [secrets.token_hex(32) for _ in range(200)]
    resources = [f"profile:prof_{secrets.token_urlsafe(16)}" for _ in subjects]
    actors = [Actor(f"tok_{secrets.token_urlsafe(12)}", "service") for _ in range(5)]
    events = 20_000
    for start in range(0, events, 500):
        trail.record_many((actors[i % 5], "read", {
            "subject_hash": subjects[i % 200], "resource": resources[i % 200],
            "request_id": secrets.token_urlsafe(48)[:MAX_REQUEST_ID]}) for i in range(start, start + 500))
    assert len(trail.query(limit=1)[0].request_id) == MAX_REQUEST_ID
    size = _vault_bytes(vault) - empty

    assert size / events <= 150, f"{size / events:.1f} bytes per event"
    assert trail.verify().ok and trail.verify().checked == events


def test_the_postgresql_form_of_the_compact_tables_is_append_only_and_rolls_back(pg_server):
    from twin.storage import Migration, Migrator, PostgresSettings, open_postgresql

    (compact,) = [m for m in MIGRATIONS if m.name == "compact audit events"]
    db = open_postgresql(PostgresSettings(database_url(pg_server.create_database()), pool_size=1,
                                          pool_max_size=2), name="privacy_vault")
    try:  # the step alone (the vault's earlier steps have no PostgreSQL form yet)
        migrator = Migrator(db, [Migration(1, compact.name, compact.up, compact.down)])
        migrator.migrate()
        db.write(lambda conn: conn.execute(
            "INSERT INTO audit_log (seq, event_id, occurred_at, actor_ref, action, event_hash) "
            "VALUES (1, ?, ?, 1, 0, ?)", (pack_id("e" * 16), micros("2026-01-01T00:00:00.000000Z"), b"\0" * 32)))
        with pytest.raises(Exception, match="append-only"):
            db.write(lambda conn: conn.execute("UPDATE audit_log SET action = 1"))
        assert db.query_one("SELECT action, event_hash FROM audit_log")[1] == b"\0" * 32
        migrator.rollback(0)
        assert "audit_log" not in db.table_names()
    finally:
        db.close_all()


# -- what the store reads back from damaged or newer rows ---------------------------------------

def test_a_stored_hash_reads_as_its_bytes_and_a_damaged_one_as_its_text():
    # A damaged hash must make the event after it fail verification, never make an append fail.
    from compliance.audit_store import hash_bytes

    assert hash_bytes(b"\1" * 32) == b"\1" * 32
    assert hash_bytes(memoryview(b"\2" * 32)) == b"\2" * 32
    assert hash_bytes("ab" * 32) == b"\xab" * 32  # legacy hex text
    assert hash_bytes("not hex") == b"not hex"
    assert hash_bytes("bad\ud800") == b"bad?"  # a lone surrogate is replaced, not an error
    assert hash_bytes(None) == b"None"


def test_an_event_with_nothing_before_it_chains_to_genesis_only_as_the_first(open_catalog_db):
    from compliance.audit_store import hash_before
    from compliance.hash_chain import GENESIS_HASH

    vault = open_catalog_db("privacy_vault")
    conn = vault.connection()

    assert hash_before(conn, 1) == GENESIS_HASH
    assert hash_before(conn, 5) == ""  # no predecessor anywhere: no hash verifies against it


@pytest.mark.sqlite_only("a raw SQLCipher connection edits the append-only log")
def test_an_event_whose_action_this_version_does_not_know_reads_as_unknown_with_its_code(
        open_catalog_db, db_key):
    from storage_backends import raw_connection

    vault = open_catalog_db("privacy_vault")
    trail = AuditTrail(vault)
    trail.record(Actor("tok_new", "service"), "read")
    raw = raw_connection(vault, db_key, without_triggers=("audit_log_no_update",))
    try:
        raw.execute("UPDATE audit_log SET action = 250")  # written by a newer version
    finally:
        raw.close()

    [event] = trail.query(limit=10)
    assert event.action == "unknown:250"


@pytest.mark.parametrize("value, stored", [
    ("", b"\x00"),                 # empty: text, never an empty hex or base64 id
    ("ab", b"\x02\xab"),           # lowercase hex: its bytes
    ("0A", b"\x00" + b"0A"),       # not lowercase: text
    ("abc", b"\x00abc"),           # odd length: text
    ("QUJD", b"\x01ABC"),          # base64url: its bytes
    ("abc=", b"\x00abc="),         # padded: text (it would not read back as given)
    ("Ünï", b"\x00" + "Ünï".encode("utf-8")),
])
def test_an_id_is_stored_as_the_documented_tag_and_bytes(value, stored):
    assert pack_id(value) == stored


def test_a_damaged_text_id_reads_back_with_a_replacement_character_not_an_error():
    assert unpack_id(b"\x00ok\xff") == "ok\ufffd"


def _legacy_events(vault, count: int) -> None:
    """Events 1..count as vault migration 6 found them: JSON-hashed, named in full."""
    from compliance.audit_events import compute_event_hash
    prev, rows = "0" * 64, []
    for seq in range(1, count + 1):
        row = {"seq": seq, "event_id": f"e{seq:015d}", "occurred_at": f"2026-01-01T00:00:0{seq}.000000Z",
               "actor_id": "tok_old", "actor_role": "service", "action": "read",
               "subject_hash": "e" * 64, "resource": None, "request_id": None, "details": None, "prev_hash": prev}
        row["event_hash"] = prev = compute_event_hash(row)
        rows.append(tuple(row.values()))
    vault.write(lambda conn: conn.executemany("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                              rows))


def test_a_page_holds_the_legacy_events_then_as_many_compact_ones_as_its_limit_leaves(open_catalog_db):
    from ticking_clock import TickingClock
    vault = open_catalog_db("privacy_vault")
    _legacy_events(vault, 5)
    trail = AuditTrail(vault, clock=TickingClock())
    trail.record_many([(Actor("tok_new", "service"), "read", {"subject_hash": "e" * 64})] * 5)  # 6-10

    assert [e.seq for e in trail.query(limit=7)] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.seq for e in trail.query(subject_hash="e" * 64, limit=7)] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.seq for e in trail.query(limit=5)] == [1, 2, 3, 4, 5]


def test_legacy_events_deleted_from_the_tail_leave_a_gap_the_first_compact_append_exposes(open_catalog_db):
    from ticking_clock import TickingClock
    vault = open_catalog_db("privacy_vault")
    _legacy_events(vault, 5)
    vault.execute("DELETE FROM audit_events WHERE seq >= 4")  # the newest two, before any compact event

    event = AuditTrail(vault, clock=TickingClock()).record(Actor("tok_new", "service"), "read")

    assert event.seq == 6  # not 4: the legacy table's high-water mark remembers 5
    result = AuditTrail(vault).verify(full=True)
    assert (result.ok, result.first_bad, result.reason) == (False, 6, "events 4-5 missing before it (deleted?)")
