"""The one object that owns a process's databases, keys and services.

The Flask app holds one ``Runtime``; scripts build one too. Nothing else keeps global state.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Callable

from compliance.audit import Actor, AuditTrail
from compliance.audit_journal import AuditJournal, audit_journal_dir
from compliance.dsr import DataSubjectRequests
from compliance.errors import KeyringError
from compliance.field_crypto import FieldCipher
from compliance.id_hashing import SubjectHasher
from compliance.keyring import ENV_MASTER_SECRET, Keyring, load_keyring
from compliance.legal_hold import LegalHolds
from compliance.registry import build_registry
from compliance.retention import RetentionPurger
from compliance.subject_keys import SubjectKeyStore
from compliance.tokens import TokenStore

from .catalog import open_database
from .config import Config
from .learners.consents import ConsentService
from .learners.context import LearnerContext
from .learners.knowledge import KnowledgeService
from .learners.profiles import ProfileService
from .learners.sessions import SessionService
from .storage.maintenance import truncate_wal
from .storage.timestamps import utc_now

log = logging.getLogger(__name__)

STARTUP_ACTOR = Actor("system:startup", "system")


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Runtime:
    """Config + keyring + open databases + services, for one process."""

    def __init__(self, config: Config, keyring: Keyring, *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.keyring = keyring
        self.clock = clock
        self.twin_db = open_database("digital_twin", config, keyring)
        self.vault_db = open_database("privacy_vault", config, keyring)
        self.registry = build_registry((self.twin_db.name, self.vault_db.name))
        self.hasher = SubjectHasher(keyring.id_pepper)
        self.field_cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
        self._keyring_signature = _file_signature(config.keyring_path)
        self.keys = SubjectKeyStore(self.vault_db, self.field_cipher, encrypt=not config.bench_plaintext,
                                    clock=clock, reload_wrapping=self._reload_field_keys)
        self.audit = AuditTrail(self.vault_db, clock=clock, journal=AuditJournal(
            audit_journal_dir(self.vault_db.path), None if config.bench_plaintext else lambda: self.field_cipher))
        self.tokens = TokenStore(self.vault_db, cache_seconds=config.token_cache_seconds)
        self.holds = LegalHolds(self.twin_db, clock)
        ctx = LearnerContext(self.twin_db, self.keys, self.hasher, self.audit, config, clock)
        self.profiles = ProfileService(ctx)
        self.sessions = SessionService(ctx, self.profiles)
        self.knowledge = KnowledgeService(ctx, self.profiles)
        self.dsr = DataSubjectRequests(self.twin_db, self.vault_db, self.registry, self.keys,
                                       self.audit, self.holds, clock, tokens=self.tokens)
        self.consents = ConsentService(ctx, self.profiles, self.dsr)
        self.retention = RetentionPurger(self.twin_db, self.vault_db, self.registry, self.keys,
                                         self.audit, config, clock, tokens=self.tokens)
        self._extra_dbs: list = []

    def _reload_field_keys(self, *, if_changed: bool = False) -> FieldCipher:
        """Re-read the keyring (file or environment) after a field-key rotation, keeping
        every version this process already holds, and serve old and new versions alike.

        ``if_changed``: only when the keyring file was replaced since it was last read (one
        ``stat``; rotation scripts replace the file atomically)."""
        signature = _file_signature(self.config.keyring_path)
        if if_changed and signature == self._keyring_signature:
            return self.field_cipher
        environ = self.config.environ or os.environ
        if ENV_MASTER_SECRET not in environ and not self.config.keyring_path.exists():
            return self.field_cipher  # nothing to reload from (and never generate a keyring here)
        try:
            fresh = load_keyring(self.config.keyring_path, production=self.config.production,
                                 environ=environ)
        except (KeyringError, OSError) as exc:
            if not if_changed:
                raise
            # A new subject's key can go under the current version; the next one tries again.
            log.warning("keyring reload failed (%s); keeping this process's keys", exc)
            return self.field_cipher
        self._keyring_signature = signature
        if fresh.database_key not in (self.keyring.database_key, fresh.previous_database_key):
            log.warning("keyring reload: the database key changed; keeping this process's keys")
            return self.field_cipher
        keys = {**self.keyring.field_keys, **fresh.field_keys}
        self.field_cipher = FieldCipher(keys, fresh.active_field_key)
        log.info("field keys reloaded: versions %s, active %d", sorted(keys), fresh.active_field_key)
        return self.field_cipher

    @classmethod
    def open(cls, config: Config | None = None, *, clock: Callable[[], datetime] = utc_now,
             reapply_tombstones: bool = True, create_keyring: bool = False) -> "Runtime":
        """Load the keyring, open and migrate the databases, re-apply erasure tombstones.

        ``create_keyring``: only a command that sets a deployment up (``twin serve``) may
        generate a development keyring when none exists."""
        config = config or Config.from_env()
        keyring = load_keyring(config.keyring_path, production=config.production,
                               environ=config.environ or None, create=create_keyring)
        runtime = cls(config, keyring, clock=clock)
        # Events a stopped process staged but never moved into the trail go in before anything
        # else is recorded or served.
        runtime.audit.flush()
        if reapply_tombstones:
            result = runtime.dsr.reapply_tombstones(STARTUP_ACTOR)
            if result["subjects_reapplied"]:
                log.warning("re-applied %d erasure tombstones (restored backup or interrupted erasure)",
                            result["subjects_reapplied"])
        return runtime

    @cached_property
    def models(self):  # noqa: ANN201 - imported lazily: only the model routes need it
        from .model_registry.manager import ModelManager
        db = open_database("model_registry", self.config, self.keyring)
        self._extra_dbs.append(db)
        model_dir = self.config.model_dir or db.path.parent / "models"
        return ModelManager(db, model_dir)

    def databases(self) -> list:
        return [self.twin_db, self.vault_db, *self._extra_dbs]

    def ready(self) -> dict[str, bool]:
        """Per database: open, keyed and answering."""
        status = {}
        for db in self.databases():
            try:
                db.query_one("SELECT count(*) FROM sqlite_master")
                status[db.name] = True
            except Exception:
                status[db.name] = False
        return status

    def close(self) -> None:
        """Flush staged audit events, checkpoint every WAL and close every connection
        (graceful shutdown)."""
        try:
            self.audit.close()
        except Exception:  # they stay staged on disk; the next start moves them in
            log.warning("staged audit events could not be flushed at shutdown", exc_info=True)
        try:
            self.tokens.close()  # when tokens were last used (coarse)
        except Exception:
            log.warning("token use could not be recorded at shutdown", exc_info=True)
        for db in self.databases():
            db.close_all()  # our own readers first, so they cannot hold the checkpoint back
            try:
                if not truncate_wal(db, budget_s=5.0):
                    log.warning("final checkpoint of %s could not empty the WAL", db.name)
            except Exception:
                log.warning("final checkpoint of %s failed", db.name)
