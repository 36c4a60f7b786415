"""Tokens that end: the default and the given lifetime, its bounds (one second to ten years),
the exact microsecond of expiry, and the migration that gave older tokens an expiry."""

from __future__ import annotations

import pytest

from compliance.tokens import TokenError
from issued_tokens import stored


def test_a_token_expires_after_its_lifetime_and_90_days_by_default(vault, clock, make_tokens):
    from datetime import timedelta

    from compliance.tokens import DEFAULT_LIFETIME
    from twin.storage.timestamps import from_db

    tokens = make_tokens(vault, clock=clock, cache_seconds=60)
    default = tokens.issue("service")
    short = tokens.issue("admin", expires_in=timedelta(hours=2))
    created = from_db(stored(vault, default.identity.token_id, "created_at"))
    assert from_db(stored(vault, default.identity.token_id, "expires_at")) - created == DEFAULT_LIFETIME
    assert DEFAULT_LIFETIME == timedelta(days=90)
    assert tokens.verify(short.token) is not None  # now remembered for 60 s
    clock.advance(hours=2)
    assert tokens.verify(short.token) is None  # expired, even while remembered
    assert tokens.verify(default.token) is not None
    clock.advance(days=90)
    assert tokens.verify(default.token) is None
    assert make_tokens(vault, clock=clock).verify(default.token) is None  # and from the vault


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_a_lifetime_outside_one_second_to_ten_years_is_refused(tokens, days):
    from datetime import timedelta

    with pytest.raises(TokenError, match="lifetime"):
        tokens.issue("service", expires_in=timedelta(days=days))


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


def test_a_token_is_refused_from_the_very_microsecond_it_expires(vault, make_tokens):
    from datetime import datetime, timedelta, timezone

    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    now = [start]
    tokens = make_tokens(vault, clock=lambda: now[0], cache_seconds=60)
    issued = tokens.issue("service", expires_in=timedelta(hours=1))
    assert tokens.verify(issued.token) is not None  # now remembered

    now[0] = start + timedelta(hours=1) - timedelta(microseconds=1)
    assert tokens.verify(issued.token) is not None
    now[0] = start + timedelta(hours=1)

    assert tokens.verify(issued.token) is None  # while remembered
    # And from the vault:
    assert make_tokens(vault, clock=lambda: now[0]).verify(issued.token) is None


def test_a_lifetime_of_exactly_ten_years_is_allowed(tokens, vault):
    from compliance.tokens import MAX_LIFETIME
    from twin.storage.timestamps import from_db

    issued = tokens.issue("service", expires_in=MAX_LIFETIME)

    token_id = issued.identity.token_id
    assert from_db(stored(vault, token_id, "expires_at")) - from_db(stored(vault, token_id, "created_at")) \
        == MAX_LIFETIME
    assert tokens.verify(issued.token) is not None
