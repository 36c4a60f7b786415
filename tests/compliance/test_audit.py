"""The audit trail: append-only, hash-chained, verifiable, queryable, purgeable."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from compliance.audit import (ACTIONS, GENESIS_HASH, Actor, AuditChainBrokenError, AuditError,
                              AuditTrail, ChainVerification, InvalidAuditEventError,
                              InvalidAuditQueryError, UnknownAuditActionError, compute_event_hash)
from compliance.audit_codec import compact_hash, micros, pack_id
from compliance.errors import ComplianceError
from storage_backends import raw_connection
from twin.storage import FileBacked, IntegrityError

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = Actor("tok_service1", "service")
ADMIN = Actor("tok_admin1", "admin")
ALICE = "a" * 64
BOB = "b" * 64
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def trail(vault, clock) -> AuditTrail:
    return AuditTrail(vault, clock=clock)


@pytest.fixture
def raw(vault, db_key) -> Iterator:
    """A separate connection with the key and no trigger: what an attacker would use."""
    conn = raw_connection(vault, db_key, without_triggers=tuple(
        f"{table}_no_update" for table in ("audit_events", "audit_log", "audit_actors", "audit_subjects",
                                           "audit_resources")))
    yield conn
    conn.close()


def record_reads(trail: AuditTrail, clock: FakeClock, count: int, subject: str = ALICE) -> None:
    for i in range(count):
        trail.record(SERVICE, "read", subject_hash=subject, resource=f"profiles/p{i}",
                     request_id=f"req-{i}")
        clock.advance(minutes=1)


# -- appending ----------------------------------------------------------------------------

def test_recorded_event_carries_who_what_whom_when_and_request(trail):
    event = trail.record(ADMIN, "export", subject_hash=ALICE, resource="dsr/export",
                         request_id="req-42", details={"profiles": 1, "sessions": 3})

    assert (event.seq, event.actor_id, event.actor_role, event.action) == \
        (1, "tok_admin1", "admin", "export")
    assert (event.subject_hash, event.resource, event.request_id) == (ALICE, "dsr/export", "req-42")
    assert event.details == {"profiles": 1, "sessions": 3}
    assert event.occurred_at == "2026-01-01T00:00:00.000000Z"
    assert len(event.event_id) >= 16 and event.event_id != str(event.seq)


def test_events_chain_from_genesis_and_the_chain_verifies(trail, clock):
    record_reads(trail, clock, 5)
    events = trail.query()

    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.event_hash for earlier, later in zip(events, events[1:]))
    result = trail.verify()
    assert (result.ok, result.checked, result.first_bad) == (True, 5, None)
    assert result.summary == "audit trail OK: 5 events verified"


def test_an_empty_trail_verifies(trail):
    assert trail.verify().ok and trail.verify().checked == 0


def test_event_dict_is_json_and_matches_the_stored_row(trail):
    event = trail.record(SERVICE, "update", subject_hash=BOB,
                         details={"fields": ["learning_style"]})

    item = json.loads(json.dumps(event.to_dict()))
    assert item == trail.query()[0].to_dict()
    assert set(item) == {"seq", "event_id", "occurred_at", "actor_id", "actor_role", "action",
                         "subject_hash", "resource", "request_id", "details", "prev_hash",
                         "event_hash"}
    assert item["details"] == {"fields": ["learning_style"]}


def test_unknown_action_is_refused_and_nothing_is_written(trail):
    with pytest.raises(UnknownAuditActionError, match="unknown audit action 'peek'") as caught:
        trail.record(SERVICE, "peek", subject_hash=ALICE)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ComplianceError)
    assert trail.query() == []


def test_every_documented_action_can_be_recorded(trail):
    for action in sorted(ACTIONS):
        trail.record(ADMIN, action)
    assert {e.action for e in trail.query(limit=100)} == ACTIONS
    assert trail.verify().ok


@pytest.mark.parametrize("details, message", [
    ({"when": datetime(2026, 1, 1)}, "plain JSON"),
    ({"ratio": float("nan")}, "plain JSON"),
    (["not", "a", "dict"], "dict"),
    ({"blob": "x" * 10_000}, "under"),
])
def test_details_must_be_small_plain_json(trail, details, message):
    with pytest.raises(InvalidAuditEventError, match=message):
        trail.record(SERVICE, "read", details=details)
    assert trail.query() == []


def test_actor_role_must_be_known():
    with pytest.raises(InvalidAuditEventError, match="role"):
        Actor("tok_1", "superuser")
    with pytest.raises(InvalidAuditEventError, match="actor_id"):
        Actor("", "admin")


def test_record_many_appends_a_chained_batch_after_single_records(trail, clock):
    record_reads(trail, clock, 2)
    count = trail.record_many([
        (Actor("system:retention", "system"), "purge", {"details": {"sessions": 12}}),
        (SERVICE, "read", {"subject_hash": BOB, "request_id": "req-9"}),
        (ADMIN, "erase", {"subject_hash": ALICE, "resource": "dsr/erase"}),
    ])

    assert count == 3
    events = trail.query()
    assert [(e.seq, e.action) for e in events[2:]] == [(3, "purge"), (4, "read"), (5, "erase")]
    assert events[2].details == {"sessions": 12} and events[3].subject_hash == BOB
    assert trail.verify().ok


def test_record_many_writes_nothing_when_one_event_is_invalid(trail):
    with pytest.raises(UnknownAuditActionError):
        trail.record_many([(SERVICE, "read", {"subject_hash": ALICE}), (SERVICE, "snoop", {})])
    with pytest.raises(InvalidAuditEventError, match="user_id"):
        trail.record_many([(SERVICE, "read", {"user_id": "alice@example.org"})])
    assert trail.query() == [] and trail.record_many([]) == 0


def test_an_event_recorded_in_a_vault_transaction_commits_or_rolls_back_with_it(trail, vault):
    trail.record(SERVICE, "read", subject_hash=ALICE)
    with pytest.raises(RuntimeError):
        with vault.transaction():
            trail.record(ADMIN, "erase", subject_hash=ALICE)
            raise RuntimeError("the erasure failed")
    with vault.transaction():
        trail.record(ADMIN, "erase", subject_hash=BOB)

    assert [(e.seq, e.action, e.subject_hash) for e in trail.query()] == \
        [(1, "read", ALICE), (2, "erase", BOB)]
    assert trail.verify().ok


def test_the_database_refuses_updates_to_recorded_events(trail, vault):
    trail.record(SERVICE, "read", subject_hash=ALICE)
    with pytest.raises(IntegrityError, match="append-only"):
        vault.execute("UPDATE audit_log SET action = 2")
    with pytest.raises(IntegrityError, match="append-only"):
        vault.execute("UPDATE audit_subjects SET subject_hash = 'x'")


# -- reading ------------------------------------------------------------------------------

def test_query_filters_by_subject_action_and_time(trail, clock):
    trail.record(SERVICE, "read", subject_hash=ALICE)          # 00:00
    clock.advance(hours=1)
    trail.record(SERVICE, "update", subject_hash=ALICE)        # 01:00
    clock.advance(hours=1)
    trail.record(SERVICE, "read", subject_hash=BOB)            # 02:00
    clock.advance(hours=1)
    trail.record(ADMIN, "export", subject_hash=ALICE)          # 03:00

    assert [e.seq for e in trail.query(subject_hash=ALICE)] == [1, 2, 4]
    assert [e.seq for e in trail.query(action="read")] == [1, 3]
    assert [e.seq for e in trail.query(subject_hash=ALICE, action="read")] == [1]
    assert [e.seq for e in trail.query(since=T0 + timedelta(hours=1))] == [2, 3, 4]
    assert [e.seq for e in trail.query(until=T0 + timedelta(hours=2))] == [1, 2]
    assert [e.seq for e in trail.query(since=T0 + timedelta(minutes=30),
                                       until=T0 + timedelta(hours=3),
                                       subject_hash=ALICE)] == [2]


def test_query_pages_with_after_seq_until_exhausted(trail, clock):
    record_reads(trail, clock, 7)
    record_reads(trail, clock, 3, subject=BOB)

    pages, after = [], None
    while True:
        page = trail.query(subject_hash=ALICE, after_seq=after, limit=3)
        if not page:
            break
        pages.append([e.seq for e in page])
        after = page[-1].seq
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]


@pytest.mark.parametrize("limit", [0, -1, 1001, True])
def test_query_limit_must_be_in_range(trail, limit):
    with pytest.raises(InvalidAuditQueryError):
        trail.query(limit=limit)


def test_query_refuses_an_unknown_action_filter(trail):
    with pytest.raises(UnknownAuditActionError):
        trail.query(action="peek")


def test_iter_subject_streams_only_that_subjects_events_in_batches(trail, clock):
    for i in range(10):
        trail.record(SERVICE, "read", subject_hash=ALICE if i % 2 == 0 else BOB)
    trail.record(ADMIN, "purge")  # no subject at all

    stream = trail.iter_subject(ALICE, batch=2)
    assert isinstance(stream, Iterator)
    first = next(stream)  # lazily fetched: a first item exists before the rest is read
    events = [first, *stream]
    assert [e.seq for e in events] == [1, 3, 5, 7, 9]
    assert {e.subject_hash for e in events} == {ALICE}


# -- tamper detection ---------------------------------------------------------------------

@pytest.mark.parametrize("column, value", [
    ("action", 1),                                   # create
    ("subject_ref", 2),                              # Bob
    ("actor_ref", 1),                                # the service token
    ("occurred_at", 1767225599000000),               # a second before
    ("details", '{"profiles":0}'),
    ("request_id", b"\x00req-forged"),
    ("event_id", b"\x00forged"),
    ("resource_ref", 1),
])
def test_editing_one_field_of_an_event_names_that_event(trail, clock, raw, column, value):
    record_reads(trail, clock, 3)
    trail.record(ADMIN, "export", subject_hash=ALICE, details={"profiles": 1})
    record_reads(trail, clock, 2)
    trail.record(SERVICE, "read", subject_hash=BOB)

    raw.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = 4", (value,))

    result = trail.verify()
    assert (result.ok, result.first_bad, result.checked) == (False, 4, 3)
    assert result.reason == "content does not match its hash (edited?)"
    assert result.summary == f"audit trail BROKEN at event 4: {result.reason}"


def test_renumbering_an_event_is_detected_because_seq_is_hashed(trail, clock, raw):
    record_reads(trail, clock, 4)
    raw.execute("UPDATE audit_log SET seq = 5 WHERE seq = 4")

    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 5)
    assert result.reason == "event 4 missing before it (deleted?)"
    raw.execute("INSERT INTO audit_log SELECT 4, event_id, occurred_at, actor_ref, action, subject_ref, "
                "resource_ref, request_id, details, event_hash FROM audit_log WHERE seq = 5")
    result = trail.verify()  # the gap filled with a copy: seq is in the hash, so it does not fit
    assert (result.ok, result.first_bad, result.reason) == (False, 5, "content does not match its hash (edited?)")


def test_an_edited_event_with_a_recomputed_hash_breaks_the_next_link(trail, clock, raw):
    record_reads(trail, clock, 5)
    event = trail.query()[2]
    forged = compact_hash(bytes.fromhex(event.prev_hash), 3, pack_id(event.event_id), micros(event.occurred_at),
                          event.actor_id, event.actor_role, "create", event.subject_hash,
                          event.resource, pack_id(event.request_id), None)
    raw.execute("UPDATE audit_log SET action = 1, event_hash = ? WHERE seq = 3", (forged,))

    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 4)
    assert result.reason == "content does not match its hash (edited?)"


def test_editing_an_interned_value_names_the_first_event_that_uses_it(trail, clock, raw):
    record_reads(trail, clock, 2, subject=BOB)
    record_reads(trail, clock, 3)
    raw.execute("UPDATE audit_subjects SET subject_hash = ? WHERE subject_hash = ?", ("c" * 64, ALICE))

    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 3)


def test_deleting_an_interned_value_is_detected_and_the_events_still_read(trail, clock, raw):
    record_reads(trail, clock, 3)
    raw.execute("DELETE FROM audit_actors")

    assert [e.actor_id for e in trail.query()] == [None, None, None]
    assert (trail.verify().ok, trail.verify().first_bad) == (False, 1)


def test_deleting_a_middle_event_names_the_next_event(trail, clock, raw):
    record_reads(trail, clock, 6)
    raw.execute("DELETE FROM audit_log WHERE seq = 3")

    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 4)
    assert "event 3 missing" in result.reason and "deleted" in result.reason


def test_deleting_the_first_event_is_detected(trail, clock, raw):
    record_reads(trail, clock, 3)
    raw.execute("DELETE FROM audit_log WHERE seq = 1")

    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 2)


def test_deleting_the_newest_events_is_detected(trail, clock, raw):
    record_reads(trail, clock, 5)
    raw.execute("DELETE FROM audit_log WHERE seq >= 4")

    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 4)
    assert "events 4-5 missing at the end" in result.reason


def test_appending_after_a_tail_deletion_does_not_paper_over_it(trail, clock, raw):
    record_reads(trail, clock, 5)
    raw.execute("DELETE FROM audit_log WHERE seq = 5")
    trail.record(SERVICE, "read", subject_hash=ALICE)

    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 6)


def test_verification_reads_in_batches_and_still_finds_the_first_bad_event(trail, clock, raw):
    record_reads(trail, clock, 30)
    raw.execute("UPDATE audit_log SET resource_ref = 1 WHERE seq = 20")
    raw.execute("UPDATE audit_log SET resource_ref = 1 WHERE seq = 25")

    result = trail.verify(batch_size=7)
    assert (result.first_bad, result.checked) == (20, 19)


# -- retention of the trail itself ---------------------------------------------------------

def test_purge_removes_only_old_events_and_the_chain_still_verifies(trail, clock, vault):
    record_reads(trail, clock, 10)                          # 00:00 .. 00:09
    cutoff = T0 + timedelta(minutes=6)

    assert trail.purge_older_than(cutoff, batch_size=4) == 6

    assert [e.seq for e in trail.query()] == [7, 8, 9, 10]
    assert trail.verify() == ChainVerification(True, 4, None, None)
    checkpoints = vault.query("SELECT purged_through_seq FROM audit_checkpoints")
    assert [c["purged_through_seq"] for c in checkpoints] == [6]  # one row per run, advanced


def test_events_after_a_purge_chain_on_and_verify(trail, clock):
    record_reads(trail, clock, 5)
    assert trail.purge_older_than(clock.now + timedelta(days=1)) == 5
    assert trail.verify().ok and trail.query() == []

    event = trail.record(ADMIN, "read", subject_hash=BOB)
    assert event.seq == 6
    record_reads(trail, clock, 2)
    assert trail.purge_older_than(T0) == 0
    assert trail.verify() == ChainVerification(True, 3, None, None)


def test_purge_with_nothing_old_enough_changes_nothing(trail, clock, vault):
    record_reads(trail, clock, 3)
    assert trail.purge_older_than(T0) == 0
    assert len(trail.query()) == 3
    assert vault.query("SELECT * FROM audit_checkpoints") == []


def test_purge_refuses_to_erase_evidence_of_tampering(trail, clock, raw):
    record_reads(trail, clock, 5)
    raw.execute("UPDATE audit_log SET occurred_at = occurred_at + 1 WHERE seq = 2")

    with pytest.raises(AuditChainBrokenError) as caught:
        trail.purge_older_than(clock.now)
    assert caught.value.seq == 2 and "edited" in caught.value.reason
    assert isinstance(caught.value, AuditError)
    assert len(trail.query()) == 5


def test_deleting_the_purge_checkpoint_is_detected(trail, clock, raw):
    record_reads(trail, clock, 5)
    trail.purge_older_than(T0 + timedelta(minutes=2))
    raw.execute("DELETE FROM audit_checkpoints")

    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 3)


# -- concurrency --------------------------------------------------------------------------

def test_concurrent_appends_from_four_threads_form_one_unbroken_chain(vault):
    trail = AuditTrail(vault)
    errors: list[BaseException] = []
    # The threads meet at a barrier every ROUND appends: within a round they race freely, and
    # every round holds events of all four, so the chain must interleave them (no timing).
    rounds, per_round = 8, 25
    meet = threading.Barrier(4)

    def append(worker: int) -> None:
        try:
            for i in range(rounds * per_round):
                if i % per_round == 0:
                    meet.wait(timeout=60)
                trail.record(Actor(f"tok_{worker}", "service"), "read",
                             subject_hash=f"{worker:064x}", request_id=f"{worker}-{i}")
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)
            meet.abort()

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    counts = vault.query_one("SELECT count(*), min(seq), max(seq) FROM audit_log")
    assert tuple(counts) == (800, 1, 800)
    result = trail.verify()
    assert (result.ok, result.checked) == (True, 800)
    actors = [e.actor_id for e in trail.query(limit=1000)]
    assert all(actors.count(f"tok_{w}") == 200 for w in range(4))
    # Each thread's requests stay in order, and the rounds are not mixed up.
    for w in range(4):
        mine = [e.request_id for e in trail.query(limit=1000) if e.actor_id == f"tok_{w}"]
        assert mine == [f"{w}-{i}" for i in range(200)]
    assert sum(a != b for a, b in zip(actors, actors[1:])) >= 3 * rounds


_CHILD = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from compliance.audit import Actor, AuditTrail
from twin.storage import Database, PostgresSettings, open_postgresql
url = {url!r}
vault = open_postgresql(PostgresSettings(url, pool_size=1)) if url else Database({path!r}, bytes.fromhex({key!r}))
vault.connection()
trail = AuditTrail(vault)
mine, theirs = Path({progress!r} + "{n}"), Path({progress!r} + str(1 - {n}))

def publish(count):
    tmp = mine.with_suffix(".tmp")
    tmp.write_text(str(count))
    os.replace(tmp, mine)  # atomic: the other process reads a whole number or nothing

def wait_for_the_other(count):
    # Lockstep every 25 appends: the other process has appended as many, so the two runs
    # overlap in every round whatever the scheduler does.
    publish(count)
    deadline = time.monotonic() + 120
    while True:
        seen = theirs.read_text() if theirs.exists() else ""
        if seen and int(seen) >= count:
            return
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.001)

for i in range(150):
    if i % 25 == 0:
        wait_for_the_other(i)
    trail.record(Actor("proc:{n}", "system"), "read", request_id=str(i))
publish(150)
"""


def test_concurrent_appends_from_two_processes_form_one_unbroken_chain(vault, db_key, tmp_path):
    trail = AuditTrail(vault)
    children = [subprocess.Popen([sys.executable, "-c", _CHILD.format(
        root=str(REPO_ROOT), path=str(getattr(vault, "path", "")), key=db_key.hex(), n=n,
        url="" if isinstance(vault, FileBacked) else vault.settings.url,
        progress=str(tmp_path / "progress-"))], cwd=REPO_ROOT) for n in range(2)]
    assert [child.wait(timeout=180) for child in children] == [0, 0]

    result = trail.verify()
    assert (result.ok, result.checked) == (True, 300)
    actors = [e.actor_id for e in trail.query(limit=300)]
    assert actors.count("proc:0") == actors.count("proc:1") == 150
    # The children run in lockstep rounds of 25 appends (see _CHILD): each of the 6 rounds
    # holds events of both, so the chain switches between them at least once per round.
    switches = sum(a != b for a, b in zip(actors, actors[1:]))
    assert switches >= 6, "the two processes did not interleave; the test proved nothing"
