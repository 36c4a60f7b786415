"""Field encryption: AES-256-GCM ciphertexts bound to their table, column and row."""

from __future__ import annotations

import os
import struct

import pytest

from compliance.errors import DecryptionError, MalformedCiphertextError, UnknownKeyVersionError
from compliance.field_crypto import FieldCipher, associated_data, key_id_of

AAD = associated_data("learning_profiles", "encrypted_data", "prof_1")
HEADER_BYTES = 5          # format byte + u32 key id
NONCE_BYTES = 12
TAG_BYTES = 16


@pytest.fixture
def keys() -> dict[int, bytes]:
    return {1: os.urandom(32)}


@pytest.fixture
def cipher(keys) -> FieldCipher:
    return FieldCipher(keys, active_key_id=1)


def test_decrypt_returns_what_was_encrypted(cipher):
    for plaintext in (b"", b"x", "Zoë's goals: \u2603".encode(), os.urandom(10_000)):
        assert cipher.decrypt(cipher.encrypt(plaintext, AAD), AAD) == plaintext


def test_ciphertext_is_header_nonce_body_and_tag(cipher):
    plaintext = b"secret learning goals"
    blob = cipher.encrypt(plaintext, AAD)
    assert len(blob) == HEADER_BYTES + NONCE_BYTES + len(plaintext) + TAG_BYTES
    assert plaintext not in blob


def test_each_encryption_uses_a_fresh_nonce(cipher):
    first = cipher.encrypt(b"same plaintext", AAD)
    second = cipher.encrypt(b"same plaintext", AAD)
    assert first != second
    nonce = slice(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES)
    assert first[nonce] != second[nonce]


def test_header_carries_format_version_and_key_id(keys):
    keys[7] = os.urandom(32)
    blob = FieldCipher(keys, active_key_id=7).encrypt(b"v", AAD)
    assert blob[0] == 1
    assert struct.unpack(">I", blob[1:5])[0] == 7
    assert key_id_of(blob) == 7


def test_tampering_with_any_byte_fails_decryption(cipher):
    blob = cipher.encrypt(b"mastery 0.93 in algebra", AAD)
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(DecryptionError):
            cipher.decrypt(bytes(tampered), AAD)


def test_truncated_or_extended_ciphertext_fails_decryption(cipher):
    blob = cipher.encrypt(b"some value", AAD)
    with pytest.raises(DecryptionError):
        cipher.decrypt(blob[:-1], AAD)
    with pytest.raises(DecryptionError):
        cipher.decrypt(blob + b"\x00", AAD)


@pytest.mark.parametrize("moved_to", [
    ("learning_profiles", "encrypted_data", "prof_2"),      # another row
    ("learning_profiles", "learning_goals", "prof_1"),      # another column
    ("learning_sessions", "encrypted_data", "prof_1"),      # another table
])
def test_ciphertext_moved_elsewhere_fails_decryption(cipher, moved_to):
    blob = cipher.encrypt(b"personal", AAD)
    with pytest.raises(DecryptionError) as raised:
        cipher.decrypt(blob, associated_data(*moved_to))
    assert str(raised.value) == \
        "ciphertext failed authentication (tampered, moved to another row/column, or wrong key)"


def test_associated_data_depends_on_the_row_id_value_not_its_type():
    assert associated_data("t", "c", 5) == associated_data("t", "c", "5")
    assert associated_data("t", "c", 5) != associated_data("t", "c", 50)


def test_wrong_key_fails_decryption(cipher):
    blob = cipher.encrypt(b"personal", AAD)
    other = FieldCipher({1: os.urandom(32)}, active_key_id=1)
    with pytest.raises(DecryptionError) as excinfo:
        other.decrypt(blob, AAD)
    assert not isinstance(excinfo.value, (UnknownKeyVersionError, MalformedCiphertextError))


def test_unknown_key_version_is_reported_as_such(keys):
    keys[2] = os.urandom(32)
    blob = FieldCipher(keys, active_key_id=2).encrypt(b"personal", AAD)
    with pytest.raises(UnknownKeyVersionError, match="key version 2"):
        FieldCipher({1: keys[1]}, active_key_id=1).decrypt(blob, AAD)


@pytest.mark.parametrize("value", [b"", b"\x01", b"\x01" + b"\x00" * 31, "a text value", None, 42])
def test_values_that_are_not_ciphertexts_are_malformed(cipher, value):
    with pytest.raises(MalformedCiphertextError) as raised:
        cipher.decrypt(value, AAD)
    assert str(raised.value) == "value is not a field ciphertext (too short)"


def test_unknown_format_version_is_malformed(cipher):
    blob = bytearray(cipher.encrypt(b"personal", AAD))
    blob[0] = 2
    with pytest.raises(MalformedCiphertextError, match="format version 2"):
        cipher.decrypt(bytes(blob), AAD)


def test_memoryview_and_bytearray_ciphertexts_decrypt(cipher):
    blob = cipher.encrypt(b"from a BLOB column", AAD)
    assert cipher.decrypt(memoryview(blob), AAD) == b"from a BLOB column"
    assert cipher.decrypt(bytearray(blob), AAD) == b"from a BLOB column"


def test_old_key_versions_still_decrypt_after_rotation(keys):
    old_blob = FieldCipher(keys, active_key_id=1).encrypt(b"written before rotation", AAD)
    rotated_keys = {**keys, 2: os.urandom(32)}
    rotated = FieldCipher(rotated_keys, active_key_id=2)
    assert rotated.decrypt(old_blob, AAD) == b"written before rotation"
    new_blob = rotated.encrypt(b"written after rotation", AAD)
    assert key_id_of(new_blob) == 2
    assert rotated.decrypt(new_blob, AAD) == b"written after rotation"
    assert rotated.needs_rewrap(old_blob) and not rotated.needs_rewrap(new_blob)


def test_active_key_must_be_one_of_the_keys(keys):
    with pytest.raises(ValueError) as raised:
        FieldCipher(keys, active_key_id=2)
    assert str(raised.value) == "active key id 2 not among the keys"


@pytest.mark.parametrize("key_id, named", [(0, "0"), (-1, "-1"), (2**32, "4294967296"), (2**33, "8589934592"),
                                           (2.5, "float"), ("1", "str"), (b"\x07" * 32, "bytes")])
def test_key_ids_outside_the_headers_u32_are_refused(key_id, named):
    """A ciphertext's header stores its key id as a u32 and the keyring never issues id 0, so
    a cipher is never built over a key its ciphertexts could not name. What is not an int is
    named by its type: it may be key material passed in the wrong place."""
    with pytest.raises(ValueError) as raised:
        FieldCipher({1: os.urandom(32), key_id: os.urandom(32)}, active_key_id=1)
    assert str(raised.value) == f"key ids must be integers 1..2**32-1, not {named}"


def test_every_refused_key_id_is_named_in_order():
    keys = {2**32: os.urandom(32), 1: os.urandom(32), 10**10: os.urandom(32), 0: os.urandom(32),
            "x": os.urandom(32), 2.5: os.urandom(32), 2**32 - 1: os.urandom(32)}
    with pytest.raises(ValueError) as raised:
        FieldCipher(keys, active_key_id=1)
    assert str(raised.value) == "key ids must be integers 1..2**32-1, not 0, 4294967296, 10000000000, float, str"
    for refused in (0, 2**32, 10**10, "x", 2.5):
        del keys[refused]
    assert repr(FieldCipher(keys, active_key_id=2**32 - 1)) == "FieldCipher(key_ids=[1, 4294967295], active=4294967295)"


@pytest.mark.parametrize("active, named", [(1.0, "of type float"), (b"\x07" * 32, "of type bytes"), (0, "0")])
def test_an_active_key_id_that_is_no_key_id_is_refused_without_showing_it(keys, active, named):
    with pytest.raises(ValueError) as raised:
        FieldCipher(keys, active_key_id=active)
    assert str(raised.value) == f"active key id {named} not among the keys"


def test_repr_shows_no_key_material(keys):
    text = repr(FieldCipher(keys, active_key_id=1))
    assert keys[1].hex()[:16] not in text
    assert "active=1" in text


@pytest.mark.parametrize("key_id", [2**8 + 1, 2**16 + 1, 2**24, 2**24 + 1, 2**32 - 1])
def test_every_byte_of_the_u32_key_id_names_the_key(key_id):
    """Key ids use all four header bytes: keys whose ids differ only in a high byte are told
    apart, and each ciphertext opens only under the key that sealed it."""
    low = key_id & 0xFF or 1
    keys = {low: os.urandom(32), key_id: os.urandom(32)}
    blob = FieldCipher(keys, active_key_id=key_id).encrypt(b"sealed under a large key id", AAD)

    assert blob[1:5] == key_id.to_bytes(4, "big")
    assert key_id_of(blob) == key_id
    assert FieldCipher(keys, active_key_id=low).decrypt(blob, AAD) == b"sealed under a large key id"
    assert FieldCipher(keys, active_key_id=key_id).needs_rewrap(blob) is False
    assert FieldCipher(keys, active_key_id=low).needs_rewrap(blob) is True
    with pytest.raises(UnknownKeyVersionError, match=str(key_id)):
        FieldCipher({low: keys[low]}, active_key_id=low).decrypt(blob, AAD)


def test_decrypt_many_opens_each_value_exactly_as_decrypt_does(keys):
    big = 2**24 + 1
    keys.update({2: os.urandom(32), big: os.urandom(32)})
    values = [(FieldCipher(keys, active_key_id=k).encrypt(f"value {i}".encode(), associated_data("t", "c", i)),
               associated_data("t", "c", i)) for i, k in enumerate([1, 2, big, 1])]
    cipher = FieldCipher(keys, active_key_id=1)

    opened = cipher.decrypt_many([(memoryview(blob), aad) for blob, aad in values])

    assert opened == [b"value 0", b"value 1", b"value 2", b"value 3"]
    assert opened == [cipher.decrypt(blob, aad) for blob, aad in values]
    assert cipher.decrypt_many(iter(values)) == opened  # any iterable, gone over once
    assert cipher.decrypt_many([]) == []
    empty = cipher.encrypt(b"", AAD)  # the shortest ciphertext there is: header, nonce and tag
    assert len(empty) == HEADER_BYTES + NONCE_BYTES + TAG_BYTES
    assert cipher.decrypt_many([(empty, AAD), (empty, AAD)]) == [b"", b""]


def test_decrypt_many_fails_as_decrypt_does_on_any_bad_value(keys):
    cipher = FieldCipher(keys, active_key_id=1)
    good = [(cipher.encrypt(b"ok", AAD), AAD)]
    moved = good + [(cipher.encrypt(b"moved", AAD), associated_data("t", "c", "other-row"))]
    with pytest.raises(DecryptionError) as raised:
        cipher.decrypt_many(moved)
    assert str(raised.value) == \
        "ciphertext failed authentication (tampered, moved to another row/column, or wrong key)"
    assert not isinstance(raised.value, (UnknownKeyVersionError, MalformedCiphertextError))

    other = FieldCipher({9: os.urandom(32)}, active_key_id=9)
    for pairs in (good + [(other.encrypt(b"elsewhere", AAD), AAD)], [(other.encrypt(b"first", AAD), AAD)]):
        with pytest.raises(UnknownKeyVersionError, match="key version 9"):
            cipher.decrypt_many(pairs)
        with pytest.raises(UnknownKeyVersionError, match="key version 9"):
            cipher.decrypt_many(iter(pairs))  # its fallback sees every value, not what is left
    with pytest.raises(MalformedCiphertextError) as raised:
        cipher.decrypt_many(good + [(b"\x01short", AAD)])
    assert str(raised.value) == "value is not a field ciphertext (too short)"
    # Too short even though it starts with key 1's header: malformed, not a failed tag.
    header_of_key_1 = good[0][0][:HEADER_BYTES]
    with pytest.raises(MalformedCiphertextError) as raised:
        cipher.decrypt_many(good + [(header_of_key_1 + b"\x00" * (NONCE_BYTES + TAG_BYTES - 1), AAD)])
    assert str(raised.value) == "value is not a field ciphertext (too short)"
    with pytest.raises(MalformedCiphertextError, match="unknown ciphertext format version 2"):
        cipher.decrypt_many(good + [(b"\x02" + good[0][0][1:], AAD)])
