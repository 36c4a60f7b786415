"""The environment-variable form of the keyring: purpose keys derived from one master secret
(HKDF-SHA256, pinned), taking precedence over a file, refused without echoing a bad secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest

from compliance.errors import KeyringError
from compliance.keyring import ENV_ACTIVE_FIELD_KEY, ENV_MASTER_SECRET, Keyring, load_keyring
from keyring_checks import all_key_material, assert_no_key_material


def _env(secret: bytes, **extra: str) -> dict[str, str]:
    return {ENV_MASTER_SECRET: base64.b64encode(secret).decode(), **extra}


def test_master_secret_derives_distinct_purpose_keys(keyring_path):
    secret = os.urandom(32)
    keyring = load_keyring(keyring_path, production=True, environ=_env(secret))
    material = all_key_material(keyring)
    assert len(set(material)) == len(material) == 3
    assert secret not in material
    assert keyring.source == "environment"
    assert not keyring_path.exists()  # nothing is written in this form


def test_master_secret_derivation_is_deterministic(keyring_path):
    secret = os.urandom(48)
    first = load_keyring(keyring_path, production=True, environ=_env(secret))
    second = load_keyring(keyring_path, production=True, environ=_env(secret))
    assert first == second
    other = load_keyring(keyring_path, production=True, environ=_env(os.urandom(48)))
    assert other.database_key != first.database_key
    assert other.id_pepper != first.id_pepper


def _hkdf_sha256(secret: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 HKDF-SHA256 for one 32-byte block, from the standard library alone."""
    extracted = hmac.new(salt, secret, hashlib.sha256).digest()
    return hmac.new(extracted, info + b"\x01", hashlib.sha256).digest()


def test_master_secret_derivation_is_pinned_to_hkdf_sha256_under_its_salt_and_labels(keyring_path):
    """Every deployment in the environment-variable form opens its data with these exact keys:
    a changed salt or label would make every database and every sealed value unreadable."""
    secret = os.urandom(32)
    keyring = load_keyring(keyring_path, production=True, environ=_env(secret, **{ENV_ACTIVE_FIELD_KEY: "2"}))

    def derived(label: str) -> bytes:
        return _hkdf_sha256(secret, b"learner-twin/keyring/v1", label.encode())

    assert keyring.database_key == derived("sqlcipher-database-key")
    assert keyring.id_pepper == derived("user-id-pepper")
    assert keyring.field_keys == {1: derived("field-key/v1"), 2: derived("field-key/v2")}
    assert keyring.audit_seal_key == _hkdf_sha256(keyring.id_pepper, b"learner-twin/keyring/v1",
                                                  b"audit-chain-seal-key")


def test_raising_the_field_key_version_keeps_older_versions_derivable(keyring_path):
    secret = os.urandom(32)
    v1 = load_keyring(keyring_path, production=True, environ=_env(secret))
    v3 = load_keyring(keyring_path, production=True,
                      environ=_env(secret, **{ENV_ACTIVE_FIELD_KEY: "3"}))
    assert v3.active_field_key == 3
    assert sorted(v3.field_keys) == [1, 2, 3]
    assert v3.field_keys[1] == v1.field_keys[1]
    assert len(set(v3.field_keys.values())) == 3
    assert v3.database_key == v1.database_key and v3.id_pepper == v1.id_pepper


def test_master_secret_takes_precedence_over_a_keyring_file(keyring_path):
    Keyring.generate().save(keyring_path)
    secret = os.urandom(32)
    keyring = load_keyring(keyring_path, production=True, environ=_env(secret))
    assert keyring == Keyring.from_master_secret(secret)


@pytest.mark.parametrize("bad", ["not base64 at all!", "abc", "ZmFrZQ=x",
                                 # a real 32-byte secret with one stray character: never silently dropped
                                 base64.b64encode(b"s" * 32).decode()[:20] + "*" + base64.b64encode(b"s" * 32).decode()[20:]])
def test_invalid_base64_master_secret_is_refused_without_echoing_it(keyring_path, bad):
    with pytest.raises(KeyringError, match="not valid base64") as excinfo:
        load_keyring(keyring_path, production=False, environ={ENV_MASTER_SECRET: bad})
    assert bad not in str(excinfo.value)


def test_short_master_secret_is_refused_without_echoing_it(keyring_path):
    secret = os.urandom(16)
    with pytest.raises(KeyringError, match="at least 32 bytes") as excinfo:
        load_keyring(keyring_path, production=False, environ=_env(secret))
    assert_no_key_material(str(excinfo.value), [secret])


@pytest.mark.parametrize("version", ["zero", "0", "-1"])
def test_invalid_field_key_version_is_refused(keyring_path, version):
    with pytest.raises(KeyringError, match=ENV_ACTIVE_FIELD_KEY):
        load_keyring(keyring_path, production=False,
                     environ=_env(os.urandom(32), **{ENV_ACTIVE_FIELD_KEY: version}))
