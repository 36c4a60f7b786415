"""The quick check of an observation never disagrees with its schema: whatever it passes, the
schema loads to the same values; whatever else, the schema decides (and explains)."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from twin.api.learner_model_schemas import EvidenceBatchSchema, ObservationSchema, quick_observation

SCHEMA = ObservationSchema()

_text = st.one_of(st.text(max_size=3), st.text(min_size=100, max_size=130), st.just("math"),
                  st.just("a b.c:d+e-f_g"), st.just("x/y"), st.just(""))
_time = st.one_of(
    st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(9999, 12, 31),
                 timezones=st.sampled_from([timezone.utc, None])).map(lambda d: d.isoformat()),
    st.just("2026-03-01T10:00:00Z"), st.just("2026-03-01T10:00:00.5+02:00"), st.just("2026-03-01 10:00:00+00:00"),
    st.just("20260301T100000Z"), st.just("9999-12-31T23:59:59-05:00"), st.just("yesterday"), st.integers())
_value = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(allow_nan=True), _text)
_observation = st.fixed_dictionaries(
    {"evidence_id": st.one_of(_text, _value), "domain": _text, "topic": _text, "item_id": _text,
     "observed_at": _time},
    optional={"correct": _value, "score": st.one_of(_value, st.floats(0, 1)), "session_id": _value,
              "extra": _value})


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(_observation)
def test_what_the_quick_check_passes_the_schema_loads_to_the_same_values(item):
    quick = quick_observation(item)
    try:
        loaded = SCHEMA.load(item)
    except ValidationError:
        assert quick is None
        return
    assert quick is None or quick == loaded


def test_the_quick_check_passes_the_common_cases():
    item = {"evidence_id": "e-1", "domain": "math", "topic": "algebra", "item_id": "q",
            "correct": True, "observed_at": "2026-03-01T10:00:00.123+01:00", "session_id": "ses_1"}

    assert quick_observation(item) == SCHEMA.load(item)
    assert quick_observation({**item, "correct": None}) is None
    scored = {k: v for k, v in item.items() if k != "correct"} | {"score": 1}
    assert quick_observation(scored)["score"] == 1.0 and isinstance(quick_observation(scored)["score"], float)


def test_a_batch_with_one_doubtful_item_is_judged_whole_by_the_schema():
    good = {"evidence_id": "e-1", "domain": "math", "topic": "algebra", "item_id": "q", "correct": True,
            "observed_at": "2026-03-01T10:00:00Z"}
    doubtful = {**good, "evidence_id": "e-2", "observed_at": "2026-03-01 10:00:00+00:00"}  # a space

    loaded = EvidenceBatchSchema().load({"observations": [good, doubtful]})

    assert [o["observed_at"] for o in loaded["observations"]] == [datetime(2026, 3, 1, 10, tzinfo=timezone.utc)] * 2
