"""Compliance fixtures: a forensic reader that decrypts every page of a database file and its WAL
(free pages and stale frames included; ``tests/sqlcipher_pages.py``), to prove what an erasure
or purge left behind; an audit trail staging through a real journal (``make_trail``; helpers in
``staged_journal.py``). Learner subjects made through the real services (``make_subject``) come from tests/conftest.py."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import pytest

from compliance.audit import AuditTrail
from compliance.audit_journal import AuditJournal
from compliance.field_crypto import FieldCipher
from compliance.subject_key_lease import SubjectKeyLease
from compliance.subject_keys import SubjectKeyStore
from compliance.tokens import TokenStore
from issued_tokens import FakeMonotonic
from sqlcipher_pages import decrypted_file_content
from twin.runtime import Runtime
from twin.storage import Database, open_keyed


def subject_ciphertexts(runtime: Runtime, subject_hash: str) -> list[bytes]:
    """Every field ciphertext stored about a subject in digital_twin.db (read before erasure)."""
    of_profile = "profile_id IN (SELECT profile_id FROM learning_profiles WHERE user_id_hash = ?)"
    queries = [
        "SELECT encrypted_data AS c FROM learning_profiles WHERE user_id_hash = ? "
        "UNION ALL SELECT learning_goals FROM learning_profiles WHERE user_id_hash = ?",
        f"SELECT performance_metrics AS c FROM learning_sessions WHERE {of_profile} "
        f"UNION ALL SELECT learning_trajectory FROM knowledge_states WHERE {of_profile}",
        f"SELECT model_checkpoint AS c FROM knowledge_states WHERE {of_profile} "
        f"UNION ALL SELECT content FROM evidence WHERE {of_profile}",
        "SELECT details AS c FROM consents WHERE user_id_hash = ? AND user_id_hash = ?",
    ]
    blobs = []
    for sql in queries:
        blobs += [bytes(r["c"]) for r in runtime.twin_db.query(sql, (subject_hash, subject_hash))
                  if r["c"] is not None]
    return blobs


@pytest.fixture
def ciphertexts_of(runtime) -> Callable[[str], list[bytes]]:
    return lambda subject_hash: subject_ciphertexts(runtime, subject_hash)


def raw_file_bytes(path: Path) -> bytes:
    """The bytes on disk of a database file and its WAL, as copied off the disk."""
    return b"".join(p.read_bytes() for p in (path, Path(str(path) + "-wal")) if p.exists())


def dump_rows(db: Database) -> list[tuple[str, tuple]]:
    """Every row of every table plus sqlite_master, read over a fresh keyed connection."""
    conn = open_keyed(db.path, db._key)  # noqa: SLF001 - a raw connection, as an auditor would open
    try:
        rows = [("sqlite_master", tuple(r)) for r in conn.execute("SELECT * FROM sqlite_master")]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            rows += [(table, tuple(r)) for r in conn.execute(f'SELECT * FROM "{table}"')]
        return rows
    finally:
        conn.close()


def tables_containing(rows: list[tuple[str, tuple]], needle: str | bytes) -> set[str]:
    """Names of the tables whose rows hold ``needle`` in any value (text or bytes)."""
    found = set()
    for table, row in rows:
        for value in row:
            if isinstance(needle, bytes) and isinstance(value, (bytes, memoryview)) \
                    and needle in bytes(value):
                found.add(table)
            elif isinstance(needle, str) and isinstance(value, str) and needle in value:
                found.add(table)
    return found


@pytest.fixture
def forge_audit_event(runtime) -> Callable[[int], None]:
    """Edit one recorded event of the runtime's vault file as someone with the database key
    would (the append-only trigger dropped first): its actor becomes ``tok_forged``."""
    def forge(seq: int) -> None:
        runtime.audit.flush()
        conn = open_keyed(runtime.vault_db.path, runtime.keyring.database_key)
        try:
            conn.execute("DROP TRIGGER audit_log_no_update")
            conn.execute("INSERT INTO audit_actors (actor_id, actor_role) VALUES ('tok_forged', 'service')")
            conn.execute("UPDATE audit_log SET actor_ref = (SELECT actor_ref FROM audit_actors "
                         "WHERE actor_id = 'tok_forged') WHERE seq = ?", (seq,))
            conn.commit()
        finally:
            conn.close()
    return forge


@pytest.fixture
def forensics():
    """Helpers reading files as an attacker or auditor would (see the module docstring)."""

    class Forensics:
        decrypted = staticmethod(decrypted_file_content)
        raw = staticmethod(raw_file_bytes)
        rows = staticmethod(dump_rows)
        tables_containing = staticmethod(tables_containing)

    return Forensics


@pytest.fixture
def config(backend_config):
    """The compliance suite runs on both storage backends (``backend_config``)."""
    return backend_config


@pytest.fixture
def make_archiving_trail(open_catalog_db, config, keyring):
    """make(vault=None, cipher=None) -> an audit trail sealed every 10 events whose archive
    segments hold at most 10 (the keyring's field keys unless ``cipher``; its clock ticks a
    second per event from ``ticking_clock.T0``)."""
    from compliance.audit import AuditTrail
    from compliance.audit_seals import SealBook
    from compliance.field_crypto import FieldCipher
    from ticking_clock import TickingClock
    from twin.catalog import audit_archive

    def make(vault=None, cipher: FieldCipher | None = None) -> AuditTrail:
        vault = vault or open_catalog_db("privacy_vault")
        seals = SealBook(keyring.audit_seal_key, every=10)
        archive = audit_archive(vault, config, cipher or FieldCipher(keyring.field_keys, keyring.active_field_key),
                                seals, TickingClock())
        archive.segment_events = 10
        return AuditTrail(vault, clock=TickingClock(), seals=seals, archive=archive)
    return make


@pytest.fixture
def database_with(databases, backend):
    """database_with(schema) -> a fresh database on this test's backend holding ``schema``
    (written in SQLite's types; PostgreSQL's through ``twin.storage.dialect.postgresql_ddl``)."""
    from twin.storage.dialect import postgresql_ddl

    def make(schema: str):
        db = databases.new("test")
        for statement in (schema if backend == "sqlcipher" else postgresql_ddl(schema)).split(";"):
            if statement.strip():
                db.execute(statement)
        return db
    return make


# -- subject-key leases (test_subject_key_lease*.py) -----------------------------------------

@pytest.fixture
def quiet_lease(runtime):
    """The runtime's profiles on a lease that records bindings only when told (``flush``): the
    state a process killed right after its creates leaves behind."""
    lease = SubjectKeyLease(runtime.keys, background=False)
    runtime.profiles.ctx.lease = lease
    return lease


@pytest.fixture
def timed_runtime(config, keyring, clock):
    """A runtime whose memory of keys and lease follow the test's clock: ``clock.advance`` lets
    a remembered key expire as the read cache's time passing would."""
    from twin.runtime import Runtime

    rt = Runtime(config, keyring, clock=clock, monotonic=clock.monotonic)
    rt.profiles.ctx.lease = SubjectKeyLease(rt.keys, background=False, monotonic=clock.monotonic)
    yield rt
    rt.close()


# The audit journal's tests (helpers: staged_journal.py).

@pytest.fixture
def vault(open_catalog_db):
    return open_catalog_db("privacy_vault")


@pytest.fixture
def cipher(keyring) -> FieldCipher:
    return FieldCipher(keyring.field_keys, keyring.active_field_key)


@pytest.fixture
def journal_dir(tmp_path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def make_trail(vault, cipher, journal_dir):
    """make_trail(flush_delay=60) -> an AuditTrail staging through a journal in journal_dir.
    The long default delay keeps the background flusher out of the way unless a test wants it."""
    trails = []

    def make(flush_delay: float = 60.0, encrypted: bool = True) -> AuditTrail:
        journal = AuditJournal(journal_dir, cipher if encrypted else None)
        trail = AuditTrail(vault, journal=journal, flush_delay=flush_delay)
        trails.append(trail)
        return trail

    yield make
    for trail in trails:
        trail.close()


# -- the keyring (test_keyring*.py; helpers: keyring_checks.py) ------------------------------

@pytest.fixture
def keyring_path(tmp_path) -> Path:
    return tmp_path / "keys" / "keyring.json"


# -- subject keys (test_subject_keys.py, test_subject_key_readers.py, test_subject_key_proofs.py) --

@pytest.fixture
def key_store(vault, cipher) -> SubjectKeyStore:
    return SubjectKeyStore(vault, cipher)


@pytest.fixture
def other_key_store(vault, cipher) -> SubjectKeyStore:
    """Another SubjectKeyStore on the same vault: another service process or an operator script."""
    return SubjectKeyStore(vault, cipher)


# -- API tokens (test_token*.py; helpers: issued_tokens.py) -----------------------------------

@pytest.fixture
def make_tokens(vault):
    """make_tokens(vault, **options) -> a TokenStore closed after the test: its writer thread
    (started by the first verification) must not record uses into a finished test's vault, nor
    log its failures into a later test's."""
    stores: list[TokenStore] = []

    def make(store_vault, **options) -> TokenStore:
        stores.append(TokenStore(store_vault, **options))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def tokens(vault, make_tokens) -> TokenStore:
    return make_tokens(vault)


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


# -- every compliance test -----------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_writer_thread_left_running():
    """Fails a test that leaves an audit trail's flusher or a token store's usage writer running
    (a trail or store never closed): later it would write into that test's vault, and log into
    a later test (whose log assertions then see it)."""
    before = set(threading.enumerate())
    yield
    left = sorted(t.name for t in threading.enumerate()
                  if t not in before and t.name in ("audit-flusher", "token-usage"))
    assert not left, f"left running (a trail or token store never closed): {left}"

