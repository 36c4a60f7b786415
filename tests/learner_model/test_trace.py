"""A (learner, skill) trace: time order, late evidence, repeats, manual values, confidence."""

import random

import pytest

from twin.learner_model import (CONFIDENCE_PSEUDO_COUNT, ConflictingEvidenceError, ManualValue,
                                MasteryTrace, Observation, SkillParameters)
from twin.learner_model.bkt import predict_correct, update

from .conftest import at, obs


def sequence(n: int, seed: int = 1) -> list[Observation]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        if rng.random() < 0.2:
            items.append(obs(f"e{i:03d}", i * 0.5, score=round(rng.random(), 2)))
        else:
            items.append(obs(f"e{i:03d}", i * 0.5, correct=rng.random() < 0.6))
    return items


def by_hand(params, items) -> float:
    p = params.prior
    for item in sorted(items, key=lambda o: o.observed_at):
        p = update(p, item.outcome, params)
    return p


def test_no_evidence_means_the_prior(params):
    trace = MasteryTrace(params)
    assert trace.mastery_level == params.prior
    assert trace.source == "prior"
    assert trace.confidence_score == 0.0
    assert trace.observation_count == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_late_out_of_order_evidence_gives_what_the_time_sorted_sequence_gives(params, seed):
    items = sequence(40, seed)
    in_order = MasteryTrace(params, entries=items)
    shuffled = items[:]
    random.Random(seed).shuffle(shuffled)
    one_by_one = MasteryTrace(params)
    for item in shuffled:
        assert one_by_one.observe(item) is True
    batched = MasteryTrace(params)
    for start in range(0, 40, 7):
        batched.add(shuffled[start:start + 7])
    assert one_by_one.mastery_level == pytest.approx(by_hand(params, items), abs=1e-12)
    for trace in (one_by_one, batched):
        assert [e.evidence_id for e in trace.entries] == [e.evidence_id for e in items]
        expected = [s[2] for s in in_order.steps()]
        assert [s[2] for s in trace.steps()] == pytest.approx(expected, abs=1e-12)
        assert trace.confidence_score == pytest.approx(in_order.confidence_score, abs=1e-12)


def test_a_late_observation_changes_only_what_follows_it(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True), obs("c", 2, True), obs("d", 3, False)])
    before = [after for _, _, after in trace.steps()]
    trace.observe(obs("b", 1, False))
    after = [a for _, _, a in trace.steps()]
    assert [e.evidence_id for e in trace.entries] == ["a", "b", "c", "d"]
    assert after[0] == before[0]
    assert after[2] < before[1]          # c now follows a wrong answer


def test_observations_at_the_same_instant_are_ordered_by_evidence_id(params):
    left = MasteryTrace(params, entries=[obs("x2", 1, False), obs("x1", 1, True)])
    right = MasteryTrace(params, entries=[obs("x1", 1, True), obs("x2", 1, False)])
    assert [e.evidence_id for e in left.entries] == ["x1", "x2"]
    assert left.mastery_level == right.mastery_level


def test_a_retry_is_a_repeat_and_changes_nothing(params):
    trace = MasteryTrace(params)
    result = trace.add([obs("a", 0, True), obs("b", 1, False)])
    assert (result.new, result.repeats) == (2, 0)
    level = trace.mastery_level
    result = trace.add([obs("a", 0, True), obs("b", 1, False), obs("b", 1, False)])
    assert (result.new, result.repeats) == (0, 3)
    assert trace.observe(obs("a", 0, True)) is False
    assert trace.mastery_level == level and len(trace.entries) == 2


def test_an_id_reused_with_other_content_is_a_conflict_and_the_batch_is_refused_whole(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True), obs("b", 1, True)])
    level = trace.mastery_level
    with pytest.raises(ConflictingEvidenceError) as caught:
        trace.add([obs("new", 2, True), obs("b", 1, False), obs("a", 5, True),
                   obs("dup", 3, True), obs("dup", 3, score=0.5)])
    assert caught.value.evidence_ids == ["a", "b", "dup"]
    assert caught.value.field == "evidence_id"
    assert [e.evidence_id for e in trace.entries] == ["a", "b"]
    assert trace.mastery_level == level
    assert trace.observe(obs("new", 2, True)) is True   # nothing of the refused batch stuck


def test_a_manual_value_is_the_prior_of_the_evidence_after_it(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True), obs("b", 1, True)])
    trace.set_manual(ManualValue(at(1.5), 0.2))
    assert trace.mastery_level == 0.2 and trace.source == "manual"
    trace.observe(obs("c", 2, True))
    assert trace.source == "evidence"
    assert trace.mastery_level == pytest.approx(update(0.2, 1.0, params))
    # a late observation from before the manual value does not reach past it
    trace.observe(obs("early", 0.5, False))
    assert trace.mastery_level == pytest.approx(update(0.2, 1.0, params))
    kinds = [type(entry).__name__ for entry, _, _ in trace.steps()]
    assert kinds == ["Observation", "Observation", "Observation", "ManualValue", "Observation"]


def test_a_manual_value_set_again_at_the_same_instant_replaces_the_first(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True)])
    trace.set_manual(ManualValue(at(1), 0.2))
    trace.set_manual(ManualValue(at(1), 0.7, confidence=0.9))
    assert [getattr(e, "mastery", None) for e in trace.entries] == [None, 0.7]
    assert trace.mastery_level == 0.7 and trace.confidence_score == 0.9


def test_confidence_is_the_models_track_record_on_this_learner(params):
    consistent = MasteryTrace(params, entries=[obs(f"c{i}", i, True) for i in range(20)])
    erratic = MasteryTrace(params, entries=[obs(f"e{i}", i, i % 2 == 0) for i in range(20)])
    few = MasteryTrace(params, entries=[obs(f"f{i}", i, True) for i in range(3)])
    assert erratic.confidence_score < few.confidence_score < consistent.confidence_score < 1
    # recomputed from its definition: Brier skill of each prediction, 3 pseudo-observations
    p, total = params.prior, 0.0
    for entry in consistent.entries:
        total += max(0.0, 1 - 4 * (1.0 - predict_correct(p, params)) ** 2)
        p = update(p, 1.0, params)
    assert consistent.confidence_score == pytest.approx(total / (20 + CONFIDENCE_PSEUDO_COUNT))


def test_a_manual_confidence_holds_until_the_next_observation(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True)])
    evidence_confidence = trace.confidence_score
    trace.set_manual(ManualValue(at(1), 0.6, confidence=0.95))
    assert trace.confidence_score == 0.95
    trace.observe(obs("b", 2, True))
    assert trace.confidence_score != 0.95
    assert trace.confidence_score > evidence_confidence


def test_new_parameters_recompute_the_same_evidence(params):
    items = sequence(15)
    trace = MasteryTrace(params, entries=items)
    refit = SkillParameters(prior=0.2, learn=0.1, slip=0.05, guess=0.3, version="test-2")
    moved = trace.with_parameters(refit)
    assert moved.parameters.version == "test-2"
    assert moved.mastery_level == pytest.approx(by_hand(refit, items), abs=1e-12)
    assert trace.mastery_level == pytest.approx(by_hand(params, items), abs=1e-12)  # unchanged
