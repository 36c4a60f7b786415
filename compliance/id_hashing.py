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
        self._subjects = self._keyed_mac(pepper)
        self._purposes: dict[str, hmac.HMAC] = {}

    def __repr__(self) -> str:
        return "SubjectHasher(<pepper hidden>)"

    @staticmethod
    def _keyed_mac(key: bytes) -> hmac.HMAC:
        """An HMAC-SHA256 context keyed once and never finalised: each value's MAC starts from
        a copy of it (a copy skips building the context and hashing the padded key again, a
        third of the cost of a short value's MAC; an ingest takes one per observation)."""
        return hmac.HMAC(key, hashes.SHA256())

    @staticmethod
    def _mac(keyed: hmac.HMAC, value: str) -> str:
        mac = keyed.copy()
        mac.update(value.encode("utf-8"))
        return mac.finalize().hex()

    def hash(self, user_id: str) -> str:
        """The subject hash of ``user_id`` (64 hex characters)."""
        return self._mac(self._subjects, user_id)

    def keyed(self, purpose: str, value: str) -> str:
        """The keyed hash of ``value`` for ``purpose`` (e.g. ``"evidence"``), 64 hex characters."""
        keyed = self._purposes.get(purpose)
        if keyed is None:
            keyed = self._purposes[purpose] = self._keyed_mac(HKDF(
                hashes.SHA256(), 32, salt=None, info=f"learner-twin keyed hash: {purpose}".encode(),
            ).derive(self._pepper))
        return self._mac(keyed, value)
