"""Learner profiles: create, look up, read, update. Erasure lives in ``compliance.dsr``.

The user ID is hashed on arrival and never stored; ``personal``, ``birth_date`` and
``learning_goals`` are sealed under the subject's data key with row-bound associated data.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

from compliance.audit import Actor
from compliance.consent import (ConsentRequiredError, ParentalConsent, has_active_consent,
                                insert_consent, is_child)
from compliance.subject_keys import FieldSealer, KeyProof
from twin.storage import IntegrityError
from twin.storage.timestamps import from_db, to_db

from .context import LearnerContext, new_id
from .errors import DuplicateProfileError, NotFoundError, PreconditionFailedError

TABLE = "learning_profiles"
_SEALED = "encrypted_data"      # {"personal": {...}, "birth_date": "YYYY-MM-DD"}
# Free-text and free-form columns, each sealed on its own under the subject key (row-bound
# AAD), with the value an absent field reads as. Only preferred_difficulty (an enum) and the
# timestamps stay in clear, because queries filter on them.
_SEALED_COLUMNS: dict[str, Any] = {"learning_style": None, "knowledge_domains": [],
                                   "learning_goals": [], "privacy_settings": {}}
_FIRST_ROW_VERSION = 1  # row_version's column default: what a new row's ETag is made from


def consent_from_request(data: dict[str, Any]) -> ParentalConsent:
    """A validated request's consent (``obtained_at`` as a datetime) in stored form."""
    return ParentalConsent(**{**data, "obtained_at": to_db(data["obtained_at"])})


def _column_value(values: dict[str, Any], column: str) -> Any:
    """A sealed column's value in ``values``, or what an absent one reads as."""
    value = values.get(column)
    return _SEALED_COLUMNS[column] if value is None else value


def _seal_column(sealer: Any, profile_id: str, column: str, value: Any) -> bytes | None:
    """The stored form of one sealed profile column's value (NULL for None)."""
    return None if value is None else sealer.seal(TABLE, column, profile_id, value)


def _render(stored: Any, opened: dict[str, Any], sealed: dict[str, Any]) -> dict[str, Any]:
    """The API view of a profile: clear columns from ``stored`` (a row or a dict), sealed
    columns already opened."""
    return {
        "profile_id": stored["profile_id"],
        "learning_style": opened["learning_style"],
        "preferred_difficulty": stored["preferred_difficulty"],
        "knowledge_domains": opened["knowledge_domains"],
        "learning_goals": opened["learning_goals"],
        "privacy_settings": opened["privacy_settings"],
        "personal": sealed.get("personal", {}),
        "birth_date": sealed.get("birth_date"),
        "retention_days": stored["retention_days"],
        "created_at": stored["created_at"],
        "updated_at": stored["updated_at"],
        "expires_at": stored["ttl_expires_at"],
    }


def if_match_allows(if_match: str | None, current: str) -> bool:
    """RFC 9110 If-Match: absent or ``*`` allows; else one of the listed strong ETags must be
    the current one (a weak ``W/"..."`` tag never matches)."""
    if if_match is None or if_match.strip() == "*":
        return True
    return current in (tag.strip() for tag in if_match.split(","))


def etag_for(row_id: str, row_version: int) -> str:
    """An opaque strong ETag for one version of a row."""
    digest = hashlib.sha256(f"{row_id}:{row_version}".encode()).hexdigest()[:16]
    return f'"{digest}"'


class ProfileService:
    def __init__(self, ctx: LearnerContext) -> None:
        self.ctx = ctx

    # -- reading --------------------------------------------------------------------------

    def _row(self, profile_id: str, conn: Any = None) -> Any:
        conn = conn or self.ctx.db.connection()
        row = conn.execute(f"SELECT * FROM {TABLE} WHERE profile_id = ? AND ttl_expires_at > ?",
                           (profile_id, self.ctx.now())).fetchone()
        if row is None:
            raise NotFoundError("profile not found")
        return row

    def require_live(self, conn: Any, profile_id: str) -> None:
        """Inside a write transaction: NotFoundError unless the profile exists and is unexpired
        (an erasure may have run between a request's first read and its write)."""
        self._row(profile_id, conn)

    def subject_of(self, profile_id: str) -> str:
        """The subject hash of an unexpired profile (NotFoundError otherwise)."""
        return self._row(profile_id)["user_id_hash"]

    def subject_and_sealer(self, profile_id: str) -> tuple[str, FieldSealer]:
        """The subject hash of an unexpired profile and the sealer for writing their data (its
        key proven by the profile's own ciphertext). Writes then check ``require_live`` in
        their transaction: profile ids are never reused, so the key still fits."""
        row = self._row(profile_id)
        subject = row["user_id_hash"]
        return subject, self.ctx.keys.writer(subject, proof=KeyProof(TABLE, _SEALED, profile_id, row[_SEALED]))

    def _view(self, row: Any) -> dict[str, Any]:
        sealer = self.ctx.keys.reader(row["user_id_hash"])
        pid = row["profile_id"]
        sealed = sealer.open(TABLE, _SEALED, pid, row[_SEALED]) if row[_SEALED] is not None else {}
        opened = {column: sealer.open(TABLE, column, pid, row[column]) if row[column] is not None else default
                  for column, default in _SEALED_COLUMNS.items()}
        return _render(row, opened, sealed)

    def get(self, actor: Actor, request_id: str | None, profile_id: str, *,
            subject: str | None = None) -> tuple[dict[str, Any], str]:
        """A profile and its ETag. ``subject`` restricts to one subject (learner tokens)."""
        row = self._row(profile_id)
        if subject is not None and row["user_id_hash"] != subject:
            raise NotFoundError("profile not found")
        view = self._view(row)
        self.ctx.record(actor, "read", row["user_id_hash"], f"profile:{profile_id}", request_id)
        return view, etag_for(profile_id, row["row_version"])

    def lookup(self, actor: Actor, request_id: str | None, user_id: str) -> tuple[dict[str, Any], str]:
        subject = self.ctx.hasher.hash(user_id)
        row = self.ctx.db.query_one(f"SELECT profile_id FROM {TABLE} WHERE user_id_hash = ? "
                                    "AND ttl_expires_at > ?", (subject, self.ctx.now()))
        if row is None:
            raise NotFoundError("profile not found")
        return self.get(actor, request_id, row["profile_id"])

    # -- writing --------------------------------------------------------------------------

    def create(self, actor: Actor, request_id: str | None, data: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Create a profile (and its parental consent, when one is given)."""
        ctx = self.ctx
        subject = ctx.hasher.hash(data["user_id"])
        birth_date: date | None = data.get("birth_date")
        consent_data = data.get("parental_consent")
        if is_child(birth_date, ctx.clock().date()) and not consent_data:
            raise ConsentRequiredError(
                "learners under 13 need a recorded parental consent (COPPA): send parental_consent")
        profile_id = new_id("prf")
        now = ctx.clock()
        retention_days = data.get("retention_days") or ctx.config.profile_retention_days
        stored = {"profile_id": profile_id, "preferred_difficulty": data.get("preferred_difficulty") or "medium",
                  "retention_days": data.get("retention_days"), "created_at": to_db(now),
                  "updated_at": to_db(now), "ttl_expires_at": to_db(now + timedelta(days=retention_days))}
        opened = {column: _column_value(data, column) for column in _SEALED_COLUMNS}
        sealed = {"personal": data.get("personal") or {},
                  "birth_date": birth_date.isoformat() if birth_date else None}
        sealer = ctx.keys.writer(subject, create=True)
        ciphertexts = [_seal_column(sealer, profile_id, column, value) for column, value in opened.items()]
        ciphertexts.append(sealer.seal(TABLE, _SEALED, profile_id, sealed))

        def insert(conn: Any) -> None:
            conn.execute(
                f"INSERT INTO {TABLE} (profile_id, user_id_hash, preferred_difficulty, created_at, "
                "updated_at, ttl_expires_at, retention_days, "
                f"{', '.join(_SEALED_COLUMNS)}, {_SEALED}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (profile_id, subject, stored["preferred_difficulty"], stored["created_at"],
                 stored["updated_at"], stored["ttl_expires_at"], stored["retention_days"], *ciphertexts))
            if consent_data:
                insert_consent(conn, sealer, consent_id=new_id("cns"), profile_id=profile_id,
                               subject_hash=subject, consent=consent_from_request(consent_data),
                               granted_at=to_db(now))

        try:
            ctx.db.write(insert)
        except IntegrityError:
            raise DuplicateProfileError("this user already has a profile") from None
        ctx.record(actor, "create", subject, f"profile:{profile_id}", request_id)
        if consent_data:
            ctx.record(actor, "consent_grant", subject, f"profile:{profile_id}", request_id)
        # Rendered from what was just written: reading it back would only decrypt it again.
        return _render(stored, opened, sealed), etag_for(profile_id, _FIRST_ROW_VERSION)

    def get_unaudited(self, profile_id: str) -> tuple[dict[str, Any], str]:
        """The view returned right after a write (the write itself was audited)."""
        row = self._row(profile_id)
        return self._view(row), etag_for(profile_id, row["row_version"])

    def update(self, actor: Actor, request_id: str | None, profile_id: str, changes: dict[str, Any],
               if_match: str | None) -> tuple[dict[str, Any], str]:
        """Partial update; ``if_match`` (an ETag) must match the current version when given."""
        ctx = self.ctx

        def apply(conn: Any) -> str:
            row = self._row(profile_id, conn)
            if not if_match_allows(if_match, etag_for(profile_id, row["row_version"])):
                raise PreconditionFailedError("the profile changed since it was read (ETag mismatch)")
            subject = row["user_id_hash"]
            sealer = ctx.keys.writer(subject, proof=KeyProof(TABLE, _SEALED, profile_id, row[_SEALED]))
            sets: dict[str, Any] = {}
            if "preferred_difficulty" in changes:
                sets["preferred_difficulty"] = changes["preferred_difficulty"]
            for column in _SEALED_COLUMNS:
                if column in changes:
                    sets[column] = _seal_column(sealer, profile_id, column, _column_value(changes, column))
            if "personal" in changes or "birth_date" in changes:
                sealed = sealer.open(TABLE, _SEALED, profile_id, row[_SEALED])
                if "personal" in changes:
                    sealed["personal"] = changes["personal"] or {}
                if "birth_date" in changes:
                    birth = changes["birth_date"]
                    if is_child(birth, ctx.clock().date()) and not has_active_consent(conn, profile_id):
                        raise ConsentRequiredError(
                            "learners under 13 need a recorded parental consent (COPPA) first")
                    sealed["birth_date"] = birth.isoformat() if birth else None
                sets[_SEALED] = sealer.seal(TABLE, _SEALED, profile_id, sealed)
            if "retention_days" in changes:
                days = changes["retention_days"] or ctx.config.profile_retention_days
                sets["retention_days"] = changes["retention_days"]
                sets["ttl_expires_at"] = to_db(from_db(row["created_at"]) + timedelta(days=days))
            sets["updated_at"] = ctx.now()
            assignments = ", ".join(f"{c} = ?" for c in sets)
            conn.execute(f"UPDATE {TABLE} SET {assignments}, row_version = row_version + 1 "
                         "WHERE profile_id = ?", (*sets.values(), profile_id))
            return subject

        subject = ctx.db.write(apply)
        ctx.record(actor, "update", subject, f"profile:{profile_id}", request_id,
                   {"fields": sorted(changes)})
        return self.get_unaudited(profile_id)

