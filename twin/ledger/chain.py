"""The hash chain: how an entry's hash is computed and how a stored chain is verified.

Each entry's hash is SHA-256 over a canonical JSON object (sorted keys, no whitespace,
UTF-8) of ``id, timestamp, node_id, features, confidence, prev_hash``; ``prev_hash`` is the
previous entry's hash, or 64 zeros for the first entry. Cleanup deletes old entries but
leaves a *checkpoint* (the id and hash of the last deleted entry of each deleted run), so
the first surviving entry after a gap still links to something verifiable.

What this detects: an entry altered, removed, inserted or reordered, and entries cut off
the end (the ledger keeps its head id and hash in ``ledger_state``), by anyone editing the
file without recomputing every later hash. It cannot stop someone who holds the key from
rewriting the whole chain; anchor ``head_hash`` somewhere else if that matters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text, no NaN: one spelling per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def entry_hash(entry_id: int, timestamp: float, node_id: str, features: Any, confidence: float,
               prev_hash: str) -> str:
    """The SHA-256 (hex) that chains one entry to its predecessor."""
    payload = canonical_json({"id": entry_id, "timestamp": timestamp, "node_id": node_id,
                              "features": features, "confidence": confidence,
                              "prev_hash": prev_hash})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainVerification:
    """The outcome of ``verify_chain``: true when intact, else the first broken entry and why."""

    ok: bool
    entries_checked: int
    first_broken_id: int | None = None
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries_checked": self.entries_checked,
                "first_broken_id": self.first_broken_id, "reason": self.reason}


@dataclass(frozen=True)
class StoredEntry:
    """One row as stored, the input of verification."""

    id: int
    timestamp: float
    node_id: str
    features_json: str
    confidence: float
    prev_hash: str
    entry_hash: str


def _broken(checked: int, entry_id: int, reason: str) -> ChainVerification:
    return ChainVerification(False, checked, entry_id, reason)


def verify_entries(entries: Iterable[StoredEntry], checkpoints: Sequence[tuple[int, str]],
                   head_id: int, head_hash: str) -> ChainVerification:
    """Walk ``entries`` in id order and report the first entry whose link or content is wrong.

    ``checkpoints`` are ``(id, hash)`` of deleted entries, ascending; ``head_id``/``head_hash``
    are what the ledger believes its last entry was (to detect a truncated tail).
    """
    expected, last_id, checked = GENESIS_HASH, 0, 0
    position = 0

    def stale_checkpoint(checkpoint_id: int) -> ChainVerification:
        return _broken(checked, checkpoint_id,
                       f"checkpoint {checkpoint_id} names an entry that still exists")

    for entry in entries:
        while position < len(checkpoints) and checkpoints[position][0] < entry.id:
            checkpoint_id, checkpoint_hash = checkpoints[position]
            if checkpoint_id <= last_id:
                return stale_checkpoint(checkpoint_id)
            expected, last_id = checkpoint_hash, checkpoint_id
            position += 1
        if entry.prev_hash != expected:
            return _broken(checked, entry.id,
                           f"entry {entry.id} does not link to the entry before it (prev_hash "
                           "mismatch): an earlier entry was removed, inserted or altered")
        recomputed = entry_hash(entry.id, entry.timestamp, entry.node_id,
                                json.loads(entry.features_json), entry.confidence, entry.prev_hash)
        if recomputed != entry.entry_hash:
            return _broken(checked, entry.id,
                           f"entry {entry.id} does not match its hash: its content was altered")
        expected, last_id = entry.entry_hash, entry.id
        checked += 1
    for checkpoint_id, checkpoint_hash in checkpoints[position:]:
        if checkpoint_id <= last_id:
            return stale_checkpoint(checkpoint_id)
        expected, last_id = checkpoint_hash, checkpoint_id
    if last_id < head_id:
        return _broken(checked, last_id + 1,
                       f"entries {last_id + 1}..{head_id} are missing from the end (truncated)")
    if last_id > head_id or expected != head_hash:
        return _broken(checked, last_id,
                       f"the ledger head (id {head_id}) does not match entry {last_id}")
    return ChainVerification(True, checked)
