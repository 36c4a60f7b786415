"""Timestamps as stored: ISO-8601 UTC text with a fixed width, so text order is time order."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_STORED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)  # to_db's text


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_db(moment: datetime) -> str:
    """``2026-11-22T02:30:00.000000Z``; naive datetimes are taken as UTC."""
    if moment.tzinfo is not None and moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    # isoformat, not strftime(_FORMAT): the same text (years zero-padded to four digits, which
    # strftime's %Y does not promise), at a fraction of the cost; every stored row takes one.
    return moment.isoformat(timespec="microseconds")[:26] + "Z"  # without the "+00:00"


def parse_to_db(value: datetime | str) -> str:
    """The stored form of a datetime or an ISO-8601 string (any offset, ``Z`` accepted; naive
    means UTC). Raises ``ValueError`` for anything else."""
    if isinstance(value, datetime):
        return to_db(value)
    if isinstance(value, str):
        return to_db(datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise ValueError(f"not a datetime or ISO-8601 string: {type(value).__name__}")


def from_db(text: str | None) -> datetime | None:
    """The aware UTC datetime of a stored timestamp (``_FORMAT``; ``ValueError`` otherwise)."""
    if text is None:
        return None
    # What to_db wrote is read by fromisoformat (the same datetime, UTC, some hundred times
    # cheaper than strptime: rebuilding a skill reads one per stored row); anything else goes
    # to strptime, which accepts only _FORMAT, as before.
    if _STORED.fullmatch(text):
        return datetime.fromisoformat(text)
    return datetime.strptime(text, _FORMAT).replace(tzinfo=timezone.utc)

