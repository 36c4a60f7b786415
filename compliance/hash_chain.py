"""Hash chains: tamper evidence for an append-only sequence, one mechanism for the audit trail
(``compliance.audit``) and the anomaly ledger (``twin.ledger``).

Each link stores the hash of the link before it (``prev_hash``, the first one links to
``GENESIS_HASH``) and its own hash: SHA-256 over the canonical JSON of its content, its
position and ``prev_hash`` included. Editing, renumbering, reordering or deleting a link
therefore breaks the chain where it happened, and ``ChainWalker`` names the first link where it
breaks. Deleting old links on purpose (retention, cleanup) leaves a checkpoint: the position and
hash of the last deleted link, which the walker continues from (``anchor``).

A chain kept in the same file proves integrity against edits by anyone who does not recompute
every later hash; someone holding the key who rewrites the whole tail is caught only by
comparing with a copy of a recent head hash kept elsewhere (backups, logs).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

GENESIS_HASH = "0" * 64


def link_hash(content: Mapping[str, Any], *, ascii_only: bool) -> str:
    """SHA-256 (hex) of ``content`` as canonical JSON: sorted keys, no whitespace, no NaN.

    ``ascii_only`` picks how non-ASCII text is spelled (``\\u`` escapes, or UTF-8 bytes); each
    chain fixed its choice when its first link was written, and must keep it.
    """
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only,
                         allow_nan=False)
    return hashlib.sha256(payload.encode("ascii" if ascii_only else "utf-8")).hexdigest()


_POSITION = struct.Struct(">q")
_INT = struct.Struct(">cq")
_SIZED = struct.Struct(">cI")


# A text field's encoding (tag, length, UTF-8) by its value: the links of a chain repeat most
# of theirs (who acted, the role, the action, the subject of a busy hour). Bounded: emptied
# when full (a dict's operations are atomic: threads share it safely).
_TEXT_PARTS: dict[str, bytes] = {}
_TEXT_PARTS_MAX = 4096


def _text_part(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    part = _SIZED.pack(b"S", len(raw)) + raw
    if type(value) is str:  # a subclass may compare equal to a str and spell it otherwise
        if len(_TEXT_PARTS) >= _TEXT_PARTS_MAX:
            _TEXT_PARTS.clear()
        _TEXT_PARTS[value] = part
    return part


def packed_link_hash(domain: bytes, prev_hash: bytes, position: int,
                     fields: "tuple[str | bytes | int | None, ...]") -> bytes:
    """SHA-256 (32 bytes) of a link given as typed fields: the compact chains' form, several
    times cheaper than canonical JSON. Each field is tagged by type and strings and bytes carry
    their length, so no two different field lists encode alike; ``domain`` names the format.
    """
    parts = [domain, b"\0", prev_hash, _POSITION.pack(position)]
    add, known = parts.append, _TEXT_PARTS
    for value in fields:
        kind = type(value)
        if kind is str:
            add(known.get(value) or _text_part(value))
        elif value is None:
            add(b"N")
        elif kind is bytes:
            add(_SIZED.pack(b"B", len(value)))
            add(value)
        elif kind is int:
            add(_INT.pack(b"I", value))
        else:  # a str subclass: as the str it is
            add(_text_part(value))
    # One hash object per link: copying one that took in the domain costs as much (OpenSSL 3).
    return hashlib.sha256(b"".join(parts)).digest()


class Break(Enum):
    """How a link fails to continue the chain."""

    CONTENT = "content"      # the link does not match its own hash
    POSITION = "position"    # not the next position (a gap, or out of order)
    LINK = "link"            # its prev_hash is not the previous link's hash


@dataclass(frozen=True)
class ChainVerification:
    """The outcome of verifying a chain: true when intact, else the first bad link and why.

    ``reason`` describes what is wrong at ``first_bad`` without repeating it; ``summary`` is
    the one-line report (``chain``, ``item`` and ``items`` name what was verified, for it).
    """

    ok: bool
    checked: int
    first_bad: int | None = None
    reason: str | None = None
    chain: str = field(default="audit trail", compare=False)
    item: str = field(default="event", compare=False)
    items: str = field(default="events", compare=False)
    since: int | None = field(default=None, compare=False)  # walked from a trusted link here

    def __bool__(self) -> bool:
        return self.ok

    @property
    def summary(self) -> str:
        if self.ok:
            after = "" if self.since is None else f" after the verified seal at {self.item} {self.since}"
            return f"{self.chain} OK: {self.checked} {self.items} verified{after}"
        return f"{self.chain} BROKEN at {self.item} {self.first_bad}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_bad": self.first_bad,
                "reason": self.reason, **({} if self.since is None else {"since": self.since})}


class ChainWalker:
    """Checks links one by one, in position order, against the chain so far.

    ``contiguous``: positions must follow each other (the audit trail's sequence numbers);
    otherwise gaps are allowed where a checkpoint says links were deleted (the ledger), and a
    missing link shows as a broken ``prev_hash``.
    """

    def __init__(self, position: int = 0, last_hash: str = GENESIS_HASH, *, contiguous: bool) -> None:
        self.position = position
        self.last_hash = last_hash
        self.contiguous = contiguous
        self.checked = 0

    def anchor(self, position: int, last_hash: str) -> None:
        """Continue from a checkpoint: links up to ``position`` were deleted on purpose."""
        self.position, self.last_hash = position, last_hash

    def check(self, position: int, prev_hash: str, stored_hash: str, computed_hash: str) -> Break | None:
        """None if the link continues the chain (the walker moves on), else how it breaks (the
        walker stays where it was)."""
        if computed_hash != stored_hash:
            return Break.CONTENT
        if self.contiguous and position != self.position + 1:
            return Break.POSITION
        if prev_hash != self.last_hash:
            return Break.LINK
        self.position, self.last_hash = position, stored_hash
        self.checked += 1
        return None
