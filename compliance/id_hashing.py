"""Keyed hashing of user IDs: HMAC-SHA256 under the keyring's pepper, as lowercase hex.

A plain SHA-256 of a user ID can be reversed by hashing a list of known IDs; without the
pepper, the keyed hash cannot.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac


class SubjectHasher:
    """Maps a user ID to its stable keyed hash (the only form in which it is ever stored)."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 32:
            raise ValueError("pepper must be at least 32 bytes")
        self._pepper = pepper

    def __repr__(self) -> str:
        return "SubjectHasher(<pepper hidden>)"

    def hash(self, user_id: str) -> str:
        """The subject hash of ``user_id`` (64 hex characters)."""
        mac = hmac.HMAC(self._pepper, hashes.SHA256())
        mac.update(user_id.encode("utf-8"))
        return mac.finalize().hex()
