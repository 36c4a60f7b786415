"""A subject's record of disclosures is read through the subject index: the work grows with that
subject's events, not with the trail (counted in SQLite virtual-machine steps, not seconds)."""

from __future__ import annotations

from typing import Callable

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.audit_events import compute_event_hash
from compliance.hash_chain import GENESIS_HASH

# Counted with SQLite's progress handler; PostgreSQL reads the same indexes (its plans are not
# counted here).
pytestmark = pytest.mark.sqlite_only("counts SQLite's virtual-machine steps (a progress handler)")

SERVICE = Actor("tok_service1", "service")
ALICE, BOB = "a" * 64, "b" * 64


def vm_steps(vault, read: Callable[[], object]) -> tuple[int, object]:
    """How many SQLite virtual-machine steps (in units of 100) ``read`` costs, and its result."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn = vault.connection()
    conn.set_progress_handler(count, 100)
    try:
        result = read()
    finally:
        conn.set_progress_handler(None, 100)
    return steps, result


def others(trail: AuditTrail, count: int) -> None:
    trail.record_many([(SERVICE, "read", {"subject_hash": f"{i % 500:064x}", "resource": f"profile:p{i % 500}"})
                       for i in range(count)])


def test_a_subjects_disclosures_cost_the_same_in_a_trail_ten_times_longer(open_catalog_db):
    vault = open_catalog_db("privacy_vault")
    trail = AuditTrail(vault)
    others(trail, 2_000)
    trail.record_many([(SERVICE, "read", {"subject_hash": ALICE}) for _ in range(10)])
    small, events = vm_steps(vault, lambda: list(trail.iter_subject(ALICE)))
    small_page, page = vm_steps(vault, lambda: trail.query(subject_hash=ALICE, action="read", limit=100))
    assert len(events) == len(page) == 10

    others(trail, 20_000)
    large, events = vm_steps(vault, lambda: list(trail.iter_subject(ALICE)))
    large_page, page = vm_steps(vault, lambda: trail.query(subject_hash=ALICE, action="read", limit=100))
    assert len(events) == len(page) == 10
    scan, _ = vm_steps(vault, lambda: vault.query("SELECT count(*) FROM audit_log WHERE action = 0"))

    assert large <= small * 1.5 + 2 and large_page <= small_page * 1.5 + 2, (small, large, small_page, large_page)
    assert scan > 20 * large  # what reading the trail would have cost


def test_old_rows_of_a_subject_are_read_through_their_own_subject_index(open_catalog_db):
    vault = open_catalog_db("privacy_vault")

    def legacy(count: int, first: int) -> None:
        prev = GENESIS_HASH if first == 1 else vault.query_one(
            "SELECT event_hash FROM audit_events WHERE seq = ?", (first - 1,))[0]
        rows = []
        for seq in range(first, first + count):
            row = {"seq": seq, "event_id": f"e{seq:015d}", "occurred_at": "2026-01-01T00:00:00.000000Z",
                   "actor_id": "tok_old", "actor_role": "service", "action": "read",
                   "subject_hash": ALICE if seq in (1000, 2000) else BOB, "resource": None, "request_id": None,
                   "details": None, "prev_hash": prev}
            row["event_hash"] = prev = compute_event_hash(row)
            rows.append(tuple(row.values()))
        vault.write(lambda conn: conn.executemany(
            "INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows))

    trail = AuditTrail(vault)
    legacy(2_000, 1)
    small, events = vm_steps(vault, lambda: list(trail.iter_subject(ALICE)))
    assert [e.seq for e in events] == [1000, 2000]
    legacy(20_000, 2_001)
    large, events = vm_steps(vault, lambda: list(trail.iter_subject(ALICE)))
    assert [e.seq for e in events] == [1000, 2000] and trail.verify().ok

    assert large <= small * 1.5 + 2, (small, large)
