"""The verified-token cache: what a service process remembers of the tokens it verified, and
how revocation, erasure and expiry keep it from answering for a token no longer valid."""

from __future__ import annotations

import pytest

from compliance.tokens import TokenStore
from issued_tokens import OTHER_SUBJECT, SUBJECT
from racing_vault import AfterNextRead


@pytest.fixture
def caching(vault, monotonic, make_tokens) -> TokenStore:
    """A store remembering verified tokens for 5 seconds, as a service process would."""
    return make_tokens(vault, cache_seconds=5, monotonic=monotonic)


@pytest.fixture
def other_process(vault, make_tokens) -> TokenStore:
    """Another TokenStore on the same vault: what scripts/issue_token.py --revoke uses."""
    return make_tokens(vault)


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


def test_the_cache_holds_at_most_max_cached_tokens_dropping_the_oldest(
        vault, other_process, monotonic, make_tokens):
    caching = make_tokens(vault, cache_seconds=60, max_cached=2, monotonic=monotonic)
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


def test_expired_entries_make_room_before_live_ones_are_dropped(
        vault, other_process, monotonic, make_tokens):
    caching = make_tokens(vault, cache_seconds=10, max_cached=3, monotonic=monotonic)
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
def test_a_revocation_racing_a_verification_is_not_undone_by_the_cache(
        vault, monotonic, revocation, make_tokens):
    """A verification that read the row before a revocation (or an erasure of the token's
    subject) must not remember the token after the revocation forgot it."""
    issued = make_tokens(vault).issue("learner", subject_hash=SUBJECT)
    store = None

    def revoke() -> None:
        if revocation == "revoke":
            store.revoke(issued.identity.token_id)
        else:
            _erase_subject_tokens(store, vault, SUBJECT)

    store = make_tokens(AfterNextRead(vault, revoke), cache_seconds=60, monotonic=monotonic)

    store.verify(issued.token)  # read the row before the revocation: may still succeed

    assert store.verify(issued.token) is None
