"""PostgreSQL only ever sees ciphertext: after the privacy scenario (distinctive strings in
``personal``, goals, session metrics, trajectories, evidence, and a raw user_id) neither a
``pg_dump`` of the data and vault databases, nor the service's log, nor the PostgreSQL server's
log holds any of them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import storage_backends


@pytest.fixture
def backend(pg_server) -> str:
    """These tests are about the PostgreSQL backend only."""
    return "postgresql"


def _needles(*texts: str) -> list[bytes]:
    # As text (JSON, TEXT columns, log lines), UTF-16, and as a plain dump prints bytea (hex).
    return [form for t in texts for form in (t.encode(), t.encode("utf-16-le"), t.encode().hex().encode())]


def server_log_path() -> Path | None:
    """The server's current log file: ``pg_current_logfile()`` under the logging collector,
    else where a Debian cluster's stderr goes (``/var/log/postgresql/postgresql-<major>-<cluster>.log``)."""
    import psycopg

    with psycopg.connect(storage_backends.ADMIN_URL, autocommit=True) as conn:
        current, data_directory, major = conn.execute(
            "SELECT pg_current_logfile(), current_setting('data_directory'), "
            "current_setting('server_version_num')::int / 10000").fetchone()
    if current:
        path = Path(current)
        return path if path.is_absolute() else Path(data_directory) / path
    debian = Path("/var/log/postgresql") / f"postgresql-{major}-{Path(data_directory).name}.log"
    return debian if debian.exists() else None


@pytest.fixture
def server_log():
    """The server log's bytes written during the test (read from where it stood at the start)."""
    path = server_log_path()
    if path is None or not os.access(path, os.R_OK):
        if storage_backends.in_ci():
            pytest.fail(f"CI=true but the PostgreSQL server log cannot be read ({path})")
        pytest.skip(f"the PostgreSQL server log cannot be read ({path})")
    start = path.stat().st_size

    def written() -> bytes:
        with path.open("rb") as log:
            log.seek(start)
            return log.read()
    return written


def pg_dump(database: str) -> bytes:
    dump = shutil.which("pg_dump")
    if dump is None:
        pytest.skip("pg_dump is not installed")
    url = storage_backends.database_url(database)
    return subprocess.run([dump, "--no-owner", url], check=True, capture_output=True, timeout=120).stdout


def test_the_dumps_of_both_databases_hold_no_personal_string_or_user_id(secrets_in_flight, runtime,
                                                                         pg_learner_pair):
    runtime.audit.flush()
    needles = _needles(secrets_in_flight["marker"], secrets_in_flight["user_id"])
    dumps = {name: pg_dump(name) for name in (pg_learner_pair.data, pg_learner_pair.vault)}

    # The dumps are of the scenario's rows: ciphertext where the strings went, and the trail.
    assert b"learning_profiles" in dumps[pg_learner_pair.data]
    assert b"audit_events" in dumps[pg_learner_pair.vault]
    assert runtime.twin_db.query_one("SELECT count(*) FROM evidence")[0] >= 1
    assert {name: [n for n in needles if n in dump] for name, dump in dumps.items()} == \
        {name: [] for name in dumps}


def test_the_server_log_and_the_service_log_hold_none_of_them(server_log, secrets_in_flight, caplog):
    import psycopg

    # A statement that fails on the server is logged there with its text: make sure one did
    # (a unique violation of the scenario's subject), so the search below is not of nothing.
    with pytest.raises(psycopg.errors.UniqueViolation):
        with psycopg.connect(storage_backends.ADMIN_URL.rsplit("/", 1)[0] + "/postgres") as conn:
            conn.execute("CREATE TEMP TABLE probe (v TEXT UNIQUE)")
            conn.execute("INSERT INTO probe VALUES ('twin-privacy-probe'), ('twin-privacy-probe')")
    logged = server_log()
    assert b"twin-privacy-probe" in logged, "the server log did not record the failing statement"

    records = caplog.get_records("setup") + caplog.get_records("call")
    service_log = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records).encode()
    assert len(records) >= 9
    for name, text in (("server log", logged), ("service log", service_log)):
        for secret in ("marker", "user_id", "token"):
            assert secrets_in_flight[secret].encode() not in text, (name, secret)
