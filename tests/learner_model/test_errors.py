"""Bad input is refused with one error family that names the failing field."""

import math
from datetime import datetime, timezone

import pytest

from twin.learner_model import (InvalidObservationError, InvalidParametersError, LearnerModelError,
                                ManualValue, MasteryTrace, Observation, SkillParameters)


@pytest.mark.parametrize("changes, field", [
    ({"prior": 1.2}, "prior"), ({"learn": -0.1}, "learn"), ({"slip": 0.5}, "slip"),
    ({"guess": 0.7}, "guess"), ({"forget": math.nan}, "forget"), ({"prior": True}, "prior"),
    ({"learn": "0.2"}, "learn"), ({"version": ""}, "version"), ({"version": "v" * 65}, "version"),
])
def test_parameters_out_of_range_or_unidentifiable_are_refused(changes, field):
    values = {"prior": 0.3, "learn": 0.1, "slip": 0.1, "guess": 0.2, "version": "v1"} | changes
    with pytest.raises(InvalidParametersError) as caught:
        SkillParameters(**values)
    assert caught.value.field == field and isinstance(caught.value, LearnerModelError)


def test_parameters_from_a_dict_refuse_unknown_and_missing_names():
    with pytest.raises(InvalidParametersError) as caught:
        SkillParameters.from_dict({"prior": 0.3, "learn": 0.1, "slip": 0.1, "guess": 0.2,
                                   "version": "v", "speed": 2})
    assert caught.value.field == "speed"
    with pytest.raises(InvalidParametersError):
        SkillParameters.from_dict({"prior": 0.3, "version": "v"})
    good = SkillParameters(0.3, 0.1, 0.1, 0.2, 0.0, "v")
    assert SkillParameters.from_dict(good.to_dict()) == good


WHEN = "2026-03-02T09:00:00Z"


@pytest.mark.parametrize("data, field", [
    ({"observed_at": WHEN, "correct": True}, "evidence_id"),
    ({"evidence_id": "", "observed_at": WHEN, "correct": True}, "evidence_id"),
    ({"evidence_id": "x" * 129, "observed_at": WHEN, "correct": True}, "evidence_id"),
    ({"evidence_id": 7, "observed_at": WHEN, "correct": True}, "evidence_id"),
    ({"evidence_id": "a", "correct": True}, "observed_at"),
    ({"evidence_id": "a", "observed_at": "yesterday", "correct": True}, "observed_at"),
    ({"evidence_id": "a", "observed_at": 1700000000, "correct": True}, "observed_at"),
    ({"evidence_id": "a", "observed_at": WHEN}, "correct"),
    ({"evidence_id": "a", "observed_at": WHEN, "correct": True, "score": 1.0}, "correct"),
    ({"evidence_id": "a", "observed_at": WHEN, "correct": 1}, "correct"),
    ({"evidence_id": "a", "observed_at": WHEN, "score": 1.5}, "score"),
    ({"evidence_id": "a", "observed_at": WHEN, "score": -0.1}, "score"),
    ({"evidence_id": "a", "observed_at": WHEN, "score": math.inf}, "score"),
    ({"evidence_id": "a", "observed_at": WHEN, "score": "0.5"}, "score"),
    ({"evidence_id": "a", "observed_at": WHEN, "score": False}, "score"),
])
def test_bad_observations_name_the_field_and_their_place_in_the_batch(data, field):
    with pytest.raises(InvalidObservationError) as caught:
        Observation.from_dict(data, index=4)
    assert (caught.value.field, caught.value.index) == (field, 4)
    assert str(caught.value).startswith("observation 4: ")


def test_a_good_observation_from_json_is_normalised_to_utc():
    o = Observation.from_dict({"evidence_id": "a", "observed_at": "2026-03-02T10:00:00+01:00",
                               "score": 1, "item_id": "opaque"})
    assert o.observed_at == datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    assert o.score == 1.0 and o.outcome == 1.0
    naive = Observation("b", datetime(2026, 3, 2, 9), correct=False)
    assert naive.observed_at.tzinfo is timezone.utc and naive.outcome == 0.0
    with pytest.raises(InvalidObservationError):
        Observation.from_dict(["not", "an", "object"], index=0)


@pytest.mark.parametrize("mastery, confidence, field", [
    (1.1, None, "mastery_level"), (None, None, "mastery_level"), (0.5, 2.0, "confidence_score")])
def test_bad_manual_values_are_refused(mastery, confidence, field):
    with pytest.raises(InvalidObservationError) as caught:
        ManualValue(WHEN, mastery, confidence)
    assert caught.value.field == field


def test_a_trace_refuses_what_is_not_an_entry_and_keeps_what_it_had():
    trace = MasteryTrace(entries=[Observation("a", WHEN, correct=True)])
    with pytest.raises(InvalidObservationError) as caught:
        trace.add([Observation("b", "2026-03-03T09:00:00Z", correct=True), {"evidence_id": "c"}])
    assert caught.value.index == 1
    assert [e.evidence_id for e in trace.entries] == ["a"]
    with pytest.raises(InvalidParametersError):
        MasteryTrace({"prior": 0.3})
