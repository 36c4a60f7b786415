"""Storage limitation: purge expired personal data in batches, never a held subject's.

Which rows expire is declared per table in its descriptor (``PersonalTable.retention``); the
windows come as plain numbers of days. Purges go in short batches (one transaction each) so the
API keeps serving while a million rows go; the service already hides expired rows before the
job runs (queries filter on the same rules). A lease in the vault makes sure only one run
happens at a time across processes. A table whose expiry ends its subjects (profiles) ends them
the one way subjects end (``compliance.subject_end``), key first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Sequence

from twin.storage import Database
from twin.storage.maintenance import incremental_vacuum, truncate_wal
from twin.storage.timestamps import to_db

from .audit import Actor, AuditChainBrokenError, AuditTrail
from .job_lock import JobLock
from .legal_hold import HoldRegistry
from .personal_data import PersonalTable
from .providers import PersonalDataProvider
from .subject_end import SubjectEnding

log = logging.getLogger(__name__)

VACUUM_STEP_PAGES = 1024  # pages returned to the file system per transaction after a purge

SYSTEM_ACTOR = Actor("system:retention", "system")


@dataclass
class RetentionReport:
    dry_run: bool
    started_at: str
    counts: dict[str, int] = field(default_factory=dict)
    sample_row_ids: dict[str, list[str]] = field(default_factory=dict)  # dry run: what would go
    subject_keys_destroyed: int = 0
    audit_chain_broken: str | None = None  # set when old audit events were kept as evidence
    audit_archived: int = 0  # audit events moved into archive segments
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RetentionPurger:
    providers: Sequence[PersonalDataProvider]
    ending: SubjectEnding
    vault_db: Database                 # the job lease
    audit: AuditTrail
    holds: HoldRegistry
    windows: Mapping[str, int]         # retention window name -> days
    audit_days: int                    # the audit trail's own window
    batch_size: int
    clock: Callable[[], datetime]
    audit_archive_days: int | None = None  # audit events older than this go to the archive

    def _params(self, held: Sequence[str]) -> dict[str, Any]:
        now = self.clock()
        params: dict[str, Any] = {"now": to_db(now)}
        for window, days in self.windows.items():
            params[f"{window}_cutoff"] = to_db(now - timedelta(days=days))
        params.update({f"held_{i}": h for i, h in enumerate(held)})
        return params

    @staticmethod
    def _expired_sql(table: PersonalTable, columns: str, held: Sequence[str]) -> str:
        """SELECT of expired rows; the legal-hold exclusion is added only while a hold exists."""
        sql = f"SELECT {columns} FROM {table.name} WHERE {table.expired_where()}"
        if held:  # a row of no subject (an ownerless thread) is held by no one
            sql += (f" AND ({table.subject_sql} IS NULL OR {table.subject_sql} NOT IN "
                    f"({', '.join(f':held_{i}' for i in range(len(held)))}))")
        return sql

    def _expiring(self) -> list[tuple[PersonalDataProvider, PersonalTable]]:
        return [(p, t) for p in self.providers for t in p.tables if t.retention is not None]

    def run(self, *, dry_run: bool = False, batch_size: int | None = None,
            progress: Callable[[str, int], None] | None = None,
            actor: Actor = SYSTEM_ACTOR) -> RetentionReport:
        """Purge everything expired now (or, with ``dry_run``, count and sample it)."""
        started = time.perf_counter()
        batch_size = batch_size or self.batch_size
        report = RetentionReport(dry_run=dry_run, started_at=to_db(self.clock()))
        lock = JobLock(self.vault_db, "retention", self.clock)
        with lock:
            for provider, table in self._expiring():
                if dry_run:
                    self._preview(provider.db, table, report)
                else:
                    report.counts[table.name] = self._purge(provider, table, batch_size, lock, report,
                                                            progress)
            if not dry_run:
                self._archive_audit(batch_size, report)
            report.counts["audit_events"] = 0 if dry_run else self._purge_audit(batch_size, report)
        if not dry_run and (any(report.counts.values()) or report.audit_chain_broken or report.audit_archived):
            for db in {id(p.db): p.db for p, _ in self._expiring()}.values():
                if not truncate_wal(db):
                    log.warning("WAL of %s not emptied after the purge (a reader held it)", db.name)
                # In steps, each its own transaction: the service's writers wait for a step,
                # not for the whole file's free pages.
                while incremental_vacuum(db, pages=VACUUM_STEP_PAGES):
                    pass
            self.audit.record(actor, "purge", resource="retention",
                              details={"counts": report.counts, "audit_archived": report.audit_archived,
                                       "subject_keys_destroyed": report.subject_keys_destroyed,
                                       "audit_chain_broken": report.audit_chain_broken is not None})
        report.duration_s = round(time.perf_counter() - started, 3)
        return report

    def _archive_audit(self, batch_size: int, report: RetentionReport) -> None:
        """Move old audit events into archive segments (before the audit purge, which then
        deletes whole expired segments); a broken chain is reported and nothing moves."""
        if self.audit_archive_days is None or self.audit.archive is None:
            return
        try:
            run = self.audit.archive_older_than(self.clock() - timedelta(days=self.audit_archive_days),
                                                batch_size=batch_size)
        except AuditChainBrokenError as exc:
            report.audit_chain_broken = f"event {exc.seq}: {exc.reason}"
            log.error("audit archival refused: the chain is broken at event %s (%s)", exc.seq, exc.reason)
            return
        report.audit_archived = run.events

    def _purge_audit(self, batch_size: int, report: RetentionReport) -> int:
        """Purge old audit events; a broken chain is reported, never purged away."""
        try:
            return self.audit.purge_older_than(self.clock() - timedelta(days=self.audit_days), batch_size)
        except AuditChainBrokenError as exc:
            report.audit_chain_broken = f"event {exc.seq}: {exc.reason}"
            log.error("audit purge refused: the chain is broken at event %s (%s)", exc.seq, exc.reason)
            return 0

    def _preview(self, db: Database, table: PersonalTable, report: RetentionReport) -> None:
        held = self.holds.held_subjects()
        params = self._params(held)
        conn = db.connection()
        report.counts[table.name] = int(conn.execute(
            f"SELECT count(*) FROM ({self._expired_sql(table, table.pk, held)}) AS expired", params).fetchone()[0])
        rows = conn.execute(self._expired_sql(table, f"{table.row_id_sql} AS rid", held) + " LIMIT 20",
                            params).fetchall()
        report.sample_row_ids[table.name] = [r["rid"] for r in rows]

    def _purge(self, provider: PersonalDataProvider, table: PersonalTable, batch_size: int, lock: JobLock,
               report: RetentionReport, progress: Callable[[str, int], None] | None) -> int:
        total = 0
        while True:
            lock.refresh()  # before each batch: no batch runs once the lock is lost
            held = self.holds.held_subjects()
            params = {**self._params(held), "batch": batch_size}
            if table.retention is not None and table.retention.ends_subject:
                n = self._end_expired_subjects(provider.db, table, params, held, report)
            else:  # the owner deletes (and may first summarise) what expired
                n = provider.purge_expired(table, self._expired_sql(table, table.pk, held), params)
            if not n:
                return total
            total += n
            if progress:
                progress(table.name, total)

    def _end_expired_subjects(self, db: Database, table: PersonalTable, params: dict[str, Any],
                              held: Sequence[str], report: RetentionReport) -> int:
        """End a batch of subjects whose expired rows end them (profiles): key first, then
        every row of theirs. Returns how many rows of ``table`` went."""
        rows = db.query(self._expired_sql(table, f"DISTINCT {table.subject_sql} AS subject_hash", held)
                        + " LIMIT :batch", params)
        if not rows:
            return 0
        deleted = self.ending.end(sorted(r["subject_hash"] for r in rows), key_first=True)
        report.subject_keys_destroyed += deleted.get("subject_keys", 0)
        return deleted.get(table.name, 0)
