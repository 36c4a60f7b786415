"""LearnerContext: the bind parameters every "not expired" condition of the descriptors takes."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from twin.storage.timestamps import to_db


@pytest.mark.parametrize("moment", [
    datetime(2026, 12, 2, 14, 5, 6, 789012, tzinfo=timezone.utc),
    datetime(2028, 2, 29, 0, 0, 0, 0, tzinfo=timezone.utc),          # a leap day, at midnight
    datetime(2027, 1, 1, 23, 59, 59, 999999, tzinfo=timezone.utc),   # windows reach back years
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-7))),  # another offset: UTC date
])
def test_each_windows_cutoff_is_now_less_its_days_in_stored_form(runtime, moment):
    ctx = dataclasses.replace(runtime.profiles.ctx, clock=lambda: moment)

    params = ctx.cutoffs()

    windows = runtime.config.retention_windows()
    assert params == {"now": to_db(moment),
                      **{f"{name}_cutoff": to_db(moment - timedelta(days=days)) for name, days in windows.items()}}
    assert set(windows) >= {"sessions", "knowledge", "evidence"}
