"""Named errors of the learner model; all subclass ``LearnerModelError``.

Each carries ``field`` (the input that was refused, e.g. ``"score"``) and, for an item of a
batch, ``index``, so the API layer can turn one into a 422 naming the failing fields.
"""

from __future__ import annotations


class LearnerModelError(Exception):
    """Base class of learner-model errors."""

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None) -> None:
        prefix = "" if index is None else f"observation {index}: "
        super().__init__(prefix + message)
        self.field = field
        self.index = index


class InvalidParametersError(LearnerModelError, ValueError):
    """A BKT parameter set that is out of range or not identifiable (slip or guess >= 0.5)."""


class InvalidObservationError(LearnerModelError, ValueError):
    """An observation or manual value the model refuses (bad id, time, correct or score)."""


class ConflictingEvidenceError(LearnerModelError):
    """An ``evidence_id`` seen before with different content; ``evidence_ids`` names them."""

    def __init__(self, evidence_ids: list[str]) -> None:
        super().__init__(f"evidence ids already used with different content: {', '.join(evidence_ids)}",
                         field="evidence_id")
        self.evidence_ids = evidence_ids


class BeforeRetainedWindowError(LearnerModelError, ValueError):
    """An entry older than observations already purged by retention: it cannot be folded in,
    since the purged observations it would precede are gone (only their summary is kept)."""
