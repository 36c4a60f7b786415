"""Legacy events (the ``audit_events`` rows written before vault migration 6): hashed as the
module docs say (SHA-256 of the canonical ASCII JSON of every other column), verified, chained
on from, and purged by retention like the compact ones."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from compliance.audit import GENESIS_HASH, Actor, AuditChainBrokenError, AuditTrail, ChainVerification
from storage_backends import raw_connection
from ticking_clock import TickingClock

SERVICE = Actor("tok_new", "service")
SUBJECT = "e" * 64
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def documented_hash(row: dict) -> str:
    """The legacy format, written out here rather than taken from the code under test."""
    content = {name: value for name, value in row.items() if name != "event_hash"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def legacy_rows(count: int, prev: str = GENESIS_HASH) -> list[dict]:
    rows = []
    for seq in range(1, count + 1):
        row = {"seq": seq, "event_id": f"e{seq:015d}", "occurred_at": f"2026-01-01T00:0{seq}:00.000000Z",
               "actor_id": "tok_old", "actor_role": "service", "action": "read", "subject_hash": SUBJECT,
               # Non-ASCII text: the legacy chain spelled it as \u escapes (ensure_ascii).
               "resource": f"profiles/Zoë-{seq}", "request_id": f"req-{seq}",
               "details": '{"fields":["learning_style"],"profiles":1}', "prev_hash": prev}
        row["event_hash"] = prev = documented_hash(row)
        rows.append(row)
    return rows


def insert(vault, rows: list[dict]) -> None:
    vault.write(lambda conn: conn.executemany(
        "INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [tuple(r.values()) for r in rows]))


@pytest.fixture
def raw(vault, db_key):
    conn = raw_connection(vault, db_key, without_triggers=("audit_events_no_update", "audit_log_no_update"))
    yield conn
    conn.close()


def test_legacy_events_hashed_as_documented_verify_read_back_and_are_chained_on_from(vault):
    rows = legacy_rows(3)
    insert(vault, rows)
    trail = AuditTrail(vault, clock=TickingClock())

    assert trail.verify() == ChainVerification(True, 3, None, None)
    assert [e.to_dict() for e in trail.query()] == [
        dict(r, details={"fields": ["learning_style"], "profiles": 1}) for r in rows]
    event = trail.record(SERVICE, "read", subject_hash=SUBJECT)
    assert (event.seq, event.prev_hash) == (4, rows[-1]["event_hash"])
    assert trail.verify() == ChainVerification(True, 4, None, None)


@pytest.mark.parametrize("column, value", [("resource", "profiles/Zoe-2"), ("actor_id", "tok_forged"),
                                           ("details", '{"fields":[],"profiles":1}'), ("seq", 2)])
def test_editing_a_legacy_event_names_it(vault, raw, column, value):
    rows = legacy_rows(3)
    insert(vault, rows)
    # seq: event 3 renumbered into the gap event 2 leaves, keeping its own hash.
    if column == "seq":
        raw.execute("DELETE FROM audit_events WHERE seq = 2")
        raw.execute("UPDATE audit_events SET seq = 2 WHERE seq = 3")
    else:
        raw.execute(f"UPDATE audit_events SET {column} = ? WHERE seq = 2", (value,))

    result = AuditTrail(vault).verify()
    assert (result.ok, result.first_bad, result.checked) == (False, 2, 1)
    assert result.reason == "content does not match its hash (edited?)"


def test_a_legacy_event_hashed_on_a_forged_link_breaks_the_chain_there(vault):
    rows = legacy_rows(2)
    forged = dict(rows[1], prev_hash="f" * 64)
    forged["event_hash"] = documented_hash(forged)  # consistent in itself, linked to nothing
    insert(vault, [rows[0], forged])

    result = AuditTrail(vault).verify()
    assert (result.ok, result.first_bad, result.checked) == (False, 2, 1)
    assert result.reason == "previous-hash link broken (event deleted or reordered?)"


def test_a_compact_event_renumbered_into_the_legacy_range_is_out_of_sequence(vault, raw):
    insert(vault, legacy_rows(3))
    trail = AuditTrail(vault, clock=TickingClock())
    trail.record_many([(SERVICE, "read", {"subject_hash": SUBJECT})] * 2)  # events 4 and 5
    raw.execute("UPDATE audit_log SET seq = 2 WHERE seq = 5")  # legacy seqs are a table of their own

    assert trail.verify() == ChainVerification(False, 3, 2, "out of sequence after event 3 (renumbered?)")


def test_retention_purges_legacy_events_by_their_text_timestamps_and_the_rest_verifies(vault):
    rows = legacy_rows(5)  # 00:01 .. 00:05
    insert(vault, rows)
    trail = AuditTrail(vault, clock=TickingClock())

    assert trail.purge_older_than(T0 + timedelta(minutes=3), batch_size=1) == 2

    assert [e.seq for e in trail.query()] == [3, 4, 5]
    assert tuple(vault.query_one("SELECT purged_through_seq, last_hash FROM audit_checkpoints")) == \
        (2, rows[1]["event_hash"])
    assert trail.verify() == ChainVerification(True, 3, None, None)


def test_retention_refuses_to_purge_an_edited_legacy_event(vault, raw):
    insert(vault, legacy_rows(3))
    raw.execute("UPDATE audit_events SET resource = 'profiles/other' WHERE seq = 2")
    trail = AuditTrail(vault)

    with pytest.raises(AuditChainBrokenError) as caught:
        trail.purge_older_than(T0 + timedelta(days=1))
    assert str(caught.value) == "audit trail broken at event 2: content does not match its hash (edited?)"
    assert (caught.value.seq, caught.value.reason) == (2, "content does not match its hash (edited?)")
    assert [e.seq for e in trail.query()] == [1, 2, 3]  # not even the sound event before it
    assert vault.query("SELECT * FROM audit_checkpoints") == []
