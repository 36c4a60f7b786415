"""Storage limitation: purge expired personal data in batches, never a held subject's.

Which rows expire is declared per table in the personal-data registry. Purges go in short
batches (one transaction each) so the API keeps serving while a million rows go; the
service already hides expired rows before the job runs (queries filter on expiry). A lease in
the vault makes sure only one run happens at a time across processes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from twin.config import Config
from twin.storage import Database
from twin.storage.maintenance import incremental_vacuum, truncate_wal
from twin.storage.timestamps import to_db

from .audit import Actor, AuditChainBrokenError, AuditTrail
from .job_lock import JobLock
from .legal_hold import ACTIVE as HOLD_ACTIVE
from .registry import PersonalDataRegistry, PersonalDataTable
from .subject_keys import SubjectKeyStore
from .tokens import TokenStore

log = logging.getLogger(__name__)

SYSTEM_ACTOR = Actor("system:retention", "system")


@dataclass
class RetentionReport:
    dry_run: bool
    started_at: str
    counts: dict[str, int] = field(default_factory=dict)
    sample_row_ids: dict[str, list[str]] = field(default_factory=dict)  # dry run: what would go
    subject_keys_destroyed: int = 0
    audit_chain_broken: str | None = None  # set when old audit events were kept as evidence
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RetentionPurger:
    twin_db: Database
    vault_db: Database
    registry: PersonalDataRegistry
    keys: SubjectKeyStore
    audit: AuditTrail
    config: Config
    clock: Callable[[], datetime]
    tokens: TokenStore | None = None  # its remembered tokens of an ended subject are dropped

    def _params(self, entry: PersonalDataTable) -> dict[str, str]:
        now = self.clock()
        params = {"now": to_db(now)}
        if entry.retention and entry.retention.window:
            params["cutoff"] = to_db(now - timedelta(days=getattr(self.config, entry.retention.window)))
        return params

    def _expired_sql(self, entry: PersonalDataTable, columns: str, held: bool) -> str:
        """SELECT of expired rows; the legal-hold exclusion is added only while a hold exists."""
        assert entry.retention is not None
        sql = f"SELECT {columns} FROM {entry.table} WHERE {entry.retention.expired_where}"
        if held:
            sql += (f" AND {entry.subject_hash_sql} NOT IN "
                    f"(SELECT user_id_hash FROM legal_holds WHERE {HOLD_ACTIVE})")
        return sql

    def _any_hold(self) -> bool:
        return self.twin_db.query_one(f"SELECT 1 FROM legal_holds WHERE {HOLD_ACTIVE} LIMIT 1",
                                      {"now": to_db(self.clock())}) is not None

    def run(self, *, dry_run: bool = False, batch_size: int | None = None,
            progress: Callable[[str, int], None] | None = None,
            actor: Actor = SYSTEM_ACTOR) -> RetentionReport:
        """Purge everything expired now (or, with ``dry_run``, count and sample it)."""
        started = time.perf_counter()
        batch_size = batch_size or self.config.retention_batch_size
        report = RetentionReport(dry_run=dry_run, started_at=to_db(self.clock()))
        lock = JobLock(self.vault_db, "retention", self.clock)
        with lock:
            for entry in self.registry.for_database(self.twin_db.name):
                if entry.retention is None:
                    continue
                if dry_run:
                    self._preview(entry, report)
                else:
                    report.counts[entry.table] = self._purge(entry, batch_size, lock, report, progress)
            report.counts["audit_events"] = 0 if dry_run else self._purge_audit(batch_size, report)
        if not dry_run and (any(report.counts.values()) or report.audit_chain_broken):
            if not truncate_wal(self.twin_db):
                log.warning("WAL of %s not emptied after the purge (a reader held it)", self.twin_db.name)
            incremental_vacuum(self.twin_db)
            self.audit.record(actor, "purge", resource="retention",
                              details={"counts": report.counts,
                                       "subject_keys_destroyed": report.subject_keys_destroyed,
                                       "audit_chain_broken": report.audit_chain_broken is not None})
        report.duration_s = round(time.perf_counter() - started, 3)
        return report

    def _purge_audit(self, batch_size: int, report: RetentionReport) -> int:
        """Purge old audit events; a broken chain is reported, never purged away."""
        try:
            return self.audit.purge_older_than(
                self.clock() - timedelta(days=self.config.audit_retention_days), batch_size)
        except AuditChainBrokenError as exc:
            report.audit_chain_broken = f"event {exc.seq}: {exc.reason}"
            log.error("audit purge refused: the chain is broken at event %s (%s)", exc.seq, exc.reason)
            return 0

    def _preview(self, entry: PersonalDataTable, report: RetentionReport) -> None:
        params, held = self._params(entry), self._any_hold()
        conn = self.twin_db.connection()
        report.counts[entry.table] = int(conn.execute(
            f"SELECT count(*) FROM ({self._expired_sql(entry, 'id', held)})", params).fetchone()[0])
        rows = conn.execute(self._expired_sql(entry, f"{entry.row_id_sql} AS rid", held) + " LIMIT 20",
                            params).fetchall()
        report.sample_row_ids[entry.table] = [r["rid"] for r in rows]

    def _purge(self, entry: PersonalDataTable, batch_size: int, lock: JobLock,
               report: RetentionReport, progress: Callable[[str, int], None] | None) -> int:
        total = 0
        while True:
            params = {**self._params(entry), "batch": batch_size}
            held = self._any_hold()
            if entry.purge_hook == "destroy_subject_keys":
                n = self._purge_ending_subjects(entry, params, held, report)
            else:
                # One statement per batch: the expired ids never travel through Python.
                sql = (f"DELETE FROM {entry.table} WHERE id IN "
                       f"({self._expired_sql(entry, 'id', held)} LIMIT :batch)")
                n = self.twin_db.write(lambda conn, sql=sql: conn.execute(sql, params).rowcount)
            if not n:
                return total
            total += n
            lock.refresh()
            if progress:
                progress(entry.table, total)

    def _purge_ending_subjects(self, entry: PersonalDataTable, params: dict[str, Any], held: bool,
                               report: RetentionReport) -> int:
        """Purge a batch of rows whose deletion ends their subjects (profiles).

        Keys go first, rows second: if the process dies in between, the rows are still expired
        (never served, unreadable without their key) and the next run deletes them. The other
        order could leave a key that no later run would find.
        """
        rows = self.twin_db.query(self._expired_sql(entry, f"id, {entry.subject_hash_sql} AS subject", held)
                                  + " LIMIT :batch", params)
        if not rows:
            return 0
        report.subject_keys_destroyed += self._end_subjects(sorted({r["subject"] for r in rows}))
        ids = [r["id"] for r in rows]
        return self.twin_db.write(lambda conn: conn.execute(
            f"DELETE FROM {entry.table} WHERE id IN ({','.join('?' * len(ids))})", ids).rowcount)

    def _end_subjects(self, subjects: list[str]) -> int:
        """A purged profile ends its subject: their data key is destroyed and every other vault
        row erasure would take (their learner tokens) goes too. Returns keys destroyed."""
        others = [t for t in self.registry.for_database(self.vault_db.name)
                  if t.erase and t.table != "subject_keys"]

        def work(conn: Any) -> None:
            for subject in subjects:
                for entry in others:
                    conn.execute(f"DELETE FROM {entry.table} WHERE {entry.subject_where}",
                                 {"subject": subject})

        if others and subjects:
            self.vault_db.write(work)
            if self.tokens is not None:
                self.tokens.forget_subjects(subjects)
        return sum(self.keys.destroy(s) for s in subjects)
