"""Legal holds: an admin suspends retention purges and erasure for one subject until lifted.

The holds themselves are kept by their owner (the learner domain keeps them with the subject's
data, in ``digital_twin``); compliance asks through ``HoldRegistry`` whether a subject is held.
"""

from __future__ import annotations

from typing import Protocol

from .errors import ComplianceError


class LegalHoldError(ComplianceError):
    """Base class of legal-hold errors."""


class SubjectOnHoldError(LegalHoldError):
    """The subject is under a legal hold; erasure must wait until it is lifted."""

    def __init__(self, hold_id: str, until: str | None) -> None:
        super().__init__(f"subject is under legal hold {hold_id}"
                         + (f" until {until}" if until else " (no end date)"))
        self.hold_id = hold_id
        self.until = until


class HoldNotFoundError(LegalHoldError):
    """No active hold with that id."""


class HoldRegistry(Protocol):
    """Who is held now: what erasure and retention ask before they end anyone's data."""

    def check_not_held(self, subject_hash: str) -> None:
        """Raise ``SubjectOnHoldError`` if a hold on the subject is in force."""

    def held_subjects(self) -> list[str]:
        """The subject hashes under a hold in force now (retention skips them)."""
