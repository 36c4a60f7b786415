"""The ledger's hash chain, on the one hash-chain mechanism (``compliance.hash_chain``).

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

import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from compliance.hash_chain import GENESIS_HASH, Break, ChainVerification, ChainWalker, link_hash

__all__ = ["GENESIS_HASH", "ChainVerification", "StoredEntry", "entry_hash", "verify_entries"]


def entry_hash(entry_id: int, timestamp: float, node_id: str, features: Any, confidence: float,
               prev_hash: str) -> str:
    """The SHA-256 (hex) that chains one entry to its predecessor."""
    return link_hash({"id": entry_id, "timestamp": timestamp, "node_id": node_id,
                      "features": features, "confidence": confidence, "prev_hash": prev_hash},
                     ascii_only=False)


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
    return ChainVerification(False, checked, entry_id, reason,
                             chain="ledger", item="entry", items="entries")


def verify_entries(entries: Iterable[StoredEntry], checkpoints: Sequence[tuple[int, str]],
                   head_id: int, head_hash: str) -> ChainVerification:
    """Walk ``entries`` in id order and report the first entry whose link or content is wrong.

    ``checkpoints`` are ``(id, hash)`` of deleted entries, ascending; ``head_id``/``head_hash``
    are what the ledger believes its last entry was (to detect a truncated tail).
    """
    walker = ChainWalker(contiguous=False)
    position = 0

    def stale_checkpoint(checkpoint_id: int) -> ChainVerification:
        return _broken(walker.checked, checkpoint_id,
                       f"checkpoint {checkpoint_id} names an entry that still exists")

    for entry in entries:
        while position < len(checkpoints) and checkpoints[position][0] < entry.id:
            checkpoint_id, checkpoint_hash = checkpoints[position]
            if checkpoint_id <= walker.position:
                return stale_checkpoint(checkpoint_id)
            walker.anchor(checkpoint_id, checkpoint_hash)
            position += 1
        recomputed = entry_hash(entry.id, entry.timestamp, entry.node_id,
                                json.loads(entry.features_json), entry.confidence, entry.prev_hash)
        problem = walker.check(entry.id, entry.prev_hash, entry.entry_hash, recomputed)
        if problem is Break.LINK:
            return _broken(walker.checked, entry.id,
                           f"entry {entry.id} does not link to the entry before it (prev_hash "
                           "mismatch): an earlier entry was removed, inserted or altered")
        if problem is not None:
            return _broken(walker.checked, entry.id,
                           f"entry {entry.id} does not match its hash: its content was altered")
    for checkpoint_id, checkpoint_hash in checkpoints[position:]:
        if checkpoint_id <= walker.position:
            return stale_checkpoint(checkpoint_id)
        walker.anchor(checkpoint_id, checkpoint_hash)
    if walker.position < head_id:
        return _broken(walker.checked, walker.position + 1,
                       f"entries {walker.position + 1}..{head_id} are missing from the end (truncated)")
    if walker.position > head_id or walker.last_hash != head_hash:
        return _broken(walker.checked, walker.position,
                       f"the ledger head (id {head_id}) does not match entry {walker.position}")
    return ChainVerification(True, walker.checked, chain="ledger", item="entry", items="entries")
