"""The staging's background flusher (``compliance.audit_staging.Flusher``, shared by the
journal and the vault staging): it flushes once per wake-up after gathering a batch, retries a
failed flush without being woken again (backing off, and saying so), starts again if its thread
died, and never holds up a process that ends or stops it."""

from __future__ import annotations

import logging
import threading

import pytest

from compliance.audit_staging import Flusher, retry_delay
from staged_journal import CHILD_STAGES_THREE, in_vault, run_child, segment_files, stage_reads
from twin.storage import DatabaseBusyError


class Flushes:
    """A flush that records its calls; each raises the next of ``outcomes`` (None: succeeds)
    and may wait for ``release`` first."""

    def __init__(self, *outcomes: BaseException | None, release: threading.Event | None = None) -> None:
        self.outcomes = list(outcomes)
        self.release = release
        self.calls = 0
        self.finished = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.calls += 1
            outcome = self.outcomes.pop(0) if self.outcomes else None
            self._cond.notify_all()
        if self.release is not None:
            self.release.wait(10)
        with self._cond:
            self.finished += 1
            self._cond.notify_all()
        if outcome is not None:
            raise outcome

    def wait_for_calls(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.calls >= count, timeout=10), self.calls


@pytest.fixture
def flusher():
    made: list[Flusher] = []

    def make(flush, delay: float = 0.001) -> Flusher:
        made.append(Flusher(flush, delay))
        return made[-1]

    yield make
    for each in made:
        each.stop(timeout=1)


def test_the_wait_before_a_flush_doubles_with_each_failure_in_a_row_up_to_5_s():
    assert [retry_delay(0.5, failures) for failures in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert retry_delay(0.75, 3) == 5.0  # 6 s, capped
    assert retry_delay(0.02, 0) == 0.02


class VaultBusyInThisTest(DatabaseBusyError):
    """Named so that only this test's retries are looked at."""


def test_a_failed_flush_is_retried_without_a_wake_up_and_logged_with_its_attempt(flusher, caplog):
    busy = VaultBusyInThisTest("busy")
    flushes = Flushes(busy, busy, None, busy)
    caplog.set_level(logging.WARNING, logger="compliance.audit_staging")
    running = flusher(flushes)

    running.wake()
    flushes.wait_for_calls(3)  # two failures, then it went through
    running.wake()
    flushes.wait_for_calls(5)  # a failure again: its count starts over

    retries = [r for r in caplog.records if "VaultBusyInThisTest" in r.getMessage()]
    assert [r.getMessage() for r in retries] == [
        f"staged audit events not moved into the trail yet (VaultBusyInThisTest, attempt {n}); retrying"
        for n in (1, 2, 1)]
    assert {r.threadName for r in retries} == {"audit-flusher"}  # named in logs and thread dumps


def test_without_a_wake_up_there_is_no_flush(flusher):
    import time

    flushes = Flushes()
    running = flusher(flushes)
    running.wake()
    flushes.wait_for_calls(1)

    time.sleep(0.3)  # 300 times its delay: a flusher that did not wait would have flushed again

    assert flushes.calls == 1


def test_a_flusher_whose_thread_died_starts_a_new_one_when_woken(flusher, monkeypatch):
    class Fatal(BaseException):
        """Not an Exception: no retry, the thread ends."""

    died = threading.Event()
    monkeypatch.setattr(threading, "excepthook", lambda args: died.set())
    flushes = Flushes(Fatal())
    running = flusher(flushes)
    running.wake()
    assert died.wait(10)

    running.wake()

    flushes.wait_for_calls(2)


def test_stop_waits_for_the_flush_under_way(flusher):
    release = threading.Event()
    flushes = Flushes(release=release)
    running = flusher(flushes)
    running.wake()
    flushes.wait_for_calls(1)
    threading.Timer(0.2, release.set).start()

    running.stop()

    assert flushes.finished == 1


def test_stop_gives_up_on_a_flush_that_hangs_after_its_timeout(flusher):
    release = threading.Event()
    flushes = Flushes(release=release)
    running = flusher(flushes)
    running.wake()
    flushes.wait_for_calls(1)
    eventually = threading.Timer(5, release.set)  # the hung flush ends, eventually
    eventually.start()

    running.stop(timeout=0.05)

    assert flushes.finished == 0  # stop returned while the flush still hung
    release.set()
    eventually.cancel()  # no timer thread left for the next tests
    eventually.join()


@pytest.mark.sqlite_only("the audit journal's segment files beside the vault file")
def test_a_process_ending_without_closing_its_trail_exits_and_the_next_chains_its_events(
        tmp_path, keyring, vault, journal_dir, make_trail):
    # The flusher's thread is waiting out its hour-long delay: the process must not wait for it.
    run_child(tmp_path, keyring, vault.path, journal_dir, CHILD_STAGES_THREE, die=False, timeout=30)
    assert len(segment_files(journal_dir)) == 1 and in_vault(vault) == 0

    trail = make_trail()
    stage_reads(trail, 1)  # this process's flusher, woken as the child's was
    assert trail.flush() == 4
