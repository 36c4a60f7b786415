"""The learner model: mastery inferred from evidence, explained, and scheduled for review.

Pure domain code (NumPy and ``fsrs``; no Flask, no database, no compliance): the service layer
loads a learner's evidence, builds a ``MasteryTrace`` per (domain, topic), stores what the trace
reports, and keeps the small state README.md's integration contract lists.

- bkt.py          the BKT update (and how a fractional score enters it)
- parameters.py   versioned, immutable skill parameters and the defaults
- evidence.py     observations and manual values
- trace.py        one (learner, skill) estimate: online, late entries, retention, confidence
- explanation.py  the estimate as the steps that moved it, and a one-sentence summary
- fitting.py      EM (Baum-Welch) per skill over all learners, vectorised
- review.py       review scheduling with FSRS
- synthetic.py    learners simulated from known parameters (tests, benchmark)
"""

from .errors import (BeforeRetainedWindowError, ConflictingEvidenceError, InvalidObservationError,
                     InvalidParametersError, LearnerModelError)
from .evidence import ManualValue, Observation
from .explanation import explain
from .fitting import MIN_LEARNERS, MIN_OBSERVATIONS, FitResult, fit_skill
from .parameters import DEFAULT_PARAMETERS, SkillParameters
from .review import DueReview, due_reviews, predicted_recall
from .trace import CONFIDENCE_PSEUDO_COUNT, AddResult, CarriedOver, MasteryTrace

__all__ = [
    "AddResult", "BeforeRetainedWindowError", "CONFIDENCE_PSEUDO_COUNT", "CarriedOver",
    "ConflictingEvidenceError", "DEFAULT_PARAMETERS", "DueReview", "FitResult",
    "InvalidObservationError", "InvalidParametersError", "LearnerModelError", "MIN_LEARNERS",
    "MIN_OBSERVATIONS", "ManualValue", "MasteryTrace", "Observation", "SkillParameters",
    "due_reviews", "explain", "fit_skill", "predicted_recall",
]
