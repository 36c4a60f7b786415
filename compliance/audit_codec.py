"""The compact stored form of an audit event (``audit_log``), and its hash.

An event's auditor-facing fields (who, role, action, subject hash, resource, request id, when,
details, chain hash) are kept whole; only their spelling on disk changes, so that an event costs
at most ~150 bytes of vault file with its index:

- actors (id and role), subjects (the keyed subject hash) and resources are interned: the event
  holds a small integer reference into ``audit_actors`` / ``audit_subjects`` /
  ``audit_resources``, each value stored once (``compliance.audit_terms``);
- the action is a fixed small integer (``ACTION_CODES``: append only, never renumber);
- the time is an integer of microseconds since the epoch;
- ids (event id, request id) are ``pack_id``-ed: base64url or hex text as its bytes, anything
  else as its UTF-8, behind a one-byte tag;
- the event hash is 32 raw bytes, and ``prev_hash`` is not stored: it is the previous event's
  hash (or the checkpoint's the chain continues from).

The hash of a compact event is SHA-256 over a tagged binary encoding of the same logical fields
as the legacy JSON form (``compliance.hash_chain.packed_link_hash``), so it covers what the
event *says* (the interned strings, the action's name), never the references: swapping an
interned value or an action code breaks every event that uses it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from twin.storage.timestamps import from_db, to_db

from .hash_chain import packed_link_hash

# Append only: a code, once used, names its action for the life of the trail.
ACTION_CODES = {name: code for code, name in enumerate((
    "read", "create", "update", "delete", "export", "erase", "purge", "consent_grant",
    "consent_withdraw", "hold_place", "hold_lift", "key_rotate", "restore_reapply", "model_fit",
    "model_recompute"))}
ACTION_NAMES = {code: name for name, code in ACTION_CODES.items()}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TEXT, _B64, _HEX = 0, 1, 2
_B64_TAG = bytes((_B64,))
_FROM_URLSAFE, _TO_URLSAFE = bytes.maketrans(b"-_", b"+/"), bytes.maketrans(b"+/", b"-_")
HASH_DOMAIN = b"twin-audit-event-v2"


def pack_id(value: str | None) -> bytes | None:
    """An opaque id in its shortest lossless form: base64url (length a multiple of 4, as
    ``secrets.token_urlsafe(12)`` and most client request ids) or lowercase hex (as
    ``secrets.token_hex``) as the bytes they spell, else its UTF-8; a tag byte says which."""
    if value is None:
        return None
    if value and len(value) % 2 == 0 and value == value.lower():
        try:
            raw = bytes.fromhex(value)
            if raw.hex() == value:
                return bytes((_HEX,)) + raw
        except ValueError:
            pass
    if value and len(value) % 4 == 0 and "=" not in value:
        # base64.urlsafe_b64decode / _b64encode, without their Python layers (every event
        # chained packs its id): the decoder skips stray characters, so only an id that
        # encodes back to itself is stored as its bytes.
        try:
            spelt = value.encode("ascii")
            raw = binascii.a2b_base64(spelt.translate(_FROM_URLSAFE))
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None and binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE) == spelt:
            return _B64_TAG + raw
    return bytes((_TEXT,)) + value.encode("utf-8")


def unpack_id(packed: bytes | memoryview | None) -> str | None:
    if packed is None:
        return None
    packed = bytes(packed)
    tag, raw = packed[0], packed[1:]
    if tag == _HEX:
        return raw.hex()
    if tag == _B64:
        return base64.urlsafe_b64encode(raw).decode("ascii")
    return raw.decode("utf-8", errors="replace")


def micros(occurred_at: str) -> int:
    """Microseconds since the epoch of a stored ISO timestamp (``to_db`` text)."""
    delta = from_db(occurred_at) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso(us: int) -> str:
    """The ``to_db`` text of microseconds since the epoch."""
    return to_db(_EPOCH + timedelta(microseconds=us))


def compact_hash(prev_hash: bytes, seq: int, event_id: bytes, at_us: int, actor_id: str,
                 actor_role: str, action: str, subject_hash: str | None, resource: str | None,
                 request_id: bytes | None, details: str | None) -> bytes:
    """The 32-byte hash of a compact event that follows ``prev_hash`` at ``seq``; the ids as
    ``pack_id`` stores them (a lossless, one-to-one spelling of the id, so hashing it is hashing
    the id, without decoding it at every verification)."""
    return packed_link_hash(HASH_DOMAIN, prev_hash, seq, (
        event_id, at_us, actor_id, actor_role, action, subject_hash, resource, request_id, details))


def hash_of_row(row: Mapping[str, Any] | Any, prev_hash: bytes) -> bytes:
    """The hash a decoded compact row (``audit_store.LOG_SELECT``) should carry after
    ``prev_hash``. Unknown action codes and missing interned values hash as what they are
    (an impossible name, None), so they fail the check rather than raise."""
    request_id = row["request_id"]
    return compact_hash(prev_hash, row["seq"], bytes(row["event_id"]), row["occurred_at"],
                        row["actor_id"] or "", row["actor_role"] or "",
                        ACTION_NAMES.get(row["action"], f"?{row['action']}"), row["subject_hash"],
                        row["resource"], None if request_id is None else bytes(request_id), row["details"])
