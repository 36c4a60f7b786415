"""Legal holds on subjects, kept in ``digital_twin`` (they are exported with the subject's data).

Placing and lifting is an admin's subject request (``twin.learners.subject_requests`` audits
it); erasure and retention ask ``check_not_held`` and ``held_subjects``.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Callable

from compliance.legal_hold import HoldNotFoundError, SubjectOnHoldError
from twin.storage import Database
from twin.storage.timestamps import to_db

from .tables import HOLDS

# The hold is in force at :now.
_ACTIVE = "lifted_at IS NULL AND (until IS NULL OR until > :now)"
_VIEW = ("hold_id", "reason", "placed_at", "placed_by", "until", "lifted_at", "lifted_by")
_SELECT = f"SELECT {HOLDS.select_list()} FROM {HOLDS.name}"
_INSERT = HOLDS.insert_sql(("hold_id", "user_id_hash", "reason", "placed_at", "placed_by", "until"))


class LegalHolds:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db  # digital_twin.db
        self.clock = clock

    @staticmethod
    def _view(row: Any) -> dict[str, Any]:
        return {k: row[k] for k in _VIEW}

    def _now(self) -> dict[str, str]:
        return {"now": to_db(self.clock())}

    def active_hold(self, subject_hash: str) -> dict[str, Any] | None:
        row = self.db.query_one(f"{_SELECT} WHERE user_id_hash = :s AND {_ACTIVE} ORDER BY placed_at LIMIT 1",
                                {"s": subject_hash, **self._now()})
        return self._view(row) if row else None

    def check_not_held(self, subject_hash: str) -> None:
        hold = self.active_hold(subject_hash)
        if hold:
            raise SubjectOnHoldError(hold["hold_id"], hold["until"])

    def held_subjects(self) -> list[str]:
        return [r[0] for r in self.db.query(f"SELECT DISTINCT user_id_hash FROM {HOLDS.name} "
                                            f"WHERE {_ACTIVE}", self._now())]

    def place(self, subject_hash: str, reason: str, until: datetime | None, placed_by: str) -> dict[str, Any]:
        hold_id = f"hld_{secrets.token_urlsafe(12)}"
        self.db.write(lambda conn: conn.execute(_INSERT, (
            hold_id, subject_hash, reason, to_db(self.clock()), placed_by, to_db(until) if until else None)))
        return self._view(self.db.query_one(f"{_SELECT} WHERE hold_id = ?", (hold_id,)))

    def lift(self, hold_id: str, lifted_by: str) -> tuple[dict[str, Any], str]:
        """Lift an active hold; returns (hold, subject hash)."""
        def apply(conn: Any) -> Any:
            row = conn.execute(f"{_SELECT} WHERE hold_id = ? AND lifted_at IS NULL", (hold_id,)).fetchone()
            if row is None:
                raise HoldNotFoundError("no active legal hold with that id")
            conn.execute(HOLDS.update_sql(("lifted_at", "lifted_by"), "hold_id"),
                         (to_db(self.clock()), lifted_by, hold_id))
            return row["user_id_hash"]
        subject_hash = self.db.write(apply)
        row = self.db.query_one(f"{_SELECT} WHERE hold_id = ?", (hold_id,))
        return self._view(row), subject_hash

    def list_active(self) -> list[dict[str, Any]]:
        rows = self.db.query(f"{_SELECT} WHERE {_ACTIVE} ORDER BY placed_at", self._now())
        return [self._view(r) for r in rows]
