"""API fixtures: a real Runtime on SQCipher files under tmp_path, the real app, real tokens."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from twin.api.app import create_app
from twin.runtime import Runtime


class MovableClock:
    """A clock tests can move forward (retention, expiry)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def runtime(config, keyring, clock):
    rt = Runtime(config, keyring, clock=clock)
    yield rt
    rt.close()


@pytest.fixture
def app(runtime):
    return create_app(runtime.config, runtime=runtime)


@pytest.fixture
def client(app):
    return app.test_client()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(runtime) -> dict[str, str]:
    return _bearer(runtime.tokens.issue("admin").token)


@pytest.fixture
def service(runtime) -> dict[str, str]:
    return _bearer(runtime.tokens.issue("service").token)


@pytest.fixture
def learner_for(runtime):
    """learner_for("user-1") -> headers of a learner token bound to that user id."""
    return lambda user_id: _bearer(runtime.tokens.issue("learner", subject_hash=runtime.hasher.hash(user_id)).token)
