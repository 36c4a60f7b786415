"""What every learner-domain operation needs, built once per process by ``twin.runtime``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from compliance.audit import Actor, AuditTrail
from compliance.id_hashing import SubjectHasher
from compliance.subject_keys import SubjectKeyStore
from twin.config import Config
from twin.storage import Database
from twin.storage.timestamps import to_db


@dataclass
class LearnerContext:
    db: Database                    # digital_twin.db
    keys: SubjectKeyStore
    hasher: SubjectHasher
    audit: AuditTrail
    config: Config
    clock: Callable[[], datetime]

    def now(self) -> str:
        return to_db(self.clock())

    def cutoffs(self) -> dict[str, str]:
        """The bind parameters of "not expired" conditions (:now and each window's cutoff)."""
        now = self.clock()
        return {
            "now": to_db(now),
            "session_cutoff": to_db(now - timedelta(days=self.config.session_retention_days)),
            "knowledge_cutoff": to_db(now - timedelta(days=self.config.knowledge_retention_days)),
        }

    def record(self, actor: Actor, action: str, subject_hash: str | None, resource: str,
               request_id: str | None, details: dict | None = None) -> None:
        """Audit one access: staged durably, chained within the trail's flush delay."""
        self.audit.stage(actor, action, subject_hash=subject_hash, resource=resource,
                         request_id=request_id, details=details)


def new_id(prefix: str) -> str:
    """An opaque, unguessable identifier (128 random bits)."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"
