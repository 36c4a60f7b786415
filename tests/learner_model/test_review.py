"""Review scheduling with FSRS, fed by the same observations as the mastery estimate."""

import json
from datetime import timedelta

import pytest
from fsrs import Rating

from twin.learner_model import (DueReview, InvalidObservationError, MasteryTrace, Observation,
                                due_reviews, predicted_recall)
from twin.learner_model import review
from twin.learner_model.review import new_card, rating_for

from .conftest import at, obs


def card_after(*answers: bool, start: float = 0.0):
    trace = MasteryTrace(entries=[obs(f"e{i}", start + 2 * i, correct)
                                  for i, correct in enumerate(answers)])
    return trace.review_card()


def test_outcomes_map_to_fsrs_ratings():
    assert [rating_for(o) for o in (1.0, 0.8, 0.79, 0.5, 0.49, 0.0)] == [
        Rating.Good, Rating.Good, Rating.Hard, Rating.Hard, Rating.Again, Rating.Again]


def test_a_forgotten_topic_is_due_sooner_than_a_remembered_one():
    remembered = card_after(True, True, True)
    forgotten = card_after(True, True, False)
    assert forgotten.last_review == remembered.last_review == at(4)
    assert forgotten.due < remembered.due
    assert forgotten.stability < remembered.stability


def test_predicted_recall_is_a_probability_that_falls_with_time_and_is_near_90_percent_when_due():
    card = card_after(True, True, True)
    recalls = [predicted_recall(card, at(4 + days)) for days in (0, 1, 5, 20, 100, 1000)]
    assert all(0.0 <= r <= 1.0 for r in recalls)
    assert recalls == sorted(recalls, reverse=True) and recalls[0] == 1.0 and recalls[-1] < 0.6
    assert predicted_recall(card, card.due) == pytest.approx(0.9, abs=0.03)
    assert predicted_recall(new_card(), at(0)) == 0.0


def test_the_due_list_holds_topics_due_before_the_time_soonest_first():
    cards = {("math", "fractions"): card_after(True, False),              # soonest
             ("math", "decimals"): card_after(True, True, True, True),    # later
             ("art", "colour"): card_after(True, True, start=1),
             ("math", "never"): new_card()}                               # nothing to review yet
    ordered = sorted((c.due, k) for k, c in cards.items() if k[1] != "never")
    before = ordered[-2][0]                                               # all but the last
    due = due_reviews(cards, before)
    assert [(d.domain, d.topic) for d in due] == [k for _, k in ordered[:-1]]
    assert [d.due for d in due] == sorted(d.due for d in due)
    assert all(isinstance(d, DueReview) and 0.0 <= d.predicted_recall <= 1.0 for d in due)
    soonest = cards[("math", "fractions")]
    assert due[0].predicted_recall == pytest.approx(predicted_recall(soonest, before))
    assert due_reviews(cards, at(-1)) == []
    assert json.loads(json.dumps(due[0].to_dict()))["topic"] == due[0].topic


def test_equal_due_dates_list_the_weaker_memory_first():
    strong = card_after(True, True)
    weak = card_after(True, True)
    weak.stability = strong.stability / 2       # same due date, recall decays faster
    due = due_reviews({("d", "strong"): strong, ("d", "weak"): weak}, strong.due, at=at(30))
    assert [d.topic for d in due] == ["weak", "strong"]


def test_the_first_answer_of_a_sitting_is_the_review_and_the_practice_after_it_reviews_nothing():
    first = obs("first", 0, True)
    practice = [Observation(f"p{i}", at(0) + timedelta(minutes=5 * i), correct=False) for i in range(1, 12)]
    after_an_hour = Observation("next", at(0) + timedelta(minutes=61), correct=False)

    reviewed_once = MasteryTrace(entries=[first]).review_card()
    sitting = MasteryTrace(entries=[first, *practice]).review_card()
    next_sitting = MasteryTrace(entries=[first, *practice, after_an_hour]).review_card()

    assert sitting.to_dict() == reviewed_once.to_dict()    # 55 minutes of wrong answers: no review
    assert next_sitting.last_review == after_an_hour.observed_at
    assert next_sitting.stability < sitting.stability      # the wrong answer an hour on counts


def test_a_sitting_split_across_batches_gives_the_card_of_the_whole_history():
    answers = [Observation(f"e{i}", at(0) + timedelta(minutes=25 * i), correct=i % 3 != 1)
               for i in range(12)]
    whole = review.fold(review.new_card(), answers)
    for cut in (1, 2, 5, 7):
        assert review.fold(review.fold(review.new_card(), answers[:cut]), answers[cut:]).to_dict() \
            == whole.to_dict()
    assert whole.last_review == answers[9].observed_at    # reviews at 0, 75, 150 and 225 minutes


def test_late_evidence_reschedules_as_if_it_had_come_in_order():
    items = [obs("a", 0, True), obs("b", 3, False), obs("c", 7, True)]
    late = MasteryTrace(entries=[items[0], items[2]])
    first_due = late.review_card().due
    late.observe(items[1])
    assert late.review_card().to_dict() == MasteryTrace(entries=items).review_card().to_dict()
    assert late.review_card().due != first_due


def test_a_bad_time_is_refused_clearly():
    with pytest.raises(InvalidObservationError) as caught:
        due_reviews({}, "next tuesday")
    assert caught.value.field == "before"
