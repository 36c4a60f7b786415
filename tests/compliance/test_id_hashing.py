"""Keyed hashing of user IDs: stable, secret-dependent, not a plain hash."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from compliance.id_hashing import SubjectHasher


@pytest.fixture
def pepper() -> bytes:
    return os.urandom(32)


def test_hash_is_64_lowercase_hex_characters(pepper):
    assert re.fullmatch(r"[0-9a-f]{64}", SubjectHasher(pepper).hash("learner-42"))


def test_hash_is_stable_across_instances(pepper):
    assert SubjectHasher(pepper).hash("learner-42") == SubjectHasher(pepper).hash("learner-42")


def test_hash_differs_per_user(pepper):
    hasher = SubjectHasher(pepper)
    assert hasher.hash("learner-42") != hasher.hash("learner-43")


def test_hash_differs_per_pepper():
    first, second = SubjectHasher(os.urandom(32)), SubjectHasher(os.urandom(32))
    assert first.hash("learner-42") != second.hash("learner-42")


def test_hash_is_not_a_plain_sha256_of_the_user_id(pepper):
    user_id = "learner-42"
    assert SubjectHasher(pepper).hash(user_id) != hashlib.sha256(user_id.encode()).hexdigest()


def test_hash_is_hmac_sha256_under_the_pepper(pepper):
    import hmac
    expected = hmac.new(pepper, "learner-42".encode(), hashlib.sha256).hexdigest()
    assert SubjectHasher(pepper).hash("learner-42") == expected


def test_short_pepper_is_refused():
    with pytest.raises(ValueError):
        SubjectHasher(os.urandom(16))


def test_repr_hides_the_pepper(pepper):
    assert pepper.hex()[:16] not in repr(SubjectHasher(pepper))


def test_a_keyed_hash_for_a_purpose_is_stable_and_never_a_subject_hash_or_another_purposes(pepper):
    hasher = SubjectHasher(pepper)

    evidence = hasher.keyed("evidence", "learner-42")

    assert re.fullmatch(r"[0-9a-f]{64}", evidence)
    assert evidence == SubjectHasher(pepper).keyed("evidence", "learner-42")
    assert evidence != hasher.hash("learner-42")
    assert evidence != hasher.keyed("manual-value", "learner-42")
    assert evidence != SubjectHasher(os.urandom(32)).keyed("evidence", "learner-42")


def test_a_keyed_hash_is_hmac_sha256_under_the_purposes_hkdf_key(pepper):
    """The derivation is pinned: evidence ids stored keyed must still match after an upgrade.
    HKDF-SHA256 (RFC 5869) without salt, info "learner-twin keyed hash: <purpose>", 32 bytes."""
    import hmac
    extracted = hmac.new(b"\x00" * 32, pepper, hashlib.sha256).digest()
    purpose_key = hmac.new(extracted, b"learner-twin keyed hash: evidence\x01", hashlib.sha256).digest()
    expected = hmac.new(purpose_key, "évidence-7".encode("utf-8"), hashlib.sha256).hexdigest()

    hasher = SubjectHasher(pepper)

    assert hasher.keyed("evidence", "évidence-7") == expected
    assert hasher.keyed("evidence", "évidence-7") == expected  # the purpose's key, remembered


def test_a_short_pepper_is_refused_saying_what_it_needs():
    with pytest.raises(ValueError) as raised:
        SubjectHasher(os.urandom(31))
    assert str(raised.value) == "pepper must be at least 32 bytes"
    assert len(SubjectHasher(os.urandom(32)).hash("x")) == 64  # 32 bytes is enough


def test_repr_names_the_type_and_hides_the_pepper(pepper):
    assert repr(SubjectHasher(pepper)) == "SubjectHasher(<pepper hidden>)"
