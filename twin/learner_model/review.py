"""When to review: FSRS (the ``fsrs`` package) fed by the same observations as BKT.

Why FSRS and not BKT with forgetting: BKT's ``forget`` is a per-opportunity probability, blind
to the time between opportunities, so it cannot say *when* recall will have decayed; FSRS models
memory stability, difficulty and retrievability as functions of elapsed time, with default
weights fitted on hundreds of millions of real reviews, and answers exactly "when is recall
predicted to drop to the target retention (90 %)". The two models answer different questions
from one evidence stream: BKT "has the learner mastered this?", FSRS "when will they forget it?".

The first answer on a topic in a sitting is one review of the topic's card, in time order:
answers given less than ``SITTING`` (an hour) after the review that counted belong to the same
sitting and review nothing. FSRS's review is a recall attempt after a delay; the answers that
follow it minutes later are practice, answered from short-term memory, and FSRS's memory model
is fitted on (mostly) one review per card and day. It also keeps an ingest to one FSRS update
per topic and sitting instead of one per answer (the rule depends only on the card and the next
answer in time order, so folding a batch from a checkpoint or rebuilding the whole history give
the same card). Ratings:

    correct: true  -> Good            correct: false -> Again
    score >= 0.8   -> Good            0.5 <= score < 0.8 -> Hard            score < 0.5 -> Again

(never Easy: an observation says whether the answer was right, not how effortless it was).
The scheduler runs without learning steps, so the first review already schedules in days, and
without fuzzing, so the same evidence always gives the same due date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from fsrs import Card, Rating, Scheduler

from .evidence import Observation, as_utc, iso

SCHEDULER = Scheduler(desired_retention=0.9, learning_steps=(), relearning_steps=(),
                      enable_fuzzing=False)
SITTING = timedelta(hours=1)
_CARD_ID = 1  # one card per trace; a fixed id keeps fsrs from deriving one from the clock

SkillKey = tuple[str, str]  # (domain, topic)


def rating_for(outcome: float) -> Rating:
    if outcome >= 0.8:
        return Rating.Good
    if outcome >= 0.5:
        return Rating.Hard
    return Rating.Again


def new_card() -> Card:
    return Card(card_id=_CARD_ID)


def card_from_dict(data: Mapping[str, Any] | None) -> Card:
    return new_card() if data is None else Card.from_dict(dict(data))  # type: ignore[arg-type]


def fold(card: Card, observations: Iterable[Observation]) -> Card:
    """The card after reviewing it with ``observations`` (already in time order): the first of
    each sitting."""
    last = card.last_review
    for obs in observations:
        if last is not None and obs.observed_at - last < SITTING:
            continue
        card, _ = SCHEDULER.review_card(card, rating_for(obs.outcome), obs.observed_at)
        last = obs.observed_at
    return card


def predicted_recall(card: Card, at: datetime | str) -> float:
    """FSRS retrievability at ``at``: the predicted probability of recalling the topic then
    (0.0 for a card never reviewed)."""
    return float(SCHEDULER.get_card_retrievability(card, as_utc(at, "at")))


@dataclass(frozen=True, slots=True)
class DueReview:
    domain: str
    topic: str
    due: datetime
    predicted_recall: float
    last_reviewed: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "topic": self.topic, "due": iso(self.due),
                "predicted_recall": self.predicted_recall,
                "last_reviewed": iso(self.last_reviewed)}


def due_reviews(cards: Mapping[SkillKey, Card], before: datetime | str,
                at: datetime | str | None = None) -> list[DueReview]:
    """Topics whose review falls due at or before ``before``, soonest first (then lowest
    predicted recall, then by name), each with its predicted recall at ``at`` (default:
    ``before``, i.e. "if you review it then"). Cards never reviewed are not listed."""
    before = as_utc(before, "before")
    at = before if at is None else as_utc(at, "at")
    due = [DueReview(domain, topic, as_utc(card.due, "due"), predicted_recall(card, at),
                     as_utc(card.last_review, "last_review"))
           for (domain, topic), card in cards.items()
           if card.last_review is not None and card.due <= before]
    due.sort(key=lambda item: (item.due, item.predicted_recall, item.domain, item.topic))
    return due
