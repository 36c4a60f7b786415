"""Requests about one data subject: export, erasure, legal holds, consent withdrawal, and their
record of disclosures. The one application service for them (routes and scripts only parse and
serialise): every request here names its subject the same way (a user id, hashed on arrival
and never stored, or a profile id), applies the learner-own rule the same way, and is audited
the same way as every other learner access (``LearnerContext.record``). The work itself is done
by compliance (``compliance.dsr``) and the learner domain (holds, consents).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

from compliance.audit import Actor
from compliance.dsr import DataSubjectRequests, ErasureReceipt
from twin.storage.progress import ProgressFactory, silent

from .consents import ConsentService
from .context import LearnerContext
from .holds import LegalHolds
from .profiles import ProfileService


class SubjectRequests:
    def __init__(self, ctx: LearnerContext, profiles: ProfileService, consents: ConsentService,
                 holds: LegalHolds, dsr: DataSubjectRequests) -> None:
        self.ctx, self.profiles, self.consents, self.holds, self.dsr = ctx, profiles, consents, holds, dsr

    def subject_hash(self, *, user_id: str | None = None, profile_id: str | None = None,
                     if_match: str | None = None) -> str:
        """The subject a request names: by user id (any, stored or not), or by the profile id of
        an unexpired profile (``NotFoundError`` otherwise) at a version ``if_match`` allows
        (``PreconditionFailedError`` otherwise; absent, any)."""
        if (user_id is None) == (profile_id is None):
            raise ValueError("name the subject by user_id or by profile_id")
        if user_id is not None:
            return self.ctx.hasher.hash(user_id)
        return self.profiles.subject_of(profile_id, if_match=if_match)

    # -- export (GDPR art. 15/20) ---------------------------------------------------------

    def export(self, actor: Actor, request_id: str | None, user_id: str, *,
               restricted_to: str | None = None, batch: int = 500) -> Iterator[str]:
        """The subject's export document as JSON text chunks. Checked (a learner asking about
        someone else: ``NotFoundError``) and audited before this returns: no byte of personal
        data leaves before its disclosure is recorded, with the rows per section it is about to
        send. When it cannot be recorded (the audit journal's disk is full) this raises and
        nothing is read out; a reader that stops early was still disclosed at most that."""
        subject_hash = self.subject_hash(user_id=user_id)
        self.ctx.require_own(restricted_to, subject_hash, "subject")
        self.ctx.record(actor, "export", subject_hash, "dsr:export", request_id,
                        self.dsr.export_counts(subject_hash))
        return self.dsr.export_chunks(subject_hash, batch=batch)

    # -- erasure (art. 17) ----------------------------------------------------------------

    def erase(self, actor: Actor, request_id: str | None, *, user_id: str | None = None,
              profile_id: str | None = None, if_match: str | None = None, dry_run: bool = False,
              progress: ProgressFactory = silent) -> ErasureReceipt:
        """Erase every datum of the subject (``SubjectOnHoldError`` under a legal hold); a dry
        run only counts, and is not audited (nothing was disclosed or changed). ``progress``
        counts the tables done. ``if_match`` (with ``profile_id``): a client's precondition,
        checked against the profile's version when the erasure starts. Without one the
        erasure is unconditional: a right to erasure is never refused for a stale version."""
        subject_hash = self.subject_hash(user_id=user_id, profile_id=profile_id, if_match=if_match)
        return self._erase(actor, request_id, subject_hash, dry_run=dry_run, progress=progress)

    def _erase(self, actor: Actor, request_id: str | None, subject_hash: str, *,
               dry_run: bool = False, progress: ProgressFactory = silent) -> ErasureReceipt:
        receipt = self.dsr.erase(subject_hash, dry_run=dry_run, progress=progress)
        if not dry_run:
            self.ctx.record(actor, "erase", subject_hash, "dsr:erase", request_id,
                            {"receipt_id": receipt.receipt_id, "counts": receipt.counts,
                             "verified": receipt.verified, "wal_truncated": receipt.wal_truncated})
        return receipt

    # -- legal holds ----------------------------------------------------------------------

    def place_hold(self, actor: Actor, request_id: str | None, user_id: str, reason: str,
                   until: datetime | None) -> dict[str, Any]:
        subject_hash = self.subject_hash(user_id=user_id)
        hold = self.holds.place(subject_hash, reason, until, actor.actor_id)
        self.ctx.record(actor, "hold_place", subject_hash, f"hold:{hold['hold_id']}", request_id)
        return hold

    def lift_hold(self, actor: Actor, request_id: str | None, hold_id: str) -> dict[str, Any]:
        hold, subject_hash = self.holds.lift(hold_id, actor.actor_id)
        self.ctx.record(actor, "hold_lift", subject_hash, f"hold:{hold_id}", request_id)
        return hold

    def active_holds(self) -> list[dict[str, Any]]:
        return self.holds.list_active()

    # -- consent withdrawal (COPPA) -------------------------------------------------------

    def withdraw_consent(self, actor: Actor, request_id: str | None, profile_id: str,
                         consent_id: str) -> dict[str, Any]:
        """Withdraw a consent. A child left without any consent is erased at once."""
        subject_hash, child = self.consents.is_child_profile(profile_id)
        withdrawn_at = self.ctx.now()
        must_erase = self.consents.withdraw_unless_last_of_a_child(profile_id, consent_id, child, withdrawn_at)
        receipt = None
        if must_erase:
            # Erasure writes its tombstone first: once it starts, a crash is finished at restart.
            receipt = self._erase(actor, request_id, subject_hash).to_dict()
        self.ctx.record(actor, "consent_withdraw", subject_hash, f"profile:{profile_id}/consents",
                        request_id, {"erased": must_erase})
        return {"consent_id": consent_id, "withdrawn_at": withdrawn_at, "erased": receipt is not None,
                "receipt": receipt}

    # -- the record of disclosures --------------------------------------------------------

    def disclosures(self, filters: dict[str, Any], *, user_id: str | None = None,
                    subject_hash: str | None = None) -> dict[str, Any]:
        """A page of audit events (``{items, next_cursor}``), of one subject if named."""
        if user_id is not None:
            subject_hash = self.subject_hash(user_id=user_id)
        limit = filters["limit"]
        events = self.ctx.audit.query(subject_hash=subject_hash, action=filters.get("action"),
                                      since=filters.get("since"), until=filters.get("until"),
                                      after_seq=filters.get("cursor"), limit=limit + 1)
        more = len(events) > limit
        events = events[:limit]
        return {"items": [e.to_dict() for e in events], "next_cursor": events[-1].seq if more else None}
