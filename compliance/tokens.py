"""API bearer tokens: issued once, stored only as a SHA-256 hash, revocable.

A token reads ``lt_<token_id>.<secret>``. The id finds the row; the secret's hash is compared
in constant time. The secret is 256 random bits, so a fast hash is enough (no password KDF).

A service checks a token on every request, so ``TokenStore`` can remember a verified token for
``cache_seconds``: the vault is read once per token per period instead of once per request.
Revoking through the same store takes effect at once; a revocation by another process (the
``issue_token.py --revoke`` script) takes effect within ``cache_seconds``. Only the token's
hash is remembered, never the token, and failures are never cached.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from twin.storage import Database
from twin.storage.timestamps import to_db, utc_now

from .errors import ComplianceError
from .expiring_cache import ExpiringCache

ROLES = ("admin", "service", "learner")
_PREFIX = "lt_"


class TokenError(ComplianceError):
    """A token could not be issued or revoked."""


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token speaks for."""

    token_id: str
    role: str
    subject_hash: str | None  # set only for learner tokens


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once, never stored
    identity: TokenIdentity


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """Issues, verifies and revokes API tokens kept in the privacy vault.

    ``cache_seconds`` > 0 remembers verified tokens that long (see the module docstring);
    at most ``max_cached`` at a time.
    """

    def __init__(self, vault: Database, *, cache_seconds: float = 0.0, max_cached: int = 4096,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.vault = vault
        # token_id -> (hash of its secret, identity); never the token itself
        self._verified: ExpiringCache[str, tuple[str, TokenIdentity]] = \
            ExpiringCache(cache_seconds, max_cached, monotonic)

    def issue(self, role: str, *, subject_hash: str | None = None, label: str | None = None) -> IssuedToken:
        """Create a token. Learner tokens must name the subject they are bound to."""
        if role not in ROLES:
            raise TokenError(f"role must be one of {', '.join(ROLES)}")
        if (role == "learner") != (subject_hash is not None):
            raise TokenError("a learner token needs a user id; other roles must not have one")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = to_db(utc_now())
        self.vault.write(lambda conn: conn.execute(
            "INSERT INTO api_tokens (token_id, token_hash, role, subject_hash, label, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", (token_id, _hash(secret), role, subject_hash, label, now)))
        return IssuedToken(f"{_PREFIX}{token_id}.{secret}", TokenIdentity(token_id, role, subject_hash))

    def verify(self, token: str) -> TokenIdentity | None:
        """The identity of a valid, unrevoked token, else None (never says why)."""
        if not token.startswith(_PREFIX) or "." not in token or len(token) > 200:
            return None
        token_id, _, secret = token[len(_PREFIX):].partition(".")
        secret_hash = _hash(secret)
        cached = self._verified.get(token_id)
        if cached is not None and hmac.compare_digest(cached[0], secret_hash):
            return cached[1]
        before_read = self._verified.token()
        row = self.vault.query_one(
            "SELECT token_hash, role, subject_hash, revoked_at FROM api_tokens WHERE token_id = ?",
            (token_id,))
        # Compare even when the row is missing so timing does not reveal which ids exist.
        expected = row["token_hash"] if row is not None else "0" * 64
        if not hmac.compare_digest(expected, secret_hash) or row is None or row["revoked_at"]:
            return None
        identity = TokenIdentity(token_id, row["role"], row["subject_hash"])
        self._verified.put(token_id, (secret_hash, identity), before_read)
        return identity

    def revoke(self, token_id: str) -> bool:
        """Revoke by token id (printed at issue time). True if a live token was revoked."""
        now = to_db(utc_now())
        cursor = self.vault.write(lambda conn: conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
            (now, token_id)))
        self._verified.forget(token_id)
        return cursor.rowcount > 0

    def revoke_subject(self, subject_hash: str) -> int:
        """Delete every token bound to a subject (part of erasure)."""
        deleted = self.vault.write(lambda conn: conn.execute(
            "DELETE FROM api_tokens WHERE subject_hash = ?", (subject_hash,))).rowcount
        self.forget_subjects([subject_hash])
        return deleted

    def forget_subjects(self, subject_hashes: Iterable[str]) -> None:
        """Stop trusting remembered tokens of subjects whose rows were deleted elsewhere
        (erasure and retention delete them with the subjects' other vault rows)."""
        subjects = set(subject_hashes)
        self._verified.forget_matching(lambda _, entry: entry[1].subject_hash in subjects)

    def list(self) -> list[dict]:
        rows = self.vault.query("SELECT token_id, role, label, created_at, revoked_at FROM api_tokens "
                                "ORDER BY created_at")
        return [dict(zip(r.keys(), tuple(r))) for r in rows]
