"""Parental consents of a profile: record, list, withdraw (withdrawal erases a child)."""

from __future__ import annotations

from datetime import date
from typing import Any

from compliance.audit import Actor
from compliance.consent import insert_consent, is_child
from compliance.dsr import DataSubjectRequests

from .context import LearnerContext, new_id
from .errors import NotFoundError
from .profiles import TABLE as PROFILES, ProfileService, consent_from_request


class ConsentService:
    def __init__(self, ctx: LearnerContext, profiles: ProfileService, dsr: DataSubjectRequests) -> None:
        self.ctx, self.profiles, self.dsr = ctx, profiles, dsr

    def _view(self, row: Any) -> dict[str, Any]:
        return {k: row[k] for k in ("consent_id", "method", "granted_at", "withdrawn_at")}

    def grant(self, actor: Actor, request_id: str | None, profile_id: str, data: dict[str, Any]) -> dict[str, Any]:
        subject, sealer = self.profiles.subject_and_sealer(profile_id)
        consent_id = new_id("cns")
        self.ctx.db.write(lambda conn: insert_consent(
            conn, sealer, consent_id=consent_id, profile_id=profile_id, subject_hash=subject,
            consent=consent_from_request(data), granted_at=self.ctx.now()))
        self.ctx.record(actor, "consent_grant", subject, f"profile:{profile_id}/consents", request_id)
        return self._view(self.ctx.db.query_one("SELECT * FROM consents WHERE consent_id = ?", (consent_id,)))

    def list(self, actor: Actor, request_id: str | None, profile_id: str) -> list[dict[str, Any]]:
        subject = self.profiles.subject_of(profile_id)
        rows = self.ctx.db.query("SELECT * FROM consents WHERE profile_id = ? ORDER BY id", (profile_id,))
        self.ctx.record(actor, "read", subject, f"profile:{profile_id}/consents", request_id)
        return [self._view(r) for r in rows]

    def withdraw(self, actor: Actor, request_id: str | None, profile_id: str, consent_id: str) -> dict[str, Any]:
        """Withdraw a consent. A child left without any consent is erased at once (COPPA)."""
        ctx = self.ctx
        row = self.profiles._row(profile_id)  # noqa: SLF001 - same domain
        subject = row["user_id_hash"]
        sealed = ctx.keys.writer(subject).open(PROFILES, "encrypted_data", profile_id, row["encrypted_data"])
        birth = sealed.get("birth_date")
        child = is_child(date.fromisoformat(birth) if birth else None, ctx.clock().date())
        withdrawn_at = ctx.now()

        def withdraw_unless_last_of_a_child(conn: Any) -> bool:
            """Withdraw now, or return True when this is a child's last consent: then nothing is
            written here and the erasure below is the withdrawal, so a failed erasure (busy, legal
            hold) leaves the consent in force and the request can simply be retried."""
            active = conn.execute("SELECT 1 FROM consents WHERE consent_id = ? AND profile_id = ? "
                                  "AND withdrawn_at IS NULL", (consent_id, profile_id)).fetchone()
            if active is None:
                raise NotFoundError("no active consent with that id on this profile")
            others = conn.execute("SELECT count(*) FROM consents WHERE profile_id = ? AND consent_id != ? "
                                  "AND withdrawn_at IS NULL", (profile_id, consent_id)).fetchone()[0]
            if child and not others:
                return True
            conn.execute("UPDATE consents SET withdrawn_at = ? WHERE consent_id = ?", (withdrawn_at, consent_id))
            return False

        must_erase = ctx.db.write(withdraw_unless_last_of_a_child)
        receipt = None
        if must_erase:
            # Erasure writes its tombstone first: once it starts, a crash is finished at restart.
            receipt = self.dsr.erase(subject, actor, request_id).to_dict()
        ctx.record(actor, "consent_withdraw", subject, f"profile:{profile_id}/consents", request_id,
                   {"erased": must_erase})
        return {"consent_id": consent_id, "withdrawn_at": withdrawn_at, "erased": receipt is not None,
                "receipt": receipt}
