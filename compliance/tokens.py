"""API bearer tokens: issued once, stored only as a SHA-256 hash, revocable, and ending.

A token reads ``lt_<token_id>.<secret>``. The id finds the row; the secret's hash is compared
in constant time. The secret is 256 random bits, so a fast hash is enough (no password KDF).

Every token expires (``DEFAULT_LIFETIME``, 90 days, unless issued with another lifetime); an
expired token is refused like an unknown one. When a token was last used is recorded coarsely
and off the request path: ``verify`` only notes it in memory, at most once per token per
``USAGE_RESOLUTION`` (an hour), and a background thread writes the notes in one transaction
every ``usage_flush_seconds`` (and at ``close()``), so no request waits for a write.

A service checks a token on every request, so ``TokenStore`` can remember a verified token for
``cache_seconds``: the vault is read once per token per period instead of once per request.
Revoking through the same store takes effect at once; a revocation by another process (the
``twin tokens revoke`` command) takes effect within ``cache_seconds``. Only the token's
hash is remembered, never the token, and failures are never cached.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from twin.storage import Database
from twin.storage.timestamps import from_db, to_db, utc_now

from .errors import ComplianceError
from .expiring_cache import ExpiringCache

log = logging.getLogger(__name__)

ROLES = ("admin", "service", "learner")
_PREFIX = "lt_"
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=3650)
USAGE_RESOLUTION = timedelta(hours=1)


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


@functools.lru_cache(maxsize=4096)
def _next_use_due(last_use: str) -> str:
    """When a use after ``last_use`` is worth noting again (stored form). Remembered: every
    request asks, and parsing the timestamp each time cost more than the rest of ``verify``."""
    return to_db(from_db(last_use) + USAGE_RESOLUTION)


class TokenStore:
    """Issues, verifies and revokes API tokens kept in the privacy vault.

    ``cache_seconds`` > 0 remembers verified tokens that long (see the module docstring);
    at most ``max_cached`` at a time.
    """

    def __init__(self, vault: Database, *, cache_seconds: float = 0.0, max_cached: int = 4096,
                 monotonic: Callable[[], float] = time.monotonic,
                 clock: Callable[[], datetime] = utc_now, usage_flush_seconds: float = 60.0) -> None:
        self.vault = vault
        self.clock = clock
        # token_id -> (hash of its secret, identity, expires_at); never the token itself
        self._verified: ExpiringCache[str, tuple[str, TokenIdentity, str | None]] = \
            ExpiringCache(cache_seconds, max_cached, monotonic)
        self._usage_lock = threading.Lock()
        self._used: dict[str, str] = {}  # token_id -> last use noted, not yet written
        self._recorded: dict[str, str] = {}  # token_id -> last use written (or read)
        self._flush_seconds = usage_flush_seconds
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()

    def issue(self, role: str, *, subject_hash: str | None = None, label: str | None = None,
              expires_in: timedelta = DEFAULT_LIFETIME) -> IssuedToken:
        """Create a token valid for ``expires_in``. Learner tokens must name the subject they
        are bound to."""
        if role not in ROLES:
            raise TokenError(f"role must be one of {', '.join(ROLES)}")
        if (role == "learner") != (subject_hash is not None):
            raise TokenError("a learner token needs a user id; other roles must not have one")
        if not timedelta(0) < expires_in <= MAX_LIFETIME:
            raise TokenError(f"a token's lifetime must be positive and at most {MAX_LIFETIME.days} days")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self.clock()
        self.vault.write(lambda conn: conn.execute(
            "INSERT INTO api_tokens (token_id, token_hash, role, subject_hash, label, created_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (token_id, _hash(secret), role, subject_hash, label, to_db(now), to_db(now + expires_in))))
        return IssuedToken(f"{_PREFIX}{token_id}.{secret}", TokenIdentity(token_id, role, subject_hash))

    def verify(self, token: str) -> TokenIdentity | None:
        """The identity of a valid, unrevoked, unexpired token, else None (never says why)."""
        if not token.startswith(_PREFIX) or "." not in token or len(token) > 200:
            return None
        token_id, _, secret = token[len(_PREFIX):].partition(".")
        secret_hash = _hash(secret)
        now = to_db(self.clock())
        cached = self._verified.get(token_id)
        if cached is not None and hmac.compare_digest(cached[0], secret_hash):
            if cached[2] is not None and cached[2] <= now:
                return None
            self._note_use(token_id, now)
            return cached[1]
        before_read = self._verified.token()
        row = self.vault.query_one(
            "SELECT token_hash, role, subject_hash, revoked_at, expires_at, last_used_at "
            "FROM api_tokens WHERE token_id = ?", (token_id,))
        # Compare even when the row is missing so timing does not reveal which ids exist.
        expected = row["token_hash"] if row is not None else "0" * 64
        if not hmac.compare_digest(expected, secret_hash) or row is None or row["revoked_at"]:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= now:
            return None
        identity = TokenIdentity(token_id, row["role"], row["subject_hash"])
        self._verified.put(token_id, (secret_hash, identity, row["expires_at"]), before_read)
        if row["last_used_at"]:
            with self._usage_lock:
                self._recorded.setdefault(token_id, row["last_used_at"])
        self._note_use(token_id, now)
        return identity

    # -- last used: noted in memory, written off the request path ------------------------------

    def _note_use(self, token_id: str, now: str) -> None:
        with self._usage_lock:
            last = self._used.get(token_id) or self._recorded.get(token_id)
            if last is not None and _next_use_due(last) > now:
                return
            self._used[token_id] = now
            if self._flusher is None and self._flush_seconds > 0:
                self._flusher = threading.Thread(target=self._flush_loop, name="token-usage",
                                                 daemon=True)
                self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            try:
                self.flush_usage()
            except Exception:  # the next round tries again; a use is noted, not lost
                log.warning("could not record token use; will retry", exc_info=True)

    def flush_usage(self) -> int:
        """Write the uses noted since the last flush (one transaction); how many tokens."""
        with self._usage_lock:
            pending, self._used = self._used, {}
        if not pending:
            return 0

        def work(conn: Any) -> None:
            conn.executemany("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ? AND "
                             "(last_used_at IS NULL OR last_used_at < ?)",
                             [(when, token_id, when) for token_id, when in pending.items()])
        try:
            self.vault.write(work)
        except BaseException:
            with self._usage_lock:
                for token_id, when in pending.items():
                    self._used.setdefault(token_id, when)
            raise
        with self._usage_lock:
            self._recorded.update(pending)
        return len(pending)

    def close(self) -> None:
        """Stop the background writer and write what it had not yet."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush_usage()

    # -- revocation and listing ------------------------------------------------------------------

    def revoke(self, token_id: str) -> bool:
        """Revoke by token id (printed at issue time). True if a live token was revoked."""
        now = to_db(self.clock())
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
        """Every token's id, role, label and dates (created, expires, last used, revoked);
        never its secret or hash."""
        rows = self.vault.query("SELECT token_id, role, label, created_at, expires_at, last_used_at, "
                                "revoked_at FROM api_tokens ORDER BY created_at")
        return [dict(zip(r.keys(), tuple(r))) for r in rows]
