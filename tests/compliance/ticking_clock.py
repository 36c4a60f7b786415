"""A clock for audit-trail tests: a second later at every call, from ``T0``, so each event
happens at a time a test can name (event n at ``T0 + n`` seconds when one trail reads it)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class TickingClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now
