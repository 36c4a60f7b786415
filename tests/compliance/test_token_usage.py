"""When a token was last used: noted without a write on the request, recorded at most hourly by
one background writer thread (or by flush_usage/close), a failed write retried."""

from __future__ import annotations

import pytest

from compliance.tokens import TokenStore
from issued_tokens import stored


@pytest.mark.sqlite_only("counts SQLite changes on the connection")
def test_last_use_is_noted_without_a_write_and_recorded_at_most_hourly(vault, clock):
    tokens = TokenStore(vault, clock=clock, usage_flush_seconds=0)  # no background writer here
    issued = tokens.issue("service")
    token_id = issued.identity.token_id
    own = vault.connection()
    with vault.writes_held() as writes:  # where a write would run
        pass

    def changes() -> int:
        return own.total_changes + writes.total_changes

    changes_before = changes()
    for _ in range(50):
        assert tokens.verify(issued.token) is not None
    assert changes() == changes_before  # a request writes nothing
    assert stored(vault, token_id, "last_used_at") is None
    assert tokens.flush_usage() == 1
    first = stored(vault, token_id, "last_used_at")
    assert first is not None

    clock.advance(minutes=59)
    tokens.verify(issued.token)
    assert tokens.flush_usage() == 0  # within the hour: nothing new to write
    clock.advance(minutes=2)
    tokens.verify(issued.token)
    assert tokens.flush_usage() == 1 and stored(vault, token_id, "last_used_at") > first

    # Another process (a restarted service) reads the last use and does not write it again.
    other = TokenStore(vault, clock=clock, usage_flush_seconds=0)
    other.verify(issued.token)
    assert other.flush_usage() == 0


def test_the_background_writer_records_use_and_close_flushes_the_rest(vault, clock):
    import time

    tokens = TokenStore(vault, clock=clock, usage_flush_seconds=0.05)
    issued = tokens.issue("service")
    tokens.verify(issued.token)
    deadline = time.monotonic() + 60
    while stored(vault, issued.identity.token_id, "last_used_at") is None:
        assert time.monotonic() < deadline, "the background writer never wrote"
        time.sleep(0.02)
    second = tokens.issue("admin")
    tokens._flush_seconds = 3600  # noqa: SLF001 - a writer too slow to get there before close
    tokens.verify(second.token)
    tokens.close()
    assert stored(vault, second.identity.token_id, "last_used_at") is not None


def test_a_use_answered_from_the_cache_is_still_recorded_as_the_last_use(vault, monotonic):
    from datetime import datetime, timedelta, timezone

    from twin.storage.timestamps import to_db

    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    now = [start]
    tokens = TokenStore(vault, clock=lambda: now[0], cache_seconds=3600 * 24, monotonic=monotonic,
                        usage_flush_seconds=0)
    issued = tokens.issue("service")
    tokens.verify(issued.token)  # read from the vault, remembered
    now[0] = start + timedelta(hours=2)

    assert tokens.verify(issued.token) is not None  # from the cache: monotonic time did not move
    tokens.flush_usage()

    assert stored(vault, issued.identity.token_id, "last_used_at") == to_db(start + timedelta(hours=2))


def test_a_use_exactly_an_hour_after_the_last_recorded_one_is_recorded(vault):
    from datetime import datetime, timedelta, timezone

    from twin.storage.timestamps import to_db

    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    now = [start]
    tokens = TokenStore(vault, clock=lambda: now[0], usage_flush_seconds=0)
    issued = tokens.issue("service")
    tokens.verify(issued.token)
    now[0] = start + timedelta(minutes=30)
    tokens.verify(issued.token)  # within the hour of a use noted, not yet written
    assert tokens.flush_usage() == 1
    assert stored(vault, issued.identity.token_id, "last_used_at") == to_db(start)  # the first use

    now[0] = start + timedelta(hours=1)
    tokens.verify(issued.token)
    assert tokens.flush_usage() == 1
    assert stored(vault, issued.identity.token_id, "last_used_at") == to_db(start + timedelta(hours=1))


def test_without_a_flush_period_no_writer_thread_starts_and_close_writes_the_uses(vault, clock):
    import threading

    before = set(threading.enumerate())  # other tests' stores may still have theirs
    tokens = TokenStore(vault, clock=clock, usage_flush_seconds=0)
    issued = tokens.issue("service")
    tokens.verify(issued.token)

    assert set(threading.enumerate()) - before == set()
    tokens.close()
    assert stored(vault, issued.identity.token_id, "last_used_at") is not None


def test_the_writer_is_one_daemon_thread_named_token_usage(vault, clock):
    # A daemon, so a process that never calls close() still exits; named, so a thread dump says
    # what it is.
    import threading

    before = set(threading.enumerate())  # other tests' stores may still have theirs
    tokens = TokenStore(vault, clock=clock, usage_flush_seconds=3600)
    for _ in range(3):
        tokens.verify(tokens.issue("service").token)
    writers = [t for t in threading.enumerate() if t not in before]
    assert [t.name for t in writers] == ["token-usage"]
    try:
        assert writers[0].daemon
    finally:
        tokens.close()
    assert not writers[0].is_alive()


_REFUSE_UPDATES = ("CREATE TRIGGER refuse_token_updates BEFORE UPDATE ON api_tokens "
                   "BEGIN SELECT RAISE(ABORT, 'vault unavailable'); END")


@pytest.mark.sqlite_only("a SQLite trigger makes the vault refuse the write")
def test_a_use_whose_write_failed_is_written_by_the_next_flush(vault):
    from datetime import datetime, timezone

    from twin.storage import IntegrityError
    from twin.storage.timestamps import to_db

    used_at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    tokens = TokenStore(vault, clock=lambda: used_at, usage_flush_seconds=0)
    issued = tokens.issue("service")
    tokens.verify(issued.token)
    vault.execute(_REFUSE_UPDATES)
    with pytest.raises(IntegrityError, match="vault unavailable"):
        tokens.flush_usage()
    vault.execute("DROP TRIGGER refuse_token_updates")

    assert tokens.flush_usage() == 1
    assert stored(vault, issued.identity.token_id, "last_used_at") == to_db(used_at)


@pytest.mark.sqlite_only("a SQLite trigger makes the vault refuse the write")
def test_the_background_writer_logs_a_failed_write_with_its_cause_and_retries(vault, clock, caplog):
    import logging
    import time

    tokens = TokenStore(vault, clock=clock, usage_flush_seconds=0.02)
    issued = tokens.issue("service")
    vault.execute(_REFUSE_UPDATES)
    with caplog.at_level(logging.WARNING, logger="compliance.tokens"):
        tokens.verify(issued.token)
        deadline = time.monotonic() + 30
        while not caplog.records:  # wait for the writer's first (refused) round
            assert time.monotonic() < deadline, "the background writer never tried"
            time.sleep(0.01)
        vault.execute("DROP TRIGGER refuse_token_updates")
        while stored(vault, issued.identity.token_id, "last_used_at") is None:
            assert time.monotonic() < deadline, "the background writer never retried"
            time.sleep(0.01)
    tokens.close()

    record = caplog.records[0]
    assert record.getMessage() == "could not record token use; will retry"
    assert record.exc_info is not None and "vault unavailable" in str(record.exc_info[1])
