"""``twin db copy --to postgresql``: an SQLCipher deployment's learner pair (``digital_twin``
and ``privacy_vault``) into an empty PostgreSQL pair, verified and resumable.

The source is first brought to the state ``twin serve`` would start from (migrated, audit
events staged in the local journal chained in, tombstones re-applied), so what is copied is
complete. The target pair is set up as ``twin db setup`` would (migrated, identity markers,
the replica registry). Each database is copied by the storage core (``twin.storage.copy``:
resumable batches); then every table's count must match and the copied audit trail must verify
and end on the source's last hash. Field ciphertexts, keyed hashes and wrapped subject keys are
copied as they are: the same keyring serves the copy, and PostgreSQL only ever sees ciphertext.
The audit archive's segments (files beside the SQLCipher vault) become rows of the target
vault's ``audit_archive_blobs``, byte for byte, and the copied trail is verified in full through
them (``compliance.audit_archive``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from compliance import keyring_record
from compliance.audit import AuditTrail
from compliance.audit_archive_segments import FileSegments, TableSegments, archive_dir, segment_name
from compliance.audit_seals import SealBook
from compliance.field_crypto import FieldCipher
from compliance.keyring import Keyring

from ..catalog import audit_archive, mark_learner_databases, open_database, open_learner_databases
from ..config import Config
from ..storage.copy import CopyError, TableCopy, copy_database
from ..storage.progress import ProgressFactory, silent

PAIR = ("digital_twin", "privacy_vault")
_BACKEND_VARIABLES = ("TWIN_STORAGE_BACKEND", "TWIN_VAULT_STORAGE_BACKEND")


def on_backend(config: Config, backend: str) -> Config:
    """``config`` with the learner pair on ``backend`` (the source: files; the target: server)."""
    return replace(config, environ={**(config.environ or {}), **{v: backend for v in _BACKEND_VARIABLES}})


@dataclass(frozen=True)
class CopyReport:
    tables: dict[str, list[TableCopy]]
    audit_events: int
    audit_ok: bool

    @property
    def verified(self) -> bool:
        return self.audit_ok and all(t.verified for copies in self.tables.values() for t in copies)


def prepare_source(source: Config) -> None:
    """Bring the files to the state a service starts from (see the module docstring)."""
    from ..runtime import Runtime

    Runtime.open(source).close()


def set_up_target(target: Config, keyring: Keyring) -> None:
    data, vault = open_learner_databases(target, keyring.database_keys, migrate=True)
    try:
        mark_learner_databases(data, vault)
    finally:
        data.close_all()
        vault.close_all()


def _copy_archive(src: Any, dst: Any) -> None:
    """The source vault's archive segment files into the target's segment table (a resumed
    copy skips those already there)."""
    files, rows = FileSegments(archive_dir(src.path)), TableSegments()
    for (first,) in src.query("SELECT first_seq FROM audit_archive_segments WHERE complete = 1 ORDER BY first_seq"):
        with dst.transaction(immediate=False) as conn:
            if rows.size(conn, first) is not None:
                continue
        body = files.get(None, first)
        if body is None:
            raise CopyError(f"the audit archive segment {segment_name(first)} is missing beside the source vault")
        dst.write(lambda conn, first=first, body=body: rows.put(conn, first, body))


def copy_pair(source: Config, target: Config, keyring: Keyring, *, batch: int = 1000,
              progress: ProgressFactory = silent) -> CopyReport:
    """Copy the pair (``prepare_source`` and ``set_up_target`` first) and verify it."""
    tables: dict[str, list[TableCopy]] = {}
    last_hash: dict[str, Any] = {}
    for name in PAIR:
        src = open_database(name, source, keyring.database_keys, migrate=False)
        dst = open_database(name, target, keyring.database_keys, migrate=False)
        try:
            tables[name] = copy_database(src, dst, batch=batch, progress=progress)
            if name == "privacy_vault":
                # As `twin db setup` would: replicas on PostgreSQL check their keyring against it.
                keyring_record.record(dst, keyring)
                _copy_archive(src, dst)
                last_hash = {side: db.query_one("SELECT event_hash FROM audit_log ORDER BY seq DESC "
                                                "LIMIT 1") for side, db in (("source", src), ("target", dst))}
                seals = SealBook(keyring.audit_seal_key, target.audit_seal_every)
                cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
                result = AuditTrail(dst, seals=seals, archive=audit_archive(dst, target, cipher, seals)).verify()
        finally:
            src.close_all()
            dst.close_all()
    same_end = (last_hash["source"] or [None])[0] == (last_hash["target"] or [None])[0]
    report = CopyReport(tables, result.checked, result.ok and same_end)
    if not report.verified:
        wrong = [f"{t.table} {t.target_rows}/{t.source_rows}" for copies in tables.values()
                 for t in copies if not t.verified]
        raise CopyError("the copy did not verify: " + (", ".join(wrong) if wrong else
                                                       "the copied audit trail does not verify"))
    return report
