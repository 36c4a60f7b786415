"""Stored timestamps: fixed-width ISO-8601 UTC text, so text order is time order."""

from datetime import datetime, timedelta, timezone

import pytest

from twin.storage.timestamps import from_db, parse_to_db, to_db


def test_any_offset_and_z_and_naive_input_become_the_same_utc_text():
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_to_db("2026-03-01T12:00:00Z") == to_db(moment)
    assert parse_to_db("2026-03-01T14:00:00+02:00") == to_db(moment)
    assert parse_to_db("2026-03-01T12:00:00") == to_db(moment)  # naive = UTC
    assert parse_to_db(moment.astimezone(timezone(timedelta(hours=-5)))) == "2026-03-01T12:00:00.000000Z"
    assert from_db(to_db(moment)) == moment


@pytest.mark.parametrize("bad", ["yesterday", "", 1700000000, None])
def test_anything_else_is_a_value_error(bad):
    with pytest.raises(ValueError):
        parse_to_db(bad)


def test_text_order_is_time_order():
    early, late = datetime(2026, 1, 9, tzinfo=timezone.utc), datetime(2026, 1, 10, tzinfo=timezone.utc)
    assert to_db(early) < to_db(late)
