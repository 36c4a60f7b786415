"""Timestamps as stored: ISO-8601 UTC text with a fixed width, so text order is time order."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_STORED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)  # to_db's text


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


_ZERO, _SECOND = timedelta(0), timedelta(seconds=1)
# The whole second to_db formatted last and its text: most calls fall in the same second as
# the one before (every request stamps several), and formatting a datetime costs about three
# times as much as the subtraction that finds the second unchanged. One tuple, replaced whole,
# so threads never see a second with another's text.
_last_second: tuple[datetime, str] = (datetime(1, 1, 1, tzinfo=timezone.utc),
                                      "0001-01-01T00:00:00")


def to_db(moment: datetime) -> str:
    """``2026-11-22T02:30:00.000000Z``; naive datetimes are taken as UTC."""
    global _last_second
    if moment.tzinfo is not timezone.utc:
        moment = (moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None
                  else moment.astimezone(timezone.utc))
    second, text = _last_second
    if not _ZERO <= moment - second < _SECOND:
        second = moment.replace(microsecond=0)
        # isoformat, not strftime(_FORMAT): the same text (years zero-padded to four digits,
        # which strftime's %Y does not promise), at a fraction of the cost.
        text = second.isoformat()[:19]  # without the "+00:00"
        _last_second = (second, text)
    return f"{text}.{moment.microsecond:06d}Z"


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

