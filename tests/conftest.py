"""Shared fixtures: real SQLCipher files under tmp_path, real PostgreSQL databases created per
test, real keys, real crypto."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import pytest

import storage_backends
from compliance.audit import Actor
from compliance.keyring import Keyring
from twin.config import Config

BACKENDS = ("sqlcipher", "postgresql")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): a SQLite/SQLCipher feature; "
                                       "skipped on the postgresql backend")
    config.addinivalue_line("markers", "postgresql_only(reason): a database server's feature; "
                                       "skipped on the sqlcipher backend")


def pytest_sessionstart(session) -> None:
    # CI must test both backends: a missing server fails the run instead of skipping tests.
    if storage_backends.in_ci():
        problems = [p for p in (storage_backends.postgresql_problem(), storage_backends.redis_problem()) if p]
        if problems:
            raise pytest.UsageError("CI=true but " + "; ".join(problems))


@pytest.fixture(scope="session")
def postgres_server():
    """The PostgreSQL test server (skips without one, fails under CI=true); everything the
    session created there is dropped at its end, and nothing else."""
    problem = storage_backends.postgresql_problem()
    if problem:
        if storage_backends.in_ci():
            pytest.fail(f"CI=true but {problem}")
        pytest.skip(problem)
    server = storage_backends.PostgresServer()
    yield server
    server.drop_all()


@pytest.fixture
def pg_server(postgres_server):
    """The server, with what this test created on it dropped after the test."""
    yield postgres_server
    postgres_server.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each test using it runs once per storage backend."""
    marker = request.node.get_closest_marker("sqlite_only")
    if request.param == "postgresql" and marker is not None:
        pytest.skip(f"SQLite only: {marker.args[0] if marker.args else 'not a PostgreSQL feature'}")
    server_only = request.node.get_closest_marker("postgresql_only")
    if request.param == "sqlcipher" and server_only is not None:
        pytest.skip(f"PostgreSQL only: {server_only.args[0] if server_only.args else 'a server feature'}")
    if request.param == "postgresql":
        request.getfixturevalue("pg_server")
    return request.param


@pytest.fixture
def databases(backend, request, tmp_path, db_key):
    """databases.new("name") -> a fresh database on this test's backend (SQLCipher file under
    tmp_path, or a new PostgreSQL database); databases.again(db) -> a second object on it."""
    server = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    maker = storage_backends.DatabaseMaker(backend, tmp_path, db_key, server)
    yield maker
    maker.close_all()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def db_key(keyring: Keyring) -> bytes:
    return keyring.database_key


@pytest.fixture
def config(tmp_path) -> Config:
    """A test configuration whose every database lives under tmp_path/data."""
    return Config(env="test", data_dir=tmp_path / "data", keyring_path=tmp_path / "keys" / "keyring.json",
                  model_dir=tmp_path / "models", environ={})


@pytest.fixture(scope="module")
def pg_learner_pair(postgres_server):
    """A learner-twin database pair on PostgreSQL shared by one module's tests (emptied
    between them by ``backend_config``)."""
    pair = storage_backends.LearnerPair()
    yield pair
    pair.drop()


@pytest.fixture
def backend_config(backend, request, tmp_path, keyring) -> Config:
    """The test configuration on this test's backend: SQLCipher files under tmp_path/data, or
    the module's PostgreSQL pair (set up once, emptied before each test) with the component
    stores on SQLCipher files. A suite runs on both backends by defining ``config`` as this."""
    pair = request.getfixturevalue("pg_learner_pair") if backend == "postgresql" else None
    return storage_backends.learner_config(tmp_path, keyring, pair)


@pytest.fixture
def store_config(backend, request, tmp_path) -> Config:
    """The test configuration with the component stores on this test's backend: SQLCipher
    files under tmp_path/data, or every store in its own schema of a fresh PostgreSQL database
    (``<PREFIX>STORAGE_BACKEND=postgresql``, the URL defaulting to ``TWIN_DATABASE_URL``; the
    learner databases stay SQLCipher files). A store's suite runs on both backends by defining
    ``config`` as this."""
    environ: dict[str, str] = {}
    if backend == "postgresql":
        server = request.getfixturevalue("pg_server")
        environ = {f"{prefix}STORAGE_BACKEND": "postgresql" for prefix in storage_backends.COMPONENT_PREFIXES}
        environ.update({"TWIN_DATABASE_URL": storage_backends.database_url(server.create_database()),
                        "TWIN_DB_POOL_SIZE": "1", "TWIN_DB_POOL_MAX_SIZE": "8"})
    return Config(env="test", data_dir=tmp_path / "data", keyring_path=tmp_path / "keys" / "keyring.json",
                  model_dir=tmp_path / "models", environ=environ)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    # No test may pick up a developer's real data directory, keyring or master secret.
    for name in list(os.environ):
        if name.startswith("TWIN_") or name.endswith(_STORE_VARIABLE_SUFFIXES) \
                or name == "DIGITAL_TWIN_ENCRYPTION_KEY":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


_STORE_VARIABLE_SUFFIXES = ("_DB_PATH", "_STORAGE_BACKEND", "_DATABASE_URL", "_REDIS_URL",
                            "RAG_CACHE_ENABLED")


@pytest.fixture
def seed_deployment(monkeypatch, tmp_path) -> Keyring:
    """A deployment configured only through the environment, as seed code expects: data under
    tmp_path/data, the keyring from a master secret; returns that keyring."""
    import base64

    secret = os.urandom(32)
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DIGITAL_TWIN_ENCRYPTION_KEY", base64.b64encode(secret).decode())
    return Keyring.from_master_secret(secret)


@pytest.fixture
def open_catalog_db(config, keyring):
    """open_catalog_db("settings") -> that catalog database, migrated; closed after the test."""
    from twin.catalog import open_database

    opened = []

    def _open(name: str):
        db = open_database(name, config, keyring.database_keys)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        db.close_all()


class MovableClock:
    """A clock tests can move forward (retention, expiry, holds)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)

    def monotonic(self) -> float:
        """Monotonic seconds that move with ``advance`` (what caches measure their time on)."""
        return time.monotonic() + self.offset.total_seconds()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def runtime(config, keyring, clock):
    """A real Runtime on SQLCipher files under tmp_path, with a movable clock."""
    from twin.runtime import Runtime

    rt = Runtime(config, keyring, clock=clock)
    yield rt
    rt.close()


@pytest.fixture
def app(runtime):
    from twin.api.app import create_app

    return create_app(runtime.config, runtime=runtime)


@pytest.fixture
def client(app):
    return app.test_client()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(runtime) -> dict[str, str]:
    """Headers of an admin token."""
    return _bearer(runtime.tokens.issue("admin").token)


@pytest.fixture
def service(runtime) -> dict[str, str]:
    """Headers of a service token."""
    return _bearer(runtime.tokens.issue("service").token)


@pytest.fixture
def learner_for(runtime):
    """learner_for("user-1") -> headers of a learner token bound to that user id."""
    return lambda user_id: _bearer(runtime.tokens.issue("learner", subject_hash=runtime.hasher.hash(user_id)).token)


@dataclass
class Subject:
    """A learner made through the services, and the distinctive values stored about them."""

    user_id: str
    subject_hash: str
    profile_id: str
    marker: str                       # appears in plaintext columns (topics, domain, style)
    session_ids: list[str] = field(default_factory=list)
    consent_ids: list[str] = field(default_factory=list)
    knowledge: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def make_subject(runtime) -> Callable[..., Subject]:
    """make_subject("user-1", sessions=2, knowledge=2, child=False) -> Subject."""

    def make(user_id: str, *, sessions: int = 2, knowledge: int = 2, child: bool = False,
             retention_days: int | None = None, marker: str | None = None) -> Subject:
        marker = marker or "MARK" + hashlib.sha256(user_id.encode()).hexdigest()[:10].upper()
        today = runtime.clock().date()
        data: dict[str, Any] = {
            "user_id": user_id,
            "learning_style": f"visual-{marker}",
            "knowledge_domains": [f"domain-{marker}"],
            "learning_goals": [f"goal-{marker}"],
            "privacy_settings": {"share": False},
            "personal": {"name": f"Name-{marker}", "email": f"{marker.lower()}@example.org"},
            "birth_date": date(today.year - (9 if child else 30), 1, 15),
            "retention_days": retention_days,
        }
        if child:
            data["parental_consent"] = parental_consent(f"Parent-{marker}")
        # Made here, not at import: mutmut's forced-failure check of compliance/audit_events.py
        # makes every Actor() raise, and a conftest that cannot load stops the run.
        actor = Actor("tok_test_service", "service")
        view, _ = runtime.profiles.create(actor, None, data)
        subject = Subject(user_id, runtime.hasher.hash(user_id), view["profile_id"], marker)
        subject.consent_ids = [r["consent_id"] for r in runtime.twin_db.query(
            "SELECT consent_id FROM consents WHERE profile_id = ?", (subject.profile_id,))]
        for i in range(sessions):
            started, _ = runtime.sessions.start(actor, None, subject.profile_id,
                                                {"session_type": "lesson",
                                                 "topics_covered": [f"topic-{marker}-{i}"]})
            runtime.sessions.update(actor, None, started["session_id"],
                                    {"performance_metrics": {"score": i, "note": f"note-{marker}-{i}"},
                                     "engagement_score": 0.5}, None)
            subject.session_ids.append(started["session_id"])
        for i in range(knowledge):
            domain, topic = f"kd-{marker}", f"topic{i}"
            runtime.knowledge.upsert(actor, None, subject.profile_id, domain, topic,
                                     {"mastery_level": 0.25, "confidence_score": 0.5,
                                      "learning_trajectory": {"path": f"traj-{marker}-{i}"}})
            subject.knowledge.append((domain, topic))
        return subject

    return make


def parental_consent(name: str = "Pat Parent") -> dict[str, Any]:
    """A validated parental-consent request body (as the API schema loads it)."""
    return {"consenter_name": name, "consenter_relationship": "parent",
            "consenter_contact": "pat@example.org", "method": "signed_form",
            "obtained_at": datetime.now(timezone.utc)}


@pytest.fixture
def consent_body() -> Callable[[str], dict[str, Any]]:
    return parental_consent
