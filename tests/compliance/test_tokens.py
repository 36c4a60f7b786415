"""API tokens: shown once, stored as a hash, bound to a role (and a subject for learners)."""

from __future__ import annotations

import pytest

from compliance.tokens import TokenError, TokenIdentity, TokenStore
from racing_vault import AfterNextRead

SUBJECT = "5" * 64


@pytest.fixture
def vault(open_catalog_db):
    return open_catalog_db("privacy_vault")


@pytest.fixture
def tokens(vault) -> TokenStore:
    return TokenStore(vault)


@pytest.mark.parametrize("role", ["admin", "service"])
def test_an_issued_token_verifies_as_its_role(tokens, role):
    issued = tokens.issue(role, label="ci")

    assert issued.token.startswith("lt_")
    assert tokens.verify(issued.token) == TokenIdentity(issued.identity.token_id, role, None)


def test_a_learner_token_is_bound_to_its_subject(tokens):
    issued = tokens.issue("learner", subject_hash=SUBJECT)

    assert tokens.verify(issued.token).subject_hash == SUBJECT


@pytest.mark.parametrize("role, subject", [("learner", None), ("admin", SUBJECT), ("root", None)])
def test_inconsistent_roles_are_refused(tokens, role, subject):
    with pytest.raises(TokenError):
        tokens.issue(role, subject_hash=subject)


def test_only_a_hash_of_the_secret_is_stored(tokens, vault):
    issued = tokens.issue("admin")
    secret = issued.token.partition(".")[2]

    rows = [tuple(r) for r in vault.query("SELECT * FROM api_tokens")]

    assert not any(secret in str(value) for row in rows for value in row)
    assert all("token_hash" not in item for item in tokens.list())


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),   # wrong secret
    lambda t: t.replace("lt_", "xx_", 1),                 # wrong prefix
    lambda t: t.partition(".")[0],                        # no secret
    lambda t: "lt_" + "0" * 16 + "." + t.partition(".")[2],  # unknown id
    lambda t: t + "x" * 200,                              # absurdly long
    lambda t: "",
    lambda t: "lt_.",
])
def test_anything_but_the_exact_token_is_rejected(tokens, mangle):
    issued = tokens.issue("service")

    assert tokens.verify(mangle(issued.token)) is None


def test_a_revoked_token_stops_working(tokens):
    issued = tokens.issue("service")

    assert tokens.revoke(issued.identity.token_id) is True

    assert tokens.verify(issued.token) is None
    assert tokens.revoke(issued.identity.token_id) is False
    assert tokens.list()[0]["revoked_at"] is not None


def test_revoking_a_subject_deletes_only_their_tokens(tokens):
    mine = tokens.issue("learner", subject_hash=SUBJECT)
    theirs = tokens.issue("learner", subject_hash="6" * 64)
    service = tokens.issue("service")

    assert tokens.revoke_subject(SUBJECT) == 1

    assert tokens.verify(mine.token) is None
    assert tokens.verify(theirs.token) is not None and tokens.verify(service.token) is not None


def test_every_token_is_different(tokens):
    issued = {tokens.issue("service").token for _ in range(20)}

    assert len(issued) == 20


# -- the verified-token cache -------------------------------------------------------------------

OTHER_SUBJECT = "6" * 64


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def caching(vault, monotonic) -> TokenStore:
    """A store remembering verified tokens for 5 seconds, as a service process would."""
    return TokenStore(vault, cache_seconds=5, monotonic=monotonic)


@pytest.fixture
def other_process(vault) -> TokenStore:
    """Another TokenStore on the same vault: what scripts/issue_token.py --revoke uses."""
    return TokenStore(vault)


def test_a_revocation_by_another_process_takes_effect_once_the_cache_entry_expires(
        caching, other_process, monotonic):
    issued = other_process.issue("service")
    assert caching.verify(issued.token) == issued.identity

    assert other_process.revoke(issued.identity.token_id) is True

    monotonic.advance(4.9)
    assert caching.verify(issued.token) == issued.identity  # still remembered
    monotonic.advance(0.2)
    assert caching.verify(issued.token) is None
    assert other_process.verify(issued.token) is None


def test_without_a_cache_a_revocation_by_another_process_takes_effect_at_once(tokens, other_process):
    """cache_seconds defaults to 0: every verification reads the vault."""
    issued = tokens.issue("service")
    assert tokens.verify(issued.token) == issued.identity

    other_process.revoke(issued.identity.token_id)

    assert tokens.verify(issued.token) is None


def test_revoking_through_the_caching_store_takes_effect_at_once(caching):
    issued = caching.issue("admin")
    assert caching.verify(issued.token) == issued.identity

    assert caching.revoke(issued.identity.token_id) is True

    assert caching.verify(issued.token) is None


def test_a_cached_token_id_with_a_wrong_secret_is_refused(caching):
    """The cache compares the hash of the presented secret, not just the token id."""
    issued = caching.issue("admin")
    token_id = issued.identity.token_id
    assert caching.verify(issued.token) == issued.identity

    assert caching.verify(f"lt_{token_id}.{'x' * 43}") is None
    assert caching.verify(issued.token) == issued.identity


def test_a_refused_attempt_is_not_remembered(caching, other_process, vault):
    """Failures are never cached: neither a wrong secret nor a token refused while revoked."""
    issued = other_process.issue("service")
    assert caching.verify(issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B")) is None
    vault.write(lambda conn: conn.execute("UPDATE api_tokens SET revoked_at = '2030-01-01T00:00:00.000000Z'"))
    assert caching.verify(issued.token) is None

    vault.write(lambda conn: conn.execute("UPDATE api_tokens SET revoked_at = NULL"))

    assert caching.verify(issued.token) == issued.identity


def test_forget_subject_drops_only_that_subjects_remembered_learner_tokens(caching, vault):
    mine = caching.issue("learner", subject_hash=SUBJECT)
    theirs = caching.issue("learner", subject_hash=OTHER_SUBJECT)
    service = caching.issue("service")
    for issued in (mine, theirs, service):
        assert caching.verify(issued.token) == issued.identity
    # Erasure and retention delete token rows in their own transactions, not through the store.
    vault.write(lambda conn: conn.execute("DELETE FROM api_tokens"))
    assert caching.verify(mine.token) == mine.identity  # remembered, though its row is gone

    caching.forget_subjects([SUBJECT])

    assert caching.verify(mine.token) is None
    assert caching.verify(theirs.token) == theirs.identity  # still remembered
    assert caching.verify(service.token) == service.identity


def test_revoke_subject_drops_the_subjects_remembered_learner_tokens(caching):
    mine = caching.issue("learner", subject_hash=SUBJECT)
    assert caching.verify(mine.token) == mine.identity

    assert caching.revoke_subject(SUBJECT) == 1

    assert caching.verify(mine.token) is None


def test_the_cache_holds_at_most_max_cached_tokens_dropping_the_oldest(vault, other_process, monotonic):
    caching = TokenStore(vault, cache_seconds=60, max_cached=2, monotonic=monotonic)
    first, second, third = (other_process.issue("service") for _ in range(3))
    for issued in (first, second, third):
        assert caching.verify(issued.token) == issued.identity

    assert len(caching._verified) <= 2  # noqa: SLF001
    # Revoked elsewhere, only the tokens still remembered keep verifying: the two newest.
    for issued in (first, second, third):
        other_process.revoke(issued.identity.token_id)
    assert caching.verify(first.token) is None
    assert caching.verify(second.token) == second.identity
    assert caching.verify(third.token) == third.identity


def test_expired_entries_make_room_before_live_ones_are_dropped(vault, other_process, monotonic):
    caching = TokenStore(vault, cache_seconds=10, max_cached=3, monotonic=monotonic)
    a, b, c, d = (other_process.issue("service") for _ in range(4))
    caching.verify(a.token)                       # t=0:    a until 10
    monotonic.advance(1)
    caching.verify(b.token)                       # t=1:    b until 11
    monotonic.advance(9.5)
    caching.verify(a.token)                       # t=10.5: a expired, read again: until 20.5
    caching.verify(c.token)                       #         c until 20.5; the cache is full
    monotonic.advance(1.5)                        # t=12:   only b has expired

    caching.verify(d.token)

    # b made room; a, though the first remembered, is still live and stays.
    assert set(caching._verified) == {a.identity.token_id, c.identity.token_id,  # noqa: SLF001
                                      d.identity.token_id}


def test_the_cache_keeps_no_token_or_secret(caching):
    issued = caching.issue("learner", subject_hash=SUBJECT)
    secret = issued.token.partition(".")[2]

    assert caching.verify(issued.token) == issued.identity

    remembered = repr(caching._verified.items())  # noqa: SLF001
    assert issued.identity.token_id in remembered
    assert secret not in remembered and secret[:16] not in remembered and issued.token not in remembered


def _erase_subject_tokens(store: TokenStore, vault, subject: str) -> None:
    """What erasure does: delete the rows in its own transaction, then tell the store."""
    vault.write(lambda conn: conn.execute("DELETE FROM api_tokens WHERE subject_hash = ?", (subject,)))
    store.forget_subjects([subject])


@pytest.mark.parametrize("revocation", ["revoke", "erasure"])
def test_a_revocation_racing_a_verification_is_not_undone_by_the_cache(vault, monotonic, revocation):
    """A verification that read the row before a revocation (or an erasure of the token's
    subject) must not remember the token after the revocation forgot it."""
    issued = TokenStore(vault).issue("learner", subject_hash=SUBJECT)
    store = None

    def revoke() -> None:
        if revocation == "revoke":
            store.revoke(issued.identity.token_id)
        else:
            _erase_subject_tokens(store, vault, SUBJECT)

    store = TokenStore(AfterNextRead(vault, revoke), cache_seconds=60, monotonic=monotonic)

    store.verify(issued.token)  # read the row before the revocation: may still succeed

    assert store.verify(issued.token) is None


# -- tokens that end -----------------------------------------------------------------------------

def _stored(vault, token_id: str, column: str):
    return vault.query_one(f"SELECT {column} FROM api_tokens WHERE token_id = ?", (token_id,))[0]


def test_a_token_expires_after_its_lifetime_and_90_days_by_default(vault, clock):
    from datetime import timedelta

    from compliance.tokens import DEFAULT_LIFETIME
    from twin.storage.timestamps import from_db

    tokens = TokenStore(vault, clock=clock, cache_seconds=60)
    default = tokens.issue("service")
    short = tokens.issue("admin", expires_in=timedelta(hours=2))
    created = from_db(_stored(vault, default.identity.token_id, "created_at"))
    assert from_db(_stored(vault, default.identity.token_id, "expires_at")) - created == DEFAULT_LIFETIME
    assert DEFAULT_LIFETIME == timedelta(days=90)
    assert tokens.verify(short.token) is not None  # now remembered for 60 s
    clock.advance(hours=2)
    assert tokens.verify(short.token) is None  # expired, even while remembered
    assert tokens.verify(default.token) is not None
    clock.advance(days=90)
    assert tokens.verify(default.token) is None
    assert TokenStore(vault, clock=clock).verify(default.token) is None  # and from the vault


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_a_lifetime_outside_one_second_to_ten_years_is_refused(tokens, days):
    from datetime import timedelta

    with pytest.raises(TokenError, match="lifetime"):
        tokens.issue("service", expires_in=timedelta(days=days))


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
    assert _stored(vault, token_id, "last_used_at") is None
    assert tokens.flush_usage() == 1
    first = _stored(vault, token_id, "last_used_at")
    assert first is not None

    clock.advance(minutes=59)
    tokens.verify(issued.token)
    assert tokens.flush_usage() == 0  # within the hour: nothing new to write
    clock.advance(minutes=2)
    tokens.verify(issued.token)
    assert tokens.flush_usage() == 1 and _stored(vault, token_id, "last_used_at") > first

    # Another process (a restarted service) reads the last use and does not write it again.
    other = TokenStore(vault, clock=clock, usage_flush_seconds=0)
    other.verify(issued.token)
    assert other.flush_usage() == 0


def test_the_background_writer_records_use_and_close_flushes_the_rest(vault, clock):
    import time

    tokens = TokenStore(vault, clock=clock, usage_flush_seconds=0.05)
    issued = tokens.issue("service")
    tokens.verify(issued.token)
    deadline = time.monotonic() + 5
    while _stored(vault, issued.identity.token_id, "last_used_at") is None:
        assert time.monotonic() < deadline, "the background writer never wrote"
        time.sleep(0.02)
    second = tokens.issue("admin")
    tokens._flush_seconds = 3600  # noqa: SLF001 - a writer too slow to get there before close
    tokens.verify(second.token)
    tokens.close()
    assert _stored(vault, second.identity.token_id, "last_used_at") is not None


def test_list_shows_dates_but_never_a_secret(tokens):
    issued = tokens.issue("service", label="backend")
    [row] = tokens.list()
    assert set(row) == {"token_id", "role", "label", "created_at", "expires_at", "last_used_at",
                        "revoked_at"}
    assert issued.token.partition(".")[2] not in str(row)


def test_the_migration_gives_tokens_issued_before_it_an_expiry(tmp_path, db_key):
    from compliance.vault_schema import MIGRATIONS
    from twin.storage import Database, Migrator
    from twin.storage.timestamps import from_db, utc_now

    db = Database(tmp_path / "vault.db", db_key, name="privacy_vault")
    Migrator(db, MIGRATIONS).migrate(2)
    db.execute("INSERT INTO api_tokens (token_id, token_hash, role, created_at) "
               "VALUES ('old', 'h', 'service', '2020-01-01T00:00:00.000000Z')")
    Migrator(db, MIGRATIONS).migrate()
    expires = from_db(db.query_one("SELECT expires_at FROM api_tokens")[0])
    assert 89 <= (expires - utc_now()).days <= 90
    Migrator(db, MIGRATIONS).rollback(2)
    assert "expires_at" not in [r["name"] for r in db.query("PRAGMA table_info(api_tokens)")]
    db.close_all()


def test_a_token_is_refused_from_the_very_microsecond_it_expires(vault):
    from datetime import datetime, timedelta, timezone

    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    now = [start]
    tokens = TokenStore(vault, clock=lambda: now[0], cache_seconds=60)
    issued = tokens.issue("service", expires_in=timedelta(hours=1))
    assert tokens.verify(issued.token) is not None  # now remembered

    now[0] = start + timedelta(hours=1) - timedelta(microseconds=1)
    assert tokens.verify(issued.token) is not None
    now[0] = start + timedelta(hours=1)

    assert tokens.verify(issued.token) is None  # while remembered
    assert TokenStore(vault, clock=lambda: now[0]).verify(issued.token) is None  # and from the vault


def test_refused_issues_say_what_is_allowed(tokens):
    with pytest.raises(TokenError) as unknown_role:
        tokens.issue("root")
    with pytest.raises(TokenError) as learner_without_subject:
        tokens.issue("learner")

    assert str(unknown_role.value) == "role must be one of admin, service, learner"
    assert str(learner_without_subject.value) == "a learner token needs a user id; other roles must not have one"


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

    assert _stored(vault, issued.identity.token_id, "last_used_at") == to_db(start + timedelta(hours=2))


# -- the token's shape, the lifetime ceiling, and the length cap --------------------------------

def test_a_token_is_a_16_hex_digit_id_and_a_256_bit_secret(tokens):
    issued = tokens.issue("service")
    token_id, dot, secret = issued.token.removeprefix("lt_").partition(".")

    assert (len(token_id), dot, len(secret)) == (16, ".", 43)  # 8 random bytes; 32 as base64
    assert int(token_id, 16) >= 0 and token_id == issued.identity.token_id
    assert [row["token_id"] for row in tokens.list()] == [token_id]


def test_a_lifetime_of_exactly_ten_years_is_allowed(tokens, vault):
    from compliance.tokens import MAX_LIFETIME
    from twin.storage.timestamps import from_db

    issued = tokens.issue("service", expires_in=MAX_LIFETIME)

    token_id = issued.identity.token_id
    assert from_db(_stored(vault, token_id, "expires_at")) - from_db(_stored(vault, token_id, "created_at")) \
        == MAX_LIFETIME
    assert tokens.verify(issued.token) is not None


class CountingReads:
    """The real vault, counting the reads a verification makes."""

    def __init__(self, vault) -> None:
        self._vault, self.reads = vault, 0

    def __getattr__(self, name: str):
        return getattr(self._vault, name)

    def query_one(self, *args, **kwargs):
        self.reads += 1
        return self._vault.query_one(*args, **kwargs)


def test_a_token_over_200_characters_is_refused_without_reading_the_vault(vault):
    # An unauthenticated caller chooses the token: the cap bounds what they make us hash and look up.
    counting = CountingReads(vault)
    tokens = TokenStore(counting, usage_flush_seconds=0)
    token_id = tokens.issue("service").identity.token_id
    at_the_cap = f"lt_{token_id}." + "s" * (200 - len(f"lt_{token_id}."))

    assert tokens.verify(at_the_cap) is None and counting.reads == 1  # looked up, wrong secret
    assert tokens.verify(at_the_cap + "s") is None and counting.reads == 1
    assert tokens.verify(f"lt_{token_id}" + "s" * 200) is None and counting.reads == 1  # no "." either


# -- when a token was last used --------------------------------------------------------------------

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
    assert _stored(vault, issued.identity.token_id, "last_used_at") == to_db(start)  # the first use

    now[0] = start + timedelta(hours=1)
    tokens.verify(issued.token)
    assert tokens.flush_usage() == 1
    assert _stored(vault, issued.identity.token_id, "last_used_at") == to_db(start + timedelta(hours=1))


def test_without_a_flush_period_no_writer_thread_starts_and_close_writes_the_uses(vault, clock):
    import threading

    before = set(threading.enumerate())  # other tests' stores may still have theirs
    tokens = TokenStore(vault, clock=clock, usage_flush_seconds=0)
    issued = tokens.issue("service")
    tokens.verify(issued.token)

    assert set(threading.enumerate()) - before == set()
    tokens.close()
    assert _stored(vault, issued.identity.token_id, "last_used_at") is not None


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
    assert _stored(vault, issued.identity.token_id, "last_used_at") == to_db(used_at)


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
        while _stored(vault, issued.identity.token_id, "last_used_at") is None:
            assert time.monotonic() < deadline, "the background writer never retried"
            time.sleep(0.01)
    tokens.close()

    record = caplog.records[0]
    assert record.getMessage() == "could not record token use; will retry"
    assert record.exc_info is not None and "vault unavailable" in str(record.exc_info[1])
