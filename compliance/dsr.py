"""Data-subject requests: export (GDPR art. 15/20) and erasure (art. 17).

Both are driven by the personal-data registry, so every declared table is covered.

Erasure order makes a crash at any point safe to re-run:
1. a tombstone (keyed hash only) is written first, so an interrupted erasure is finished by
   ``reapply_tombstones()`` at the next start, and a restored older backup is erased again;
2. the subject's rows in ``digital_twin.db`` go in one transaction (an export running at the
   same moment reads one snapshot: it sees all of them or none);
3. the subject's data key and tokens go from the vault (crypto-shredding);
4. both WALs are checkpointed and truncated; with ``secure_delete`` no ciphertext lingers
   (a long reader can hold the WAL back: the receipt's ``wal_truncated`` says so);
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
from twin.storage.maintenance import truncate_wal
from twin.storage.progress import ProgressFactory, silent
from twin.storage.timestamps import to_db

from .audit import Actor, AuditTrail
from .legal_hold import LegalHolds
from .registry import PersonalDataRegistry, PersonalDataTable
from .subject_keys import SubjectKeyMissingError, SubjectKeyStore
from .tokens import TokenStore

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
    wal_truncated: bool = False  # both WALs emptied, so no stale frame holds deleted rows
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
    tokens: TokenStore | None = None  # its remembered tokens of an erased subject are dropped

    @staticmethod
    def _scope(entry: PersonalDataTable, subject: str,
               created_before: str | None) -> tuple[str, dict[str, str]] | None:
        """WHERE clause and parameters selecting the subject's rows of ``entry``; with
        ``created_before``, only rows stored at or before it (None: the table cannot tell,
        its rows go by cascade with their parent's)."""
        params = {"subject": subject}
        if created_before is None:
            return entry.subject_where, params
        if entry.created_sql is None:
            return None
        params["before"] = created_before
        return f"({entry.subject_where}) AND {entry.created_sql} <= :before", params

    def _count(self, conn: Any, entry: PersonalDataTable, subject: str,
               created_before: str | None = None) -> int:
        scope = self._scope(entry, subject, created_before)
        if scope is None:
            return 0
        sql = f"SELECT count(*) FROM {entry.table} WHERE {scope[0]}"
        return int(conn.execute(sql, scope[1]).fetchone()[0])

    def _erasable(self, database: str) -> list[PersonalDataTable]:
        return [t for t in self.registry.for_database(database) if t.erase]

    # -- export -------------------------------------------------------------------------

    def export_chunks(self, subject: str, actor: Actor, request_id: str | None = None,
                      batch: int = 500) -> Iterator[str]:
        """The export document as JSON text chunks, streamed row by row.

        All digital-twin rows come from one read snapshot; memory stays bounded by ``batch``.
        The export is audited when it ends, also when the reader stops early (what was sent
        was disclosed): the event's details then carry ``"complete": false``.
        """
        counts: dict[str, int] = {}
        complete = False
        try:
            yield from self._export_document(subject, batch, counts)
            complete = True
        finally:
            self.audit.record(actor, "export", subject_hash=subject, resource="dsr:export",
                              request_id=request_id,
                              details=counts if complete else {**counts, "complete": False})

    def _export_document(self, subject: str, batch: int, counts: dict[str, int]) -> Iterator[str]:
        try:
            sealer = self.keys.writer(subject)
        except SubjectKeyMissingError:
            sealer = None  # never stored, or erased: the snapshot below then holds no rows
        yield json.dumps({"format": EXPORT_FORMAT, "generated_at": to_db(self.clock())})[:-1]
        conn = self.twin_db.connect_new()
        try:
            conn.execute("BEGIN")
            for entry in reversed(self.registry.for_database(self.twin_db.name)):
                if not entry.export_as:
                    continue
                yield f', "{entry.export_as}": ['
                cursor = conn.execute(
                    f"SELECT *, {entry.row_id_sql} AS _row_id FROM {entry.table} "
                    f"WHERE {entry.subject_where} ORDER BY {entry.order_by}", {"subject": subject})
                counts[entry.export_as] = 0
                while rows := cursor.fetchmany(batch):
                    if sealer is None:  # rows without a key: an erasure is mid-way, export none
                        break
                    for row in rows:
                        yield ("," if counts[entry.export_as] else "") + \
                            json.dumps(entry.export_row(row, sealer), default=str)
                        counts[entry.export_as] += 1
                yield "]"
            conn.execute("COMMIT")
        finally:
            conn.close()
        yield ', "disclosures": ['
        for i, event in enumerate(self.audit.iter_subject(subject)):
            yield ("," if i else "") + json.dumps(event.to_dict(), default=str)
        yield "]}"

    def export(self, subject: str, actor: Actor, request_id: str | None = None) -> dict[str, Any]:
        """The whole export document as a dict (small subjects, tests)."""
        return json.loads("".join(self.export_chunks(subject, actor, request_id)))

    # -- erasure ------------------------------------------------------------------------

    def counts(self, subject: str, created_before: str | None = None) -> dict[str, int]:
        """Rows of the subject per erasable table (what an erasure would delete); with
        ``created_before``, only the rows a tombstone of that time still covers."""
        counts = {}
        for db in (self.twin_db, self.vault_db):
            conn = db.connection()
            for entry in self._erasable(db.name):
                counts[entry.table] = self._count(conn, entry, subject, created_before)
        return counts

    def erase(self, subject: str, actor: Actor, request_id: str | None = None, *,
              dry_run: bool = False, progress: ProgressFactory = silent) -> ErasureReceipt:
        """Erase every row of the subject; raises ``SubjectOnHoldError`` under a legal hold.
        ``progress`` counts the tables done (a large subject's rows go table by table)."""
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
        deleted = self._delete_rows(subject, progress=progress)
        receipt.counts = {t: max(receipt.counts.get(t, 0), deleted.get(t, 0)) for t in receipt.counts}
        receipt.subject_key_destroyed = receipt.counts.get("subject_keys", 0) > 0
        receipt.wal_truncated = all([truncate_wal(db) for db in (self.twin_db, self.vault_db)])
        receipt.rescan = self.counts(subject)
        receipt.verified = not any(receipt.rescan.values())
        self.vault_db.write(lambda conn: conn.execute(
            "UPDATE erasure_tombstones SET counts = ? WHERE user_id_hash = ?",
            (json.dumps(receipt.counts), subject)))
        self.audit.record(actor, "erase", subject_hash=subject, resource="dsr:erase", request_id=request_id,
                          details={"receipt_id": receipt.receipt_id, "counts": receipt.counts,
                                   "verified": receipt.verified, "wal_truncated": receipt.wal_truncated})
        receipt.duration_ms = round((time.perf_counter() - started) * 1000, 2)
        return receipt

    def _delete_rows(self, subject: str, created_before: str | None = None, *,
                     progress: ProgressFactory = silent) -> dict[str, int]:
        """Delete the subject's rows: one transaction per database, children first; then drop
        what this process remembers of the rows' key and tokens."""
        deleted: dict[str, int] = {}
        tables = sum(len(self._erasable(db.name)) for db in (self.twin_db, self.vault_db))
        with progress("erase subject", tables, "tables") as bar:
            for db in (self.twin_db, self.vault_db):
                def work(conn: Any, db: Database = db) -> None:
                    for entry in self._erasable(db.name):
                        scope = self._scope(entry, subject, created_before)
                        if scope is not None:
                            deleted[entry.table] = conn.execute(
                                f"DELETE FROM {entry.table} WHERE {scope[0]}", scope[1]).rowcount
                        bar.update(1)
                db.write(work)
        self.keys.forget(subject)
        if self.tokens is not None:
            self.tokens.forget_subjects([subject])
        return deleted

    def reapply_tombstones(self, actor: Actor) -> dict[str, int]:
        """Erase again every tombstoned subject that has data (after a restore or a crash).

        A subject who came back after their erasure (their data key is newer than the
        tombstone) keeps the data stored since: only rows stored at or before the erasure go
        (their key is destroyed, so they could not be read anyway).
        """
        reapplied = 0
        rows = self.vault_db.query("SELECT t.user_id_hash, t.erased_at, k.created_at AS key_created "
                                   "FROM erasure_tombstones t LEFT JOIN subject_keys k "
                                   "ON k.user_id_hash = t.user_id_hash")
        for row in rows:
            returned = row["key_created"] is not None and row["key_created"] > row["erased_at"]
            before = row["erased_at"] if returned else None
            remaining = {t: n for t, n in self.counts(row["user_id_hash"], before).items() if n}
            if not remaining:
                continue
            self._delete_rows(row["user_id_hash"], created_before=before)
            reapplied += 1
            self.audit.record(actor, "restore_reapply", subject_hash=row["user_id_hash"],
                              resource="dsr:tombstone", details={"counts": remaining})
        if reapplied:
            for db in (self.twin_db, self.vault_db):
                truncate_wal(db)
        return {"subjects_reapplied": reapplied, "tombstones": len(rows)}
