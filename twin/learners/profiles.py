"""Learner profiles: create, look up, read, update. Erasure is a subject request
(``twin.learners.subject_requests``).

The user ID is hashed on arrival and never stored; every free-form column is sealed under the
subject's data key with row-bound associated data (see ``tables.PROFILES``).
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

from compliance.audit import Actor
from compliance.consent import ConsentRequiredError, is_child
from compliance.subject_keys import KeyProof
from twin.storage import IntegrityError
from twin.storage.pipeline import execute_at_commit
from twin.storage.timestamps import from_db, to_db

from .consents import consent_from_request, has_active_consent, insert_consent
from .context import LearnerContext, new_id
from .errors import DuplicateProfileError, NotFoundError, PreconditionFailedError
from .tables import PROFILES

_SEALED = "encrypted_data"      # {"personal": {...}, "birth_date": "YYYY-MM-DD"}
# The columns the API sets one by one, each sealed on its own (``_SEALED`` holds the rest).
_FIELD_COLUMNS = tuple(c for c in PROFILES.sealed_columns if c != _SEALED)
_FIRST_ROW_VERSION = 1  # row_version's column default: what a new row's ETag is made from
_LIVE = f"FROM {PROFILES.name} WHERE profile_id = :profile_id AND {PROFILES.live_where()}"
_SELECT_LIVE = f"SELECT {PROFILES.select_list()} {_LIVE}"
# What a write reads of its profile, not the whole row: whether it is live (in its transaction),
# and its subject hash and key's proof (before it).
_SELECT_IS_LIVE = f"SELECT 1 {_LIVE}"
_SELECT_PROOF = f"SELECT {PROFILES.subject_hash_column}, {_SEALED} {_LIVE}"
_INSERT_COLUMNS = ("profile_id", PROFILES.subject_hash_column, "preferred_difficulty", "created_at", "updated_at",
                   "ttl_expires_at", "retention_days", "subject_key_id", *_FIELD_COLUMNS, _SEALED)
# What the API view is made of: every exported column (the export's decoding, renamed below).
_VIEW_COLUMNS = tuple(c.name for c in PROFILES.columns if c.exported)


def _field_value(values: dict[str, Any], column: str) -> Any:
    """A sealed column's value in ``values``, or what an absent one reads as."""
    value = values.get(column)
    return PROFILES.null_as(column) if value is None else value


def _render(decoded: dict[str, Any]) -> dict[str, Any]:
    """The API view of a profile from its decoded columns (``PROFILES.decode``)."""
    sealed = decoded[_SEALED]
    return {
        "profile_id": decoded["profile_id"],
        "learning_style": decoded["learning_style"],
        "preferred_difficulty": decoded["preferred_difficulty"],
        "knowledge_domains": decoded["knowledge_domains"],
        "learning_goals": decoded["learning_goals"],
        "privacy_settings": decoded["privacy_settings"],
        "personal": sealed.get("personal", {}),
        "birth_date": sealed.get("birth_date"),
        "retention_days": decoded["retention_days"],
        "created_at": decoded["created_at"],
        "updated_at": decoded["updated_at"],
        "expires_at": decoded["ttl_expires_at"],
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

    def _row(self, profile_id: str, conn: Any = None, row_lock: str = "", select: str = _SELECT_LIVE) -> Any:
        conn = conn or self.ctx.db.connection()
        row = conn.execute(select + row_lock, {"profile_id": profile_id, "now": self.ctx.now()}).fetchone()
        if row is None:
            raise NotFoundError("profile not found")
        # A dict: a read takes a dozen of the row's values by name, and a database row finds a
        # name by scanning its fifteen column names (sqlite3.Row: ~4k instructions a value).
        return dict(zip(row.keys(), row))

    def require_live(self, conn: Any, profile_id: str, *, hold: bool = False) -> None:
        """Inside a write transaction: NotFoundError unless the profile exists and is unexpired
        (an erasure may have run between a request's first read and its write). ``hold``: for
        a READ COMMITTED writer (``write(fn, lock=...)``), the row stays until it commits (an
        erasure's delete waits for it, or it sees the erasure's commit)."""
        self._row(profile_id, conn, self.ctx.db.dialect.for_key_share if hold else "", _SELECT_IS_LIVE)

    def subject_of(self, profile_id: str, *, if_match: str | None = None) -> str:
        """The subject hash of an unexpired profile (NotFoundError otherwise). ``if_match``
        (an If-Match header): PreconditionFailedError unless it allows the current version."""
        row = self._row(profile_id)
        if not if_match_allows(if_match, etag_for(profile_id, row["row_version"])):
            raise PreconditionFailedError("the profile changed since it was read (ETag mismatch)")
        return row[PROFILES.subject_hash_column]

    def key_proof(self, profile_id: str, conn: Any = None, *, hold: bool = False) -> tuple[str, KeyProof]:
        """The subject hash of an unexpired profile and the proof of their current key (the
        profile's own ciphertext), for ``keys.writer``. Writes then check ``require_live`` in
        their transaction: profile ids are never reused, so the key still fits. Read in the
        write's transaction (``conn``, ``hold`` as ``require_live``'s), it is that check too."""
        row = self._row(profile_id, conn, self.ctx.db.dialect.for_key_share if hold else "", _SELECT_PROOF)
        return row[PROFILES.subject_hash_column], KeyProof(PROFILES.name, _SEALED, profile_id, row[_SEALED])

    def _view(self, row: Any) -> dict[str, Any]:
        reader = self.ctx.keys.reader(row[PROFILES.subject_hash_column])
        return _render(PROFILES.decode(row, reader, _VIEW_COLUMNS))

    def get(self, actor: Actor, request_id: str | None, profile_id: str, *,
            restricted_to: str | None = None) -> tuple[dict[str, Any], str]:
        """A profile and its ETag. ``restricted_to`` (a subject hash) allows only that subject's
        profile (learner tokens)."""
        row = self._row(profile_id)
        subject_hash = row[PROFILES.subject_hash_column]
        self.ctx.require_own(restricted_to, subject_hash)
        view = self._view(row)
        self.ctx.record(actor, "read", subject_hash, f"profile:{profile_id}", request_id)
        return view, etag_for(profile_id, row["row_version"])

    def lookup(self, actor: Actor, request_id: str | None, user_id: str) -> tuple[dict[str, Any], str]:
        subject_hash = self.ctx.hasher.hash(user_id)
        row = self.ctx.db.query_one(f"SELECT profile_id FROM {PROFILES.name} WHERE {PROFILES.subject_hash_column} = :s "
                                    f"AND {PROFILES.live_where()}", {"s": subject_hash, "now": self.ctx.now()})
        if row is None:
            raise NotFoundError("profile not found")
        return self.get(actor, request_id, row["profile_id"])

    # -- writing --------------------------------------------------------------------------

    def create(self, actor: Actor, request_id: str | None, data: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Create a profile (and its parental consent, when one is given).

        A new subject's key comes from the process's lease and the row names it: the create's
        one commit is this database's (``compliance.subject_key_lease``)."""
        ctx = self.ctx
        subject_hash = ctx.hasher.hash(data["user_id"])
        birth_date: date | None = data.get("birth_date")
        consent_data = data.get("parental_consent")
        if is_child(birth_date, ctx.clock().date()) and not consent_data:
            raise ConsentRequiredError(
                "learners under 13 need a recorded parental consent (COPPA): send parental_consent")
        profile_id = new_id("prf")
        now = ctx.clock()
        retention_days = data.get("retention_days") or ctx.config.profile_retention_days
        values = {"profile_id": profile_id, PROFILES.subject_hash_column: subject_hash,
                  "preferred_difficulty": data.get("preferred_difficulty") or "medium",
                  "created_at": to_db(now), "updated_at": to_db(now),
                  "ttl_expires_at": to_db(now + timedelta(days=retention_days)),
                  "retention_days": data.get("retention_days"),
                  **{column: _field_value(data, column) for column in _FIELD_COLUMNS},
                  _SEALED: {"personal": data.get("personal") or {},
                            "birth_date": birth_date.isoformat() if birth_date else None}}
        new_key = ctx.lease.for_new_subject(subject_hash)
        writer = new_key.sealer
        values["subject_key_id"] = new_key.key_id
        stored = [PROFILES.seal(writer, profile_id, c, values[c]) if c in PROFILES.sealed_columns else values[c]
                  for c in _INSERT_COLUMNS]

        def insert(conn: Any) -> None:
            new_key.check_usable()  # never commit a key whose lease may be reclaimed
            # Sent with the COMMIT (one round trip on a server); a duplicate user is the
            # commit's IntegrityError, caught below as before.
            execute_at_commit(conn, PROFILES.insert_sql(_INSERT_COLUMNS), stored)
            if consent_data:
                insert_consent(conn, writer, consent_id=new_id("cns"), profile_id=profile_id,
                               subject_hash=subject_hash, consent=consent_from_request(consent_data),
                               granted_at=to_db(now))

        try:
            ctx.write(insert)
        except IntegrityError:  # the taken key stays unused: reclaimed after its lease
            raise DuplicateProfileError("this user already has a profile") from None
        ctx.lease.bound(new_key, subject_hash, values["created_at"])
        ctx.record(actor, "create", subject_hash, f"profile:{profile_id}", request_id)
        if consent_data:
            ctx.record(actor, "consent_grant", subject_hash, f"profile:{profile_id}", request_id)
        # Rendered from what was just written: reading it back would only decrypt it again.
        return _render(values), etag_for(profile_id, _FIRST_ROW_VERSION)

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
            subject_hash = row[PROFILES.subject_hash_column]
            writer = ctx.keys.writer(subject_hash, proof=KeyProof(PROFILES.name, _SEALED, profile_id, row[_SEALED]))
            sets: dict[str, Any] = {}
            if "preferred_difficulty" in changes:
                sets["preferred_difficulty"] = changes["preferred_difficulty"]
            for column in _FIELD_COLUMNS:
                if column in changes:
                    sets[column] = PROFILES.seal(writer, profile_id, column, _field_value(changes, column))
            if "personal" in changes or "birth_date" in changes:
                sealed = writer.open(PROFILES.name, _SEALED, profile_id, row[_SEALED])
                if "personal" in changes:
                    sealed["personal"] = changes["personal"] or {}
                if "birth_date" in changes:
                    birth = changes["birth_date"]
                    if is_child(birth, ctx.clock().date()) and not has_active_consent(conn, profile_id):
                        raise ConsentRequiredError(
                            "learners under 13 need a recorded parental consent (COPPA) first")
                    sealed["birth_date"] = birth.isoformat() if birth else None
                sets[_SEALED] = PROFILES.seal(writer, profile_id, _SEALED, sealed)
            if "retention_days" in changes:
                days = changes["retention_days"] or ctx.config.profile_retention_days
                sets["retention_days"] = changes["retention_days"]
                sets["ttl_expires_at"] = to_db(from_db(row["created_at"]) + timedelta(days=days))
            sets["updated_at"] = ctx.now()
            conn.execute(PROFILES.update_sql(tuple(sets), "profile_id", bump="row_version"),
                         (*sets.values(), profile_id))
            return subject_hash

        subject_hash = ctx.write(apply)
        ctx.record(actor, "update", subject_hash, f"profile:{profile_id}", request_id,
                   {"fields": sorted(changes)})
        return self.get_unaudited(profile_id)
