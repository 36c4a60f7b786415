"""Helpers of the keyring tests (test_keyring*.py; their fixture ``keyring_path`` is in
conftest.py): a file's permission bits, and whether text shows any of a keyring's keys."""

from __future__ import annotations

import base64
import os
import stat

from compliance.keyring import Keyring


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def all_key_material(keyring: Keyring) -> list[bytes]:
    return [keyring.database_key, keyring.id_pepper, *keyring.field_keys.values()]


def _renderings(secret: bytes) -> list[str]:
    """The ways a key could leak into text: hex and base64."""
    return [secret.hex(), base64.b64encode(secret).decode()]


def assert_no_key_material(text: str, secrets: list[bytes]) -> None:
    for secret in secrets:
        for rendering in _renderings(secret):
            assert rendering not in text
            assert rendering[:16] not in text
