"""Data-subject requests on the data: export (GDPR art. 15/20) and erasure (art. 17).

Both go through the personal-data providers, so every registered table is covered and each
owner decodes its own rows. Who asked, for whom and whether they may (hashing the user id, the
learner-own rule) and the audit of the request are the application's subject-request service's
business; this module does the work.

Erasure order makes a crash at any point safe to re-run:
1. a tombstone (keyed hash only) is written first, so an interrupted erasure is finished by
   ``reapply_tombstones()`` at the next start, and a restored older backup is erased again;
   it is marked complete at the end, and the data databases' erasure generations advance
   once their rows are gone (``compliance.erasure_generation``: a start re-applies only the
   unfinished, unless a database was restored or replaced);
2. the subject ends (``compliance.subject_end``): their rows go, one transaction per database
   (an export running at the same moment reads one snapshot: it sees all of them or none),
   then their data key and tokens from the vault (crypto-shredding);
3. every database's WAL is checkpointed and truncated; with ``secure_delete`` no ciphertext
   lingers (a long reader can hold the WAL back: the receipt's ``wal_truncated`` says so);
4. every registered table is re-scanned for the subject hash and the result goes in the
   receipt: proof, not promise.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Sequence

from twin.storage import Database
from twin.storage.maintenance import truncate_wal
from twin.storage.progress import ProgressFactory, silent
from twin.storage.timestamps import to_db

from . import erasure_generation
from .audit import Actor, AuditTrail
from .job_lock import JobLock
from .legal_hold import HoldRegistry
from .providers import PersonalDataProvider
from .subject_end import SubjectEnding
from .subject_keys import SubjectKeyMissingError, SubjectKeyStore

EXPORT_FORMAT = "learner-twin-dsr-export/1"

# Start-up re-application: a short lease (SQLite), extended per subject, so a crashed holder
# delays the next start by a minute at most; a start waits this long for a live holder.
REAPPLY_LEASE = timedelta(minutes=1)
REAPPLY_WAIT_SECONDS = 900.0


@dataclass
class ErasureReceipt:
    receipt_id: str
    erased_at: str
    dry_run: bool
    counts: dict[str, int]
    subject_key_destroyed: bool = False
    rescan: dict[str, int] = field(default_factory=dict)
    verified: bool = False
    wal_truncated: bool = False  # every WAL emptied, so no stale frame holds deleted rows
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DataSubjectRequests:
    providers: Sequence[PersonalDataProvider]
    ending: SubjectEnding
    keys: SubjectKeyStore
    holds: HoldRegistry
    vault_db: Database          # erasure tombstones
    audit: AuditTrail           # re-applied tombstones are recorded
    clock: Callable[[], datetime]

    def _databases(self) -> list[Database]:
        return list({id(p.db): p.db for p in self.providers}.values())

    # -- export -------------------------------------------------------------------------

    def export_chunks(self, subject_hash: str, counts: dict[str, int] | None = None,
                      batch: int = 500) -> Iterator[str]:
        """The export document as JSON text chunks, streamed in one pass, one chunk per batch.

        The subject's key is unwrapped once; each database's rows come from one read snapshot,
        ``batch`` rows at a time, decrypted and encoded a batch at once: memory stays bounded
        by ``batch`` whatever the subject's history.
        ``counts`` is filled with the rows sent per section as they go (also when the reader
        stops early: what was sent was disclosed).
        """
        counts = {} if counts is None else counts
        try:
            reader = self.keys.writer(subject_hash)  # read from the vault now, not remembered
        except SubjectKeyMissingError:
            reader = None  # never stored, or erased: the snapshots below then hold no rows
        yield json.dumps({"format": EXPORT_FORMAT, "generated_at": to_db(self.clock())})[:-1]
        for provider in self.providers:
            # The record of disclosures (the vault's section) grows with this very export: it
            # is sent, not counted.
            counted = not provider.holds_subject_keys
            for section, batches in provider.export(subject_hash, reader, batch):
                yield f', "{section}": ['
                if counted:
                    counts[section] = 0
                separator = ""
                for rows in batches:
                    # One encoder call per batch: its per-call cost is paid once, not per row.
                    yield separator + json.dumps(rows, default=str)[1:-1]
                    separator = ","
                    if counted:
                        counts[section] += len(rows)
                yield "]"
        yield "}"

    def export_counts(self, subject_hash: str) -> dict[str, int]:
        """The rows an export of the subject would send now, per section (the record of
        disclosures, which grows with the export itself, is not counted)."""
        return {section: count for provider in self.providers if not provider.holds_subject_keys
                for section, count in provider.export_counts(subject_hash).items()}

    def export(self, subject_hash: str) -> dict[str, Any]:
        """The whole export document as a dict (small subjects, tests)."""
        return json.loads("".join(self.export_chunks(subject_hash)))

    # -- erasure ------------------------------------------------------------------------

    def counts(self, subject_hash: str, created_before: str | None = None) -> dict[str, int]:
        """Rows of the subject per erasable table (what an erasure would delete); with
        ``created_before``, only the rows a tombstone of that time still covers."""
        counts: dict[str, int] = {}
        for provider in self.providers:
            counts.update(provider.count(subject_hash, created_before))
        return counts

    def erase(self, subject_hash: str, *, dry_run: bool = False,
              progress: ProgressFactory = silent) -> ErasureReceipt:
        """Erase every row of the subject; raises ``SubjectOnHoldError`` under a legal hold.
        ``progress`` counts the tables done (a large subject's rows go table by table)."""
        started = time.perf_counter()
        self.holds.check_not_held(subject_hash)
        self.keys.settle([subject_hash])  # a leased key their profile names counts (and goes) too
        receipt = ErasureReceipt(receipt_id=f"rcpt_{secrets.token_urlsafe(12)}",
                                 erased_at=to_db(self.clock()), dry_run=dry_run,
                                 counts=self.counts(subject_hash))
        if dry_run:
            return receipt
        self.vault_db.write(lambda conn: conn.execute(
            "INSERT INTO erasure_tombstones (user_id_hash, receipt_id, erased_at, counts) "
            "VALUES (?, ?, ?, '{}') ON CONFLICT (user_id_hash) DO UPDATE SET "
            "receipt_id = excluded.receipt_id, erased_at = excluded.erased_at, completed_at = NULL",
            (subject_hash, receipt.receipt_id, receipt.erased_at)))
        deleted = self.ending.end([subject_hash], progress=progress)
        generations = self._advance_generations()  # after the rows went: see erasure_generation
        receipt.counts = {t: max(receipt.counts.get(t, 0), deleted.get(t, 0)) for t in receipt.counts}
        receipt.subject_key_destroyed = receipt.counts.get("subject_keys", 0) > 0
        receipt.wal_truncated = all([truncate_wal(db) for db in self._databases()])
        receipt.rescan = self.counts(subject_hash)
        receipt.verified = not any(receipt.rescan.values())

        def complete(conn: Any) -> None:
            conn.execute("UPDATE erasure_tombstones SET counts = ?, completed_at = ? WHERE user_id_hash = ? "
                         "AND receipt_id = ?", (json.dumps(receipt.counts), to_db(self.clock()), subject_hash,
                                                receipt.receipt_id))
            for name, (before, now) in generations.items():
                erasure_generation.record(conn, name, before, now)

        self.vault_db.write(complete)
        receipt.duration_ms = round((time.perf_counter() - started) * 1000, 2)
        return receipt

    def _data_databases(self) -> list[Database]:
        return list({id(p.db): p.db for p in self.ending.data}.values())

    def _advance_generations(self) -> dict[str, tuple[str | None, str]]:
        return {db.name: erasure_generation.advance(db) for db in self._data_databases()}

    def reapply_tombstones(self, actor: Actor, *, every: bool = False) -> dict[str, int]:
        """Finish unfinished erasures and, after a restore or replacement of a database, erase
        again every tombstoned subject that has data; the one re-application, at every start
        and after ``twin db restore``.

        Unless ``every``, the erasure generations decide (``compliance.erasure_generation``):
        when the vault and every data database agree, only unfinished erasures are re-applied,
        so a start costs the same whatever the history. ``every``: re-apply them all (a restore
        that carried newer tombstones into a matched pair of files).

        A subject who came back after their erasure (their data key is newer than the
        tombstone) keeps the data stored since: only rows stored at or before the erasure go
        (their key is destroyed, so they could not be read anyway).

        Done once across processes: replicas starting together take the vault's
        ``reapply-tombstones`` job lock in turn, and the later ones find the tombstones already
        completed (a holder that dies frees it: ``compliance.job_lock``).
        """
        lock = JobLock(self.vault_db, "reapply-tombstones", self.clock, lease=REAPPLY_LEASE)
        lock.acquire(wait=REAPPLY_WAIT_SECONDS)
        try:
            return self._reapply(actor, every, lock)
        finally:
            lock.release()

    def _reapply(self, actor: Actor, every: bool, lock: JobLock) -> dict[str, int]:
        data = self._data_databases()
        every = every or not erasure_generation.agree(self.vault_db, data)
        where = "" if every else " WHERE t.completed_at IS NULL"
        # A key a data row binds them to (leased, not yet bound in the vault) joins below like
        # any other, dated from that row: a subject who came back is told from one restored.
        self.keys.settle([r["user_id_hash"] for r in self.vault_db.query(
            "SELECT t.user_id_hash FROM erasure_tombstones t" + where)])
        rows = self.vault_db.query("SELECT t.user_id_hash, t.receipt_id, t.erased_at, k.created_at AS key_created "
                                   "FROM erasure_tombstones t LEFT JOIN subject_keys k "
                                   "ON k.user_id_hash = t.user_id_hash" + where)
        reapplied = 0
        for row in rows:
            subject_hash = row["user_id_hash"]
            returned = row["key_created"] is not None and row["key_created"] > row["erased_at"]
            before = row["erased_at"] if returned else None
            remaining = {t: n for t, n in self.counts(subject_hash, before).items() if n}
            if not remaining:
                continue
            self.ending.end([subject_hash], created_before=before)
            lock.refresh()
            reapplied += 1
            self.audit.record(actor, "restore_reapply", subject_hash=subject_hash,
                              resource="dsr:tombstone", details={"counts": remaining})
        if reapplied:
            for db in self._databases():
                truncate_wal(db)
        # With no tombstone there is no erasure history to name: nothing is recorded, and the
        # next start looks again (at no rows).
        generations = self._advance_generations() if every and rows else {}
        applied = [(to_db(self.clock()), r["user_id_hash"], r["receipt_id"]) for r in rows]

        def complete(conn: Any) -> None:
            # Only the tombstones read above: an erasure that began meanwhile finishes itself.
            conn.executemany("UPDATE erasure_tombstones SET completed_at = ? WHERE user_id_hash = ? "
                             "AND receipt_id = ? AND completed_at IS NULL", applied)
            for name, (before, now) in generations.items():
                erasure_generation.record(conn, name, before, now, unconditionally=True)

        if applied or generations:
            self.vault_db.write(complete)
        return {"subjects_reapplied": reapplied, "tombstones": len(rows), "every": int(every)}
