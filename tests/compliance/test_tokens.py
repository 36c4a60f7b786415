"""API tokens: shown once, stored as a hash, bound to a role (and a subject for learners)."""

from __future__ import annotations

import pytest

from compliance.tokens import TokenError, TokenIdentity, TokenStore

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
