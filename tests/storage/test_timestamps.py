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


def test_the_width_is_fixed_whatever_the_year_and_the_fraction():
    for moment in (datetime(999, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(2026, 1, 2, 3, 4, 5, 7),
                   datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=1)))):
        text = to_db(moment)
        assert len(text) == len("2026-01-02T03:04:05.000000Z") and text.endswith("Z")
        assert from_db(text) == (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
    assert to_db(datetime(999, 1, 2, tzinfo=timezone.utc)) == "0999-01-02T00:00:00.000000Z"


def _iso_text(moment: datetime) -> str:
    """What to_db wrote before it kept the last second's text: isoformat of the UTC moment."""
    utc = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return utc.isoformat(timespec="microseconds")[:26] + "Z"


def test_the_text_is_each_moments_own_whatever_the_moment_before_it():
    # to_db keeps the last whole second it formatted: a moment in the same second, the next
    # one, an earlier one, a microsecond either side of a boundary, and other offsets or naive
    # input that land in that second must each read as their own time.
    start = datetime(2026, 12, 31, 23, 59, 59, 999998, tzinfo=timezone.utc)
    plus_two = timezone(timedelta(hours=2))
    moments = [start, start + timedelta(microseconds=1), start + timedelta(microseconds=2),
               start, start - timedelta(seconds=1), start + timedelta(seconds=1, microseconds=2),
               (start + timedelta(microseconds=2)).astimezone(plus_two),
               (start + timedelta(microseconds=3)).replace(tzinfo=None), start - timedelta(days=366),
               datetime(1, 1, 1, tzinfo=timezone.utc), datetime(1, 1, 1, 0, 0, 1),
               datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
               datetime(2024, 2, 29, 12, 0, 0, 0, tzinfo=timezone(timedelta(hours=-9, minutes=-30)))]
    for moment in moments + moments[::-1]:
        assert to_db(moment) == _iso_text(moment), moment


def test_stored_text_reads_back_as_the_utc_moment_it_was_written_from():
    # from_db reads to_db's shape with fromisoformat: it must agree with the strict strptime
    # reading across the whole range, and hand back timezone.utc itself.
    start = datetime(1, 1, 1, tzinfo=timezone.utc)
    for step in range(0, 3_155_378_975_999_999_999, 3_155_378_975_999_999_999 // 997):
        moment = start + timedelta(microseconds=step // 10_000)
        text = to_db(moment)
        parsed = from_db(text)
        assert parsed == datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert parsed == moment and parsed.tzinfo is timezone.utc


def test_text_of_another_shape_reads_as_it_always_did():
    assert from_db("2026-11-22T02:30:00.5Z") == datetime(2026, 11, 22, 2, 30, 0, 500000, tzinfo=timezone.utc)
    assert from_db("2026-1-2T02:30:00.000000Z") == datetime(2026, 1, 2, 2, 30, tzinfo=timezone.utc)
    assert from_db(None) is None


@pytest.mark.parametrize("bad", ["2026-02-30T00:00:00.000000Z", "2026-11-22T24:00:00.000000Z",
                                 "2026-11-22T02:30:00Z", "2026-11-22T02:30:00.000000+00:00",
                                 "2026-11-22 02:30:00.000000Z", "2026-11-22T02:30:00.000000"])
def test_text_that_is_no_stored_timestamp_is_refused(bad):
    with pytest.raises(ValueError):
        from_db(bad)
