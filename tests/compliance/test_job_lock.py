"""The job lock (``compliance/job_lock.py``): a job never runs twice at once, across processes
and hosts sharing the vault, and a crashed holder never keeps it for long. On SQLCipher it is
a lease row in ``job_locks``; on PostgreSQL a session advisory lock that leaves no row."""

from __future__ import annotations

import os
import re
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from compliance.job_lock import JobAlreadyRunningError, JobLock, holder_id
from storage_backends import end_lock_session
from twin.storage.postgresql.session_lock import LockLostError
from twin.storage.timestamps import to_db

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
LEASE = timedelta(minutes=10)  # JobLock's default


class SetClock:
    """A clock the test sets: each call returns ``now``."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class SteppingClock:
    """A clock that reads ``first`` on its first call and ``then`` on every later call: a
    lease that ends between one attempt to take the lock and the next."""

    def __init__(self, first: datetime, then: datetime) -> None:
        self.calls, self.first, self.then = 0, first, then

    def __call__(self) -> datetime:
        self.calls += 1
        return self.first if self.calls == 1 else self.then


@pytest.fixture
def clock() -> SetClock:
    return SetClock()


def leases(vault) -> list[tuple]:
    return [tuple(r) for r in vault.query("SELECT name, holder, acquired_at, expires_at FROM job_locks")]


def test_a_holder_id_names_the_host_and_process_and_is_never_reused():
    host, pid, nonce = holder_id().split(":")

    assert host == socket.gethostname()[:40] and pid == str(os.getpid())
    assert re.fullmatch("[0-9a-f]{8}", nonce)
    assert len({holder_id() for _ in range(20)}) == 20  # a restarted process (same pid) differs


def test_a_long_host_name_is_cut_to_40_characters_in_the_holder_id(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 60)

    assert holder_id().split(":")[0] == "h" * 40


def test_two_locks_of_one_job_have_different_holders(vault, clock):
    assert JobLock(vault, "nightly", clock).holder != JobLock(vault, "nightly", clock).holder


# -- a lease in job_locks (SQLCipher) ------------------------------------------------------

@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_taking_the_lock_writes_a_ten_minute_lease_naming_its_holder(vault, clock):
    lock = JobLock(vault, "nightly", clock)
    lock.acquire()

    assert leases(vault) == [("nightly", lock.holder, to_db(T0), to_db(T0 + LEASE))]


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_another_holder_is_refused_until_the_lease_ends_and_told_until_when(vault, clock):
    first, second = JobLock(vault, "nightly", clock), JobLock(vault, "nightly", clock)
    first.acquire()
    clock.advance(minutes=9, seconds=59)

    with pytest.raises(JobAlreadyRunningError) as refused:
        second.acquire()
    assert str(refused.value) == f"job 'nightly' is already running (lease until {to_db(T0 + LEASE)})"

    clock.advance(seconds=1)  # the lease's last instant: it has ended
    second.acquire()
    assert leases(vault) == [("nightly", second.holder, to_db(T0 + LEASE), to_db(T0 + 2 * LEASE))]


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_a_lease_is_per_job_and_its_holder_may_take_it_again(vault, clock):
    lock = JobLock(vault, "nightly", clock)
    lock.acquire()
    JobLock(vault, "weekly", clock).acquire()  # another job: not refused
    clock.advance(minutes=1)

    lock.acquire()

    assert (("nightly", lock.holder, to_db(clock.now), to_db(clock.now + LEASE))) in leases(vault)


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_a_released_lease_is_gone_and_only_its_holder_can_release_it(vault, clock):
    holder, other = JobLock(vault, "nightly", clock), JobLock(vault, "nightly", clock)
    holder.acquire()

    other.release()
    assert [row[1] for row in leases(vault)] == [holder.holder]

    holder.release()
    assert leases(vault) == []
    other.acquire()  # at once, lease or not


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_a_lease_given_is_the_lease_written(vault, clock):
    JobLock(vault, "nightly", clock, lease=timedelta(seconds=30)).acquire()

    assert leases(vault)[0][3] == to_db(T0 + timedelta(seconds=30))


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_refresh_writes_the_lease_again_only_once_a_tenth_of_it_has_passed(vault, clock):
    lock = JobLock(vault, "nightly", clock)
    lock.acquire()
    vault.enable_statement_counting()

    def refresh_writes() -> bool:
        before = vault.statement_counts()
        lock.refresh()
        return (vault.statement_counts() - before).statements > 0

    assert not refresh_writes()  # just taken
    clock.advance(seconds=59)
    assert not refresh_writes() and leases(vault)[0][3] == to_db(T0 + LEASE)
    clock.advance(seconds=1)  # a tenth of the lease since it was written
    assert refresh_writes() and leases(vault)[0][3] == to_db(clock.now + LEASE)
    assert not refresh_writes()
    clock.advance(minutes=-5)  # the clock went back: the lease is written from now
    assert refresh_writes() and leases(vault)[0][3] == to_db(clock.now + LEASE)


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_a_holder_whose_lease_was_taken_over_does_not_extend_the_new_holders(vault, clock):
    first, second = JobLock(vault, "nightly", clock), JobLock(vault, "nightly", clock)
    first.acquire()
    clock.advance(minutes=11)
    second.acquire()
    clock.advance(minutes=2)

    first.refresh()

    assert leases(vault) == [("nightly", second.holder, to_db(T0 + timedelta(minutes=11)),
                              to_db(T0 + timedelta(minutes=21)))]


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_acquire_refuses_at_once_by_default_and_waits_when_asked(vault):
    JobLock(vault, "nightly", lambda: T0).acquire()  # a holder that never releases
    after_its_lease = T0 + timedelta(minutes=11)

    # The lease ends between the first attempt and the next: only a waiting acquire sees it.
    with pytest.raises(JobAlreadyRunningError):
        JobLock(vault, "nightly", SteppingClock(T0, after_its_lease)).acquire()
    waiter = JobLock(vault, "nightly", SteppingClock(T0, after_its_lease))
    waiter.acquire(wait=30)
    assert [row[1] for row in leases(vault)] == [waiter.holder]


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_a_waiting_acquire_gives_up_once_its_wait_is_over(vault, clock):
    JobLock(vault, "nightly", clock).acquire()
    started = time.monotonic()

    with pytest.raises(JobAlreadyRunningError):
        JobLock(vault, "nightly", clock).acquire(wait=0.3)
    assert time.monotonic() - started >= 0.3


@pytest.mark.sqlite_only("a lease in job_locks; on PostgreSQL the lock lives as long as its session")
def test_as_a_context_manager_the_lock_is_held_inside_and_released_after(vault, clock):
    with JobLock(vault, "nightly", clock) as lock:
        assert [row[1] for row in leases(vault)] == [lock.holder]
    assert leases(vault) == []


# -- a session advisory lock (PostgreSQL) --------------------------------------------------

@pytest.mark.postgresql_only("a session advisory lock")
def test_on_a_server_another_holder_is_refused_until_release_and_no_row_is_written(vault, clock):
    first, second = JobLock(vault, "nightly", clock), JobLock(vault, "nightly", clock)
    first.acquire()

    with pytest.raises(JobAlreadyRunningError) as refused:
        second.acquire()
    assert str(refused.value) == "job 'nightly' is already running (another process holds its lock)"
    JobLock(vault, "weekly", clock).acquire()  # another job: not refused
    assert leases(vault) == []

    first.release()
    second.acquire()
    second.release()


@pytest.mark.postgresql_only("a session advisory lock")
def test_on_a_server_refresh_raises_once_the_holders_session_is_gone(vault, clock):
    lock = JobLock(vault, "nightly", clock)
    lock.acquire()
    lock.refresh()  # still held

    assert end_lock_session(vault.settings.url, "job:nightly") == 1

    with pytest.raises(LockLostError):
        lock.refresh()
    JobLock(vault, "nightly", clock).acquire()  # freed by the server with the session


@pytest.mark.postgresql_only("a session advisory lock")
def test_on_a_server_the_context_manager_releases_the_lock(vault, clock):
    with JobLock(vault, "nightly", clock):
        with pytest.raises(JobAlreadyRunningError):
            JobLock(vault, "nightly", clock).acquire()
    with JobLock(vault, "nightly", clock) as lock:
        assert isinstance(lock, JobLock)


@pytest.mark.postgresql_only("a session advisory lock")
def test_on_a_server_a_released_lock_is_free_the_moment_release_returns(vault, clock):
    """Closing the lock's connection only asks the server to end the session, which then drops
    its locks a moment later: a run started right after another (a dry run, then the run) was
    refused as already running. Released, the lock is free for the next taker at once."""
    lock = JobLock(vault, "nightly", clock)
    lock.acquire()
    for _ in range(1000):  # closing alone failed within 1000 in 2 of 3 runs
        lock.release()
        lock = JobLock(vault, "nightly", clock)
        lock.acquire()  # never JobAlreadyRunningError
    lock.release()
