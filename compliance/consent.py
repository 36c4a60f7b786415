"""COPPA parental consent: who is a child, and what a consent that must precede storing one holds.

A learner under 13 (from ``birth_date``) may only be stored with a recorded, verifiable
parental consent: who consented (name, relationship, contact), how (method), when. The
details are personal data and are sealed under the subject's data key by the owner of the
consent records (the learner domain). Withdrawing the consent of a child erases the child's
data (the caller runs the erasure).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from .errors import ComplianceError

COPPA_AGE = 13
CONSENT_METHODS = ("signed_form", "credit_card_verification", "video_call", "government_id",
                   "knowledge_based_questions", "email_plus")


class ConsentError(ComplianceError):
    """A consent operation is not allowed."""


class ConsentRequiredError(ConsentError):
    """A child's profile needs a recorded parental consent first."""


def age_on(birth_date: date, today: date) -> int:
    """Completed years between ``birth_date`` and ``today``."""
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def is_child(birth_date: date | None, today: date) -> bool:
    """True when COPPA applies (under 13 on ``today``)."""
    return birth_date is not None and age_on(birth_date, today) < COPPA_AGE


@dataclass(frozen=True)
class ParentalConsent:
    """A consent as given (before sealing)."""

    consenter_name: str
    consenter_relationship: str
    consenter_contact: str | None
    method: str
    obtained_at: str  # ISO-8601 UTC

    def sealed_details(self) -> dict[str, Any]:
        return {"consenter_name": self.consenter_name,
                "consenter_relationship": self.consenter_relationship,
                "consenter_contact": self.consenter_contact,
                "obtained_at": self.obtained_at}


def check_method(method: str) -> None:
    """``ConsentError`` unless ``method`` is a verifiable-consent method COPPA accepts."""
    if method not in CONSENT_METHODS:
        raise ConsentError(f"method must be one of {', '.join(CONSENT_METHODS)}")
