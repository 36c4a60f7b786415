"""The one object that owns a process's databases, keys and services.

The Flask app holds one ``Runtime``; scripts build one too. Nothing else keeps global state.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from datetime import datetime
from functools import cached_property
from typing import Callable

from compliance import keyring_record
from compliance.audit import Actor, AuditTrail
from compliance.audit_archive import AuditArchive
from compliance.audit_journal import AuditJournal, AuditJournalError, audit_journal_dir
from compliance.audit_seals import SealBook
from compliance.dsr import DataSubjectRequests
from compliance.id_hashing import SubjectHasher
from compliance.keyring import Keyring
from compliance.keyring_watcher import KeyringWatcher
from compliance.providers import PersonalDataProvider, TableProvider
from compliance.retention import RetentionPurger
from compliance.subject_end import SubjectEnding
from compliance.subject_key_lease import SubjectKeyLease, reclaim
from compliance.subject_keys import SubjectKeyStore
from compliance.tokens import TokenStore
from compliance.vault_provider import VaultProvider

from .catalog import (audit_archive, database_path, load_keyring, open_database, open_learner_databases,
                      open_model_manager, personal_data_registry, reload_keyring, spec_for)
from .config import Config
from .learners.consents import ConsentService
from .learners.context import LearnerContext
from .learners.evidence import EvidenceService
from .learners.holds import LegalHolds
from .learners.key_bindings import ProfileKeyBindings
from .learners.knowledge import KnowledgeService
from .learners.model_fitting import ModelFitting
from .learners.privacy import LearnerDataProvider
from .learners.profiles import ProfileService
from .learners.sessions import SessionService
from .learners.skill_parameters import SkillParameterStore
from .learners.subject_requests import SubjectRequests
from .learners.traces import EntryKeys
from .storage import FileBacked, ServerBacked
from .storage.maintenance import truncate_wal
from .storage.paths import can_take_writes
from .storage.timestamps import utc_now

log = logging.getLogger(__name__)

STARTUP_ACTOR = Actor("system:startup", "system")


class Runtime:
    """Config + keyring + open databases + services, for one process."""

    def __init__(self, config: Config, keyring: Keyring, *,
                 clock: Callable[[], datetime] = utc_now, migrate: bool | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``migrate``: see ``twin.catalog.open_learner_databases`` (None: SQLCipher files are
        migrated, a PostgreSQL pair must already be at this code's schema). ``monotonic``: how
        long the subject keys and their lease are remembered is measured on it (tests move it)."""
        self.config = config
        self.keyring = keyring
        self.clock = clock
        self._extra_dbs: list = []
        # What construction opened is closed again if a later step fails (nothing else holds
        # the half-built object to close it): pools, their threads, file connections.
        with ExitStack() as opened:
            self.twin_db, self.vault_db = open_learner_databases(config, keyring.database_keys,
                                                                 migrate=migrate)
            opened.callback(self.vault_db.close_all)
            opened.callback(self.twin_db.close_all)
            if isinstance(self.vault_db, ServerBacked) and migrate is None:
                # Replicas share the vault: each must hold the deployment's keyring (set-up
                # recorded it), never a keyring of its own.
                keyring_record.check(self.vault_db, keyring)
            # Thread contexts and user preferences (seed 001) are personal data: the settings
            # database (on its own backend, SETTINGS_STORAGE_BACKEND) has a provider like every
            # other holder of personal data, so export, erasure and retention reach it.
            self.settings_db = open_database("settings", config, keyring.database_keys)
            opened.callback(self.settings_db.close_all)
            self._services(monotonic)
            opened.pop_all()

    def _services(self, monotonic: Callable[[], float]) -> None:
        """Keys, audit trail and services over the open databases."""
        config, keyring, clock = self.config, self.keyring, self.clock
        self.registry = personal_data_registry()
        self.hasher = SubjectHasher(keyring.id_pepper)
        # scripts/rotate_keys.py changes the keyring while the service runs: follow it.
        self.field_keys = KeyringWatcher(keyring, load=lambda: reload_keyring(config),
                                         path=config.keyring_path)
        self.keys = SubjectKeyStore(self.vault_db, self.field_keys, encrypt=not config.bench_plaintext,
                                    clock=clock, monotonic=monotonic,
                                    bindings=ProfileKeyBindings(self.twin_db))
        self.lease = SubjectKeyLease(self.keys, monotonic=monotonic)
        seals = SealBook(keyring.audit_seal_key, config.audit_seal_every)
        self.audit = self._audit_trail(seals, audit_archive(self.vault_db, config, self.field_keys, seals, clock))
        self.tokens = TokenStore(self.vault_db, cache_seconds=config.token_cache_seconds)
        self.holds = LegalHolds(self.twin_db, clock)
        ctx = LearnerContext(self.twin_db, self.keys, self.lease, self.hasher, self.audit, config, clock)
        self.profiles = ProfileService(ctx)
        self.sessions = SessionService(ctx, self.profiles)
        self.skill_parameters = SkillParameterStore(self.twin_db)
        entry_keys = EntryKeys(self.hasher)
        self.knowledge = KnowledgeService(ctx, self.profiles, self.skill_parameters, entry_keys)
        self.evidence = EvidenceService(ctx, self.profiles, self.skill_parameters, entry_keys)
        self.model_fitting = ModelFitting(ctx, self.skill_parameters, self.vault_db)
        self.consents = ConsentService(ctx, self.profiles)
        self.providers = self._providers()
        ending = SubjectEnding(self.providers, self.keys, self.tokens)
        self.dsr = DataSubjectRequests(self.providers, ending, self.keys, self.holds, self.vault_db,
                                       self.audit, clock)
        self.retention = RetentionPurger(self.providers, ending, self.vault_db, self.audit, self.holds,
                                         windows=config.retention_windows(),
                                         audit_days=config.audit_retention_days,
                                         audit_archive_days=config.audit_archive_days,
                                         batch_size=config.retention_batch_size, clock=clock)
        self.subject_requests = SubjectRequests(ctx, self.profiles, self.consents, self.holds, self.dsr)

    def _audit_trail(self, seals: SealBook, archive: AuditArchive) -> AuditTrail:
        """Where API requests stage their audit events before the response: on SQLCipher,
        encrypted segment files beside the vault's file (no vault transaction per request); on
        PostgreSQL, rows of the vault itself, since replicas share no disk and any of them
        chains what a killed one staged (``compliance.audit_vault_staging``)."""
        if not isinstance(self.vault_db, FileBacked):
            return AuditTrail(self.vault_db, clock=self.clock, stage_in_vault=True, seals=seals,
                              archive=archive)
        directory = audit_journal_dir(database_path(spec_for("privacy_vault"), self.config))
        return AuditTrail(self.vault_db, clock=self.clock, journal=AuditJournal(
            directory, None if self.config.bench_plaintext else self.field_keys,
            fsync=self.config.durability == "full"), seals=seals, archive=archive)

    def _providers(self) -> list[PersonalDataProvider]:
        """The provider of every database holding personal data, the vault last (an export
        ends with the record of disclosures). A database declaring personal data that no
        provider here reaches would survive erasure: refused at start."""
        providers: list[PersonalDataProvider] = [
            LearnerDataProvider(self.twin_db, self.registry.for_database(self.twin_db.name), keys=self.keys,
                                parameters=self.skill_parameters, explain=self.knowledge.explain_state),
            TableProvider(self.settings_db, self.registry.for_database(self.settings_db.name)),
            VaultProvider(self.vault_db, self.registry.for_database(self.vault_db.name), self.audit),
        ]
        unreached = set(self.registry.databases()) - {p.db.name for p in providers}
        if unreached:
            raise RuntimeError(f"personal data in {', '.join(sorted(unreached))} has no provider")
        return providers

    @classmethod
    def open(cls, config: Config | None = None, *, clock: Callable[[], datetime] = utc_now,
             reapply_tombstones: bool = True, reapply_every_tombstone: bool = False,
             create_keyring: bool = False, migrate: bool | None = None) -> "Runtime":
        """Load the keyring, open (and on SQLCipher migrate) the databases, re-apply erasure
        tombstones: those of unfinished erasures, or all of them after a database was restored
        or replaced (``DataSubjectRequests.reapply_tombstones``; ``reapply_every_tombstone``
        whatever the generations say, after ``twin db restore``).

        ``create_keyring``: only a command that sets a deployment up (``twin serve``) may
        generate a development keyring when none exists."""
        config = config or Config.from_env()
        runtime = cls(config, load_keyring(config, create=create_keyring), clock=clock, migrate=migrate)
        # Events a stopped process staged but never moved into the trail go in before anything
        # else is recorded or served.
        runtime.audit.flush()
        if reapply_tombstones:
            result = runtime.dsr.reapply_tombstones(STARTUP_ACTOR, every=reapply_every_tombstone)
            if result["subjects_reapplied"]:
                log.warning("re-applied %d erasure tombstones (restored backup or interrupted erasure)",
                            result["subjects_reapplied"])
            # Leased keys a stopped process left unused (or a restored vault brought back): bound
            # to the profile that names them, or destroyed, once their lease is long over.
            reclaimed = reclaim(runtime.keys)
            if reclaimed["destroyed"] or reclaimed["bound"]:
                log.info("subject keys reclaimed: %d unused destroyed, %d bound to their profile",
                         reclaimed["destroyed"], reclaimed["bound"])
        return runtime

    @cached_property
    def models(self):  # noqa: ANN201 - imported lazily: only the model routes need it
        manager = open_model_manager(self.config, self.keyring)
        self._extra_dbs.append(manager.db)
        return manager

    def databases(self) -> list:
        return [self.twin_db, self.vault_db, self.settings_db, *self._extra_dbs]

    def ready(self) -> dict[str, bool]:
        """Per database: open, keyed and answering."""
        status = {}
        for db in self.databases():
            try:
                # SQLCipher: reading the schema proves the key opens the file.
                db.query_one("SELECT count(*) FROM sqlite_master" if isinstance(db, FileBacked)
                             else "SELECT 1")
                status[db.name] = True
            except Exception:
                status[db.name] = False
        return status

    def writable(self) -> bool:
        """Whether every data directory (each database's and the audit journal's) can take
        writes now, the journal's disk-space reserve included."""
        try:
            self.audit.ensure_room()
        except AuditJournalError:
            return False
        directories = {db.path.parent for db in self.databases() if isinstance(db, FileBacked)}
        return all(can_take_writes(directory) for directory in sorted(directories))

    def close(self) -> None:
        """Flush staged audit events, checkpoint every WAL and close every connection
        (graceful shutdown)."""
        try:
            self.audit.close()
        except Exception:  # they stay staged on disk; the next start moves them in
            log.warning("staged audit events could not be flushed at shutdown", exc_info=True)
        try:
            self.lease.close()  # leased keys' bindings into the vault (the data rows hold them anyway)
        except Exception:
            log.warning("subject key bindings could not be recorded at shutdown", exc_info=True)
        try:
            self.tokens.close()  # when tokens were last used (coarse)
        except Exception:
            log.warning("token use could not be recorded at shutdown", exc_info=True)
        for db in self.databases():
            db.close_all()  # our own readers first, so they cannot hold the checkpoint back
            if not isinstance(db, FileBacked):
                continue
            try:
                if not truncate_wal(db, budget_s=5.0):
                    log.warning("final checkpoint of %s could not empty the WAL", db.name)
            except Exception:
                log.warning("final checkpoint of %s failed", db.name)
