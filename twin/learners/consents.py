"""Parental consents of a profile: record, list, and the withdrawal step (withdrawing a child's
last consent erases the child: ``twin.learners.subject_requests`` runs that request)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from compliance.audit import Actor
from compliance.consent import ParentalConsent, check_method, is_child
from twin.storage.timestamps import to_db

from .context import LearnerContext, new_id
from .errors import NotFoundError
from .tables import CONSENTS, PROFILES

if TYPE_CHECKING:
    from .profiles import ProfileService

_INSERT = CONSENTS.insert_sql(("consent_id", "profile_id", CONSENTS.subject_hash_column, "consent_type", "method",
                               "details", "granted_at"))
_SELECT = f"SELECT {CONSENTS.select_list()} FROM {CONSENTS.name} WHERE "


def consent_from_request(data: dict[str, Any]) -> ParentalConsent:
    """A validated request's consent (``obtained_at`` as a datetime) in stored form."""
    return ParentalConsent(**{**data, "obtained_at": to_db(data["obtained_at"])})


def insert_consent(conn: Any, writer: Any, *, consent_id: str, profile_id: str, subject_hash: str,
                   consent: ParentalConsent, granted_at: str) -> None:
    """Insert one parental consent row inside the caller's transaction."""
    check_method(consent.method)
    conn.execute(_INSERT, (consent_id, profile_id, subject_hash, "parental", consent.method,
                           CONSENTS.seal(writer, consent_id, "details", consent.sealed_details()),
                           granted_at))


def has_active_consent(conn: Any, profile_id: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {CONSENTS.name} WHERE profile_id = ? AND withdrawn_at IS NULL",
                        (profile_id,)).fetchone() is not None


class ConsentService:
    def __init__(self, ctx: LearnerContext, profiles: "ProfileService") -> None:
        self.ctx, self.profiles = ctx, profiles

    @staticmethod
    def _view(row: Any) -> dict[str, Any]:
        return {k: row[k] for k in ("consent_id", "method", "granted_at", "withdrawn_at")}

    def grant(self, actor: Actor, request_id: str | None, profile_id: str, data: dict[str, Any]) -> dict[str, Any]:
        consent_id = new_id("cns")

        # The profile read (its key's proof; that it is live) and the row read back are done in
        # the write, on the writers' connection, whose pages the last write left cached: before
        # or after it, through this thread's connection, whose page cache every write of the
        # process empties, their pages were read and decrypted again. The profile is read
        # first: an unknown profile is 404 before a refused method is 422, as before.
        def insert(conn: Any) -> tuple[str, Any]:
            subject_hash, proof = self.profiles.key_proof(profile_id, conn)
            insert_consent(conn, self.ctx.keys.writer(subject_hash, proof=proof), consent_id=consent_id,
                           profile_id=profile_id, subject_hash=subject_hash,
                           consent=consent_from_request(data), granted_at=self.ctx.now())
            return subject_hash, conn.execute(_SELECT + "consent_id = ?", (consent_id,)).fetchone()

        subject_hash, row = self.ctx.write(insert)
        self.ctx.record(actor, "consent_grant", subject_hash, f"profile:{profile_id}/consents", request_id)
        return self._view(row)

    def list(self, actor: Actor, request_id: str | None, profile_id: str) -> list[dict[str, Any]]:
        subject_hash = self.profiles.subject_of(profile_id)
        rows = self.ctx.db.query(_SELECT + "profile_id = ? ORDER BY id", (profile_id,))
        self.ctx.record(actor, "read", subject_hash, f"profile:{profile_id}/consents", request_id)
        return [self._view(r) for r in rows]

    def is_child_profile(self, profile_id: str) -> tuple[str, bool]:
        """The subject hash of an unexpired profile, and whether COPPA applies to them today."""
        row = self.profiles._row(profile_id)  # noqa: SLF001 - same domain
        subject_hash = row[PROFILES.subject_hash_column]
        sealed = PROFILES.decode(row, self.ctx.keys.writer(subject_hash), ("encrypted_data",))["encrypted_data"]
        birth = sealed.get("birth_date")
        return subject_hash, is_child(date.fromisoformat(birth) if birth else None, self.ctx.clock().date())

    def withdraw_unless_last_of_a_child(self, profile_id: str, consent_id: str, child: bool,
                                        withdrawn_at: str) -> bool:
        """Withdraw the consent now, or return True, writing nothing, when it is a child's last
        consent: then the child's erasure is the withdrawal, so a failed erasure (busy, legal
        hold) leaves the consent in force and the request can simply be retried."""
        def apply(conn: Any) -> bool:
            active = conn.execute(f"SELECT 1 FROM {CONSENTS.name} WHERE consent_id = ? AND profile_id = ? "
                                  "AND withdrawn_at IS NULL", (consent_id, profile_id)).fetchone()
            if active is None:
                raise NotFoundError("no active consent with that id on this profile")
            others = conn.execute(f"SELECT count(*) FROM {CONSENTS.name} WHERE profile_id = ? "
                                  "AND consent_id != ? AND withdrawn_at IS NULL",
                                  (profile_id, consent_id)).fetchone()[0]
            if child and not others:
                return True
            conn.execute(CONSENTS.update_sql(("withdrawn_at",), "consent_id"), (withdrawn_at, consent_id))
            return False

        return self.ctx.db.write(apply)
