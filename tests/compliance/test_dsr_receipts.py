"""Erasure receipts: what a receipt claims (counts, the rescan's proof, the key destroyed),
of an unknown subject, of a second erasure, of a dry run (which proves and destroys nothing),
the tombstone written with it, its progress table by table, its duration, a row the erasure
missed making it unverified, and rows written or deleted by someone else while it ran.
Helpers: dsr_checks.py."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest

from compliance import dsr
from dsr_checks import ADMIN_ACTOR, SERVICE_ACTOR


def test_erasing_an_unknown_subject_returns_a_verified_receipt_of_zeros(runtime):
    receipt = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id="never-seen")

    assert set(receipt.counts) == {"evidence", "knowledge_states", "learning_sessions", "consents", "legal_holds",
                                   "learning_profiles", "thread_contexts", "user_preferences", "api_tokens",
                                   "subject_keys"}
    assert set(receipt.counts.values()) == {0} and set(receipt.rescan.values()) == {0}
    assert receipt.verified and not receipt.subject_key_destroyed and not receipt.dry_run


def test_erasure_is_idempotent(runtime, make_subject):
    subject = make_subject("twice")
    first = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    second = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    assert first.counts["learning_profiles"] == 1 and first.verified
    assert set(second.counts.values()) == {0} and second.verified
    assert second.receipt_id != first.receipt_id
    assert len(runtime.audit.query(subject_hash=subject.subject_hash, action="erase")) == 2


def test_dry_run_counts_without_deleting_or_tombstoning(runtime, make_subject):
    subject = make_subject("dry", sessions=2, knowledge=1)

    receipt = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id, dry_run=True)

    assert receipt.dry_run
    assert receipt.counts["learning_sessions"] == 2 and receipt.counts["subject_keys"] == 1
    # A dry run proves nothing and destroys nothing: its receipt must not claim either.
    shown = receipt.to_dict()
    assert (shown["verified"], shown["subject_key_destroyed"], shown["wal_truncated"]) == (False, False, False)
    assert shown["rescan"] == {}
    assert runtime.dsr.counts(subject.subject_hash) == receipt.counts
    assert runtime.keys.has_key(subject.subject_hash)
    assert runtime.vault_db.query_one("SELECT count(*) FROM erasure_tombstones")[0] == 0
    assert runtime.audit.query(action="erase") == []


class _RecordedProgress:
    """A progress factory that remembers what it was told (as the CLI's bar would show)."""

    def __init__(self) -> None:
        self.bars: list[list] = []

    def __call__(self, description: str, total: int | None = None, unit: str = "items") -> "_RecordedProgress":
        self.bars.append([description, total, unit, 0])
        return self

    def update(self, n: int = 1) -> None:
        self.bars[-1][3] += n

    def __enter__(self) -> "_RecordedProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_an_erasure_erases_unless_told_to_dry_run_and_reports_its_progress_table_by_table(
        runtime, make_subject):
    subject = make_subject("progress", sessions=1, knowledge=0)
    progress = _RecordedProgress()

    receipt = runtime.dsr.erase(subject.subject_hash, progress=progress)

    assert not receipt.dry_run and receipt.verified and receipt.subject_key_destroyed
    assert re.fullmatch(r"rcpt_[A-Za-z0-9_-]{16}", receipt.receipt_id)
    tables = len(receipt.counts)
    assert progress.bars == [["erase subject", tables, "tables", tables]]
    assert set(runtime.dsr.counts(subject.subject_hash).values()) == {0}


def test_erasure_writes_the_tombstone_with_the_receipt(runtime, make_subject):
    subject = make_subject("tombstoned", sessions=1, knowledge=0)

    receipt = runtime.subject_requests.erase(SERVICE_ACTOR, None, user_id=subject.user_id)

    row = runtime.vault_db.query_one("SELECT * FROM erasure_tombstones WHERE user_id_hash = ?",
                                     (subject.subject_hash,))
    assert row["receipt_id"] == receipt.receipt_id and row["erased_at"] == receipt.erased_at
    assert json.loads(row["counts"])["learning_sessions"] == 1
    assert receipt.duration_ms >= 0 and timedelta(milliseconds=receipt.duration_ms) < timedelta(seconds=5)


@pytest.mark.sqlite_only("plants the missed row with SQLite PRAGMAs")
def test_a_row_the_erasure_missed_shows_in_the_rescan_and_the_receipt_is_not_verified(runtime, make_subject):
    """The receipt's proof is a fresh look for the subject in every table: an erasure that left
    a row behind (here a token put back as soon as it is deleted) must not be reported as done."""
    subject = make_subject("missed-row", sessions=0, knowledge=0)
    runtime.tokens.issue("learner", subject_hash=subject.subject_hash)
    columns = [r[1] for r in runtime.vault_db.query("PRAGMA table_info(api_tokens)")]
    with runtime.vault_db.writes_held() as writes:  # a TEMP trigger where the writes run
        writes.execute(
            f"CREATE TEMP TRIGGER put_back AFTER DELETE ON main.api_tokens BEGIN "
            f"INSERT INTO api_tokens ({', '.join(columns)}) VALUES ({', '.join('old.' + c for c in columns)}); END")

    receipt = runtime.dsr.erase(subject.subject_hash)

    assert receipt.rescan["api_tokens"] == 1 and receipt.verified is False
    assert receipt.rescan["learning_profiles"] == 0


def test_the_receipt_gives_how_long_the_erasure_took_in_milliseconds_to_the_hundredth(
        runtime, make_subject, monkeypatch):
    subject = make_subject("timed", sessions=1, knowledge=0)
    # The erasure's two readings of the performance counter, 0.123456 s apart.
    readings = iter([1000.0, 1000.123456])
    monkeypatch.setattr(dsr, "time", SimpleNamespace(perf_counter=lambda: next(readings)))

    receipt = runtime.dsr.erase(subject.subject_hash)

    assert receipt.verified and type(receipt.duration_ms) is float
    assert receipt.to_dict()["duration_ms"] == 123.46
    assert next(readings, None) is None


def _on_tombstone(runtime, statement: str) -> None:
    """Run ``statement`` in the vault's write transaction that writes the tombstone: after the
    erasure counted the subject's rows, before it deletes them (another process's write then)."""
    with runtime.vault_db.writes_held() as writes:  # a TEMP trigger where the writes run
        writes.execute(f"CREATE TEMP TRIGGER meanwhile AFTER INSERT ON main.erasure_tombstones BEGIN "
                       f"{statement}; END")


@pytest.mark.sqlite_only("plants the racing write with a TEMP trigger")
def test_a_token_issued_to_the_subject_while_the_erasure_runs_is_erased_and_on_the_receipt(
        runtime, make_subject):
    subject = make_subject("raced-issue", sessions=0, knowledge=0)
    runtime.tokens.issue("learner", subject_hash=subject.subject_hash)
    _on_tombstone(runtime, "INSERT INTO api_tokens (token_id, token_hash, role, subject_hash, created_at) "
                           "SELECT 'tok_raced', 'raced-' || token_hash, role, subject_hash, created_at "
                           "FROM api_tokens WHERE subject_hash = NEW.user_id_hash")

    receipt = runtime.dsr.erase(subject.subject_hash)

    assert receipt.counts["api_tokens"] == 2 and receipt.rescan["api_tokens"] == 0 and receipt.verified
    row = runtime.vault_db.query_one("SELECT counts FROM erasure_tombstones WHERE user_id_hash = ?",
                                     (subject.subject_hash,))
    assert json.loads(row["counts"])["api_tokens"] == 2


@pytest.mark.sqlite_only("plants the racing delete with a TEMP trigger")
def test_a_token_of_the_subject_deleted_elsewhere_before_the_erasure_reached_it_stays_on_the_receipt(
        runtime, make_subject):
    subject = make_subject("raced-delete", sessions=0, knowledge=0)
    runtime.tokens.issue("learner", subject_hash=subject.subject_hash)
    _on_tombstone(runtime, "DELETE FROM api_tokens WHERE subject_hash = NEW.user_id_hash")

    receipt = runtime.dsr.erase(subject.subject_hash)

    # The subject had the token when the erasure began, and it is gone: the receipt says so.
    assert receipt.counts["api_tokens"] == 1 and receipt.rescan["api_tokens"] == 0 and receipt.verified
    row = runtime.vault_db.query_one("SELECT counts FROM erasure_tombstones WHERE user_id_hash = ?",
                                     (subject.subject_hash,))
    assert json.loads(row["counts"])["api_tokens"] == 1
