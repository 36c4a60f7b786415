"""Named errors of the learner domain; the API maps each to one HTTP status."""


class LearnerError(Exception):
    """Base class of learner-domain errors."""


class NotFoundError(LearnerError):
    """No such (unexpired) profile, session or knowledge state."""


class DuplicateProfileError(LearnerError):
    """That user already has a profile."""


class PreconditionFailedError(LearnerError):
    """``If-Match`` did not match the current version."""


class InvalidFieldsError(LearnerError):
    """Field values that are well-formed but not acceptable (e.g. end before start).

    ``errors`` maps field names to lists of messages, like a marshmallow ValidationError;
    ``rule`` names the rule broken when the request's form alone cannot show it (it depends on
    the clock, the configuration or stored data), e.g. ``session-ends-before-it-starts``.
    """

    def __init__(self, errors: dict[str, list[str]], message: str = "invalid fields",
                 rule: str | None = None) -> None:
        super().__init__(message)
        self.errors = errors
        self.rule = rule


class EvidenceConflictError(LearnerError):
    """Evidence ids already used (in this profile, or earlier in the batch) with different
    content; ``evidence_ids`` names them, ``indices`` their places in the batch."""

    def __init__(self, evidence_ids: list[str], indices: list[int]) -> None:
        super().__init__(f"evidence ids already used with different content: {', '.join(evidence_ids)}")
        self.evidence_ids = evidence_ids
        self.indices = indices
