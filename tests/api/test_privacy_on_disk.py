"""What reaches the disk and the logs: never the user id, never a profile's personal data in clear."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest



def _files_containing(root: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    """Every file under ``root`` (databases, -wal, -shm, anything else) holding any needle."""
    hits: dict[str, list[bytes]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            # An audit-journal segment the flusher imported into the vault and removed while we
            # listed: its events are in privacy_vault.db (and -wal), which the scan reads.
            continue
        found = [n for n in needles if n in data]
        if found:
            hits[str(path.relative_to(root))] = found
    return hits


def _needles(*texts: str) -> list[bytes]:
    # UTF-8 as written by JSON/SQLite, plus UTF-16 in case anything stored wide strings.
    return [form for t in texts for form in (t.encode(), t.encode("utf-16-le"))]


@pytest.mark.sqlite_only("reads the SQLCipher files and WAL; PostgreSQL: tests/api/test_privacy_on_postgresql.py")
def test_the_personal_string_and_user_id_are_in_no_database_file_or_wal(secrets_in_flight, runtime, config):
    data_dir = config.data_dir
    wal_files = [p for p in data_dir.rglob("*-wal") if p.stat().st_size > 0]
    assert wal_files, "expected live WAL files to scan"  # the scan below must include them

    hits = _files_containing(data_dir, _needles(secrets_in_flight["marker"], secrets_in_flight["user_id"]))

    assert hits == {}


def test_nothing_leaks_after_the_wal_is_checkpointed_into_the_main_files(secrets_in_flight, runtime, config):
    runtime.close()

    hits = _files_containing(config.data_dir, _needles(secrets_in_flight["marker"], secrets_in_flight["user_id"]))

    assert hits == {}


def test_even_through_the_database_key_no_column_holds_them_in_clear(secrets_in_flight, runtime):
    # SQLCipher hides everything on disk; this checks the second layer (field encryption and
    # hashing), which is what protects a decrypted backup or a debugging session.
    needles = [secrets_in_flight["marker"], secrets_in_flight["user_id"]]
    leaks = []
    for db in runtime.databases():
        for table in db.table_names():
            for row in db.query(f'SELECT * FROM "{table}"'):
                for column, value in zip(row.keys(), tuple(row)):
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    leaks += [(db.name, table, column) for n in needles if n in text]

    assert leaks == []


def test_the_logs_hold_no_personal_data_user_id_or_token(secrets_in_flight, caplog):
    records = caplog.get_records("setup") + caplog.get_records("call")
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records)

    assert len(records) >= 9, "expected the flow's request logs to inspect"
    for secret in ("marker", "user_id", "token", "profile_id"):
        assert secrets_in_flight[secret] not in text, secret


def test_the_scan_does_find_a_string_stored_in_clear(tmp_path):
    # Control: the same scan over an unencrypted SQLite file with a WAL reports the marker.
    conn = sqlite3.connect(tmp_path / "plain.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES ('Quokka-control')")
    conn.commit()

    hits = _files_containing(tmp_path, _needles("Quokka-control"))
    conn.close()

    assert "plain.db-wal" in hits
