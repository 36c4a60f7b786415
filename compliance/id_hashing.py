"""Keyed hashing of identifiers: HMAC-SHA256 under the keyring's pepper, as lowercase hex.

A plain SHA-256 of a user ID can be reversed by hashing a list of known IDs; without the
pepper, the keyed hash cannot. Other identifiers that must be matched without being stored
(a client's evidence ids) are hashed under a key derived from the pepper for their purpose
(HKDF), so no such hash can ever equal a subject hash or one of another purpose.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SubjectHasher:
    """Maps a user ID to its stable keyed hash (the only form in which it is ever stored)."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 32:
            raise ValueError("pepper must be at least 32 bytes")
        self._pepper = pepper
        self._purposes: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return "SubjectHasher(<pepper hidden>)"

    @staticmethod
    def _mac(key: bytes, value: str) -> str:
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(value.encode("utf-8"))
        return mac.finalize().hex()

    def hash(self, user_id: str) -> str:
        """The subject hash of ``user_id`` (64 hex characters)."""
        return self._mac(self._pepper, user_id)

    def keyed(self, purpose: str, value: str) -> str:
        """The keyed hash of ``value`` for ``purpose`` (e.g. ``"evidence"``), 64 hex characters."""
        key = self._purposes.get(purpose)
        if key is None:
            key = self._purposes[purpose] = HKDF(
                hashes.SHA256(), 32, salt=None, info=f"learner-twin keyed hash: {purpose}".encode(),
            ).derive(self._pepper)
        return self._mac(key, value)
