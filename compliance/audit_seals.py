"""Chain seals: HMAC'd checkpoints of the audit trail, so verification need not grow with history.

Every ``every`` events the append records a *seal* (``audit_seals``): the event's seq and hash,
and an HMAC-SHA256 over both under the seal key, a key derived for this purpose only
(``Keyring.audit_seal_key``: HKDF from the keyring, apart from the vault's database key), so
someone holding the database key but not the keyring cannot make one. A verification that walked
the chain through a seal and found it to match appends a *mark* (``audit_seal_marks``): the seal,
when, and an HMAC over those. ``twin audit verify`` then starts from the newest seal whose mark is
valid (checking that sealed event's own hash and content), so it reads only the events after it;
``--full`` walks everything. Not to be confused with ``audit_checkpoints``: those are where
retention cut the head of the chain.

What a seal proves: the events up to it are the ones a past verification saw (editing one changes
a hash a seal or a later event holds). What it cannot: someone with the database key who rewrites
every event after the newest seal, recomputing the (unkeyed) hashes, is caught only by the next
seal, which they cannot forge.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Iterable

from .audit_store import hash_bytes

DEFAULT_EVERY = 10_000
_SEAL, _MARK = b"twin-audit-seal/v1\0", b"twin-audit-seal-mark/v1\0"


@dataclass(frozen=True)
class Seal:
    seq: int
    event_hash: bytes


class SealBook:
    """Makes and checks seals and marks under one key (see the module docstring)."""

    def __init__(self, key: bytes, every: int = DEFAULT_EVERY) -> None:
        if len(key) < 32:
            raise ValueError("the seal key must be at least 32 bytes")
        if every < 1:
            raise ValueError("seals must come every 1 or more events")
        self._key = key
        self.every = every

    def __repr__(self) -> str:  # never show the key
        return f"SealBook(every={self.every})"

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._key, b"".join(parts), sha256).digest()

    def seal_mac(self, seq: int, event_hash: bytes) -> bytes:
        return self._mac(_SEAL, struct.pack(">q", seq), event_hash)

    def mark_mac(self, seq: int, event_hash: bytes, verified_at: int) -> bytes:
        return self._mac(_MARK, struct.pack(">qq", seq, verified_at), event_hash)

    # -- writing ------------------------------------------------------------------------

    def seal_due(self, conn: Any, rows: Iterable[tuple[int, bytes]], at_us: int) -> None:
        """Record the seals due among freshly appended ``(seq, event_hash)``; call in the
        append's transaction."""
        due = [(seq, digest, at_us, self.seal_mac(seq, digest)) for seq, digest in rows
               if seq % self.every == 0]
        if due:
            conn.executemany("INSERT INTO audit_seals (seq, event_hash, sealed_at, mac) "
                             "VALUES (?, ?, ?, ?)", due)

    def mark(self, conn: Any, seals: Iterable[Seal], at_us: int) -> int:
        """Record that ``seals`` were verified (those not marked yet); returns how many."""
        seals = list(seals)
        if not seals:
            return 0
        marked = {r[0] for r in conn.execute(
            "SELECT seal_seq FROM audit_seal_marks WHERE seal_seq >= ?", (seals[0].seq,)).fetchall()}
        rows = [(s.seq, at_us, self.mark_mac(s.seq, s.event_hash, at_us))
                for s in seals if s.seq not in marked]
        if rows:
            conn.executemany("INSERT INTO audit_seal_marks (seal_seq, verified_at, mac) VALUES (?, ?, ?)", rows)
        return len(rows)

    # -- reading ------------------------------------------------------------------------

    def seals_after(self, conn: Any, seq: int) -> dict[int, Any]:
        """Every recorded seal past ``seq`` by seq (rows of seq, event_hash, mac)."""
        return {r["seq"]: r for r in conn.execute(
            "SELECT seq, event_hash, mac FROM audit_seals WHERE seq > ? ORDER BY seq", (seq,)).fetchall()}

    def check(self, row: Any, event_hash: bytes) -> str | None:
        """None if the seal row is authentic and holds ``event_hash``, else what is wrong."""
        stored = hash_bytes(row["event_hash"])
        if not hmac.compare_digest(bytes(row["mac"]), self.seal_mac(row["seq"], stored)):
            return f"the seal of event {row['seq']} fails its HMAC (forged or edited?)"
        if stored != event_hash:
            return f"event does not match its seal (edited after event {row['seq']} was sealed?)"
        return None

    def newest_marked(self, conn: Any) -> Seal | None:
        """The newest seal that is authentic and carries an authentic mark, or None."""
        rows = conn.execute(
            "SELECT s.seq, s.event_hash, s.mac, m.verified_at, m.mac AS mark_mac "
            "FROM audit_seal_marks m JOIN audit_seals s ON s.seq = m.seal_seq "
            "ORDER BY m.seal_seq DESC, m.id DESC LIMIT 100").fetchall()
        for row in rows:  # newest first; a forged one is passed over, never trusted
            digest = hash_bytes(row["event_hash"])
            if hmac.compare_digest(bytes(row["mac"]), self.seal_mac(row["seq"], digest)) and \
                    hmac.compare_digest(bytes(row["mark_mac"]),
                                        self.mark_mac(row["seq"], digest, row["verified_at"])):
                return Seal(row["seq"], digest)
        return None


def drop_through(conn: Any, seq: int) -> None:
    """Forget the seals (and marks) of events retention deleted, up to ``seq``."""
    conn.execute("DELETE FROM audit_seal_marks WHERE seal_seq <= ?", (seq,))
    conn.execute("DELETE FROM audit_seals WHERE seq <= ?", (seq,))
