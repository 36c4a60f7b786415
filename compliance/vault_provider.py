"""The privacy vault as a personal-data provider: compliance is the owner of these rows.

Ending a subject takes their learner tokens and destroys their data key here (crypto-shredding);
the audit trail and the erasure tombstone stay (see their ``kept_reason``). The export of a
subject's vault rows is their record of disclosures: the audit events about them, read through
the trail (which first moves in what the journal staged).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from twin.storage import Database

from .audit import AuditTrail
from .personal_data import PersonalTable
from .providers import Section, TableProvider


class VaultProvider(TableProvider):
    holds_subject_keys = True

    def __init__(self, db: Database, tables: Sequence[PersonalTable], audit: AuditTrail) -> None:
        super().__init__(db, tables)
        self.audit = audit
        self._trail = next(t for t in tables if t.name == "audit_events")

    def export(self, subject_hash: str, reader: Any, batch: int) -> Iterator[Section]:
        yield self._trail.export_as or "disclosures", self._events(subject_hash, batch)

    def _events(self, subject_hash: str, batch: int) -> Iterator[list[dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        for event in self.disclosures(subject_hash, batch):
            rows.append(event)
            if len(rows) == batch:
                yield rows
                rows = []
        if rows:
            yield rows

    def disclosures(self, subject_hash: str, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """The subject's record of disclosures, oldest first: every audit event naming them,
        through the trail's per-subject index (the one place the export reads the trail)."""
        return (event.to_dict() for event in self.audit.iter_subject(subject_hash, batch))
