"""Legal holds: an admin suspends retention purges and erasure for one subject until lifted."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from twin.storage import Database
from twin.storage.timestamps import to_db

from .errors import ComplianceError

# SQL condition: the hold is in force at :now. Used by erasure and by every retention purge.
ACTIVE = "lifted_at IS NULL AND (until IS NULL OR until > :now)"


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


@dataclass
class LegalHolds:
    db: Database  # digital_twin.db (holds are exported with the subject's data)
    clock: Callable[[], datetime]

    def _view(self, row: Any) -> dict[str, Any]:
        return {k: row[k] for k in ("hold_id", "reason", "placed_at", "placed_by", "until",
                                    "lifted_at", "lifted_by")}

    def active_hold(self, subject_hash: str) -> dict[str, Any] | None:
        row = self.db.query_one(f"SELECT * FROM legal_holds WHERE user_id_hash = :s AND {ACTIVE} "
                                "ORDER BY placed_at LIMIT 1", {"s": subject_hash, "now": to_db(self.clock())})
        return self._view(row) if row else None

    def check_not_held(self, subject_hash: str) -> None:
        hold = self.active_hold(subject_hash)
        if hold:
            raise SubjectOnHoldError(hold["hold_id"], hold["until"])

    def place(self, subject_hash: str, reason: str, until: datetime | None, placed_by: str) -> dict[str, Any]:
        hold_id = f"hld_{secrets.token_urlsafe(12)}"
        self.db.write(lambda conn: conn.execute(
            "INSERT INTO legal_holds (hold_id, user_id_hash, reason, placed_at, placed_by, until) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (hold_id, subject_hash, reason, to_db(self.clock()), placed_by, to_db(until) if until else None)))
        return self._view(self.db.query_one("SELECT * FROM legal_holds WHERE hold_id = ?", (hold_id,)))

    def lift(self, hold_id: str, lifted_by: str) -> tuple[dict[str, Any], str]:
        """Lift an active hold; returns (hold, subject hash)."""
        def apply(conn: Any) -> Any:
            row = conn.execute("SELECT * FROM legal_holds WHERE hold_id = ? AND lifted_at IS NULL",
                               (hold_id,)).fetchone()
            if row is None:
                raise HoldNotFoundError("no active legal hold with that id")
            conn.execute("UPDATE legal_holds SET lifted_at = ?, lifted_by = ? WHERE hold_id = ?",
                         (to_db(self.clock()), lifted_by, hold_id))
            return row["user_id_hash"]
        subject = self.db.write(apply)
        row = self.db.query_one("SELECT * FROM legal_holds WHERE hold_id = ?", (hold_id,))
        return self._view(row), subject

    def list_active(self) -> list[dict[str, Any]]:
        rows = self.db.query(f"SELECT * FROM legal_holds WHERE {ACTIVE} ORDER BY placed_at",
                             {"now": to_db(self.clock())})
        return [self._view(r) for r in rows]
