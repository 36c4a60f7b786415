"""Retention purges old entries; what is carried over keeps the estimate and its explanation."""

import pytest

from twin.learner_model import (BeforeRetainedWindowError, CarriedOver, LearnerModelError,
                                ManualValue, MasteryTrace, SkillParameters)

from .conftest import at, obs
from .test_trace import sequence


def test_purging_keeps_mastery_confidence_and_the_review_card(params):
    items = sequence(30)
    whole = MasteryTrace(params, entries=items)
    trace = MasteryTrace(params, entries=items)
    purged = trace.purge_before(at(5))          # observations at days 0, 0.5, ..., 4.5
    assert purged == 10
    assert len(trace.entries) == 20
    assert trace.mastery_level == whole.mastery_level
    assert trace.confidence_score == pytest.approx(whole.confidence_score, abs=1e-12)
    assert trace.observation_count == 30
    assert trace.review_card().to_dict() == whole.review_card().to_dict()
    carried = trace.carried
    assert (carried.observations, carried.manual_values) == (10, 0)
    assert (carried.first_at, carried.last_at) == (at(0), at(4.5))
    assert carried.before == params.prior
    assert carried.mastery == list(whole.steps())[9][2]


def test_later_evidence_continues_from_the_carried_over_mastery(params):
    items = sequence(30)
    trace = MasteryTrace(params, entries=items[:20])
    trace.purge_before(at(5))
    trace.add(items[20:])
    assert trace.mastery_level == pytest.approx(MasteryTrace(params, entries=items).mastery_level,
                                                abs=1e-12)


def test_purging_twice_accumulates_one_summary(params):
    items = sequence(30)
    trace = MasteryTrace(params, entries=items)
    trace.purge_before(at(3))
    trace.set_manual(ManualValue(at(7.25), 0.5))
    trace.purge_before(at(8))
    carried = trace.carried
    assert (carried.observations, carried.manual_values) == (16, 1)
    assert (carried.first_at, carried.last_at) == (at(0), at(7.5))
    assert trace.observation_count == 30
    assert trace.purge_before(at(8)) == 0


def test_the_explanation_starts_with_a_carried_over_step_and_still_ends_at_the_mastery(params):
    trace = MasteryTrace(params, entries=sequence(30))
    trace.purge_before(at(5))
    explanation = trace.explain()
    first, *rest = explanation["steps"]
    assert first == {"kind": "carried_over", "count": 10, "manual_values": 0,
                     "first_observed_at": "2026-03-02T09:00:00Z",
                     "last_observed_at": "2026-03-06T21:00:00Z",
                     "parameters_version": "test-1", "before": params.prior,
                     "after": trace.carried.mastery}
    assert rest[0]["before"] == first["after"]
    assert explanation["steps"][-1]["after"] == explanation["mastery_level"] == trace.mastery_level
    assert ("10 earlier observations (2026-03-02 to 2026-03-06) that retention purged"
            in explanation["summary"])


def test_everything_purged_still_explains_itself(params):
    trace = MasteryTrace(params, entries=sequence(5))
    level = trace.mastery_level
    trace.purge_before(at(100))
    explanation = trace.explain()
    assert [s["kind"] for s in explanation["steps"]] == ["carried_over"]
    assert explanation["steps"][-1]["after"] == explanation["mastery_level"] == level
    assert trace.source == "evidence"


def test_a_manual_value_purged_last_keeps_source_and_confidence(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True)])
    trace.set_manual(ManualValue(at(1), 0.35, confidence=0.8))
    trace.purge_before(at(2))
    assert (trace.mastery_level, trace.source, trace.confidence_score) == (0.35, "manual", 0.8)
    assert trace.explain()["summary"].startswith("Mastery 0.35 was set manually on 2026-03-03")


def test_evidence_older_than_what_was_purged_is_refused_and_changes_nothing(params):
    trace = MasteryTrace(params, entries=sequence(30))
    trace.purge_before(at(5))
    level = trace.mastery_level
    with pytest.raises(BeforeRetainedWindowError) as caught:
        trace.add([obs("fine", 20, True), obs("old", 4, True)])
    assert isinstance(caught.value, LearnerModelError)
    assert (caught.value.index, caught.value.field) == (1, "observed_at")
    # a retry of a purged observation is refused the same way, not counted twice
    with pytest.raises(BeforeRetainedWindowError):
        trace.observe(obs("e000", 0, True))
    assert trace.mastery_level == level and trace.observe(obs("fine", 20, True))


def test_the_carried_over_state_round_trips_and_rebuilds_the_same_trace(params):
    items = sequence(30)
    trace = MasteryTrace(params, entries=items)
    trace.purge_before(at(5))
    stored = trace.carried.to_dict()
    rebuilt = MasteryTrace(params, carried=CarriedOver.from_dict(stored), entries=items[10:])
    assert rebuilt.explain() == trace.explain()
    assert rebuilt.review_card().to_dict() == trace.review_card().to_dict()
    with pytest.raises(LearnerModelError) as caught:
        CarriedOver.from_dict({k: v for k, v in stored.items() if k != "mastery"})
    assert caught.value.field == "carried_over"


def test_a_refit_recomputes_retained_evidence_from_the_carried_value(params):
    trace = MasteryTrace(params, entries=sequence(30))
    trace.purge_before(at(5))
    refit = SkillParameters(prior=0.1, learn=0.3, slip=0.2, guess=0.1, version="test-2")
    moved = trace.with_parameters(refit)
    steps = moved.explain()["steps"]
    assert steps[0]["parameters_version"] == "test-1"      # the purged part cannot be redone
    assert steps[0]["after"] == trace.carried.mastery == steps[1]["before"]
    assert moved.explain()["parameters"]["version"] == "test-2"
    assert steps[-1]["after"] == moved.mastery_level != trace.mastery_level
