"""What every learner-domain operation needs, built once per process by ``twin.runtime``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, TypeVar

from compliance.audit import Actor, AuditTrail
from compliance.id_hashing import SubjectHasher
from compliance.subject_key_lease import SubjectKeyLease
from compliance.subject_keys import SubjectKeyStore
from twin.config import Config
from twin.storage import Database
from twin.storage.timestamps import to_db

from .errors import NotFoundError

T = TypeVar("T")


@dataclass
class LearnerContext:
    db: Database                    # digital_twin.db
    keys: SubjectKeyStore
    lease: SubjectKeyLease          # new subjects' keys (a create commits once)
    hasher: SubjectHasher
    audit: AuditTrail
    config: Config
    clock: Callable[[], datetime]

    def now(self) -> str:
        return to_db(self.clock())

    def cutoffs(self) -> dict[str, str]:
        """The bind parameters of the descriptors' "not expired" conditions: ``:now`` and each
        retention window's ``:<window>_cutoff``."""
        now = to_db(self.clock())
        # A window is whole days: its cutoff is ``now``'s UTC time of day on an earlier date, so
        # only the date is computed (formatting a datetime per window cost more than the query).
        today, time_of_day = date.fromisoformat(now[:10]).toordinal(), now[10:]
        params = {"now": now}
        for window, days in self.config.retention_windows().items():
            params[f"{window}_cutoff"] = date.fromordinal(today - days).isoformat() + time_of_day
        return params

    def write(self, fn: Callable[[Any], T], *, lock: str | None = None) -> T:
        """A request's write transaction: ``fn(conn)``, re-run on conflict. On a file, writes of
        concurrent requests of this process share one commit, each in its own savepoint (one
        refused is rolled back alone): SQLCipher encrypts and authenticates each page a commit
        dirtied, and a table's last leaf or a time index's is dirtied by every insert. On a
        server each is a transaction of its own (``Backend.write_shared``)."""
        return self.db.write_shared(fn, lock=lock, shared_on_server=False)

    def record(self, actor: Actor, action: str, subject_hash: str | None, resource: str,
               request_id: str | None, details: dict | None = None) -> None:
        """Audit one access: staged durably, chained within the trail's flush delay. Every
        learner service and subject request records this one way."""
        self.audit.stage(actor, action, subject_hash=subject_hash, resource=resource,
                         request_id=request_id, details=details)

    @staticmethod
    def require_own(restricted_to: str | None, subject_hash: str, what: str = "profile") -> None:
        """The learner-own rule: a learner token (``restricted_to`` its subject hash) reaches
        only its own subject; anyone else's is "not found", never "forbidden" (that would tell
        them it exists)."""
        if restricted_to is not None and restricted_to != subject_hash:
            raise NotFoundError(f"{what} not found")


def new_id(prefix: str) -> str:
    """An opaque, unguessable identifier (128 random bits)."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"
