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
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from twin.storage import Database
from twin.storage.timestamps import to_db, utc_now

from .errors import ComplianceError

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
        self._cache_seconds = cache_seconds
        self._max_cached = max_cached
        self._monotonic = monotonic
        # token_id -> (hash of its secret, identity, valid until), oldest first
        self._verified: OrderedDict[str, tuple[str, TokenIdentity, float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._generation = 0  # bumped by every forget: a verification older than that is not kept

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
        if cached is not None and cached[2] > self._monotonic() \
                and hmac.compare_digest(cached[0], secret_hash):
            return cached[1]
        generation = self._generation
        row = self.vault.query_one(
            "SELECT token_hash, role, subject_hash, revoked_at FROM api_tokens WHERE token_id = ?",
            (token_id,))
        # Compare even when the row is missing so timing does not reveal which ids exist.
        expected = row["token_hash"] if row is not None else "0" * 64
        if not hmac.compare_digest(expected, secret_hash) or row is None or row["revoked_at"]:
            return None
        identity = TokenIdentity(token_id, row["role"], row["subject_hash"])
        if self._cache_seconds > 0 and self._max_cached > 0:
            self._remember(token_id, secret_hash, identity, generation)
        return identity

    def _remember(self, token_id: str, secret_hash: str, identity: TokenIdentity,
                  generation: int) -> None:
        with self._cache_lock:
            if generation != self._generation:
                return  # something was revoked since the row was read: it may be this token
            self._verified.pop(token_id, None)
            while len(self._verified) >= self._max_cached:
                self._verified.popitem(last=False)  # the oldest entry
            self._verified[token_id] = (secret_hash, identity, self._monotonic() + self._cache_seconds)

    def _forget(self, matches: Callable[[str, TokenIdentity], bool]) -> None:
        with self._cache_lock:
            self._generation += 1
            for token_id in [k for k, v in self._verified.items() if matches(k, v[1])]:
                del self._verified[token_id]

    def revoke(self, token_id: str) -> bool:
        """Revoke by token id (printed at issue time). True if a live token was revoked."""
        now = to_db(utc_now())
        cursor = self.vault.write(lambda conn: conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
            (now, token_id)))
        self._forget(lambda cached_id, _: cached_id == token_id)
        return cursor.rowcount > 0

    def revoke_subject(self, subject_hash: str) -> int:
        """Delete every token bound to a subject (part of erasure)."""
        deleted = self.vault.write(lambda conn: conn.execute(
            "DELETE FROM api_tokens WHERE subject_hash = ?", (subject_hash,))).rowcount
        self.forget_subject(subject_hash)
        return deleted

    def forget_subject(self, subject_hash: str) -> None:
        """Stop trusting remembered tokens of a subject whose rows were deleted elsewhere
        (erasure and retention delete them with the subject's other vault rows)."""
        self._forget(lambda _, identity: identity.subject_hash == subject_hash)

    def list(self) -> list[dict]:
        rows = self.vault.query("SELECT token_id, role, label, created_at, revoked_at FROM api_tokens "
                                "ORDER BY created_at")
        return [dict(zip(r.keys(), tuple(r))) for r in rows]
