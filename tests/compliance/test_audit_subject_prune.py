"""Retention deletes a subject hash once no audit event names it, but never from under an
appender that already looked the subject up: the appender's event would name a subject that
is gone. Raced for real, with an append held open between its lookup and its commit (the
flusher's: under the chain lock), on both backends; PostgreSQL is where the race could happen
(SQLite serialises writers)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from compliance.audit import Actor, AuditTrail
from compliance.audit_events import validated
from compliance.audit_vault_staging import CHAIN_LOCK
from ticking_clock import T0

SERVICE = Actor("tok_service1", "service")
CAROL, DAVE = "c" * 64, "d" * 64


@pytest.fixture
def trail(make_archiving_trail) -> AuditTrail:
    return make_archiving_trail()


def _carol_then_dave(trail: AuditTrail) -> None:
    """Carol's events 1-10, Dave's 11-25 (the clock ticks a second per event)."""
    trail.record_many([(SERVICE, "read", {"subject_hash": CAROL if i < 10 else DAVE}) for i in range(25)])


def _subjects(trail: AuditTrail) -> set[str]:
    return {r[0] for r in trail.vault.query("SELECT subject_hash FROM audit_subjects")}


@pytest.mark.parametrize("archived", [True, False], ids=["expired segment", "live events"])
def test_retention_waits_for_an_append_that_looked_the_subject_up_and_keeps_the_subject(trail, archived):
    _carol_then_dave(trail)
    cutoff = T0 + timedelta(seconds=10, milliseconds=500)  # Carol's events expire, Dave's stay
    if archived:
        assert trail.archive_older_than(cutoff + timedelta(seconds=1)).segments == 1  # 1-10
    vault = trail.vault
    purged: list[int] = []
    pruner = threading.Thread(target=lambda: purged.append(trail.purge_older_than(cutoff)))

    with vault.transaction(lock=CHAIN_LOCK) as conn:  # the flusher chaining a staged event of Carol's
        trail._append_rows(conn, [validated(SERVICE, "read", {"subject_hash": CAROL})])  # noqa: SLF001
        pruner.start()
        pruner.join(timeout=1.0)
        assert pruner.is_alive()  # held back until the append commits
    pruner.join(timeout=30)

    assert not pruner.is_alive() and purged == [10]
    assert CAROL in _subjects(trail)  # her newest event names her
    assert [e.seq for e in trail.iter_subject(CAROL)] == [26]
    full = trail.verify(full=True)
    assert (full.ok, full.checked) == (True, 16), full.reason


def test_with_no_append_under_way_an_expired_subject_goes(trail):
    _carol_then_dave(trail)
    assert trail.purge_older_than(T0 + timedelta(seconds=10, milliseconds=500)) == 10
    assert _subjects(trail) == {DAVE}
