"""API tokens: shown once, stored as a hash, bound to a role (and a subject for learners); their
shape and the length cap. The verified-token cache: test_token_cache.py; tokens that end:
test_token_lifetime.py; when a token was last used: test_token_usage.py."""

from __future__ import annotations

import pytest

from compliance.tokens import TokenError, TokenIdentity, TokenStore
from issued_tokens import SUBJECT


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


def test_list_shows_dates_but_never_a_secret(tokens):
    issued = tokens.issue("service", label="backend")
    [row] = tokens.list()
    assert set(row) == {"token_id", "role", "label", "created_at", "expires_at", "last_used_at",
                        "revoked_at"}
    assert issued.token.partition(".")[2] not in str(row)


def test_refused_issues_say_what_is_allowed(tokens):
    with pytest.raises(TokenError) as unknown_role:
        tokens.issue("root")
    with pytest.raises(TokenError) as learner_without_subject:
        tokens.issue("learner")

    assert str(unknown_role.value) == "role must be one of admin, service, learner"
    assert str(learner_without_subject.value) == "a learner token needs a user id; other roles must not have one"


def test_a_token_is_a_16_hex_digit_id_and_a_256_bit_secret(tokens):
    issued = tokens.issue("service")
    token_id, dot, secret = issued.token.removeprefix("lt_").partition(".")

    assert (len(token_id), dot, len(secret)) == (16, ".", 43)  # 8 random bytes; 32 as base64
    assert int(token_id, 16) >= 0 and token_id == issued.identity.token_id
    assert [row["token_id"] for row in tokens.list()] == [token_id]


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
