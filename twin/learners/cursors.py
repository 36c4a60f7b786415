"""Opaque page cursors over a table's internal row number (sessions, evidence)."""

from __future__ import annotations

import base64
import binascii

from .errors import InvalidFieldsError

_MAX_ROWID = 2**63 - 1


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"s{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The internal position behind an opaque cursor; InvalidFieldsError if it is not ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("s") or not text[1:].isascii() or not text[1:].isdigit():
            raise ValueError
        position = int(text[1:])
        if position > _MAX_ROWID:  # SQLite rowids are signed 64-bit; larger cannot be bound
            raise ValueError
        return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidFieldsError({"cursor": ["Not a valid cursor."]}, rule="invalid-cursor") from None
