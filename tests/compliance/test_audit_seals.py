"""Chain seals: HMAC'd checkpoints every N events, marked by the verification that found them
sound, so a verification reads only what follows the newest marked seal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.audit_seals import SealBook
from storage_backends import raw_connection
from ticking_clock import T0, TickingClock

SERVICE = Actor("tok_service1", "service")
ALICE = "a" * 64


@pytest.fixture
def trail(vault, keyring) -> AuditTrail:
    return AuditTrail(vault, clock=TickingClock(), seals=SealBook(keyring.audit_seal_key, every=10))


@pytest.fixture
def raw(vault, db_key):
    """What someone holding the database's credentials (but not the keyring) could do, with
    the append-only trigger out of the way: a raw SQLCipher connection with the trigger
    dropped, or a PostgreSQL session that skips triggers."""
    conn = raw_connection(vault, db_key, without_triggers=("audit_log_no_update",))
    yield conn
    conn.close()


def append(trail: AuditTrail, count: int) -> None:
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE, "request_id": f"r{i}"}) for i in range(count)])


def test_a_seal_every_n_events_under_a_key_of_its_own(trail, vault, keyring):
    append(trail, 35)

    seals = vault.query("SELECT seq, event_hash, mac FROM audit_seals ORDER BY seq")
    assert [s["seq"] for s in seals] == [10, 20, 30]
    events = {e.seq: e.event_hash for e in trail.query(limit=100)}
    assert all(bytes(s["event_hash"]).hex() == events[s["seq"]] for s in seals)
    # sealed when the batch was appended: its last event's time, as stored
    last_at = vault.query_one("SELECT occurred_at FROM audit_log WHERE seq = 35")["occurred_at"]
    assert [s["sealed_at"] for s in vault.query("SELECT sealed_at FROM audit_seals ORDER BY seq")] == [last_at] * 3
    assert keyring.audit_seal_key not in (keyring.database_key, keyring.id_pepper, *keyring.field_keys.values())
    other = SealBook(keyring.database_key, every=10)  # a seal under the database key does not pass
    assert other.check(seals[0], bytes(seals[0]["event_hash"])) is not None
    assert vault.query("SELECT * FROM audit_seal_marks") == []


def test_a_full_verify_marks_the_seals_and_the_next_starts_after_the_newest(trail, vault):
    append(trail, 35)
    full = trail.verify(full=True)
    assert (full.ok, full.checked, full.since) == (True, 35, None)
    assert [r[0] for r in vault.query("SELECT seal_seq FROM audit_seal_marks ORDER BY seal_seq")] == [10, 20, 30]

    append(trail, 3)
    quick = trail.verify(full=False)
    assert (quick.ok, quick.checked, quick.since) == (True, 8, 30)
    assert quick.summary == "audit trail OK: 8 events verified after the verified seal at event 30"


def test_without_a_marked_seal_the_default_verify_walks_everything(trail):
    append(trail, 25)
    result = trail.verify(full=False)
    assert (result.ok, result.checked, result.since) == (True, 25, None)


def test_an_edit_after_the_seal_is_caught_from_the_seal(trail, raw):
    append(trail, 25)
    trail.verify(full=True)
    raw.execute("UPDATE audit_log SET occurred_at = occurred_at + 1 WHERE seq = 23")

    result = trail.verify(full=False)
    assert (result.ok, result.first_bad, result.checked) == (False, 23, 2)
    assert result.reason == "content does not match its hash (edited?)"


def test_an_edit_before_the_seal_is_for_the_full_verify(trail, raw):
    append(trail, 25)
    trail.verify(full=True)
    raw.execute("UPDATE audit_log SET occurred_at = occurred_at + 1 WHERE seq = 5")

    assert trail.verify(full=False).ok  # a seal vouches for what a past verification saw
    result = trail.verify(full=True)
    assert (result.ok, result.first_bad) == (False, 5)


def test_editing_the_sealed_event_itself_is_caught_from_the_seal(trail, raw):
    append(trail, 25)
    trail.verify(full=True)
    raw.execute("UPDATE audit_log SET details = '{}' WHERE seq = 20")

    result = trail.verify(full=False)
    assert (result.ok, result.first_bad) == (False, 20)


def test_a_rehashed_sealed_event_does_not_match_its_seal(trail, raw):
    append(trail, 25)
    trail.verify(full=True)
    raw.execute("UPDATE audit_log SET event_hash = ? WHERE seq = 30 - 10", (b"\1" * 32,))

    result = trail.verify(full=False)
    assert (result.ok, result.first_bad) == (False, 20)


@pytest.mark.parametrize("column, value", [("event_hash", b"\2" * 32), ("mac", b"\3" * 32)])
def test_a_tampered_seal_is_named_by_the_full_verify(trail, raw, column, value):
    append(trail, 25)
    raw.execute(f"UPDATE audit_seals SET {column} = ? WHERE seq = 10", (value,))

    result = trail.verify(full=True)
    assert (result.ok, result.first_bad) == (False, 10)
    assert result.reason == "the seal of event 10 fails its HMAC (forged or edited?)"


def test_an_authentic_seal_of_another_hash_says_the_event_was_edited_after_it(trail, raw, keyring):
    # A seal made under the key over another hash (one from a restored copy of the chain).
    append(trail, 25)
    other = b"\4" * 32
    raw.execute("UPDATE audit_seals SET event_hash = ?, mac = ? WHERE seq = 10",
                (other, SealBook(keyring.audit_seal_key).seal_mac(10, other)))

    result = trail.verify(full=True)
    assert (result.ok, result.first_bad) == (False, 10)
    assert result.reason == "event does not match its seal (edited after event 10 was sealed?)"


def test_a_forged_mark_is_never_trusted(trail, vault, raw):
    append(trail, 25)
    trail.verify(full=True)
    append(trail, 10)  # seal 30, not marked yet
    raw.execute("INSERT INTO audit_seal_marks (seal_seq, verified_at, mac) VALUES (30, 1, ?)", (b"\0" * 32,))
    raw.execute("UPDATE audit_log SET details = '{}' WHERE seq = 25")

    result = trail.verify(full=False)  # starts at seal 20, the newest genuinely marked
    assert (result.ok, result.first_bad) == (False, 25)


def test_deleting_seals_and_marks_only_makes_the_next_verify_a_full_one(trail, raw):
    append(trail, 25)
    trail.verify(full=True)
    raw.execute("DELETE FROM audit_seal_marks")
    raw.execute("UPDATE audit_log SET details = '{}' WHERE seq = 3")

    result = trail.verify(full=False)
    assert (result.ok, result.first_bad, result.since) == (False, 3, None)


def test_deleting_the_newest_events_after_a_seal_is_caught_from_the_seal(trail, raw):
    append(trail, 35)
    trail.verify(full=True)
    raw.execute("DELETE FROM audit_log WHERE seq >= 33")

    result = trail.verify(full=False)
    assert (result.ok, result.first_bad) == (False, 33)
    assert "missing at the end" in result.reason


def test_retention_drops_the_seals_it_passes_and_the_chain_still_verifies(trail, vault):
    append(trail, 35)
    trail.verify(full=True)
    assert trail.purge_older_than(T0 + timedelta(seconds=24, milliseconds=500)) == 24  # event n at T0 + n s

    assert [r[0] for r in vault.query("SELECT seq FROM audit_seals")] == [30]
    assert [r[0] for r in vault.query("SELECT seal_seq FROM audit_seal_marks")] == [30]
    assert trail.verify(full=False).since == 30
    assert trail.verify(full=True).checked == 11


# -- the seal book's key, period and MAC format ------------------------------------------------

def test_a_seal_key_under_32_bytes_and_a_period_under_1_are_refused(keyring):
    with pytest.raises(ValueError) as short_key:
        SealBook(b"k" * 31)
    with pytest.raises(ValueError) as no_period:
        SealBook(keyring.audit_seal_key, every=0)

    assert str(short_key.value) == "the seal key must be at least 32 bytes"
    assert str(no_period.value) == "seals must come every 1 or more events"
    assert SealBook(b"k" * 32, every=1).every == 1


def test_a_seal_every_event_seals_each_one(vault, keyring):
    trail = AuditTrail(vault, clock=TickingClock(), seals=SealBook(keyring.audit_seal_key, every=1))
    append(trail, 3)

    assert [r[0] for r in vault.query("SELECT seq FROM audit_seals ORDER BY seq")] == [1, 2, 3]


def test_seals_and_marks_are_the_documented_hmacs_an_auditor_can_recompute(trail, vault, keyring):
    import hmac
    import struct
    from hashlib import sha256

    append(trail, 10)
    trail.verify(full=True)
    seal = vault.query_one("SELECT seq, event_hash, mac FROM audit_seals")
    mark = vault.query_one("SELECT seal_seq, verified_at, mac FROM audit_seal_marks")
    key, event_hash = keyring.audit_seal_key, bytes(seal["event_hash"])

    assert bytes(seal["mac"]) == hmac.new(
        key, b"twin-audit-seal/v1\0" + struct.pack(">q", 10) + event_hash, sha256).digest()
    assert bytes(mark["mac"]) == hmac.new(
        key, b"twin-audit-seal-mark/v1\0" + struct.pack(">qq", 10, mark["verified_at"]) + event_hash,
        sha256).digest()


def test_marking_says_how_many_seals_it_marked(vault, keyring):
    from compliance.audit_seals import Seal

    book = SealBook(keyring.audit_seal_key, every=10)
    trail = AuditTrail(vault, clock=TickingClock(), seals=book)
    append(trail, 20)
    seals = [Seal(r["seq"], bytes(r["event_hash"])) for r in vault.query("SELECT seq, event_hash FROM audit_seals")]

    assert vault.write(lambda conn: book.mark(conn, [], 1)) == 0
    assert vault.write(lambda conn: book.mark(conn, seals, 1)) == 2
    assert vault.write(lambda conn: book.mark(conn, seals, 2)) == 0  # marked already
