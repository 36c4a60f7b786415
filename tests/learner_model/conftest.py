from datetime import datetime, timedelta, timezone

import pytest

from twin.learner_model import Observation, SkillParameters

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(day: float) -> datetime:
    """``day`` days after a fixed Monday morning."""
    return T0 + timedelta(days=day)


def obs(evidence_id: str, day: float, correct: bool | None = None, score: float | None = None
        ) -> Observation:
    return Observation(evidence_id, at(day), correct=correct, score=score)


@pytest.fixture
def params() -> SkillParameters:
    # round numbers that make the hand computations below come out as small fractions
    return SkillParameters(prior=0.4, learn=0.2, slip=0.1, guess=0.25, version="test-1")
