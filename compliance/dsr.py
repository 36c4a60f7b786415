"""Data-subject requests: export (GDPR art. 15/20) and erasure (art. 17).

Both are driven by the personal-data registry, so every declared table is covered.

Erasure order makes a crash at any point safe to re-run:
1. a tombstone (keyed hash only) is written first, so an interrupted erasure is finished by
   ``reapply_tombstones()`` at the next start, and a restored older backup is erased again;
2. the subject's rows in ``digital_twin.db`` go in one transaction (an export running at the
   same moment reads one snapshot: it sees all of them or none);
3. the subject's data key and tokens go from the vault (crypto-shredding);
4. both WALs are checkpointed and truncated; with ``secure_delete`` no ciphertext lingers;
5. every registered table is re-scanned for the subject hash and the result goes in the
   receipt: proof, not promise.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator

from twin.storage import Database
from twin.storage.maintenance import checkpoint
from twin.storage.timestamps import to_db

from .audit import Actor, AuditTrail
from .legal_hold import LegalHolds
from .registry import PersonalDataRegistry, PersonalDataTable
from .subject_keys import SubjectKeyMissingError, SubjectKeyStore

EXPORT_FORMAT = "learner-twin-dsr-export/1"


@dataclass
class ErasureReceipt:
    receipt_id: str
    erased_at: str
    dry_run: bool
    counts: dict[str, int]
    subject_key_destroyed: bool = False
    rescan: dict[str, int] = field(default_factory=dict)
    verified: bool = False
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DataSubjectRequests:
    twin_db: Database
    vault_db: Database
    registry: PersonalDataRegistry
    keys: SubjectKeyStore
    audit: AuditTrail
    holds: LegalHolds
    clock: Callable[[], datetime]

    def _db(self, name: str) -> Database:
        return {self.twin_db.name: self.twin_db, self.vault_db.name: self.vault_db}[name]

    def _count(self, conn: Any, entry: PersonalDataTable, subject: str) -> int:
        return int(conn.execute(f"SELECT count(*) FROM {entry.table} WHERE {entry.subject_where}",
                                {"subject": subject}).fetchone()[0])

    def _erasable(self, database: str) -> list[PersonalDataTable]:
        return [t for t in self.registry.for_database(database) if t.erase]

    # -- export -------------------------------------------------------------------------

    def export_chunks(self, subject: str, actor: Actor, request_id: str | None = None,
                      batch: int = 500) -> Iterator[str]:
        """The export document as JSON text chunks, streamed row by row.

        All digital-twin rows come from one read snapshot; memory stays bounded by ``batch``.
        """
        try:
            sealer = self.keys.sealer_for(subject)
        except SubjectKeyMissingError:
            sealer = None  # never stored, or erased: the snapshot below then holds no rows
        yield json.dumps({"format": EXPORT_FORMAT, "generated_at": to_db(self.clock())})[:-1]
        conn = self.twin_db.connect_new()
        counts: dict[str, int] = {}
        try:
            conn.execute("BEGIN")
            for entry in reversed(self.registry.for_database(self.twin_db.name)):
                if not entry.export_as:
                    continue
                yield f', "{entry.export_as}": ['
                cursor = conn.execute(
                    f"SELECT *, {entry.row_id_sql} AS _row_id FROM {entry.table} "
                    f"WHERE {entry.subject_where} ORDER BY {entry.order_by}", {"subject": subject})
                n = 0
                while rows := cursor.fetchmany(batch):
                    if sealer is None:  # rows without a key: an erasure is mid-way, export none
                        break
                    for row in rows:
                        yield ("," if n else "") + json.dumps(entry.export_row(row, sealer), default=str)
                        n += 1
                counts[entry.export_as] = n
                yield "]"
            conn.execute("COMMIT")
        finally:
            conn.close()
        yield ', "disclosures": ['
        for i, event in enumerate(self.audit.iter_subject(subject)):
            yield ("," if i else "") + json.dumps(event.to_dict(), default=str)
        yield "]}"
        self.audit.record(actor, "export", subject_hash=subject, resource="dsr:export",
                          request_id=request_id, details=counts)

    def export(self, subject: str, actor: Actor, request_id: str | None = None) -> dict[str, Any]:
        """The whole export document as a dict (small subjects, tests)."""
        return json.loads("".join(self.export_chunks(subject, actor, request_id)))

    # -- erasure ------------------------------------------------------------------------

    def counts(self, subject: str) -> dict[str, int]:
        """Rows of the subject per erasable table (what an erasure would delete)."""
        counts = {}
        for db in (self.twin_db, self.vault_db):
            conn = db.connection()
            for entry in self._erasable(db.name):
                counts[entry.table] = self._count(conn, entry, subject)
        return counts

    def erase(self, subject: str, actor: Actor, request_id: str | None = None, *,
              dry_run: bool = False) -> ErasureReceipt:
        """Erase every row of the subject; raises ``SubjectOnHoldError`` under a legal hold."""
        started = time.perf_counter()
        self.holds.check_not_held(subject)
        receipt = ErasureReceipt(receipt_id=f"rcpt_{secrets.token_urlsafe(12)}",
                                 erased_at=to_db(self.clock()), dry_run=dry_run, counts=self.counts(subject))
        if dry_run:
            return receipt
        self.vault_db.write(lambda conn: conn.execute(
            "INSERT INTO erasure_tombstones (user_id_hash, receipt_id, erased_at, counts) "
            "VALUES (?, ?, ?, '{}') ON CONFLICT (user_id_hash) DO UPDATE SET "
            "receipt_id = excluded.receipt_id, erased_at = excluded.erased_at",
            (subject, receipt.receipt_id, receipt.erased_at)))
        deleted = self._delete_rows(subject)
        receipt.counts = {t: max(receipt.counts.get(t, 0), deleted.get(t, 0)) for t in receipt.counts}
        receipt.subject_key_destroyed = receipt.counts.get("subject_keys", 0) > 0
        for db in (self.twin_db, self.vault_db):
            _checkpoint_truncate(db)
        receipt.rescan = self.counts(subject)
        receipt.verified = not any(receipt.rescan.values())
        self.vault_db.write(lambda conn: conn.execute(
            "UPDATE erasure_tombstones SET counts = ? WHERE user_id_hash = ?",
            (json.dumps(receipt.counts), subject)))
        self.audit.record(actor, "erase", subject_hash=subject, resource="dsr:erase", request_id=request_id,
                          details={"receipt_id": receipt.receipt_id, "counts": receipt.counts,
                                   "verified": receipt.verified})
        receipt.duration_ms = round((time.perf_counter() - started) * 1000, 2)
        return receipt

    def _delete_rows(self, subject: str, created_before: str | None = None) -> dict[str, int]:
        """Delete the subject's rows: one transaction per database, children first."""
        deleted: dict[str, int] = {}
        for db in (self.twin_db, self.vault_db):
            def work(conn: Any, db: Database = db) -> None:
                for entry in self._erasable(db.name):
                    deleted[entry.table] = conn.execute(
                        f"DELETE FROM {entry.table} WHERE {entry.subject_where}",
                        {"subject": subject}).rowcount
            db.write(work)
        return deleted

    def reapply_tombstones(self, actor: Actor) -> dict[str, int]:
        """Erase again every tombstoned subject that has data (after a restore or a crash).

        A subject who came back after their erasure keeps the data created since: only rows
        whose subject has no data key newer than the tombstone are erased.
        """
        reapplied = 0
        rows = self.vault_db.query("SELECT t.user_id_hash, t.erased_at, k.created_at AS key_created "
                                   "FROM erasure_tombstones t LEFT JOIN subject_keys k "
                                   "ON k.user_id_hash = t.user_id_hash")
        for row in rows:
            if row["key_created"] and row["key_created"] > row["erased_at"]:
                continue  # re-registered after erasure: their current data is new data
            remaining = {t: n for t, n in self.counts(row["user_id_hash"]).items() if n}
            if not remaining:
                continue
            self._delete_rows(row["user_id_hash"])
            reapplied += 1
            self.audit.record(actor, "restore_reapply", subject_hash=row["user_id_hash"],
                              resource="dsr:tombstone", details={"counts": remaining})
        if reapplied:
            for db in (self.twin_db, self.vault_db):
                _checkpoint_truncate(db)
        return {"subjects_reapplied": reapplied, "tombstones": len(rows)}


def _checkpoint_truncate(db: Database, attempts: int = 20) -> None:
    """Checkpoint and empty the WAL; readers may briefly block it, so retry."""
    for i in range(attempts):
        if checkpoint(db, "TRUNCATE")["busy"] == 0:
            return
        time.sleep(0.01 * (i + 1))
